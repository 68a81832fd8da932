//! Black-box test harness: a real server on 127.0.0.1:0 over a fresh database per test.
//!
//! The backend is SQLite (a file in a temporary directory) unless
//! `UNLOCKD_TEST_DATABASE_URL` names a PostgreSQL server
//! (`postgres://postgres@127.0.0.1:5432/test`): then every test gets a database of its
//! own on that server, created for it and dropped after it.
#![allow(dead_code)]

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use unlockd::app::{self, Server, ServerConfig};
use unlockd::catalog::{EventRecord, PersonRecord};
use unlockd::clock::{DynClock, ManualClock, SystemClock};
use unlockd::domain::keys::{self, KeyPrefix};
use unlockd::domain::ledger::BucketKind;
use unlockd::engine::EngineConfig;
use unlockd::store::sqlite::Durability;
use unlockd::store::{DynStore, Grant};

pub struct TestApp {
    pub url: String,
    pub server: Server,
    pub store: DynStore,
    pub clock: DynClock,
    pub manual: Option<Arc<ManualClock>>,
    pub http: reqwest::Client,
    /// The test's database (and a temporary directory: `dir.path()`).
    pub dir: TestDb,
}

/// Defaults: no background worker, no rate limits, the system clock.
#[derive(Default)]
pub struct Options {
    /// Run the background worker; otherwise tests drive it with `drain`.
    pub worker: bool,
    pub key_rate_limit: u32,
    pub ip_rate_limit: u32,
    pub manual_clock: bool,
    pub engine: EngineConfig,
    /// Connection and request limits (timeouts, caps).
    pub http: unlockd::http::HttpLimits,
    /// The operator token (`--admin-token`); `None` keeps the operator API off.
    pub admin_token: Option<String>,
    /// The webhook sender (runs with `worker`) and target checks.
    pub webhooks: unlockd::engine::webhooks::WebhookConfig,
}

/// The PostgreSQL server the tests run on, if any.
pub fn postgres_server() -> Option<String> {
    std::env::var("UNLOCKD_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// A test's own database, with a temporary directory beside it (`Deref` to the
/// directory). A PostgreSQL database is dropped when this is.
pub struct TestDb {
    /// What `unlockd::store::connect` and `UNLOCKD_DATABASE_URL` take.
    pub url: String,
    dir: tempfile::TempDir,
    postgres: Option<PgDatabase>,
}

struct PgDatabase {
    server: String,
    name: String,
}

/// Runs statements on the server from a thread of its own, which works inside a runtime
/// or outside one. Errors are ignored: this is clean-up.
fn on_server_in_background(server: String, statements: Vec<String>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            use sqlx::{Connection, Executor};
            if let Ok(mut admin) = sqlx::PgConnection::connect(&server).await {
                for sql in statements {
                    let _ = admin.execute(sql.as_str()).await;
                }
                let _ = admin.close().await;
            }
        });
    })
}

impl Drop for PgDatabase {
    /// Dropped in the background: `DROP DATABASE` waits for a checkpoint, which would
    /// double the length of the suite. A database whose drop did not finish before its
    /// process exited is swept by the next test process on this machine.
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        drop(on_server_in_background(self.server.clone(), vec![sql]));
    }
}

/// Test databases are named `unlockd_test_<machine>_<pid>_<random>`, so that leftovers of
/// finished processes on this machine can be told apart from databases in use.
fn owner_prefix() -> String {
    use sha2::{Digest, Sha256};
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = hex::encode(Sha256::digest(host.trim().as_bytes()));
    format!("unlockd_test_{}_", &host[..8])
}

