//! `admin backup` and `admin restore`: an online copy of a SQLite database taken while a
//! server with its worker serves concurrent creates, restored into a fresh path and served
//! again; a damaged or inconsistent copy is refused. On PostgreSQL both commands point to
//! pg_dump / pg_restore and fail.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{spawn_app_with, Options};
use sqlx::{Connection, SqliteConnection};
use tokio_util::sync::CancellationToken;
use unlockd::app::{self, ServerConfig};
use unlockd::clock::SystemClock;
use unlockd::engine::EngineConfig;
use unlockd::store::sqlite::Durability;

const BIN: &str = env!("CARGO_BIN_EXE_unlockd");

fn unlockd(database_url: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .env("UNLOCKD_DATABASE_URL", database_url)
        .env("UNLOCKD_LOG", "warn")
        .args(args)
        .output()
        .expect("unlockd runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Per account: (spendable balance, held), read from a database file directly.
async fn balances_in(file: &Path) -> BTreeMap<String, (i64, i64)> {
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}?mode=ro", file.display()))
        .await
        .expect("open the file");
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT account_id, CAST(SUM(balance) AS INTEGER), CAST(SUM(held) AS INTEGER) \
         FROM credit_buckets GROUP BY account_id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("balances");
    conn.close().await.expect("close");
    rows.into_iter().map(|(a, b, h)| (a, (b, h))).collect()
}

async fn count_in(file: &Path, sql: &str) -> i64 {
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", file.display()))
        .await
        .expect("open the file");
    let n: i64 = sqlx::query_scalar(sql)
        .fetch_one(&mut conn)
        .await
        .expect("count");
    conn.close().await.expect("close");
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_write_load_restores_to_a_server_with_the_same_balances() {
    // Short leases: the copy holds tasks leased by this server's worker, which the
    // restored server takes over once those leases run out.
    let app = spawn_app_with(Options {
        worker: true,
        engine: EngineConfig {
            lease: Duration::from_millis(500),
            ..EngineConfig::default()
        },
        ..Options::default()
    })
    .await;
    if app.dir.is_postgres() {
        let out = unlockd(&app.dir.url, &["admin", "backup", "--out", "x.dump"]);
        assert!(!out.status.success());
        assert!(text(&out).contains("pg_dump"), "{}", text(&out));
        let out = unlockd(&app.dir.url, &["admin", "restore", "--from", "x.dump"]);
        assert!(!out.status.success());
        assert!(text(&out).contains("pg_restore"), "{}", text(&out));
        return;
    }
    let mut accounts = Vec::new();
    for credits in [3_000, 1_000, 200] {
        accounts.push(app.account(credits).await);
    }

    // Three clients create one-person unlocks as fast as the server takes them.
    let stop = Arc::new(AtomicBool::new(false));
    let created = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for (_, key) in accounts.clone() {
        let (http, url) = (app.http.clone(), app.url.clone());
        let (stop, created) = (stop.clone(), created.clone());
        clients.push(tokio::spawn(async move {
            for person in (100..200).cycle() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let response = http
                    .post(format!("{url}/external/contacts/unlock"))
                    .bearer_auth(&key)
                    .json(&serde_json::json!({"event_id": "139574", "personnel_ids": [person.to_string()]}))
                    .send()
                    .await
                    .expect("create");
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                if body["task_id"].is_string() {
                    created.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    while created.load(Ordering::Relaxed) < 30 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let backup = app.dir.path().join("backup.db");
    let backup_arg = backup.to_str().unwrap().to_string();
    let url = app.dir.url.clone();
    let at_backup = created.load(Ordering::Relaxed);
    let out = tokio::task::spawn_blocking(move || {
        unlockd(&url, &["admin", "backup", "--out", &backup_arg])
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let after_backup = created.load(Ordering::Relaxed);
    while created.load(Ordering::Relaxed) < after_backup + 30 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let total_created = created.load(Ordering::Relaxed);
    let backed_up_tasks = count_in(&backup, "SELECT COUNT(*) FROM tasks").await;
    println!(
        "creates answered with a task: {total_created}; {at_backup} before the backup began, \
         {after_backup} when it ended; tasks in the backup: {backed_up_tasks}"
    );
    assert!(
        backed_up_tasks as usize >= at_backup && (backed_up_tasks as usize) < total_created,
        "the copy is a point between the load's start and end"
    );

    // Never overwrites.
    let again = unlockd(
        &app.dir.url,
        &["admin", "backup", "--out", backup.to_str().unwrap()],
    );
    assert!(!again.status.success());
    assert!(text(&again).contains("already exists"), "{}", text(&again));

    let in_backup = balances_in(&backup).await;
    assert_eq!(in_backup.len(), 3);
    assert!(
        in_backup.values().any(|(_, held)| *held > 0) || backed_up_tasks > 0,
        "the copy was taken mid-traffic"
    );

    let restored = app.dir.path().join("restored.db");
    let restored_url = format!("sqlite://{}", restored.display());
    let out = unlockd(
        &restored_url,
        &["admin", "restore", "--from", backup.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("ledger ok"), "{}", text(&out));
    let out = unlockd(
        &restored_url,
        &["admin", "restore", "--from", backup.to_str().unwrap()],
    );
    assert!(!out.status.success(), "an existing target needs --force");
    assert!(text(&out).contains("--force"), "{}", text(&out));
    let out = unlockd(&restored_url, &["admin", "ledger", "verify"]);
    assert!(out.status.success(), "{}", text(&out));

    // A fresh server on the restored file (no worker yet) shows the balances of the copy.
    let store = unlockd::store::connect(&restored_url, Durability::Normal, Arc::new(SystemClock))
        .await
        .expect("connect to the restored file");
    store.migrate().await.expect("migrate");
    let server = app::start(
        ServerConfig {
            listen: "127.0.0.1:0".into(),
            run_worker: false,
            key_rate_limit: 0,
            ip_rate_limit: 0,
            ..ServerConfig::default()
        },
        store.clone(),
        Arc::new(SystemClock),
        CancellationToken::new(),
    )
    .await
    .expect("a server on the restored database");
    for (account, key) in &accounts {
        let balance: serde_json::Value = app
            .http
            .get(format!("{}/external/credits/balance", server.url()))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let (spendable, held) = in_backup[account];
        assert_eq!(
            (
                balance["totalBalance"].as_i64(),
                balance["heldCredits"].as_i64()
            ),
            (Some(spendable), Some(held)),
            "{account}: {balance}"
        );
    }
    // The restored server finishes what the copy had in flight, and the money adds up.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        while server.engine.run_once().await.expect("engine step") {}
        let live: i64 = count_in(
            &restored,
            "SELECT COUNT(*) FROM tasks WHERE status IN ('pending', 'processing')",
        )
        .await;
        if live == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{live} tasks never finished"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let problems = store.verify_ledger().await.expect("verify");
    assert!(problems.is_empty(), "{problems:#?}");
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn restore_refuses_a_damaged_or_inconsistent_copy() {
    let db = common::TestDb::create().await;
    if db.is_postgres() {
        return; // SQLite files only; the PostgreSQL answer is checked above.
    }
    let store = unlockd::store::connect(&db.url, Durability::Normal, Arc::new(SystemClock))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let account = store.create_account("a").await.unwrap();
    store
        .grant_credits(&unlockd::store::Grant {
            account_id: account.id.clone(),
            kind: unlockd::domain::ledger::BucketKind::Gift,
            amount: 100,
            expires_at: None,
        })
        .await
        .unwrap();
    let backup = db.path().join("good.db");
    let out = unlockd(
        &db.url,
        &["admin", "backup", "--out", backup.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));

    // A copy whose cached balance disagrees with its ledger.
    let tampered = db.path().join("tampered.db");
    std::fs::copy(&backup, &tampered).unwrap();
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", tampered.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE credit_buckets SET balance = balance + 50")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    // A file that is not a database at all.
    let garbage = db.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();

    let target = db.path().join("target.db");
    let target_url = format!("sqlite://{}", target.display());
    for (file, needle) in [(&tampered, "VIOLATION"), (&garbage, "nothing was restored")] {
        let out = unlockd(
            &target_url,
            &["admin", "restore", "--from", file.to_str().unwrap()],
        );
        assert!(!out.status.success(), "{file:?} restored: {}", text(&out));
        assert!(text(&out).contains(needle), "{}", text(&out));
        assert!(!target.exists(), "nothing put in place");
    }
    let leftovers: Vec<_> = std::fs::read_dir(db.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".restore-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // --force replaces an existing database, and its old write-ahead log with it.
    std::fs::write(&target, b"old").unwrap();
    std::fs::write(db.path().join("target.db-wal"), b"stale").unwrap();
    let out = unlockd(
        &target_url,
        &[
            "admin",
            "restore",
            "--force",
            "--from",
            backup.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!db.path().join("target.db-wal").exists());
    let restored = balances_in(&target).await;
    assert_eq!(restored[&account.id], (100, 0));
    let out = unlockd(&target_url, &["admin", "ledger", "verify"]);
    assert!(out.status.success(), "{}", text(&out));
}
