//! Scale-out on PostgreSQL: two API replicas and two workers as separate processes on one
//! database, a bounded burst of overlapping creates from several accounts through both
//! replicas, one worker SIGKILLed mid-run and restarted. Runs when
//! `UNLOCKD_TEST_DATABASE_URL` names a PostgreSQL server (scripts/test.sh does that);
//! without one it says so and checks nothing.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_unlockd");

struct Process {
    child: Child,
    url: Option<String>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Cluster {
    /// The processes' database URL: the test's own database, with a small pool per process
    /// so five processes stay far below the server's connection limit.
    db_url: String,
    db: common::TestDb,
}

impl Cluster {
    fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env("UNLOCKD_DATABASE_URL", &self.db_url)
            .env("UNLOCKD_LOG", "info")
            .env("UNLOCKD_LOG_FORMAT", "json");
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.command().args(args).output().expect("runs");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Starts a process logging to a file (a pipe nobody drains would stall it) and, for
    /// servers, waits for the URL it announces.
    fn spawn(&self, name: &str, args: &[&str]) -> Process {
        let log_path = self.db.path().join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = self
            .command()
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn");
        let mut process = Process { child, url: None };
        if args[0] == "serve" {
            process.url = Some(wait_for_url(&log_path));
        }
        process
    }
}

fn wait_for_url(log: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text.lines() {
            if let Ok(v) = serde_json::from_str::<Value>(line) {
                if let Some(url) = v["fields"]["url"].as_str() {
                    return url.to_string();
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no url announced in {}: {text}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_and_workers_on_one_database_keep_money_exact() {
    if common::postgres_server().is_none() {
        println!(
            "scale_out: UNLOCKD_TEST_DATABASE_URL is not set; this PostgreSQL test checked nothing"
        );
        return;
    }
    let db = common::TestDb::create().await;
    let cluster = Cluster {
        db_url: format!("{}?pool_size=4", db.url),
        db,
    };
    let dir = cluster.db.path();
    let mut people = String::from("id,event_ids,email\n");
    for i in 0..120 {
        let email = if i % 8 == 0 {
            String::new()
        } else {
            format!("p{i}@acme.example")
        };
        people.push_str(&format!("{},E1,{email}\n", 5000 + i));
    }
    people.push_str("5999,E1,late@acme.example\n"); // kept out of the burst
    let events = write(
        dir,
        "events.csv",
        "id,event_id,name\nE1,139574,Scale Expo\n",
    );
    let people = write(dir, "people.csv", &people);
    cluster.ok(&[
        "import",
        "--events",
        events.to_str().unwrap(),
        "--personnel",
        people.to_str().unwrap(),
    ]);
    let budgets = [600i64, 900, 100_000];
    let mut keys = Vec::new();
    for (i, credits) in budgets.iter().enumerate() {
        let out = cluster.ok(&[
            "admin",
            "accounts",
            "create",
            "--name",
            &format!("tenant{i}"),
            "--credits",
            &credits.to_string(),
            "--json",
        ]);
        keys.push(
            serde_json::from_str::<Value>(&out).unwrap()["api_key"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }

    let no_limits = [
        "--rate-limit-per-minute",
        "0",
        "--ip-rate-limit-per-minute",
        "0",
    ];
    // A long re-read interval: long polls must be woken by the database's change feed.
    let api_args: Vec<&str> = [
        "serve",
        "--no-worker",
        "--listen",
        "127.0.0.1:0",
        "--long-poll-recheck-ms",
        "30000",
    ]
    .iter()
    .chain(&no_limits)
    .copied()
    .collect();
    let replicas = [
        cluster.spawn("api-a", &api_args),
        cluster.spawn("api-b", &api_args),
    ];
    let urls: Vec<String> = replicas.iter().map(|r| r.url.clone().unwrap()).collect();
    let worker_args = [
        "worker",
        "--lookups-per-second",
        "150",
        "--lease-seconds",
        "2",
        "--worker-concurrency",
        "3",
    ];
    let mut worker_a = cluster.spawn("worker-a", &worker_args);
    let _worker_b = cluster.spawn("worker-b", &worker_args);

    // A bounded burst: 90 creates of 4-12 overlapping people, three tenants, both replicas.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut handles = Vec::new();
    for i in 0..90usize {
        let http = http.clone();
        let url = urls[i % 2].clone();
        let key = keys[i % 3].clone();
        let start = (i * 13) % 100;
        let ids: Vec<String> = (0..4 + i % 9)
            .map(|k| (5000 + (start + k * 2) % 120).to_string())
            .collect();
        handles.push(tokio::spawn(async move {
            let response = http
                .post(format!("{url}/external/contacts/unlock"))
                .bearer_auth(&key)
                .json(&json!({"event_id": "139574", "personnel_ids": ids}))
                .send()
                .await
                .expect("create");
            let status = response.status().as_u16();
            (
                i % 3,
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }));
    }
    let mut accepted: Vec<(usize, String)> = Vec::new();
    let mut statuses = HashMap::new();
    for h in handles {
        let (tenant, status, body) = h.await.unwrap();
        assert!(matches!(status, 201 | 402 | 409), "{status}: {body}");
        *statuses.entry(status).or_insert(0) += 1;
        if body["status"] == "accepted" {
            accepted.push((tenant, body["task_id"].as_str().unwrap().to_string()));
        }
    }
    assert!(accepted.len() >= 10, "{statuses:?}");

    // Kill one worker while tasks are in flight, then bring it back.
    tokio::time::sleep(Duration::from_millis(400)).await;
    worker_a.child.kill().unwrap(); // SIGKILL
    worker_a.child.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    worker_a = cluster.spawn("worker-a2", &worker_args);

    // Every task reaches a terminal state; long polls through either replica see it.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut unlocked: Vec<HashSet<String>> = vec![HashSet::new(); 3];
    let mut charged = [0i64; 3];
    for (n, (tenant, task)) in accepted.iter().enumerate() {
        let url = &urls[(n + 1) % 2];
        loop {
            let body: Value = http
                .get(format!(
                    "{url}/external/contacts/unlock-tasks/{task}?wait=10"
                ))
                .bearer_auth(&keys[*tenant])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if body["taskStatus"] == "completed" || body["taskStatus"] == "failed" {
                for item in body["items"].as_array().unwrap() {
                    if item["status"] == "unlocked" {
                        let person = item["personnelId"].as_str().unwrap().to_string();
                        assert!(
                            unlocked[*tenant].insert(person),
                            "a person delivered twice: {body}"
                        );
                        assert_eq!(item["charged"], 15);
                    }
                    charged[*tenant] += item["charged"].as_i64().unwrap();
                }
                assert_eq!(body["credits"]["held"], 0, "{body}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "task {task} never finished: {body}"
            );
        }
    }

    // Every balance is exact: granted minus 15 per delivered email, nothing held.
    for (tenant, key) in keys.iter().enumerate() {
        let balance: Value = http
            .get(format!("{}/external/credits/balance", urls[tenant % 2]))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(balance["heldCredits"], 0, "tenant {tenant}");
        assert_eq!(
            balance["totalBalance"].as_i64().unwrap(),
            budgets[tenant] - charged[tenant],
            "tenant {tenant}"
        );
        assert_eq!(charged[tenant], 15 * unlocked[tenant].len() as i64);
    }
    assert!(cluster
        .ok(&["admin", "ledger", "verify"])
        .contains("ledger OK"));

    // A long poll on one replica wakes when a worker process finishes the task created
    // through the other replica, well before its 30 s re-read.
    let created: Value = http
        .post(format!("{}/external/contacts/unlock", urls[0]))
        .bearer_auth(&keys[2])
        .json(&json!({"event_id": "139574", "personnel_ids": ["5999"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let task = created["task_id"].as_str().expect("accepted").to_string();
    {
        let started = Instant::now();
        let body: Value = http
            .get(format!(
                "{}/external/contacts/unlock-tasks/{task}?wait=25",
                urls[1]
            ))
            .bearer_auth(&keys[2])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["taskStatus"], "completed", "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "woken by the change feed, not the re-read: {:?}",
            started.elapsed()
        );
    }
    drop(worker_a);
    drop(replicas);

    // Rate limits hold across replicas: one bucket per key, whichever replica answers.
    let limited: Vec<&str> = [
        "serve",
        "--no-worker",
        "--listen",
        "127.0.0.1:0",
        "--rate-limit-per-minute",
        "4",
    ]
    .to_vec();
    let a = cluster.spawn("limited-a", &limited);
    let b = cluster.spawn("limited-b", &limited);
    let mut seen = Vec::new();
    for i in 0..6 {
        let url = if i % 2 == 0 {
            a.url.as_ref()
        } else {
            b.url.as_ref()
        };
        let response = http
            .get(format!("{}/external/credits/balance", url.unwrap()))
            .bearer_auth(&keys[0])
            .send()
            .await
            .unwrap();
        seen.push(response.status().as_u16());
    }
    assert_eq!(
        seen,
        [200, 200, 200, 200, 429, 429],
        "the two replicas share the key's bucket"
    );
}