/// Once per process: drops this machine's test databases whose process has exited.
async fn sweep_leftovers(server: &str, admin: &mut sqlx::PgConnection) {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    let mut first = false;
    SWEPT.call_once(|| first = true);
    if !first || !std::path::Path::new("/proc/self").exists() {
        return;
    }
    let prefix = owner_prefix();
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
            .bind(&prefix)
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    let gone: Vec<String> = names
        .into_iter()
        .filter(|name| {
            let pid = name[prefix.len()..].split('_').next().unwrap_or_default();
            pid.parse::<u32>().is_ok_and(|pid| {
                pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            })
        })
        .map(|name| format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .collect();
    if !gone.is_empty() {
        drop(on_server_in_background(server.to_string(), gone));
    }
}

/// `server` with its database name replaced by `name` (the query string is kept).
fn with_database(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (server, None),
    };
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[host_start..]
        .find('/')
        .map_or(base.len(), |i| host_start + i);
    let mut url = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// The name of a database holding the migrated PostgreSQL schema and nothing else, made
/// once per server and migration set (its name carries a digest of the migration files),
/// from which each test's database is copied: faster than migrating every one.
async fn migrated_template(server: &str, admin: &mut sqlx::PgConnection) -> String {
    use sha2::{Digest, Sha256};
    use sqlx::{Connection, Executor};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("migrations")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    files.sort();
    let mut digest = Sha256::new();
    for file in &files {
        digest.update(file.file_name().unwrap_or_default().as_encoded_bytes());
        digest.update(std::fs::read(file).expect("migration file"));
    }
    let name = format!("unlockd_template_{}", &hex::encode(digest.finalize())[..16]);
    // One maker at a time across threads and processes; the others wait, then find it.
    admin
        .execute("SELECT pg_advisory_lock(74210001)")
        .await
        .expect("template lock");
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_optional(&mut *admin)
        .await
        .expect("look for the template");
    if exists.is_none() {
        let building = format!("{name}_building");
        admin
            .execute(format!("DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)").as_str())
            .await
            .expect("drop a half-made template");
        admin
            .execute(format!("CREATE DATABASE \"{building}\"").as_str())
            .await
            .expect("create the template");
        let mut conn = sqlx::PgConnection::connect(&with_database(server, &building))
            .await
            .expect("connect to the template");
        sqlx::migrate!("./migrations/postgres")
            .run(&mut conn)
            .await
            .expect("migrate the template");
        conn.close().await.expect("close the template");
        // Renamed only once complete, so no test ever copies a half-migrated schema.
        admin
            .execute(format!("ALTER DATABASE \"{building}\" RENAME TO \"{name}\"").as_str())
            .await
            .expect("publish the template");
    }
    admin
        .execute("SELECT pg_advisory_unlock(74210001)")
        .await
        .expect("template unlock");
    name
}

impl TestDb {
    /// A new database: empty (SQLite), or holding only the migrated schema (PostgreSQL).
    pub async fn create() -> TestDb {
        let dir = tempfile::tempdir().expect("tempdir");
        match postgres_server() {
            None => TestDb {
                url: format!("sqlite://{}", dir.path().join("unlockd.db").display()),
                dir,
                postgres: None,
            },
            Some(server) => {
                use sqlx::{Connection, Executor};
                let name = format!(
                    "{}{}_{}",
                    owner_prefix(),
                    std::process::id(),
                    &uuid::Uuid::new_v4().simple().to_string()[..16]
                );
                let mut admin = sqlx::PgConnection::connect(&server)
                    .await
                    .unwrap_or_else(|e| panic!("UNLOCKD_TEST_DATABASE_URL={server}: {e}"));
                sweep_leftovers(&server, &mut admin).await;
                let template = migrated_template(&server, &mut admin).await;
                admin
                    .execute(format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\"").as_str())
                    .await
                    .expect("create the test database");
                let _ = admin.close().await;
                TestDb {
                    url: with_database(&server, &name),
                    dir,
                    postgres: Some(PgDatabase { server, name }),
                }
            }
        }
    }

    /// `create` for synchronous tests.
    pub fn create_blocking() -> TestDb {
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(TestDb::create())
        })
        .join()
        .expect("create the test database")
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// Runs one SQL statement on this database, outside the store, with its own
    /// connection. Returns the rows affected, or the database's error text. Write the
    /// statement so it works on both backends (literals, not placeholders).
    pub async fn raw_execute(&self, sql: &str) -> Result<u64, String> {
        use sqlx::{Connection, Executor};
        if self.is_postgres() {
            let mut conn = sqlx::PgConnection::connect(&self.url)
                .await
                .map_err(|e| e.to_string())?;
            let done = conn.execute(sql).await.map_err(|e| e.to_string());
            let _ = conn.close().await;
            done.map(|d| d.rows_affected())
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&self.url)
                .await
                .map_err(|e| e.to_string())?;
            let done = conn.execute(sql).await.map_err(|e| e.to_string());
            let _ = conn.close().await;
            done.map(|d| d.rows_affected())
        }
    }

    /// The first column of the first row of a query, as text (`None` for no row or NULL).
    pub async fn raw_scalar(&self, sql: &str) -> Result<Option<String>, String> {
        use sqlx::{Connection, Row};
        fn pg_text(row: &sqlx::postgres::PgRow) -> Option<String> {
            row.try_get::<Option<String>, _>(0).unwrap_or_else(|_| {
                row.try_get::<Option<i64>, _>(0)
                    .ok()
                    .flatten()
                    .map(|n| n.to_string())
            })
        }
        fn sqlite_text(row: &sqlx::sqlite::SqliteRow) -> Option<String> {
            row.try_get::<Option<String>, _>(0).unwrap_or_else(|_| {
                row.try_get::<Option<i64>, _>(0)
                    .ok()
                    .flatten()
                    .map(|n| n.to_string())
            })
        }
        if self.is_postgres() {
            let mut conn = sqlx::PgConnection::connect(&self.url)
                .await
                .map_err(|e| e.to_string())?;
            let row = sqlx::query(sql)
                .fetch_optional(&mut conn)
                .await
                .map_err(|e| e.to_string());
            let _ = conn.close().await;
            Ok(row?.as_ref().and_then(pg_text))
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&self.url)
                .await
                .map_err(|e| e.to_string())?;
            let row = sqlx::query(sql)
                .fetch_optional(&mut conn)
                .await
                .map_err(|e| e.to_string());
            let _ = conn.close().await;
            Ok(row?.as_ref().and_then(sqlite_text))
        }
    }
}

