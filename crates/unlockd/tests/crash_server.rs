//! Crash consistency of the whole server: `unlockd serve` (API and worker in one process)
//! under creates and polls from several concurrent clients, killed with SIGKILL at seeded
//! random moments 50 times and restarted on the same database each time. At the end every
//! create answered with a task id has its task, every task is terminal, nothing is held,
//! charges equal 15 × the delivered emails, every balance is granted − charged, and
//! `admin ledger verify` passes (it also finds holds without a task: a create killed before
//! its answer must not leave one). On SQLite, or on PostgreSQL with
//! `UNLOCKD_TEST_DATABASE_URL`. `UNLOCKD_CRASH_SEED` replays a run.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_unlockd");
const KILLS: usize = 50;
const PEOPLE: usize = 3_000;
const EMAIL_PRICE: i64 = 15;

struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Child::kill is SIGKILL on Unix: no shutdown hook runs.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(db_url: &str) -> Command {
    let mut c = Command::new(BIN);
    c.env("UNLOCKD_DATABASE_URL", db_url)
        .env("UNLOCKD_LOG", "info")
        .env("UNLOCKD_LOG_FORMAT", "json")
        // Leases of a killed worker run out quickly, so the next start takes its tasks over.
        .env("UNLOCKD_LEASE_SECONDS", "1")
        .env("UNLOCKD_RATE_LIMIT_PER_MINUTE", "0")
        .env("UNLOCKD_IP_RATE_LIMIT_PER_MINUTE", "0")
        .env("UNLOCKD_LONG_POLL_RECHECK_MS", "100");
    c
}

