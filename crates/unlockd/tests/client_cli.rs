//! The client commands of the `unlockd` binary against a running server.

mod common;

use std::process::{Command, Output};

use common::{spawn_app_with, Options};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_unlockd");

fn client(url: &str, key: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .env("UNLOCKD_URL", url)
        .env("UNLOCKD_API_KEY", key)
        .env("UNLOCKD_LOG", "warn")
        .args(args)
        .output()
        .expect("runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlock_prechecks_creates_waits_and_prints_results() {
    let app = spawn_app_with(Options {
        worker: true,
        ..Options::default()
    })
    .await;
    let (_, key) = app.account(2_000).await;
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("ids.txt");
    // 120 ids: two requests of at most 100; 791 has no email; "nope" does not exist.
    let mut ids: Vec<String> = (100..200).map(|i| i.to_string()).collect();
    ids.extend(["789", "790", "791", "nope", "789"].map(String::from));
    std::fs::write(&list, format!("# people to unlock\n{}\n", ids.join(",\n"))).unwrap();

    let (url, key2) = (app.url.clone(), key.clone());
    let out = tokio::task::spawn_blocking(move || {
        client(
            &url,
            &key2,
            &[
                "unlock",
                "--event",
                "139574",
                "--from-file",
                list.to_str().unwrap(),
                "--yes",
                "--json",
            ],
        )
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("103 emails to unlock for about 1545 credits"),
        "{stderr}"
    );
    let tasks: Value = serde_json::from_slice(&out.stdout).unwrap();
    let tasks = tasks.as_array().unwrap();
    assert_eq!(tasks.len(), 2, "chunks of at most 100");
    let items: Vec<&Value> = tasks
        .iter()
        .flat_map(|t| t["items"].as_array().unwrap())
        .collect();
    assert_eq!(items.len(), 103);
    assert!(tasks.iter().all(|t| t["taskStatus"] == "completed"));
    assert_eq!(
        items.iter().filter(|i| i["status"] == "unlocked").count(),
        102
    );
    assert_eq!(app.balance(&key).await["totalBalance"], 2_000 - 102 * 15);

    // Without --yes on a non-interactive input, nothing is created.
    let (url, key2) = (app.url.clone(), key.clone());
    let out = tokio::task::spawn_blocking(move || {
        client(&url, &key2, &["unlock", "--event", "139574", "800", "101"])
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "nothing chargeable left: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (url, key2) = (app.url.clone(), key.clone());
    let out = tokio::task::spawn_blocking(move || {
        client(
            &url,
            &key2,
            &["unlock", "--event", "139574", "--phone", "789"],
        )
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    assert_eq!(app.balance(&key).await["heldCredits"], 0);

    let (url, key2) = (app.url.clone(), key.clone());
    let reads = tokio::task::spawn_blocking(move || {
        (
            client(&url, &key2, &["credits"]),
            client(
                &url,
                &key2,
                &[
                    "personnel",
                    "list",
                    "--event",
                    "139574",
                    "--search",
                    "person 789",
                ],
            ),
            client(&url, &key2, &["events", "list", "--json"]),
            client(&url, "", &["credits"]),
        )
    })
    .await
    .unwrap();
    let balance: Value = serde_json::from_slice(&reads.0.stdout).unwrap();
    assert_eq!(balance["totalBalance"], 2_000 - 102 * 15);
    assert!(String::from_utf8_lossy(&reads.1.stdout).contains("jane.doe@acme.example"));
    let events: Value = serde_json::from_slice(&reads.2.stdout).unwrap();
    assert_eq!(events["total"], 2);
    assert!(!reads.3.status.success(), "no key, no call");
    app.assert_ledger_ok().await;
}