impl Deref for TestDb {
    type Target = tempfile::TempDir;

    fn deref(&self) -> &tempfile::TempDir {
        &self.dir
    }
}

/// A fresh, migrated store over a database of its own (see `TestDb`).
pub async fn fresh_store(clock: DynClock) -> (DynStore, TestDb) {
    let db = TestDb::create().await;
    let store = unlockd::store::connect(&db.url, Durability::Normal, clock)
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    (store, db)
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    let manual = options
        .manual_clock
        .then(|| Arc::new(ManualClock::new(1_800_000_000_000)));
    let clock: DynClock = match &manual {
        Some(manual) => manual.clone(),
        None => Arc::new(SystemClock),
    };
    let (store, dir) = fresh_store(clock.clone()).await;
    seed_catalog(&store).await;
    let config = ServerConfig {
        listen: "127.0.0.1:0".into(),
        run_worker: options.worker,
        key_rate_limit: options.key_rate_limit,
        ip_rate_limit: options.ip_rate_limit,
        engine: options.engine,
        long_poll_recheck: Duration::from_millis(200),
        http: options.http,
        admin_token: options.admin_token,
        webhooks: options.webhooks,
        ..ServerConfig::default()
    };
    let server = app::start(
        config,
        store.clone(),
        clock.clone(),
        CancellationToken::new(),
    )
    .await
    .expect("server starts");
    TestApp {
        url: server.url(),
        server,
        store,
        clock,
        manual,
        http: reqwest::Client::new(),
        dir,
    }
}

fn event(id: &str, alias: &str) -> EventRecord {
    EventRecord {
        id: id.into(),
        event_id: alias.into(),
        name: Some(format!("Event {alias}")),
        date_start: Some("2027-03-01".into()),
        date_end: Some("2027-03-03".into()),
        venue: None,
        city: Some("Berlin".into()),
        region: None,
        country: Some("Germany".into()),
        url: None,
        description: None,
    }
}

pub fn person(id: &str, events: &[&str], email: Option<&str>) -> PersonRecord {
    PersonRecord {
        id: id.into(),
        full_name: Some(format!("Person {id}")),
        title: Some("Buyer".into()),
        department: Some("Sales".into()),
        seniority_level: Some("manager".into()),
        linkedin_url: None,
        company_name: Some("Acme".into()),
        exhibitor_id: None,
        event_ids: events.iter().map(|s| s.to_string()).collect(),
        source_type: vec!["exhibitor".into()],
        email: email.map(str::to_string),
        phone: Some(format!("+1 415 555 {id}")),
    }
}