fn ok(db_url: &str, args: &[&str]) -> String {
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

/// Starts `unlockd serve` logging to `log` and waits for the URL it announces.
async fn start(db_url: &str, log: &Path) -> (Server, String) {
    let file = std::fs::File::create(log).unwrap();
    let child = command(db_url)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("spawn");
    let server = Server { child };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let url = text.lines().find_map(|line| {
            serde_json::from_str::<Value>(line).ok()?["fields"]["url"]
                .as_str()
                .map(str::to_string)
        });
        if let Some(url) = url {
            return (server, url);
        }
        assert!(Instant::now() < deadline, "no url announced: {text}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[derive(Default)]
struct Tally {
    sent: AtomicUsize,
    /// 201 with a task id.
    answered_task: AtomicUsize,
    /// Any other answer (already unlocked, in progress, insufficient credits, ...).
    answered_other: AtomicUsize,
    /// No answer: the server died (or was not up) while the request was out.
    unanswered: AtomicUsize,
    polls: AtomicUsize,
}

async fn scalar(db: &common::TestDb, sql: &str) -> i64 {
    db.raw_scalar(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .unwrap_or_default()
        .parse()
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_50_times_under_traffic_loses_no_task_and_no_credit() {
    let seed: u64 = std::env::var("UNLOCKD_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("crash_server: seed {seed} (UNLOCKD_CRASH_SEED={seed} replays the kill times)");
    let mut rng = StdRng::seed_from_u64(seed);

    let db = common::TestDb::create().await;
    let db_url = if db.is_postgres() {
        format!("{}?pool_size=6", db.url)
    } else {
        db.url.clone()
    };
    let dir = db.path().to_path_buf();
    // One event; every 7th person has no email (those items fail and are released).
    let mut people = String::from("id,event_ids,email\n");
    for i in 0..PEOPLE {
        let email = if i % 7 == 3 {
            String::new()
        } else {
            format!("p{i}@crash.example")
        };
        people.push_str(&format!("{},E1,{email}\n", 10_000 + i));
    }
    std::fs::write(
        dir.join("events.csv"),
        "id,event_id,name\nE1,139574,Crash Expo\n",
    )
    .unwrap();
    std::fs::write(dir.join("people.csv"), people).unwrap();
    ok(
        &db_url,
        &[
            "import",
            "--events",
            dir.join("events.csv").to_str().unwrap(),
            "--personnel",
            dir.join("people.csv").to_str().unwrap(),
        ],
    );
    // One account runs short of credits during the run.
    let mut keys = Vec::new();
    let mut granted_total = 0;
    for (i, credits) in [1_000_000i64, 1_000_000, 1_500].iter().enumerate() {
        let out = ok(
            &db_url,
            &[
                "admin",
                "accounts",
                "create",
                "--name",
                &format!("crash{i}"),
                "--credits",
                &credits.to_string(),
                "--json",
            ],
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        keys.push(v["api_key"].as_str().unwrap().to_string());
        granted_total += credits;
    }

    let url = Arc::new(RwLock::new(String::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    // (key, task id) of every create answered with a task.
    let answered: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut clients = Vec::new();
    for client in 0..4usize {
        let key = keys[client % keys.len()].clone();
        let (url, stop, tally, answered, http) = (
            url.clone(),
            stop.clone(),
            tally.clone(),
            answered.clone(),
            http.clone(),
        );
        let mut rng = StdRng::seed_from_u64(seed ^ (client as u64 + 1));
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let base = url.read().unwrap().clone();
                if base.is_empty() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                if rng.random_range(0..4) == 0 {
                    // A poll of one of our tasks, sometimes a short long-poll.
                    let task = {
                        let all = answered.lock().unwrap();
                        let mine: Vec<&(String, String)> =
                            all.iter().filter(|(k, _)| *k == key).collect();
                        (!mine.is_empty()).then(|| mine[rng.random_range(0..mine.len())].1.clone())
                    };
                    if let Some(task) = task {
                        let wait = if rng.random_bool(0.3) { "?wait=1" } else { "" };
                        let polled = http
                            .get(format!(
                                "{base}/external/contacts/unlock-tasks/{task}{wait}"
                            ))
                            .bearer_auth(&key)
                            .send()
                            .await;
                        if let Ok(response) = polled {
                            let status = response.status().as_u16();
                            assert!(status == 200, "poll of an answered task: {status}");
                            tally.polls.fetch_add(1, Ordering::Relaxed);
                        }
                        continue;
                    }
                }
                let count = rng.random_range(1..=3);
                let ids: Vec<String> = (0..count)
                    .map(|_| (10_000 + rng.random_range(0..PEOPLE)).to_string())
                    .collect();
                tally.sent.fetch_add(1, Ordering::Relaxed);
                let sent = http
                    .post(format!("{base}/external/contacts/unlock"))
                    .bearer_auth(&key)
                    .json(&json!({"event_id": "139574", "personnel_ids": ids}))
                    .send()
                    .await;
                let response = match sent {
                    Ok(response) => response,
                    Err(_) => {
                        tally.unanswered.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let status = response.status().as_u16();
                assert!(status < 500, "create answered {status}");
                match response.json::<Value>().await {
                    Ok(body) => match body["task_id"].as_str() {
                        Some(task) if status == 201 => {
                            tally.answered_task.fetch_add(1, Ordering::Relaxed);
                            answered
                                .lock()
                                .unwrap()
                                .push((key.clone(), task.to_string()));
                        }
                        _ => {
                            tally.answered_other.fetch_add(1, Ordering::Relaxed);
                        }
                    },
                    // The body was cut off by the kill: the client never saw a task id.
                    Err(_) => {
                        tally.unanswered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }

    let began = Instant::now();
    for kill in 0..KILLS {
        let (server, announced) = start(&db_url, &dir.join(format!("serve-{kill}.log"))).await;
        *url.write().unwrap() = announced;
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..=600))).await;
        url.write().unwrap().clear();
        drop(server); // SIGKILL, then reaped
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("a client failed");
    }
    let killed_for = began.elapsed();

    // A last start works off whatever the kills left behind.
    let (server, base) = start(&db_url, &dir.join("serve-final.log")).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let live = scalar(
            &db,
            "SELECT COUNT(*) FROM tasks WHERE status IN ('pending', 'processing')",
        )
        .await;
        if live == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{live} tasks never finished");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every create answered with a task id has that task, finished.
    let answered = answered.lock().unwrap().clone();
    for (key, task) in &answered {
        let response = http
            .get(format!("{base}/external/contacts/unlock-tasks/{task}"))
            .bearer_auth(key)
            .send()
            .await
            .expect("poll");
        assert_eq!(response.status().as_u16(), 200, "task {task} lost");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["taskStatus"] == "completed" || body["taskStatus"] == "failed",
            "{body}"
        );
    }
    drop(server);

    let out = command(&db_url)
        .env("UNLOCKD_LOG", "warn")
        .args(["admin", "ledger", "verify"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ledger verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let tasks = scalar(&db, "SELECT COUNT(*) FROM tasks").await;
    let items = scalar(&db, "SELECT COUNT(*) FROM task_items").await;
    let unlocked = scalar(
        &db,
        "SELECT COUNT(*) FROM task_items WHERE status = 'unlocked'",
    )
    .await;
    let failed = scalar(
        &db,
        "SELECT COUNT(*) FROM task_items WHERE status = 'failed'",
    )
    .await;
    let captured = scalar(
        &db,
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger WHERE entry_type = 'capture'",
    )
    .await;
    let charged_items = scalar(
        &db,
        "SELECT CAST(COALESCE(SUM(charged), 0) AS BIGINT) FROM task_items",
    )
    .await;
    let held = scalar(
        &db,
        "SELECT CAST(COALESCE(SUM(held), 0) AS BIGINT) FROM credit_buckets",
    )
    .await;
    let balance = scalar(
        &db,
        "SELECT CAST(COALESCE(SUM(balance), 0) AS BIGINT) FROM credit_buckets",
    )
    .await;
    let accounts_off = scalar(
        &db,
        "SELECT COUNT(*) FROM accounts a WHERE \
         (SELECT COALESCE(SUM(balance), 0) FROM credit_buckets WHERE account_id = a.id) <> \
         (SELECT COALESCE(SUM(granted), 0) FROM credit_buckets WHERE account_id = a.id) - \
         (SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE account_id = a.id AND entry_type = 'capture')",
    )
    .await;
    let live = scalar(
        &db,
        "SELECT COUNT(*) FROM tasks WHERE status IN ('pending', 'processing')",
    )
    .await;
    let sent = tally.sent.load(Ordering::Relaxed);
    let answered_task = tally.answered_task.load(Ordering::Relaxed);
    println!(
        "crash_server ({}): {KILLS} SIGKILLs in {:.1} s; creates sent {sent}, answered with a \
         task {answered_task}, answered otherwise {}, unanswered {}; polls {}; tasks {tasks} \
         ({live} live); items {items} ({unlocked} unlocked, {failed} failed); charged \
         {captured} credits = {EMAIL_PRICE} × {unlocked}; held {held}; balance {balance} = \
         granted {granted_total} − charged {captured}",
        if db.is_postgres() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        killed_for.as_secs_f64(),
        tally.answered_other.load(Ordering::Relaxed),
        tally.unanswered.load(Ordering::Relaxed),
        tally.polls.load(Ordering::Relaxed),
    );
    assert!(answered_task > 0 && tasks >= answered_task as i64);
    assert_eq!(live, 0);
    assert_eq!(unlocked + failed, items, "every item settled");
    assert_eq!(
        captured,
        EMAIL_PRICE * unlocked,
        "charges = delivered contacts"
    );
    assert_eq!(charged_items, captured);
    assert_eq!(held, 0, "no hold outlives its task");
    assert_eq!(balance, granted_total - captured);
    assert_eq!(accounts_off, 0, "per account: balance = granted − charged");
}
