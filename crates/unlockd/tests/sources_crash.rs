//! Crash consistency of the provider path: `unlockd worker --sources` works unlock tasks
//! against the slow stand-in provider and is killed with SIGKILL at seeded random moments
//! 50 times, restarted each time on the same database. At the end every task is terminal,
//! `ledger verify` passes, no item was settled twice, the charges equal a crash-free run
//! (15 credits per person the stand-in delivers) and the provider was asked at most once
//! per person beyond the requests in flight at each kill: no person's answer is in the
//! cost log twice, and the repeated requests are no more than those lost in flight.
//! SQLite, or PostgreSQL with `UNLOCKD_TEST_DATABASE_URL`. `UNLOCKD_CRASH_SEED` replays.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use unlockd::engine::sources::dev_provider::{DevProvider, DevProviderOptions};

const BIN: &str = env!("CARGO_BIN_EXE_unlockd");
const KILLS: usize = 50;
const TASKS: usize = 24;
const ITEMS_PER_TASK: usize = 25;
const MAX_CONCURRENCY: u64 = 4;
const EMAIL_PRICE: i64 = 15;

struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        // SIGKILL on Unix: no shutdown hook runs.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_worker(db_url: &str, sources: &std::path::Path, log: &std::path::Path) -> Worker {
    let log = std::fs::File::create(log).expect("log file");
    let child = Command::new(BIN)
        .arg("worker")
        .arg("--sources")
        .arg(sources)
        .env("UNLOCKD_DATABASE_URL", db_url)
        .env("UNLOCKD_LOG", "warn")
        .env("UNLOCKD_LOG_FORMAT", "json")
        // A killed worker's leases run out quickly, so the next start takes its tasks over.
        .env("UNLOCKD_LEASE_SECONDS", "1")
        // Kills must not fail tasks for having been claimed too often.
        .env("UNLOCKD_MAX_ATTEMPTS", "1000")
        .env("UNLOCKD_WORKER_CONCURRENCY", "2")
        .env_remove("UNLOCKD_SOURCES")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("worker starts");
    Worker(child)
}

