//! The `unlockd` binary: admin commands, import, demo data, ledger verify, and a server
//! process that is killed mid-task and restarted.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_unlockd");

/// A test's own database (SQLite, or PostgreSQL with `UNLOCKD_TEST_DATABASE_URL`) and
/// a directory for its files.
struct Env {
    dir: common::TestDb,
}

impl Env {
    fn new() -> Self {
        Env {
            dir: common::TestDb::create_blocking(),
        }
    }

    fn db_url(&self) -> String {
        self.dir.url.clone()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env("UNLOCKD_DATABASE_URL", self.db_url())
            .env("UNLOCKD_LOG", "warn")
            .env("UNLOCKD_LOG_FORMAT", "json");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout)
    }

    fn account(&self, credits: i64) -> (String, String) {
        // `--create`: the first admin command may be the one that creates the database.
        let out = self.ok(&[
            "admin",
            "--create",
            "accounts",
            "create",
            "--name",
            "cli",
            "--credits",
            &credits.to_string(),
            "--json",
        ]);
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        (
            v["account_id"].as_str().unwrap().into(),
            v["api_key"].as_str().unwrap().into(),
        )
    }

    fn write(&self, name: &str, body: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, body).unwrap();
        path
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn accounts_keys_and_grants() {
    let env = Env::new();
    let (account, key) = env.account(0);
    assert!(unlockd::domain::keys::is_well_formed(&key), "{key}");
    let key_id = &key[3..19];
    let listed = env.ok(&["admin", "keys", "list", "--account", &account, "--json"]);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["key_id"], key_id);
    assert!(
        !listed.to_string().contains(&key),
        "secrets are never listed"
    );

    let legacy = env.ok(&[
        "admin",
        "keys",
        "create",
        "--account",
        &account,
        "--legacy-prefix",
        "--json",
    ]);
    assert!(serde_json::from_str::<Value>(&legacy).unwrap()["api_key"]
        .as_str()
        .unwrap()
        .starts_with("uak_"));
    env.ok(&["admin", "keys", "revoke", key_id]);
    assert!(env
        .fails(&["admin", "keys", "revoke", key_id])
        .contains("no active key"));
    assert!(env
        .fails(&["admin", "keys", "create", "--account", "nope"])
        .contains("not found"));

    env.ok(&[
        "admin",
        "credits",
        "grant",
        "--account",
        &account,
        "--amount",
        "500",
    ]);
    env.ok(&[
        "admin",
        "credits",
        "grant",
        "--account",
        &account,
        "--amount",
        "100",
        "--bucket",
        "subscription",
        "--expires-at",
        "2999-01-01T00:00:00Z",
    ]);
    for (args, needle) in [
        (vec!["--amount", "0"], "amount"),
        (vec!["--amount", "-5"], "amount"),
        (
            vec![
                "--amount",
                "5",
                "--bucket",
                "gift",
                "--expires-at",
                "2999-01-01T00:00:00Z",
            ],
            "never expire",
        ),
        (vec!["--amount", "5", "--bucket", "addon"], "expires-at"),
        (
            vec![
                "--amount",
                "5",
                "--bucket",
                "addon",
                "--expires-at",
                "tomorrow",
            ],
            "RFC 3339",
        ),
        (
            vec![
                "--amount",
                "5",
                "--bucket",
                "addon",
                "--expires-at",
                "2000-01-01T00:00:00Z",
            ],
            "past",
        ),
        (vec!["--amount", "5", "--bucket", "platinum"], "platinum"),
    ] {
        let mut full = vec!["admin", "credits", "grant", "--account", account.as_str()];
        full.extend(args);
        let err = env.fails(&full);
        assert!(err.contains(needle), "{full:?}: {err}");
    }
    assert!(env
        .fails(&[
            "admin",
            "credits",
            "grant",
            "--account",
            "nope",
            "--amount",
            "5"
        ])
        .contains("not found"));
    assert!(env.ok(&["admin", "ledger", "verify"]).contains("ledger OK"));
}

