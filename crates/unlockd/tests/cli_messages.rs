//! What the `unlockd` binary says when something is wrong with its database, its address
//! or its arguments, and the admin listings: exit codes and output, as a user sees them.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_unlockd");

fn unlockd(database_url: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .env("UNLOCKD_DATABASE_URL", database_url)
        .env("UNLOCKD_LOG_FORMAT", "text")
        .env_remove("UNLOCKD_LOG")
        .env_remove("RUST_LOG")
        .args(args)
        .output()
        .expect("runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Fails with exactly one line of output, which contains every needle.
fn fails_with_one_line(out: &Output, needles: &[&str]) -> String {
    let text = stderr(out);
    assert!(!out.status.success(), "should fail: {text}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} in {text}");
    }
    text
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

#[test]
fn admin_commands_do_not_create_a_stray_database_without_create() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("stray.db");
    let url = sqlite_url(&db);
    for args in [
        &["admin", "accounts", "create", "--name", "a"][..],
        &["admin", "keys", "create", "--account", "x"],
        &["admin", "ledger", "verify"],
        &["admin", "accounts", "list"],
    ] {
        let out = unlockd(&url, args);
        fails_with_one_line(&out, &[&db.display().to_string(), "does not exist"]);
        assert!(!db.exists(), "{args:?} created {}", db.display());
    }
    let out = unlockd(&url, &["admin", "accounts", "create", "--name", "a"]);
    assert!(stderr(&out).contains("--create"), "{}", stderr(&out));

    let out = unlockd(
        &url,
        &["admin", "--create", "accounts", "create", "--name", "a"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(db.exists());
    // serve, migrate and import create their database as before.
    let fresh = dir.path().join("fresh.db");
    let out = unlockd(&sqlite_url(&fresh), &["migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(fresh.exists());
}

#[test]
fn a_database_in_a_missing_directory_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let db = missing.join("x.db");
    for args in [&["migrate"][..], &["serve", "--listen", "127.0.0.1:0"]] {
        let out = unlockd(&sqlite_url(&db), args);
        fails_with_one_line(
            &out,
            &[
                &missing.display().to_string(),
                "does not exist",
                "UNLOCKD_DATABASE_URL",
            ],
        );
    }
    assert!(!missing.exists());
}

#[test]
fn read_only_commands_work_on_a_read_only_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ro.db");
    let url = sqlite_url(&db);
    let out = unlockd(
        &url,
        &[
            "admin",
            "--create",
            "accounts",
            "create",
            "--name",
            "ro",
            "--credits",
            "7",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let account: Value = serde_json::from_slice(&out.stdout).unwrap();
    let account_id = account["account_id"].as_str().unwrap();

    let mut permissions = std::fs::metadata(&db).unwrap().permissions();
    permissions.set_readonly(true);
    std::fs::set_permissions(&db, permissions).unwrap();
    let before = std::fs::read(&db).unwrap();
    // `mode=ro` makes SQLite itself refuse writes even where file permissions do not
    // bind (a test running as root).
    for url in [url.clone(), format!("{url}?mode=ro")] {
        let out = unlockd(&url, &["admin", "ledger", "verify"]);
        assert!(out.status.success(), "{url}: {}", stderr(&out));
        let out = unlockd(&url, &["admin", "keys", "list", "--account", account_id]);
        assert!(out.status.success(), "{url}: {}", stderr(&out));
        let out = unlockd(&url, &["admin", "accounts", "list"]);
        assert!(out.status.success(), "{url}: {}", stderr(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains(account_id));
    }
    assert!(
        std::fs::read(&db).unwrap() == before,
        "a read-only command changed the file"
    );

    let out = unlockd(
        &format!("{url}?mode=ro"),
        &[
            "admin",
            "credits",
            "grant",
            "--account",
            account_id,
            "--amount",
            "5",
        ],
    );
    fails_with_one_line(&out, &[&db.display().to_string(), "read-only"]);
}

#[test]
fn an_unreachable_postgres_fails_within_seconds() {
    // Nothing listens on this port: refused at once.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap();
    drop(listener);
    let started = Instant::now();
    let out = unlockd(&format!("postgres://postgres@{closed}/test"), &["migrate"]);
    fails_with_one_line(&out, &[&closed.to_string(), "UNLOCKD_DATABASE_URL"]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // A listener that accepts but never answers: the first-connect deadline applies.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let started = Instant::now();
    let out = unlockd(
        &format!("postgres://postgres@{addr}/test"),
        &["admin", "ledger", "verify"],
    );
    let text = fails_with_one_line(&out, &[&addr.to_string(), "did not answer"]);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "{took:?}: {text}");
    drop(silent);
}

#[test]
fn serve_on_a_busy_port_names_the_address_and_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = unlockd(
        &sqlite_url(&dir.path().join("s.db")),
        &["serve", "--listen", &addr, "--no-worker"],
    );
    let text = stderr(&out);
    assert!(!out.status.success(), "{text}");
    let errors: Vec<&str> = text.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "once: {text}");
    assert!(
        errors[0].contains(&addr) && errors[0].contains("--listen"),
        "{text}"
    );
    assert!(errors[0].contains("already in use"), "{text}");
}

#[test]
fn admin_listings_errors_and_key_ids() {
    let db = common::TestDb::create_blocking();
    let run = |args: &[&str]| unlockd(&db.url, args);
    let out = run(&[
        "admin",
        "--create",
        "accounts",
        "create",
        "--name",
        "Acme",
        "--credits",
        "250",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let account_id = created["account_id"].as_str().unwrap().to_string();
    let key = created["api_key"].as_str().unwrap().to_string();
    let out = run(&["admin", "keys", "create", "--account", &account_id]);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = run(&["admin", "accounts", "list"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout.starts_with("ACCOUNT ID"), "{stdout}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with(&account_id))
        .expect("row");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1..6], ["Acme", "250", "250", "0", "2"], "{stdout}");
    let out = run(&["admin", "accounts", "list", "--json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["account_id"], account_id.as_str());
    assert_eq!(list[0]["total_balance"], 250);
    assert_eq!(list[0]["active_keys"], 2);
    assert!(chrono::DateTime::parse_from_rfc3339(list[0]["created_at"].as_str().unwrap()).is_ok());

    // The ids `keys list` shows are the ids `keys revoke` takes.
    let out = run(&["admin", "keys", "list", "--account", &account_id]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.starts_with("KEY ID"), "{stdout}");
    let key_id = &key[3..19];
    let shown: Vec<&str> = stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert!(shown.contains(&key_id), "{stdout}");
    let out = run(&["admin", "keys", "revoke", shown[0]]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["admin", "keys", "list", "--account", &account_id, "--json"]);
    let keys: Value = serde_json::from_slice(&out.stdout).unwrap();
    let revoked = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key_id"] == shown[0])
        .unwrap();
    for field in ["created_at", "revoked_at"] {
        let at = revoked[field].as_str().unwrap_or_default();
        assert!(
            chrono::DateTime::parse_from_rfc3339(at).is_ok(),
            "{field}: {revoked}"
        );
    }
    // A whole key is accepted too.
    let out = run(&[
        "admin",
        "keys",
        "create",
        "--account",
        &account_id,
        "--json",
    ]);
    let third: Value = serde_json::from_slice(&out.stdout).unwrap();
    let out = run(&[
        "admin",
        "keys",
        "revoke",
        third["api_key"].as_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["admin", "keys", "list", "--account", &account_id, "--json"]);
    let keys: Value = serde_json::from_slice(&out.stdout).unwrap();
    let third = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key_id"] == third["key_id"])
        .unwrap();
    assert!(third["revoked_at"].is_string(), "{third}");

    // Unknown accounts are errors everywhere.
    for args in [
        &["admin", "keys", "list", "--account", "nope"][..],
        &["admin", "keys", "create", "--account", "nope"],
        &[
            "admin",
            "credits",
            "grant",
            "--account",
            "nope",
            "--amount",
            "5",
        ],
    ] {
        let out = run(args);
        fails_with_one_line(&out, &["account \"nope\" not found"]);
    }
}