async fn scalar(db: &common::TestDb, sql: &str) -> i64 {
    db.raw_scalar(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .unwrap_or_default()
        .parse()
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_50_times_against_a_slow_provider_pays_once_and_charges_right() {
    let seed: u64 = std::env::var("UNLOCKD_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("sources_crash: seed {seed} (UNLOCKD_CRASH_SEED={seed} replays the kill times)");
    let mut rng = StdRng::seed_from_u64(seed);

    let options = DevProviderOptions {
        latency: Duration::from_millis(250),
        not_found_rate: 0.25,
        invalid_rate: 0.0,
        error_rate: 0.0,
        rate_429: 0.0,
        seed,
        ..DevProviderOptions::default()
    };
    let standin = DevProvider::start("127.0.0.1:0", options.clone())
        .await
        .expect("stand-in");

    let app = common::spawn_app().await; // no worker in this process
    app.store
        .import_exhibitors(
            &[unlockd::catalog::ExhibitorRecord {
                id: "x1".into(),
                event_id: "1001".into(),
                company_name: Some("Acme".into()),
                website: Some("https://acme-crash.example".into()),
                country: None,
            }],
            &|_| {},
        )
        .await
        .expect("exhibitor");
    let people: Vec<String> = (0..TASKS * ITEMS_PER_TASK)
        .map(|i| format!("crash-{i}"))
        .collect();
    let records: Vec<_> = people
        .iter()
        .map(|id| {
            let mut person = common::person(id, &["1001"], None);
            person.exhibitor_id = Some("x1".into());
            person
        })
        .collect();
    app.store
        .import_personnel(&records, &|_| {})
        .await
        .expect("people");

    // Accounts of two tasks each, every person in exactly one task.
    let mut keys = Vec::new();
    for _ in 0..TASKS / 2 {
        keys.push(app.account(10_000).await.1);
    }
    for (t, chunk) in people.chunks(ITEMS_PER_TASK).enumerate() {
        let ids: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let (status, body) = app.unlock_ids(&keys[t / 2], &ids).await;
        assert_eq!(status, 201, "{body}");
    }
    let expected_found = people
        .iter()
        .filter(|id| options.delivers_email(id))
        .count() as i64;

    let dir = app.dir.path().to_path_buf();
    let sources = dir.join("sources.toml");
    std::fs::write(
        &sources,
        format!(
            r#"
[defaults]
not_found_ttl = "1h"
patience = "1m"

[[source]]
name = "standin"
kind = "http"
contact = ["email"]
url = "{}/v1/find?personnel_id={{personnel_id}}&full_name={{full_name}}&company_domain={{company_domain}}"
email_pointer = "/data/email"
status_pointer = "/data/status"
deliverable = ["valid"]
timeout = "3s"
max_concurrency = {MAX_CONCURRENCY}
attempts = 3
cost_per_lookup = 0.001

[waterfall]
email = ["standin"]
"#,
            standin.url()
        ),
    )
    .expect("sources file");
    let db_url = if app.dir.is_postgres() {
        format!("{}?pool_size=4", app.dir.url)
    } else {
        app.dir.url.clone()
    };

    let began = Instant::now();
    for kill in 0..KILLS {
        let worker = start_worker(&db_url, &sources, &dir.join(format!("worker-{kill}.log")));
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..=1_500))).await;
        drop(worker); // SIGKILL, then reaped
    }
    let killed_for = began.elapsed();
    let live_after_kills = scalar(
        &app.dir,
        "SELECT COUNT(*) FROM tasks WHERE status IN ('pending', 'processing')",
    )
    .await;

    // A last start works off whatever the kills left behind.
    let worker = start_worker(&db_url, &sources, &dir.join("worker-final.log"));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let live = scalar(
            &app.dir,
            "SELECT COUNT(*) FROM tasks WHERE status IN ('pending', 'processing')",
        )
        .await;
        if live == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{live} tasks never finished");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(worker);

    let completed = scalar(
        &app.dir,
        "SELECT COUNT(*) FROM tasks WHERE status = 'completed'",
    )
    .await;
    assert_eq!(completed, TASKS as i64, "every task completed");
    common::assert_ledger_ok(&app.store).await;
    let settled_twice = scalar(
        &app.dir,
        "SELECT COUNT(*) FROM (SELECT item_id FROM ledger \
         WHERE entry_type IN ('capture', 'release') GROUP BY item_id HAVING COUNT(*) > 1) twice",
    )
    .await;
    assert_eq!(settled_twice, 0, "an item was settled twice");
    let unlocked = scalar(
        &app.dir,
        "SELECT COUNT(*) FROM task_items WHERE status = 'unlocked'",
    )
    .await;
    let charged = scalar(
        &app.dir,
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger WHERE entry_type = 'capture'",
    )
    .await;
    assert_eq!(unlocked, expected_found, "the crash-free run's deliveries");
    assert_eq!(charged, EMAIL_PRICE * expected_found, "charges");
    let provider_errors = scalar(
        &app.dir,
        "SELECT COUNT(*) FROM task_items WHERE error_code = 'PROVIDER_ERROR'",
    )
    .await;
    assert_eq!(provider_errors, 0);

    let stats: Value = reqwest::get(format!("{}/stats", standin.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let by_person = stats["by_person"].as_object().unwrap();
    let calls = by_person.values().map(|n| n.as_u64().unwrap()).sum::<u64>() as i64;
    let repeated = calls - by_person.len() as i64;
    assert_eq!(by_person.len(), people.len(), "every person asked");
    // Every request whose answer was persisted is in the cost log; the others were in
    // flight (sent, answer not yet written) when a worker was killed.
    let persisted = scalar(&app.dir, "SELECT COUNT(*) FROM source_lookups").await;
    let lost_in_flight = calls - persisted;
    let recorded_twice = scalar(
        &app.dir,
        "SELECT COUNT(*) FROM (SELECT personnel_id FROM source_lookups \
         GROUP BY personnel_id HAVING COUNT(*) > 1) twice",
    )
    .await;
    assert_eq!(
        recorded_twice, 0,
        "a person was asked again after the answer was persisted"
    );
    assert!(
        repeated <= lost_in_flight,
        "{repeated} repeated requests but only {lost_in_flight} lost in flight at the kills"
    );
    // In flight at a kill: at most `max_concurrency` requests out, and a few answers
    // being written.
    assert!(
        lost_in_flight <= (KILLS as u64 * 2 * MAX_CONCURRENCY) as i64,
        "{lost_in_flight} lookups lost in flight over {KILLS} kills"
    );
    println!(
        "sources_crash ({}): {KILLS} SIGKILLs in {:.1} s ({live_after_kills} tasks still live after them); \
         {TASKS} tasks, {} items; provider calls {calls} for {} people ({repeated} repeated, {lost_in_flight} lost in flight \
         at the kills, none after its answer was persisted); {unlocked} delivered, {charged} credits charged (crash-free: {})",
        if app.dir.is_postgres() { "PostgreSQL" } else { "SQLite" },
        killed_for.as_secs_f64(),
        people.len(),
        people.len(),
        EMAIL_PRICE * expected_found,
    );
    standin.stop().await.unwrap();
}