#[test]
fn import_is_all_or_nothing_per_file_and_reimport_updates() {
    let env = Env::new();
    let events = env.write(
        "events.csv",
        "id,event_id,name,date_start\n1001,139574,Expo,2027-03-01\n",
    );
    let exhibitors = env.write(
        "exhibitors.jsonl",
        "{\"id\":\"5001\",\"event_id\":\"139574\",\"company_name\":\"Acme\"}\n",
    );
    let mut people = String::from("id,full_name,event_ids,email\n");
    for i in 0..1_200 {
        people.push_str(&format!("{i},Person {i},139574,p{i}@acme.example\n"));
    }
    let good = env.write("personnel.csv", &people);
    people.push_str("bad row,Nobody,139574,x@acme.example\n");
    let bad = env.write("bad_personnel.csv", &people);

    let out = env.ok(&[
        "import",
        "--events",
        p(&events),
        "--exhibitors",
        p(&exhibitors),
    ]);
    assert!(out.contains("1 events, 1 exhibitors, 0 personnel"), "{out}");
    let err = env.fails(&["import", "--personnel", p(&bad)]);
    assert!(
        err.contains("bad_personnel.csv:1202"),
        "file and line: {err}"
    );
    let out = env.ok(&["import", "--personnel", p(&good)]);
    assert!(
        out.contains("1200 personnel"),
        "nothing of the bad file was applied: {out}"
    );

    // Re-import updates rows in place.
    let changed = env.write("update.jsonl", "{\"id\":\"7\",\"full_name\":\"Renamed\",\"event_ids\":[\"1001\"],\"email\":\"new@acme.example\"}\n");
    let out = env.ok(&["import", "--personnel", p(&changed)]);
    assert!(out.contains("1200 personnel"), "{out}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = unlockd::store::connect(
            &env.db_url(),
            Default::default(),
            std::sync::Arc::new(unlockd::clock::SystemClock),
        )
        .await
        .unwrap();
        let email = store
            .contact_of("7", unlockd::domain::ContactKind::Email)
            .await
            .unwrap();
        assert_eq!(email, Some(Some("new@acme.example".into())));
    });
    assert!(env.fails(&["import"]).contains("nothing to import"));
}

#[test]
fn demo_data_round_trips_through_import() {
    let env = Env::new();
    let out_dir = env.path("demo");
    let out = env.ok(&[
        "demo-data",
        "--out",
        p(&out_dir),
        "--events",
        "3",
        "--personnel",
        "500",
        "--seed",
        "9",
    ]);
    assert!(
        out.contains("3 events, 50 exhibitors, 500 personnel"),
        "{out}"
    );
    let again = env.path("demo2");
    env.ok(&[
        "demo-data",
        "--out",
        p(&again),
        "--events",
        "3",
        "--personnel",
        "500",
        "--seed",
        "9",
    ]);
    assert_eq!(
        std::fs::read(out_dir.join("personnel.csv")).unwrap(),
        std::fs::read(again.join("personnel.csv")).unwrap(),
        "deterministic"
    );
    let out = env.ok(&[
        "import",
        "--events",
        p(&out_dir.join("events.csv")),
        "--exhibitors",
        p(&out_dir.join("exhibitors.csv")),
        "--personnel",
        p(&out_dir.join("personnel.csv")),
    ]);
    assert!(
        out.contains("3 events, 50 exhibitors, 500 personnel"),
        "{out}"
    );
}

