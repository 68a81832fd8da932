//! `Idempotency-Key` on the unlock creates (an extension): replays, reuse with another
//! body, concurrent retries, recorded errors, abandoned reservations and expiry. On SQLite,
//! or on PostgreSQL with `UNLOCKD_TEST_DATABASE_URL`.

mod common;

use std::sync::Arc;

use common::{assert_envelope, spawn_app, TestApp};
use serde_json::{json, Value};
use unlockd::domain::ledger::BucketKind;
use unlockd::store::Grant;

/// POSTs a create with an `Idempotency-Key`; answers status, replayed header, body.
async fn keyed(
    app: &TestApp,
    path: &str,
    api_key: &str,
    idem: &str,
    body: Value,
) -> (u16, bool, Value) {
    let response = app
        .http
        .post(format!("{}{path}", app.url))
        .bearer_auth(api_key)
        .header("Idempotency-Key", idem)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let replayed = match response.headers().get("idempotent-replayed") {
        None => false,
        Some(v) => {
            assert_eq!(v, "true");
            true
        }
    };
    (
        status,
        replayed,
        response.json().await.unwrap_or(Value::Null),
    )
}

const EMAIL: &str = "/external/contacts/unlock";

fn body(ids: &[&str]) -> Value {
    json!({"event_id": "139574", "personnel_ids": ids})
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    app.raw_scalar(sql)
        .await
        .unwrap()
        .unwrap_or_default()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_retry_replays_the_first_answer_and_charges_nothing_more() {
    let app = spawn_app().await;
    let (_, key) = app.account(1_000).await;
    let (status, replayed, first) =
        keyed(&app, EMAIL, &key, "order-1", body(&["789", "790"])).await;
    assert_eq!((status, replayed), (201, false), "{first}");
    assert_eq!(first["status"], "accepted");
    let held = app.balance(&key).await;
    assert_eq!(held["heldCredits"], 30);

    // Same key, same request (ids repeated: the parsed request is the same).
    let (status, replayed, again) =
        keyed(&app, EMAIL, &key, "order-1", body(&["789", "790", "789"])).await;
    assert_eq!((status, replayed), (201, true));
    assert_eq!(again, first);
    assert_eq!(app.balance(&key).await, held);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM tasks").await, 1);

    // After the task finished, the replay is still the first answer.
    app.drain().await;
    let (status, replayed, late) = keyed(&app, EMAIL, &key, "order-1", body(&["789", "790"])).await;
    assert_eq!((status, replayed, &late), (201, true, &first));
    assert_eq!(count(&app, "SELECT COUNT(*) FROM tasks").await, 1);
    // Without a key, the same request is a new request: nothing chargeable is left.
    let (status, again) = app.unlock_ids(&key, &["789", "790"]).await;
    assert_eq!((status, again["status"].as_str()), (201, Some("success")));
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422_and_keys_are_per_account() {
    let app = spawn_app().await;
    let (_, key) = app.account(1_000).await;
    let (_, other) = app.account(1_000).await;
    let (status, _, _) = keyed(&app, EMAIL, &key, "k", body(&["789"])).await;
    assert_eq!(status, 201);
    for (path, ids) in [
        (EMAIL, vec!["790"]),
        (EMAIL, vec!["790", "789"]),
        ("/external/contacts/unlock-phone", vec!["789"]),
    ] {
        let (status, replayed, error) = keyed(&app, path, &key, "k", body(&ids)).await;
        assert!(!replayed);
        assert_envelope(status, &error, "IDEMPOTENCY_KEY_REUSED", &[]);
        assert_eq!(status, 422, "{error}");
    }
    // Another account's key of the same name is its own.
    let (status, replayed, created) = keyed(&app, EMAIL, &other, "k", body(&["790"])).await;
    assert_eq!((status, replayed), (201, false), "{created}");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM tasks").await, 2);
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn malformed_keys_are_400_naming_the_header_and_change_nothing() {
    let app = spawn_app().await;
    let (_, key) = app.account(1_000).await;
    let long = "x".repeat(256);
    for bad in ["", long.as_str(), "tab\there", "caf\u{e9}"] {
        let response = app
            .http
            .post(format!("{}{EMAIL}", app.url))
            .bearer_auth(&key)
            .header(
                "Idempotency-Key",
                reqwest::header::HeaderValue::from_bytes(bad.as_bytes()).unwrap(),
            )
            .json(&body(&["789"]))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let error: Value = response.json().await.unwrap();
        assert_eq!(status, 400, "{bad:?}: {error}");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("Idempotency-Key"),
            "{error}"
        );
    }
    let (status, _, _) = keyed(&app, EMAIL, &key, &"y".repeat(255), body(&["789"])).await;
    assert_eq!(status, 201);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM tasks").await, 1);
}

#[tokio::test]
async fn an_error_answer_is_replayed_even_after_credits_arrive() {
    let app = spawn_app().await;
    let (account, key) = app.account(10).await;
    let (status, replayed, refused) = keyed(&app, EMAIL, &key, "pay", body(&["789"])).await;
    assert_eq!((status, replayed), (402, false));
    assert_envelope(
        status,
        &refused,
        "INSUFFICIENT_CREDITS",
        &["requiredCredits", "availableCredits"],
    );
    app.store
        .grant_credits(&Grant {
            account_id: account,
            kind: BucketKind::Gift,
            amount: 1_000,
            expires_at: None,
        })
        .await
        .unwrap();
    let (status, replayed, again) = keyed(&app, EMAIL, &key, "pay", body(&["789"])).await;
    assert_eq!((status, replayed), (402, true));
    assert_eq!(
        again, refused,
        "the replay is the first answer, trace id included"
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM tasks").await, 0);
    // A new key is a new request.
    let (status, _, _) = keyed(&app, EMAIL, &key, "pay-2", body(&["789"])).await;
    assert_eq!(status, 201);
    app.assert_ledger_ok().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_retries_make_one_task_and_one_hold() {
    let app = Arc::new(spawn_app().await);
    let (_, key) = app.account(1_000).await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        let (app, key) = (app.clone(), key.clone());
        clients.push(tokio::spawn(async move {
            keyed(&app, EMAIL, &key, "burst", body(&["789", "790", "100"])).await
        }));
    }
    let mut task_ids = std::collections::HashSet::new();
    let (mut created, mut replays, mut in_use) = (0, 0, 0);
    for client in clients {
        let (status, replayed, answer) = client.await.unwrap();
        match (status, replayed) {
            (201, false) => created += 1,
            (201, true) => replays += 1,
            (409, false) => {
                assert_envelope(status, &answer, "IDEMPOTENCY_KEY_IN_USE", &[]);
                in_use += 1;
                continue;
            }
            other => panic!("{other:?}: {answer}"),
        }
        task_ids.insert(answer["task_id"].as_str().unwrap().to_string());
    }
    println!("20 concurrent retries: 1 created, {replays} replayed, {in_use} in use");
    assert_eq!(created, 1, "replays {replays}, in use {in_use}");
    assert_eq!(created + replays + in_use, 20);
    assert_eq!(task_ids.len(), 1);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM tasks").await, 1);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM ledger WHERE entry_type = 'hold'"
        )
        .await,
        3
    );
    assert_eq!(app.balance(&key).await["heldCredits"], 45);
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn an_abandoned_reservation_blocks_until_the_lock_time_then_is_taken_over() {
    let app = spawn_app().await;
    let (account, key) = app.account(1_000).await;
    let hash = unlockd::store::integrators::request_hash(
        unlockd::domain::ContactKind::Email,
        "139574",
        &["789".to_string()],
    );
    let now = app.clock.now_ms();
    // A process died after reserving the key, before its create committed.
    app.raw_execute(&format!(
        "INSERT INTO idempotency_keys (account_id, idem_key, request_hash, state, token, locked_at, created_at) \
         VALUES ('{account}', 'dead', '{hash}', 'pending', 'gone', {now}, {now})"
    ))
    .await
    .unwrap();
    let (status, _, busy) = keyed(&app, EMAIL, &key, "dead", body(&["789"])).await;
    assert_envelope(status, &busy, "IDEMPOTENCY_KEY_IN_USE", &[]);
    assert_eq!(status, 409);
    // Older than the lock time (60 s by default): the retry takes it over.
    app.raw_execute(&format!(
        "UPDATE idempotency_keys SET locked_at = {} WHERE idem_key = 'dead'",
        now - 61_000
    ))
    .await
    .unwrap();
    let (status, replayed, created) = keyed(&app, EMAIL, &key, "dead", body(&["789"])).await;
    assert_eq!((status, replayed), (201, false), "{created}");
    let (status, replayed, again) = keyed(&app, EMAIL, &key, "dead", body(&["789"])).await;
    assert_eq!((status, replayed, &again), (201, true, &created));
    assert_eq!(count(&app, "SELECT COUNT(*) FROM tasks").await, 1);
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn keys_expire_after_24_hours_and_are_pruned() {
    let app = spawn_app().await;
    let (_, key) = app.account(1_000).await;
    let (status, _, _) = keyed(&app, EMAIL, &key, "old", body(&["789"])).await;
    assert_eq!(status, 201);
    let (status, _, _) = keyed(&app, EMAIL, &key, "young", body(&["790"])).await;
    assert_eq!(status, 201);
    let day_ago = app.clock.now_ms() - 24 * 3600 * 1000 - 1;
    app.raw_execute(&format!(
        "UPDATE idempotency_keys SET created_at = {day_ago}, locked_at = {day_ago} WHERE idem_key = 'old'"
    ))
    .await
    .unwrap();
    // Expired: the key is free for another request.
    let (status, replayed, answer) = keyed(&app, EMAIL, &key, "old", body(&["100"])).await;
    assert_eq!((status, replayed), (201, false), "{answer}");
    app.raw_execute(&format!(
        "UPDATE idempotency_keys SET created_at = {day_ago} WHERE idem_key = 'old'"
    ))
    .await
    .unwrap();
    // The maintenance round prunes them.
    let report = unlockd::engine::maintenance::run_once(
        &app.store,
        &app.clock,
        &unlockd::engine::maintenance::MaintenanceConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.idempotency_keys_pruned, 1);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM idempotency_keys").await,
        1
    );
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn requests_without_a_key_are_unchanged() {
    let app = spawn_app().await;
    let (_, key) = app.account(1_000).await;
    let (status, first) = app.unlock_ids(&key, &["789"]).await;
    assert_eq!(status, 201);
    let (status, second) = app.unlock_ids(&key, &["789"]).await;
    assert_eq!(status, 409, "{second}");
    assert_ne!(first, second);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM idempotency_keys").await,
        0
    );
}

// A real server process killed between request and answer.

const BIN: &str = env!("CARGO_BIN_EXE_unlockd");

struct Process(std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        // SIGKILL: no shutdown hook runs.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn command(db_url: &str) -> std::process::Command {
    let mut c = std::process::Command::new(BIN);
    c.env("UNLOCKD_DATABASE_URL", db_url)
        .env("UNLOCKD_LOG", "info")
        .env("UNLOCKD_LOG_FORMAT", "json")
        .env("UNLOCKD_LEASE_SECONDS", "1")
        .env("UNLOCKD_RATE_LIMIT_PER_MINUTE", "0")
        .env("UNLOCKD_IP_RATE_LIMIT_PER_MINUTE", "0")
        // A reservation left by a killed process is taken over after a second.
        .env("UNLOCKD_IDEMPOTENCY_LOCK_SECONDS", "1");
    c
}

fn run_ok(db_url: &str, args: &[&str]) -> String {
    let out = command(db_url)
        .env("UNLOCKD_LOG", "warn")
        .args(args)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn start(db_url: &str, log: &std::path::Path) -> (Process, String) {
    let file = std::fs::File::create(log).unwrap();
    let child = command(db_url)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(file)
        .spawn()
        .expect("spawn");
    let process = Process(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let url = text.lines().find_map(|line| {
            serde_json::from_str::<Value>(line).ok()?["fields"]["url"]
                .as_str()
                .map(str::to_string)
        });
        if let Some(url) = url {
            return (process, url);
        }
        assert!(std::time::Instant::now() < deadline, "no url: {text}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// One keyed create: its key, its person, and the answer if one came.
#[derive(Debug, Clone)]
struct Sent {
    key: String,
    person: String,
    answer: Option<(u16, Value)>,
}

async fn post_keyed(
    http: &reqwest::Client,
    base: &str,
    api_key: &str,
    idem: &str,
    person: &str,
) -> Result<(u16, bool, Value), reqwest::Error> {
    let response = http
        .post(format!("{base}{EMAIL}"))
        .bearer_auth(api_key)
        .header("Idempotency-Key", idem)
        .json(&body(&[person]))
        .send()
        .await?;
    let status = response.status().as_u16();
    let replayed = response.headers().contains_key("idempotent-replayed");
    Ok((status, replayed, response.json().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_killed_between_request_and_answer_never_holds_twice() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    const ROUNDS: usize = 8;
    const PEOPLE: usize = 3_000;
    let db = common::TestDb::create().await;
    let db_url = db.url.clone();
    let dir = db.path().to_path_buf();
    let mut people = String::from("id,event_ids,email\n");
    for i in 0..PEOPLE {
        people.push_str(&format!("{},E1,p{i}@kill.example\n", 10_000 + i));
    }
    std::fs::write(
        dir.join("events.csv"),
        "id,event_id,name\nE1,139574,Kill Expo\n",
    )
    .unwrap();
    std::fs::write(dir.join("people.csv"), people).unwrap();
    run_ok(
        &db_url,
        &[
            "import",
            "--events",
            dir.join("events.csv").to_str().unwrap(),
            "--personnel",
            dir.join("people.csv").to_str().unwrap(),
        ],
    );
    let created = run_ok(
        &db_url,
        &[
            "admin",
            "accounts",
            "create",
            "--name",
            "kill",
            "--credits",
            "1000000",
            "--json",
        ],
    );
    let api_key = serde_json::from_str::<Value>(&created).unwrap()["api_key"]
        .as_str()
        .unwrap()
        .to_string();

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    for round in 0..ROUNDS {
        let (server, base) = start(&db_url, &dir.join(format!("serve-{round}.log"))).await;
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = Vec::new();
        for _ in 0..3 {
            let (http, base, api_key, sent, next, stop) = (
                http.clone(),
                base.clone(),
                api_key.clone(),
                sent.clone(),
                next.clone(),
                stop.clone(),
            );
            clients.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let (key, person) = (format!("kill-{n}"), (10_000 + n).to_string());
                    let answer = post_keyed(&http, &base, &api_key, &key, &person)
                        .await
                        .ok()
                        .map(|(status, _, body)| (status, body));
                    let failed = answer.is_none();
                    sent.lock().unwrap().push(Sent {
                        key,
                        person,
                        answer,
                    });
                    if failed {
                        break;
                    }
                }
            }));
        }
        // Kill at a moment that varies with the round, in the middle of the traffic.
        tokio::time::sleep(Duration::from_millis(150 + 97 * round as u64 % 400)).await;
        drop(server);
        stop.store(true, Ordering::Relaxed);
        for client in clients {
            client.await.unwrap();
        }
    }

    // Reservations whose process was killed before the create committed.
    let abandoned = db
        .raw_scalar("SELECT COUNT(*) FROM idempotency_keys WHERE state = 'pending'")
        .await
        .unwrap()
        .unwrap_or_default();
    // Every key is retried on a new server until it is answered for good.
    let (server, base) = start(&db_url, &dir.join("serve-final.log")).await;
    let sent = sent.lock().unwrap().clone();
    let unanswered = sent.iter().filter(|s| s.answer.is_none()).count();
    assert!(unanswered > 0, "no request was cut off by a kill");
    let mut replayed_after_kill = 0;
    for s in &sent {
        let deadline = Instant::now() + Duration::from_secs(20);
        let (status, replayed, answer) = loop {
            let (status, replayed, answer) = post_keyed(&http, &base, &api_key, &s.key, &s.person)
                .await
                .expect("the final server answers");
            if status != 409 {
                break (status, replayed, answer);
            }
            assert_eq!(answer["errorKey"], "IDEMPOTENCY_KEY_IN_USE", "{answer}");
            assert!(Instant::now() < deadline, "{} stays in use", s.key);
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(
            (status, answer["status"].as_str()),
            (201, Some("accepted")),
            "{s:?}: {answer}"
        );
        match &s.answer {
            Some((first_status, first)) => {
                assert_eq!(*first_status, 201, "{s:?}");
                assert!(replayed);
                assert_eq!(&answer, first, "{s:?}");
            }
            None if replayed => replayed_after_kill += 1,
            None => {}
        }
    }
    println!(
        "{} keys, {unanswered} cut off by a kill, {replayed_after_kill} of those had committed, \
         {abandoned} reservations abandoned",
        sent.len()
    );
    drop(server);
    // One task and one hold per key, whatever the kills did.
    let count = |sql: &'static str| {
        let db = &db;
        async move {
            db.raw_scalar(sql)
                .await
                .unwrap()
                .unwrap_or_default()
                .parse::<usize>()
                .unwrap()
        }
    };
    assert_eq!(count("SELECT COUNT(*) FROM tasks").await, sent.len());
    assert_eq!(
        count("SELECT COUNT(*) FROM ledger WHERE entry_type = 'hold'").await,
        sent.len()
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM idempotency_keys WHERE state = 'done'").await,
        sent.len()
    );
    run_ok(&db_url, &["admin", "ledger", "verify"]);
}
