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
        stderr.contains("103 of 104 emails to unlock for about 1545 credits"),
        "{stderr}"
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["notFound"], serde_json::json!(["nope"]));
    let tasks = result["tasks"].as_array().unwrap();
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
            client(&url, &key2, &["credits", "--json"]),
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

/// Runs the client in a blocking thread (the test's server runs on the test runtime).
async fn run(url: &str, key: &str, args: &[&str]) -> Output {
    let (url, key) = (url.to_string(), key.to_string());
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        client(&url, &key, &args)
    })
    .await
    .unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The header line of a table and the line of `id`, with their columns' start offsets.
fn column_starts(line: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut previous_space = 0;
    for (i, c) in line.char_indices() {
        if c != ' ' && (i == 0 || previous_space >= 2) {
            starts.push(i);
        }
        previous_space = if c == ' ' { previous_space + 1 } else { 0 };
    }
    starts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_event_and_unknown_ids_fail_with_the_servers_reason() {
    let app = spawn_app_with(Options {
        worker: true,
        ..Options::default()
    })
    .await;
    let (_, key) = app.account(1_000).await;

    let out = run(
        &app.url,
        &key,
        &["unlock", "--event", "nope", "1", "2", "--yes"],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("event \"nope\" not found"), "{stderr}");
    assert!(!stderr.contains("nothing to unlock"), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");

    let out = run(
        &app.url,
        &key,
        &["unlock", "--event", "139574", "nope1", "nope2", "--yes"],
    )
    .await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("none of the 2 personnel ids is a known person (NOT_FOUND): nope1, nope2"),
        "{stderr}"
    );
    // A person of another event only.
    let out = run(
        &app.url,
        &key,
        &["unlock", "--event", "139574", "800", "--yes"],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("not in this event"),
        "{}",
        text(&out).1
    );
    assert_eq!(app.balance(&key).await["totalBalance"], 1_000);
    assert_eq!(app.balance(&key).await["heldCredits"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlock_prints_a_table_and_a_repeat_shows_the_contacts_already_owned() {
    let app = spawn_app_with(Options {
        worker: true,
        ..Options::default()
    })
    .await;
    let (_, key) = app.account(1_000).await;
    let args = ["unlock", "--event", "139574", "789", "791", "nope", "--yes"];
    let out = run(&app.url, &key, &args).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    // Not on a terminal: plain progress lines, no bar.
    assert!(stderr.contains("items done"), "{stderr}");
    assert!(!stderr.contains('\r'), "{stderr:?}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>()[..3],
        ["PERSONNEL", "ID", "STATUS"]
    );
    let header = column_starts(lines[0]);
    let jane = lines
        .iter()
        .find(|l| l.starts_with("789"))
        .expect("789 row");
    assert!(
        jane.contains("unlocked") && jane.contains("jane.doe@acme.example"),
        "{stdout}"
    );
    assert_eq!(column_starts(jane)[..3], header[..3], "aligned:\n{stdout}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("791") && l.contains("failed")),
        "{stdout}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("nope") && l.contains("not found")),
        "{stdout}"
    );
    assert!(
        stderr.contains("1 emails unlocked for 15 credits"),
        "{stderr}"
    );

    // The repeat charges nothing and shows what the account already has.
    let out = run(
        &app.url,
        &key,
        &["unlock", "--event", "139574", "789", "790", "--yes"],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let jane = stdout
        .lines()
        .find(|l| l.starts_with("789"))
        .expect("789 row");
    assert!(
        jane.contains("already unlocked") && jane.contains("jane.doe@acme.example"),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("790")
            && l.contains("john.roe@acme.example")
            && l.contains("unlocked")),
        "{stdout}"
    );
    assert_eq!(app.balance(&key).await["totalBalance"], 1_000 - 2 * 15);

    let out = run(
        &app.url,
        &key,
        &[
            "unlock", "--event", "139574", "789", "790", "--yes", "--json",
        ],
    )
    .await;
    assert!(out.status.success());
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["tasks"], serde_json::json!([]));
    assert_eq!(
        result["alreadyUnlocked"],
        serde_json::json!([
            {"personnelId": "789", "email": "jane.doe@acme.example"},
            {"personnelId": "790", "email": "john.roe@acme.example"}
        ])
    );
    assert_eq!(app.balance(&key).await["totalBalance"], 1_000 - 2 * 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credits_task_events_and_personnel_print_tables_or_json() {
    let app = spawn_app_with(Options {
        worker: true,
        ..Options::default()
    })
    .await;
    let (_, key) = app.account(1_000).await;

    let out = run(&app.url, &key, &["credits"]).await;
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(stdout.starts_with("BUCKET"), "{stdout}");
    let gift = stdout.lines().find(|l| l.starts_with("gift")).unwrap();
    assert_eq!(
        gift.split_whitespace().collect::<Vec<_>>(),
        ["gift", "1000", "1000"]
    );
    assert!(stdout.contains("1000 credits available"), "{stdout}");
    let out = run(&app.url, &key, &["credits", "--json"]).await;
    let balance: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(balance["availableCredits"], 1_000);

    // A phone task, asked for without --phone: the CLI finds it on the phone route.
    let out = run(
        &app.url,
        &key,
        &[
            "unlock", "--event", "139574", "--phone", "789", "--yes", "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out).1);
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    let task_id = result["tasks"][0]["taskId"].as_str().unwrap().to_string();
    let out = run(&app.url, &key, &["task", &task_id]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(&format!(
            "task {task_id} (phone unlock): completed, 1/1 items done"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("credits: 150 charged, 0 held, 0 released"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("PERSONNEL ID") && l.contains("PHONE")),
        "{stdout}"
    );
    assert!(stdout.contains("+1 415 555 789"), "{stdout}");
    let out = run(&app.url, &key, &["task", &task_id, "--phone", "--json"]).await;
    let task: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(task["taskStatus"], "completed");
    let created = task["createdAt"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(created).is_ok(),
        "{created}"
    );
    let out = run(&app.url, &key, &["task", "no-such-task"]).await;
    assert!(!out.status.success());
    assert!(text(&out).1.contains("TASK_NOT_FOUND"), "{}", text(&out).1);

    let out = run(&app.url, &key, &["events", "list"]).await;
    let (stdout, _) = text(&out);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("EVENT ID"), "{stdout}");
    let row = lines
        .iter()
        .find(|l| l.starts_with("139574"))
        .expect("event row");
    assert_eq!(
        column_starts(row),
        column_starts(lines[0]),
        "aligned:\n{stdout}"
    );

    let out = run(
        &app.url,
        &key,
        &["personnel", "list", "--event", "139574", "--page-size", "5"],
    )
    .await;
    let (stdout, _) = text(&out);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("ID"), "{stdout}");
    assert_eq!(lines.len(), 6, "{stdout}");
    for row in &lines[1..] {
        assert_eq!(
            column_starts(row)[..4],
            column_starts(lines[0])[..4],
            "aligned:\n{stdout}"
        );
    }
}

#[test]
fn an_unreachable_server_is_named_with_the_variable_that_chose_it() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    for args in [
        &["credits"][..],
        &["events", "list"],
        &["unlock", "--event", "e", "p", "--yes"],
    ] {
        let out = client(&url, "sk_0123456789abcdef_x", args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains(&format!("cannot reach the server at {url}")),
            "{stderr}"
        );
        assert!(stderr.contains("UNLOCKD_URL"), "{stderr}");
    }
}

#[test]
fn https_urls_are_spoken_with_tls() {
    // A plain TCP listener that answers TLS with garbage: the client must try a TLS
    // handshake (and fail it), not refuse the scheme.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            use std::io::Write;
            let mut stream = stream;
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
        }
    });
    let url = format!("https://{addr}");
    let out = client(&url, "sk_0123456789abcdef_x", &["credits"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!stderr.contains("scheme"), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot reach the server at {url}")),
        "{stderr}"
    );

    // An extra CA file that is not a certificate is refused up front.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("ca.pem");
    std::fs::write(&bad, "not a certificate").unwrap();
    let out = client(&url, "k", &["credits", "--ca-cert", bad.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("certificate"), "{stderr}");
}

#[test]
fn client_help_pages_show_no_database_flags_and_end_with_an_example() {
    for args in [
        &["unlock", "--help"][..],
        &["credits", "--help"],
        &["task", "--help"],
        &["events", "list", "--help"],
        &["personnel", "list", "--help"],
    ] {
        let out = client("http://127.0.0.1:1", "k", args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args:?}");
        assert!(!stdout.contains("--database-url"), "{args:?}: {stdout}");
        assert!(
            !stdout.contains("--sqlite-synchronous"),
            "{args:?}: {stdout}"
        );
        assert!(stdout.contains("--url"), "{args:?}: {stdout}");
        let tail = stdout.trim_end().lines().rev().nth(1).unwrap_or_default();
        assert!(tail.starts_with("Example"), "{args:?}: {stdout}");
    }
    let out = client("http://127.0.0.1:1", "k", &["serve", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("--database-url"));
}

/// On a terminal, `unlock` draws a progress bar (run under `script`, which gives the
/// command a pseudo-terminal); elsewhere it prints plain lines (the other tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlock_draws_a_progress_bar_on_a_terminal() {
    let script = ["/usr/bin/script", "/bin/script"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(script) = script else {
        eprintln!("SKIPPED: no `script` command to provide a terminal");
        return;
    };
    let app = spawn_app_with(Options {
        worker: true,
        ..Options::default()
    })
    .await;
    let (_, key) = app.account(1_000).await;
    let (url, script) = (app.url.clone(), script.to_string());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(script)
            .env("UNLOCKD_URL", url)
            .env("UNLOCKD_API_KEY", key)
            .env("UNLOCKD_LOG", "warn")
            .args([
                "-qec",
                &format!("{BIN} unlock --event 139574 789 790 100 101 --yes"),
                "/dev/null",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("runs script")
    })
    .await
    .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(screen.contains("unlocking emails ["), "{screen}");
    assert!(screen.contains("/4"), "{screen}");
    assert!(
        !screen.contains("items done"),
        "no plain lines on a terminal: {screen}"
    );
    assert!(screen.contains("jane.doe@acme.example"), "{screen}");
}