#[test]
fn ledger_verify_exits_non_zero_on_a_violation() {
    let env = Env::new();
    let (account, _) = env.account(100);
    assert!(env.ok(&["admin", "ledger", "verify"]).contains("OK"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        env.dir
            .raw_execute(&format!(
                "UPDATE credit_buckets SET balance = balance + 1 WHERE account_id = '{account}'"
            ))
            .await
            .unwrap();
    });
    let out = env.run(&["admin", "ledger", "verify"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("VIOLATION"));
}

/// A server process; killed on drop.
struct ServerProcess {
    child: Child,
    url: String,
    stdout: Vec<String>,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(env: &Env, extra: &[&str]) -> ServerProcess {
    let mut command = env.command();
    command
        .env("UNLOCKD_LOG", "info")
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--rate-limit-per-minute",
            "0",
            "--ip-rate-limit-per-minute",
            "0",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if let Some(url) = v["fields"]["url"].as_str() {
                    let _ = tx.send(url.to_string());
                }
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("server announces its url");
    ServerProcess {
        child,
        url,
        stdout: Vec::new(),
    }
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(40))
        .build()
        .unwrap()
}

fn poll_until(url: &str, key: &str, task: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body: Value = http()
            .get(format!(
                "{url}/external/contacts/unlock-tasks/{task}?wait=2"
            ))
            .bearer_auth(key)
            .send()
            .and_then(|r| r.json())
            .unwrap_or(Value::Null);
        if done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "gave up waiting: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_server_killed_mid_task_resumes_after_restart_without_double_charges() {
    let env = Env::new();
    let events = env.write("e.csv", "id,event_id\n1,139574\n");
    let mut people = String::from("id,event_ids,email\n");
    for i in 0..100 {
        let email = if i % 10 == 0 {
            String::new()
        } else {
            format!("p{i}@acme.example")
        };
        people.push_str(&format!("{},139574,{email}\n", 1000 + i));
    }
    let people = env.write("p.csv", &people);
    env.ok(&["import", "--events", p(&events), "--personnel", p(&people)]);
    let (_, key) = env.account(10_000);

    // Slow lookups so the kill lands mid-task; a short lease so the restart resumes soon.
    let slow = ["--lookups-per-second", "40", "--lease-seconds", "2"];
    let server = start_server(&env, &slow);
    let ids: Vec<String> = (1000..1100).map(|i| i.to_string()).collect();
    let created: Value = http()
        .post(format!("{}/external/contacts/unlock", server.url))
        .bearer_auth(&key)
        .json(&json!({"event_id": "139574", "personnel_ids": ids}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let task = created["task_id"].as_str().unwrap().to_string();
    let partial = poll_until(&server.url, &key, &task, |t| {
        let s = &t["summary"];
        s["unlocked"].as_u64().unwrap_or(0) + s["failed"].as_u64().unwrap_or(0) >= 10
    });
    drop(server); // SIGKILL: no chance to release the lease or finish the batch
    assert_ne!(partial["taskStatus"], "completed");

    let server = start_server(&env, &slow);
    let done = poll_until(&server.url, &key, &task, |t| t["taskStatus"] == "completed");
    assert_eq!(done["summary"]["unlocked"], 90);
    assert_eq!(done["summary"]["failed"], 10);
    assert_eq!(
        done["credits"],
        json!({"held": 0, "charged": 1_350, "released": 150})
    );
    let balance: Value = http()
        .get(format!("{}/external/credits/balance", server.url))
        .bearer_auth(&key)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(balance["totalBalance"], 10_000 - 1_350);

    // SIGTERM: a graceful stop that exits 0.
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut server = server;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    assert!(env.ok(&["admin", "ledger", "verify"]).contains("ledger OK"));
}

#[test]
fn serve_demo_prints_a_key_and_a_curl_that_works() {
    let env = Env::new();
    let mut server = start_server(&env, &["--demo"]);
    let stdout = server.child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut key = None;
    while let Some(Ok(line)) = lines.next() {
        server.stdout.push(line.clone());
        if let Some(k) = line.trim().strip_prefix("export UNLOCKD_API_KEY=") {
            key = Some(k.to_string());
        }
        if line.contains("-d '{\"event_id\":\"139574\",\"personnel_ids\":[\"789\",\"790\"]}'") {
            break;
        }
    }
    let key = key.expect("the banner prints the key");
    assert!(server.stdout.iter().any(|l| l.contains(&format!(
        "curl -X POST \"{}/external/contacts/unlock\"",
        server.url
    ))));
    let created: Value = http()
        .post(format!("{}/external/contacts/unlock", server.url))
        .header("Authorization", format!("Bearer {key}"))
        .header("Content-Type", "application/json")
        .header("x-call-source", "api")
        .body(r#"{"event_id":"139574","personnel_ids":["789","790"]}"#)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(created["status"], "accepted", "{created}");
    let task = created["task_id"].as_str().unwrap();
    let done = poll_until(&server.url, &key, task, |t| t["taskStatus"] == "completed");
    assert!(done["items"][0]["email"].as_str().unwrap().contains('@'));
    assert!(done["items"][1]["email"].as_str().unwrap().contains('@'));
    let balance: Value = http()
        .get(format!("{}/external/credits/balance", server.url))
        .bearer_auth(&key)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(balance["totalBalance"], 10_000 - 30);
}

#[test]
fn serve_demo_prints_the_console_urls_and_a_working_operator_token() {
    let env = Env::new();
    let mut server = start_server(&env, &["--demo"]);
    let stdout = server.child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut token = None;
    while let Some(Ok(line)) = lines.next() {
        server.stdout.push(line.clone());
        if let Some(t) = line.trim().strip_prefix("operator token: ") {
            token = Some(t.to_string());
            break;
        }
    }
    let token = token.expect("the demo banner prints a generated operator token");
    let printed = server.stdout.join("\n");
    assert!(
        printed.contains(&format!("  {}/\n", server.url)),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("  {}/admin/", server.url)),
        "{printed}"
    );
    let page = http().get(format!("{}/", server.url)).send().unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().unwrap().contains("/console/customer.js"));
    let status = http()
        .get(format!("{}/admin/api/status", server.url))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(status.status(), 200);
    let wrong = http()
        .get(format!("{}/admin/api/status", server.url))
        .bearer_auth(format!("{token}x"))
        .send()
        .unwrap();
    assert_eq!(wrong.status(), 401);
}

#[test]
fn a_short_admin_token_is_refused_at_start() {
    let env = Env::new();
    let err = env.fails(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-token",
        "too-short",
    ]);
    assert!(err.contains("at least 16 characters"), "{err}");
}
