//! Operator controls and the audit log: disabling and enabling accounts (through the
//! `unlockd` binary, against a live server's database), the audit rows every admin action
//! leaves, and the audit log refusing to be changed.

mod common;

use std::process::{Command, Output};

use common::{assert_envelope, spawn_app, TestApp};
use serde_json::Value;
use unlockd::store::DynStore;

const BIN: &str = env!("CARGO_BIN_EXE_unlockd");

/// Runs `unlockd` on the test's database as OS user `user` (`None`: no user variables).
fn unlockd(app: &TestApp, user: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    command
        .env("UNLOCKD_DATABASE_URL", &app.dir.url)
        .env("UNLOCKD_LOG", "warn")
        .env_remove("USER")
        .env_remove("LOGNAME")
        .args(args);
    if let Some(user) = user {
        command.env("USER", user);
    }
    command.output().expect("unlockd runs")
}

fn ok(app: &TestApp, user: Option<&str>, args: &[&str]) -> String {
    let out = unlockd(app, user, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn audit(app: &TestApp, account: Option<&str>) -> Vec<Value> {
    let mut args = vec!["admin", "audit", "--json"];
    if let Some(account) = account {
        args.extend(["--account", account]);
    }
    let out = ok(app, Some("auditor"), &args);
    serde_json::from_str::<Value>(&out)
        .expect("audit --json prints JSON")
        .as_array()
        .expect("an array")
        .clone()
}

async fn task_status(store: &DynStore, account: &str, task_id: &str) -> (String, i64, i64) {
    let view = store
        .task_view(account, unlockd::domain::ContactKind::Email, task_id)
        .await
        .expect("task view")
        .expect("the task exists");
    (
        serde_json::to_value(view.status)
            .unwrap()
            .as_str()
            .unwrap()
            .to_string(),
        view.charged,
        view.held,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_account_gets_403_its_running_task_still_settles_and_enable_restores_it() {
    let app = spawn_app().await;
    let (account, key) = app.account(1_000).await;
    let (_other, other_key) = app.account(1_000).await;
    // A second key of the same account is shut out as well.
    let second_key = ok(
        &app,
        Some("ops"),
        &["admin", "keys", "create", "--account", &account, "--json"],
    );
    let second_key: Value = serde_json::from_str(&second_key).unwrap();
    let second_key = second_key["api_key"].as_str().unwrap().to_string();

    let (status, created) = app.unlock_ids(&key, &["789", "790"]).await;
    assert_eq!(status, 201, "{created}");
    let task_id = created["task_id"].as_str().unwrap().to_string();
    assert_eq!(
        task_status(&app.store, &account, &task_id).await,
        ("pending".to_string(), 0, 30)
    );

    let out = ok(
        &app,
        Some("ops"),
        &["admin", "accounts", "disable", &account],
    );
    assert!(out.contains("disabled"), "{out}");
    for key in [&key, &second_key] {
        app.wait_for_status(key, "/external/credits/balance", 403)
            .await;
    }
    for key in [&key, &second_key] {
        for path in [
            "/external/credits/balance".to_string(),
            format!("/external/contacts/unlock-tasks/{task_id}"),
        ] {
            let (status, body) = app.get(key, &path).await;
            assert_envelope(status, &body, "ACCOUNT_DISABLED", &[]);
            assert_eq!(status, 403, "{path}");
        }
        let (status, body) = app.unlock_ids(key, &["791"]).await;
        assert_envelope(status, &body, "ACCOUNT_DISABLED", &[]);
    }
    // Other accounts, and keys that are simply wrong, are not affected.
    assert_eq!(
        app.get(&other_key, "/external/credits/balance").await.0,
        200
    );
    let (status, body) = app
        .get(
            "sk_0000000000000000_0000000000000000000000000000000000000000000000000000000000000000",
            "/external/credits/balance",
        )
        .await;
    assert_envelope(status, &body, "INVALID_API_KEY", &[]);

    // The task created before the account was disabled is worked and settled as usual.
    app.drain().await;
    assert_eq!(
        task_status(&app.store, &account, &task_id).await,
        ("completed".to_string(), 30, 0)
    );
    app.assert_ledger_ok().await;

    // Disabling twice is no new action; enabling lets every key back in.
    let again = ok(
        &app,
        Some("ops"),
        &["admin", "accounts", "disable", &account],
    );
    assert!(again.contains("already disabled"), "{again}");
    ok(
        &app,
        Some("ops"),
        &["admin", "accounts", "enable", &account],
    );
    for key in [&key, &second_key] {
        app.wait_for_status(key, "/external/credits/balance", 200)
            .await;
        let balance = app.balance(key).await;
        assert_eq!(balance["totalBalance"].as_i64(), Some(970), "{balance}");
    }
    let done = app.task(&key, &task_id).await;
    assert_eq!(done["taskStatus"], "completed");
    assert_eq!(done["items"][0]["email"], "jane.doe@acme.example");
    let again = ok(
        &app,
        Some("ops"),
        &["admin", "accounts", "enable", &account],
    );
    assert!(again.contains("already enabled"), "{again}");

    let actions: Vec<String> = audit(&app, Some(&account))
        .iter()
        .map(|row| row["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        actions,
        ["key.create", "account.disable", "account.enable"],
        "the test harness's own setup goes around the audited commands"
    );

    let unknown = unlockd(&app, Some("ops"), &["admin", "accounts", "disable", "nope"]);
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("account nope not found"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_action_leaves_one_audit_row_with_who_when_and_what() {
    let app = spawn_app().await;
    let started = chrono::Utc::now() - chrono::Duration::seconds(5);

    let created = ok(
        &app,
        Some("alice"),
        &[
            "admin",
            "accounts",
            "create",
            "--name",
            "Acme",
            "--credits",
            "250",
            "--json",
        ],
    );
    let created: Value = serde_json::from_str(&created).unwrap();
    let account = created["account_id"].as_str().unwrap().to_string();
    let first_secret = created["api_key"].as_str().unwrap().to_string();
    let first_key_id = first_secret[3..19].to_string();

    let key = ok(
        &app,
        Some("bob"),
        &[
            "admin",
            "keys",
            "create",
            "--account",
            &account,
            "--legacy-prefix",
            "--json",
        ],
    );
    let key: Value = serde_json::from_str(&key).unwrap();
    let second_key_id = key["key_id"].as_str().unwrap().to_string();
    let second_secret = key["api_key"].as_str().unwrap().to_string();
    ok(
        &app,
        Some("bob"),
        &["admin", "keys", "revoke", &first_key_id],
    );
    // A revoke that does nothing records nothing.
    assert!(!unlockd(
        &app,
        Some("bob"),
        &["admin", "keys", "revoke", &first_key_id]
    )
    .status
    .success());
    ok(
        &app,
        None,
        &[
            "admin",
            "credits",
            "grant",
            "--account",
            &account,
            "--amount",
            "100",
            "--bucket",
            "addon",
            "--expires-at",
            "2999-01-01T00:00:00Z",
        ],
    );
    ok(
        &app,
        Some("carol"),
        &["admin", "accounts", "disable", &account],
    );
    ok(
        &app,
        Some("carol"),
        &["admin", "accounts", "enable", &account],
    );
    // Another account's actions are in the full log, not in this account's.
    ok(
        &app,
        Some("dave"),
        &["admin", "accounts", "create", "--name", "Other"],
    );

    let rows = audit(&app, Some(&account));
    let summary: Vec<(String, String)> = rows
        .iter()
        .map(|row| {
            (
                row["action"].as_str().unwrap().to_string(),
                row["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        ("account.create", "alice"),
        ("credits.grant", "alice"),
        ("key.create", "alice"),
        ("key.create", "bob"),
        ("key.revoke", "bob"),
        ("credits.grant", "operator"),
        ("account.disable", "carol"),
        ("account.enable", "carol"),
    ]
    .map(|(a, b)| (a.to_string(), b.to_string()));
    assert_eq!(summary, expected);

    for row in &rows {
        assert_eq!(row["account_id"], account.as_str(), "{row}");
        let at = chrono::DateTime::parse_from_rfc3339(row["at"].as_str().unwrap()).unwrap();
        assert!(
            at >= started && at <= chrono::Utc::now() + chrono::Duration::seconds(5),
            "{row}"
        );
    }
    assert_eq!(rows[0]["details"]["name"], "Acme");
    assert_eq!(rows[1]["details"]["amount"], 250);
    assert_eq!(rows[1]["details"]["kind"], "gift");
    assert_eq!(rows[2]["details"]["key_id"], first_key_id.as_str());
    assert_eq!(rows[3]["details"]["key_id"], second_key_id.as_str());
    assert_eq!(rows[3]["details"]["prefix"], "uak");
    assert_eq!(rows[4]["details"]["key_id"], first_key_id.as_str());
    assert_eq!(rows[5]["details"]["amount"], 100);
    assert_eq!(rows[5]["details"]["kind"], "addon");
    assert!(rows[5]["details"]["bucket_id"].as_str().is_some());
    let all = serde_json::to_string(&rows).unwrap();
    assert!(
        !all.contains(&first_secret[20..]) && !all.contains(&second_secret[20..]),
        "no key secret in the audit log"
    );

    let everything = audit(&app, None);
    assert_eq!(everything.len(), rows.len() + 2, "Other: create and key");
    assert_eq!(everything.last().unwrap()["actor"], "dave");
    let ids: Vec<i64> = everything
        .iter()
        .map(|row| row["id"].as_i64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first: {ids:?}");

    // The text form names the same actions.
    let text = ok(&app, Some("x"), &["admin", "audit", "--account", &account]);
    assert_eq!(text.lines().count(), rows.len(), "{text}");
    assert!(
        text.contains("account.disable") && text.contains("carol"),
        "{text}"
    );
}

#[tokio::test]
async fn the_audit_log_cannot_be_changed_or_deleted() {
    let app = spawn_app().await;
    let account = ok(
        &app,
        Some("alice"),
        &["admin", "accounts", "create", "--name", "A", "--json"],
    );
    let account: Value = serde_json::from_str(&account).unwrap();
    let account = account["account_id"].as_str().unwrap();
    ok(
        &app,
        Some("alice"),
        &["admin", "accounts", "disable", account],
    );

    let mut refused = vec![
        "UPDATE audit_log SET actor = 'mallory'",
        "DELETE FROM audit_log",
    ];
    if app.dir.is_postgres() {
        refused.push("TRUNCATE audit_log");
    }
    for sql in refused {
        let error = app.raw_execute(sql).await.expect_err(sql);
        assert!(error.contains("append-only"), "{sql}: {error}");
    }
    let rows = audit(&app, Some(account));
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|row| row["actor"] == "alice"), "{rows:?}");
}