/// Event `1001` (alias `139574`) with people 789, 790 (emails), 791 (no email) and
/// 100..=199 (emails); event `1002` (alias `2002`) with person 800.
pub async fn seed_catalog(store: &DynStore) {
    let quiet = |_| {};
    store
        .import_events(&[event("1001", "139574"), event("1002", "2002")], &quiet)
        .await
        .expect("events");
    let mut people = vec![
        person("789", &["1001"], Some("jane.doe@acme.example")),
        person("790", &["1001"], Some("john.roe@acme.example")),
        person("791", &["1001"], None),
        person("800", &["1002"], Some("other@acme.example")),
    ];
    for i in 100..200 {
        people.push(person(
            &i.to_string(),
            &["1001"],
            Some(&format!("p{i}@acme.example")),
        ));
    }
    store
        .import_personnel(&people, &quiet)
        .await
        .expect("personnel");
}

impl TestApp {
    /// An account with `credits` gift credits and one key.
    pub async fn account(&self, credits: i64) -> (String, String) {
        let account = self.store.create_account("test").await.expect("account");
        if credits > 0 {
            self.store
                .grant_credits(&Grant {
                    account_id: account.id.clone(),
                    kind: BucketKind::Gift,
                    amount: credits,
                    expires_at: None,
                })
                .await
                .expect("grant");
        }
        let key = keys::generate(KeyPrefix::Sk);
        self.store
            .add_api_key(&account.id, &key, KeyPrefix::Sk)
            .await
            .expect("key");
        (account.id, key.secret)
    }

    pub async fn unlock(&self, key: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/external/contacts/unlock", self.url))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn unlock_ids(&self, key: &str, ids: &[&str]) -> (u16, Value) {
        self.unlock(key, json!({"event_id": "139574", "personnel_ids": ids}))
            .await
    }

    pub async fn get(&self, key: &str, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(key)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Waits (at most 5 s) until `GET path` with `key` answers `status`. A change to keys or
    /// accounts made by another process, such as the CLI, reaches a running server's key
    /// cache within a second (`unlockd::store::auth_cache::MAX_STALENESS`), not at once.
    pub async fn wait_for_status(&self, key: &str, path: &str, status: u16) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let (got, body) = self.get(key, path).await;
            if got == status {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{path} still answers {got} {body}, not {status}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub async fn task(&self, key: &str, task_id: &str) -> Value {
        let (status, body) = self
            .get(key, &format!("/external/contacts/unlock-tasks/{task_id}"))
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub async fn balance(&self, key: &str) -> Value {
        let (status, body) = self.get(key, "/external/credits/balance").await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Works every claimable task to the end, step by step.
    pub async fn drain(&self) {
        while self.server.engine.run_once().await.expect("engine step") {}
    }

    pub async fn assert_ledger_ok(&self) {
        assert_ledger_ok(&self.store).await;
    }

    /// Runs one SQL statement on this test's database, outside the store (see
    /// `TestDb::raw_execute`).
    pub async fn raw_execute(&self, sql: &str) -> Result<u64, String> {
        self.dir.raw_execute(sql).await
    }

    /// The first column of the first row of a query on this test's database, as text.
    pub async fn raw_scalar(&self, sql: &str) -> Result<Option<String>, String> {
        self.dir.raw_scalar(sql).await
    }

    pub fn manual_clock(&self) -> &ManualClock {
        self.manual
            .as_deref()
            .expect("built with Options { manual_clock: true }")
    }
}

pub async fn assert_ledger_ok(store: &DynStore) {
    let problems = store.verify_ledger().await.expect("verify");
    assert!(problems.is_empty(), "ledger violations: {problems:#?}");
}

/// Asserts the error envelope: exactly code, message, errorKey, traceId (+ `extra`).
pub fn assert_envelope(status: u16, body: &Value, key: &str, extra: &[&str]) {
    let object = body
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {body}"));
    assert_eq!(
        object.get("code").and_then(Value::as_u64),
        Some(status as u64),
        "{body}"
    );
    assert_eq!(
        object.get("errorKey").and_then(Value::as_str),
        Some(key),
        "{body}"
    );
    assert!(
        object
            .get("message")
            .and_then(Value::as_str)
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    let trace = object
        .get("traceId")
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert!(!trace.is_empty(), "{body}");
    let mut fields: Vec<&str> = object.keys().map(String::as_str).collect();
    fields.sort();
    let mut expected = vec!["code", "errorKey", "message", "traceId"];
    expected.extend_from_slice(extra);
    expected.sort();
    assert_eq!(fields, expected, "{body}");
}
