//! Contact sources against real HTTP servers on 127.0.0.1: a small axum provider whose
//! behaviour is chosen by the person's id (found-*, nf-*, invalid-*, err500-*, r429-*,
//! slowfirst-*, timeout-*, garbage-*, perm-*), and the stand-in of `unlockd dev provider`.
//! Every test runs on SQLite, and on PostgreSQL with `UNLOCKD_TEST_DATABASE_URL`.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use common::{spawn_app_with, Options, TestApp};
use serde_json::{json, Value};
use unlockd::domain::ContactKind;
use unlockd::engine::sources::dev_provider::{DevProvider, DevProviderOptions};
use unlockd::engine::sources::SourcesConfig;
use unlockd::engine::EngineConfig;

const SECRET: &str = "sk-live-7f3a9c-provider-secret";

#[derive(Default)]
struct ProviderState {
    requests: Mutex<HashMap<String, u32>>,
    down: AtomicBool,
    secret_seen: AtomicBool,
}

struct TestProvider {
    url: String,
    state: Arc<ProviderState>,
}

impl TestProvider {
    fn requests(&self, person: &str) -> u32 {
        self.state
            .requests
            .lock()
            .unwrap()
            .get(person)
            .copied()
            .unwrap_or(0)
    }

    fn total(&self) -> u32 {
        self.state.requests.lock().unwrap().values().sum()
    }

    fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }
}

/// `/{flavour}/find?id=..`: flavour "a" answers by the id's prefix; flavour "b" finds
/// everyone (a second provider for the waterfall).
async fn find(
    State(state): State<Arc<ProviderState>>,
    axum::extract::Path(flavour): axum::extract::Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let id = query.get("id").cloned().unwrap_or_default();
    let count = {
        let mut requests = state.requests.lock().unwrap();
        let n = requests.entry(format!("{flavour}:{id}")).or_default();
        *n += 1;
        *n
    };
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) == Some(SECRET) {
        state.secret_seen.store(true, Ordering::SeqCst);
    }
    if state.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let found =
        |email: String| Json(json!({"data": {"email": email, "status": "valid"}})).into_response();
    if flavour == "b" {
        return if id.starts_with("nf") {
            StatusCode::NOT_FOUND.into_response()
        } else {
            found(format!("{id}@b.example"))
        };
    }
    let prefix = id.split('-').next().unwrap_or_default();
    match prefix {
        "found" | "cache" | "wait" | "bulk" => found(format!("{id}@a.example")),
        "nf" | "fall" => {
            (StatusCode::NOT_FOUND, Json(json!({"error": "no match"}))).into_response()
        }
        "empty" => Json(json!({"data": {"email": "", "status": "valid"}})).into_response(),
        "invalid" => {
            Json(json!({"data": {"email": format!("{id}@a.example"), "status": "invalid"}}))
                .into_response()
        }
        "err500" => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        "perm" => (StatusCode::FORBIDDEN, "plan does not include this").into_response(),
        "garbage" => (StatusCode::OK, "<html>gateway says hi</html>").into_response(),
        "r429" if count == 1 => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "slow down",
        )
            .into_response(),
        "r429" => found(format!("{id}@a.example")),
        "slowfirst" | "timeout" => {
            if prefix == "timeout" || count == 1 {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            found(format!("{id}@a.example"))
        }
        "slow200" => {
            tokio::time::sleep(Duration::from_millis(200)).await;
            found(format!("{id}@a.example"))
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn start_provider() -> TestProvider {
    let state = Arc::new(ProviderState::default());
    let app = Router::new()
        .route("/{flavour}/find", get(find))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    TestProvider { url, state }
}

/// A sources file over the test provider; `extra` is added to [defaults].
fn config(provider: &str, extra: &str, waterfall: &str) -> SourcesConfig {
    let base = [
        "timeout = \"300ms\"",
        "attempts = 2",
        "backoff = \"20ms\"",
        "max_backoff = \"2s\"",
        "breaker_failures = 50",
        "breaker_cool_down = \"300ms\"",
        "patience = \"30s\"",
    ];
    let key_of = |line: &str| {
        line.split('=')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let overridden: Vec<String> = extra.lines().map(key_of).collect();
    let mut defaults: Vec<&str> = base
        .into_iter()
        .filter(|line| !overridden.contains(&key_of(line)))
        .collect();
    defaults.extend(extra.lines());
    let defaults = defaults.join("\n");
    let text = format!(
        r#"
[defaults]
{defaults}

[[source]]
name = "a"
kind = "http"
contact = ["email"]
url = "{provider}/a/find?id={{personnel_id}}&name={{full_name}}"
headers = {{ "X-Api-Key" = {{ env = "TEST_PROVIDER_KEY" }} }}
email_pointer = "/data/email"
status_pointer = "/data/status"
deliverable = ["valid"]
cost_per_lookup = 0.01

[[source]]
name = "b"
kind = "http"
contact = ["email"]
url = "{provider}/b/find?id={{personnel_id}}"
email_pointer = "/data/email"

[[source]]
name = "needs_domain"
kind = "http"
contact = ["email"]
url = "{provider}/b/find?id={{personnel_id}}&domain={{company_domain}}"
email_pointer = "/data/email"

[waterfall]
email = {waterfall}
"#
    );
    SourcesConfig::parse("sources.toml", &text, &|name| {
        (name == "TEST_PROVIDER_KEY").then(|| SECRET.to_string())
    })
    .expect("valid sources file")
}

async fn app_with(config: SourcesConfig, people: &[&str]) -> TestApp {
    app_with_exhibitor(config, people, None).await
}

/// `website`: the people work for an exhibitor with this website (their company domain).
async fn app_with_exhibitor(
    config: SourcesConfig,
    people: &[&str],
    website: Option<&str>,
) -> TestApp {
    let app = spawn_app_with(Options {
        engine: EngineConfig {
            sources: Some(Arc::new(config)),
            lease: Duration::from_secs(5),
            ..EngineConfig::default()
        },
        ..Options::default()
    })
    .await;
    if let Some(website) = website {
        app.store
            .import_exhibitors(
                &[unlockd::catalog::ExhibitorRecord {
                    id: "x1".into(),
                    event_id: "1001".into(),
                    company_name: Some("Acme".into()),
                    website: Some(website.into()),
                    country: None,
                }],
                &|_| {},
            )
            .await
            .expect("exhibitor");
    }
    let records: Vec<_> = people
        .iter()
        .map(|id| {
            let mut person = common::person(id, &["1001"], None);
            person.exhibitor_id = website.map(|_| "x1".to_string());
            person
        })
        .collect();
    app.store
        .import_personnel(&records, &|_| {})
        .await
        .expect("people");
    app
}

/// Unlocks `ids` (emails) and works the task to the end; returns the task.
async fn unlock_and_work(app: &TestApp, key: &str, ids: &[&str]) -> Value {
    let (status, created) = app.unlock_ids(key, ids).await;
    assert_eq!(status, 201, "{created}");
    let task_id = created["task_id"].as_str().expect("a task").to_string();
    app.drain().await;
    let task = app.task(key, &task_id).await;
    assert_eq!(task["taskStatus"], "completed", "{task}");
    task
}

/// personnel id -> (status, errorCode)
fn item_states(task: &Value) -> HashMap<String, (String, String)> {
    task["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| {
            (
                item["personnelId"].as_str().unwrap_or_default().to_string(),
                (
                    item["status"].as_str().unwrap_or_default().to_string(),
                    item["errorCode"].as_str().unwrap_or_default().to_string(),
                ),
            )
        })
        .collect()
}

fn unlocked() -> (String, String) {
    ("unlocked".into(), String::new())
}

fn failed(code: &str) -> (String, String) {
    ("failed".into(), code.into())
}

#[tokio::test]
async fn found_not_found_and_undeliverable_answers() {
    let provider = start_provider().await;
    let ids = ["found-1", "nf-1", "invalid-1", "empty-1", "perm-1"];
    let app = app_with(config(&provider.url, "", r#"["a"]"#), &ids).await;
    let (_, key) = app.account(1_000).await;
    let mut all = ids.to_vec();
    all.push("789"); // in the catalog: no request
    let task = unlock_and_work(&app, &key, &all).await;
    let states = item_states(&task);
    assert_eq!(states["found-1"], unlocked(), "{task}");
    assert_eq!(states["789"], unlocked());
    assert_eq!(states["nf-1"], failed("EMAIL_NOT_FOUND"));
    assert_eq!(states["invalid-1"], failed("EMAIL_NOT_FOUND"));
    assert_eq!(states["empty-1"], failed("EMAIL_NOT_FOUND"));
    assert_eq!(states["perm-1"], failed("PROVIDER_ERROR"));
    assert_eq!(provider.requests("a:789"), 0);
    assert_eq!(provider.requests("a:perm-1"), 1, "a 403 is not retried");
    assert_eq!(app.balance(&key).await["totalBalance"], 1_000 - 2 * 15);
    // The found contact is in the catalog now.
    assert_eq!(
        app.store
            .contact_of("found-1", ContactKind::Email)
            .await
            .unwrap(),
        Some(Some("found-1@a.example".into()))
    );
    assert!(provider.state.secret_seen.load(Ordering::SeqCst));

    // Per-source metrics on /metrics.
    let metrics = app
        .http
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "unlockd_source_requests_total{source=\"a\",outcome=\"found\"} 1",
        "unlockd_source_requests_total{source=\"a\",outcome=\"not_found\"} 3",
        "unlockd_source_requests_total{source=\"a\",outcome=\"permanent\"} 1",
        "unlockd_source_request_duration_seconds_count{source=\"a\"} 5",
        "unlockd_source_breaker_state{source=\"a\"} 0",
        "unlockd_source_cost_micros_total{source=\"a\"} 50000",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }

    // The health report, read back by `admin sources status` from the database.
    app.server.engine.flush_source_health().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_unlockd"))
        .args([
            "admin",
            "sources",
            "status",
            "--json",
            "--database-url",
            &app.dir.url,
        ])
        .env_remove("UNLOCKD_DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = status
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["source"] == "a")
        .unwrap_or_else(|| panic!("{status}"));
    assert_eq!(a["breaker"], "closed");
    assert_eq!(a["requests"], 5);
    assert_eq!(
        a["failures"], 0,
        "a 403 is an answer, not a failure of the source"
    );
    assert_eq!(a["cost_micros"], 50_000);
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn transient_failures_are_retried_then_fail_with_provider_error() {
    let provider = start_provider().await;
    let ids = [
        "err500-1",
        "r429-1",
        "slowfirst-1",
        "timeout-1",
        "garbage-1",
    ];
    let app = app_with(config(&provider.url, "", r#"["a"]"#), &ids).await;
    let (_, key) = app.account(1_000).await;
    let started = Instant::now();
    let task = unlock_and_work(&app, &key, &ids).await;
    let states = item_states(&task);
    assert_eq!(states["r429-1"], unlocked(), "{task}");
    assert_eq!(states["slowfirst-1"], unlocked(), "slow, then recovering");
    assert_eq!(states["err500-1"], failed("PROVIDER_ERROR"));
    assert_eq!(states["timeout-1"], failed("PROVIDER_ERROR"));
    assert_eq!(states["garbage-1"], failed("PROVIDER_ERROR"));
    for id in ids {
        assert_eq!(
            provider.requests(&format!("a:{id}")),
            2,
            "{id}: attempts = 2"
        );
    }
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    // Held credits of the failed items were released; the two found were charged.
    assert_eq!(app.balance(&key).await["totalBalance"], 1_000 - 2 * 15);
    assert_eq!(
        task["credits"],
        json!({"held": 0, "charged": 30, "released": 45})
    );
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn the_waterfall_falls_through_and_remembers_not_found() {
    let provider = start_provider().await;
    let ids = ["fall-1", "nf-1"];
    let app = app_with(
        config(&provider.url, "", r#"["needs_domain", "a", "b"]"#),
        &ids,
    )
    .await;
    let (_, key) = app.account(1_000).await;
    let task = unlock_and_work(&app, &key, &ids).await;
    let states = item_states(&task);
    // a: 404, then b finds it; needs_domain is skipped (no exhibitor, no domain).
    assert_eq!(states["fall-1"], unlocked(), "{task}");
    assert_eq!(states["nf-1"], failed("EMAIL_NOT_FOUND"));
    assert_eq!(
        app.store
            .contact_of("fall-1", ContactKind::Email)
            .await
            .unwrap(),
        Some(Some("fall-1@b.example".into()))
    );
    assert_eq!(provider.requests("a:fall-1"), 1);
    assert_eq!(provider.requests("b:fall-1"), 1);
    assert_eq!(provider.requests("a:nf-1"), 1);
    assert_eq!(provider.requests("b:nf-1"), 1);
    let remembered = app
        .store
        .remembered_not_found(&["nf-1".to_string()], ContactKind::Email)
        .await
        .unwrap();
    let mut sources = remembered["nf-1"].clone();
    sources.sort();
    assert_eq!(sources, ["a", "b"]);

    // Another account: fall-1 comes from the catalog, nf-1's not-found answers are
    // remembered: no request at all.
    let before = provider.total();
    let (_, other) = app.account(1_000).await;
    let task = unlock_and_work(&app, &other, &ids).await;
    let states = item_states(&task);
    assert_eq!(states["fall-1"], unlocked());
    assert_eq!(states["nf-1"], failed("EMAIL_NOT_FOUND"));
    assert_eq!(provider.total(), before, "no upstream request");
    assert_eq!(app.balance(&other).await["totalBalance"], 1_000 - 15);
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn a_source_down_for_a_while_makes_items_wait_then_finish() {
    let provider = start_provider().await;
    let ids = ["wait-1", "wait-2", "wait-3", "wait-4", "wait-5"];
    let app = app_with(
        config(&provider.url, "breaker_failures = 2", r#"["a"]"#),
        &ids,
    )
    .await;
    let (_, key) = app.account(1_000).await;
    provider.set_down(true);
    let (status, created) = app.unlock_ids(&key, &ids).await;
    assert_eq!(status, 201);
    let task_id = created["task_id"].as_str().unwrap().to_string();
    let engine = app.server.engine.clone();
    let worker = tokio::spawn(async move { while engine.run_once().await.unwrap() {} });
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let task = app.task(&key, &task_id).await;
    assert_eq!(task["taskStatus"], "processing", "{task}");
    let while_down = provider.total();
    // The breaker keeps the requests down to the probes: far fewer than 5 items x 2
    // attempts every 300 ms.
    assert!(while_down < 30, "{while_down} requests while down");
    provider.set_down(false);
    tokio::time::timeout(Duration::from_secs(20), worker)
        .await
        .expect("finishes after the recovery")
        .unwrap();
    let task = app.task(&key, &task_id).await;
    assert_eq!(task["taskStatus"], "completed", "{task}");
    for id in ids {
        assert_eq!(item_states(&task)[id], unlocked(), "{task}");
    }
    assert_eq!(app.balance(&key).await["totalBalance"], 1_000 - 5 * 15);
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn patience_runs_out_with_provider_error_and_no_credit_lost() {
    let provider = start_provider().await;
    let ids = ["wait-1", "wait-2"];
    let app = app_with(
        config(
            &provider.url,
            "breaker_failures = 1\npatience = \"1s\"",
            r#"["a"]"#,
        ),
        &ids,
    )
    .await;
    let (_, key) = app.account(1_000).await;
    provider.set_down(true);
    let started = Instant::now();
    let task = unlock_and_work(&app, &key, &ids).await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    for id in ids {
        assert_eq!(item_states(&task)[id], failed("PROVIDER_ERROR"), "{task}");
    }
    assert_eq!(app.balance(&key).await["totalBalance"], 1_000);
    app.assert_ledger_ok().await;
}

/// Logs go through a subscriber of this test's thread (a current-thread runtime runs
/// the worker on it too).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn secrets_and_contacts_stay_out_of_the_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let provider = start_provider().await;
    let ids = ["found-1", "err500-1", "garbage-1", "nf-1"];
    let config = config(&provider.url, "", r#"["a"]"#);
    assert!(!format!("{config:?}").contains(SECRET));
    let app = app_with(config, &ids).await;
    let (_, key) = app.account(1_000).await;
    let task = unlock_and_work(&app, &key, &ids).await;
    assert_eq!(item_states(&task)["found-1"], unlocked());
    assert!(provider.state.secret_seen.load(Ordering::SeqCst));
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("source answered garbage"), "{logs}");
    assert!(
        logs.contains("source=a"),
        "log lines name the source: {logs}"
    );
    assert!(logs.contains("task_id="), "and the task: {logs}");
    assert!(!logs.contains(SECRET), "the secret leaked: {logs}");
    assert!(
        !logs.contains("found-1@a.example"),
        "a contact leaked: {logs}"
    );
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn sources_check_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sources.toml");
    std::fs::write(
        &file,
        r#"
[[source]]
name = "hunter"
kind = "http"
contact = ["email"]
url = "https://api.example.com/v2/find?domain={company_domain}&first={first_name}"
headers = { "X-Api-Key" = { env = "H7_CHECK_KEY" } }
email_pointer = "/data/email"

[waterfall]
email = ["hunter"]
"#,
    )
    .unwrap();
    let run = |with_secret: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_unlockd"));
        command.args(["sources", "check", "--sources"]).arg(&file);
        command
            .env_remove("H7_CHECK_KEY")
            .env_remove("UNLOCKD_SOURCES");
        if with_secret {
            command.env("H7_CHECK_KEY", SECRET);
        }
        command.output().unwrap()
    };
    let ok = run(true);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert!(ok.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("X-Api-Key: <redacted>"), "{stdout}");
    assert!(
        stdout.contains("waterfall email: catalog -> hunter"),
        "{stdout}"
    );
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET));
    let missing = run(false);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains(
            "sources.toml: source \"hunter\": key \"headers.X-Api-Key\": environment variable H7_CHECK_KEY is not set"
        ),
        "{stderr}"
    );
}

/// The stand-in provider, slow and flaky: every item ends, the customer pays for the
/// contacts delivered only, and no person is asked more than `attempts` times.
#[tokio::test]
async fn the_stand_in_provider_end_to_end() {
    let standin = DevProvider::start(
        "127.0.0.1:0",
        DevProviderOptions {
            latency: Duration::from_millis(50),
            not_found_rate: 0.2,
            invalid_rate: 0.1,
            error_rate: 0.15,
            rate_429: 0.05,
            seed: 7,
            ..DevProviderOptions::default()
        },
    )
    .await
    .unwrap();
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/sources.demo.toml"
    ))
    .unwrap()
    .replace("http://127.0.0.1:9090", &standin.url());
    let config = SourcesConfig::parse("sources.demo.toml", &text, &|_| None).unwrap();
    let ids: Vec<String> = (0..40).map(|i| format!("bulk-{i}")).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let app = app_with_exhibitor(config, &id_refs, Some("https://www.acme-x.example/")).await;
    let (_, key) = app.account(10_000).await;
    let task = unlock_and_work(&app, &key, &id_refs).await;
    let states = item_states(&task);
    let sample = app
        .store
        .contacts_of(
            &id_refs.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            ContactKind::Email,
        )
        .await
        .unwrap();
    assert!(
        sample
            .values()
            .flatten()
            .all(|e| e.ends_with("@acme-x.example")),
        "the company domain comes from the exhibitor's website: {sample:?}"
    );
    let found = states.values().filter(|s| **s == unlocked()).count();
    assert!(found > 10 && found < 40, "{found} found");
    for (id, state) in &states {
        assert!(
            *state == unlocked()
                || *state == failed("EMAIL_NOT_FOUND")
                || *state == failed("PROVIDER_ERROR"),
            "{id}: {state:?}"
        );
    }
    assert_eq!(
        app.balance(&key).await["totalBalance"],
        10_000 - 15 * found as i64
    );
    let stats: Value = reqwest::get(format!("{}/stats", standin.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (id, n) in stats["by_person"].as_object().unwrap() {
        assert!(n.as_u64().unwrap() <= 3, "{id} asked {n} times");
    }
    app.assert_ledger_ok().await;
    standin.stop().await.unwrap();
}

/// A 100-item task against a provider answering in 200 ms, with the default
/// `max_concurrency` (8) and with 50. Run with
/// `cargo test -p unlockd --test sources -- --ignored --nocapture hundred`.
#[tokio::test]
#[ignore]
async fn hundred_items_against_a_200ms_provider() {
    for max_concurrency in [8, 50] {
        let provider = start_provider().await;
        let ids: Vec<String> = (0..100).map(|i| format!("slow200-{i}")).collect();
        let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let app = app_with(
            config(
                &provider.url,
                &format!("max_concurrency = {max_concurrency}"),
                r#"["a"]"#,
            ),
            &id_refs,
        )
        .await;
        let (_, key) = app.account(10_000).await;
        let started = Instant::now();
        let task = unlock_and_work(&app, &key, &id_refs).await;
        let elapsed = started.elapsed();
        assert!(item_states(&task).values().all(|s| *s == unlocked()));
        println!(
            "100 items against a 200 ms provider (max_concurrency {max_concurrency}): {elapsed:?}"
        );
        app.assert_ledger_ok().await;
    }
}

/// Items of one task are looked up concurrently: 20 items at 200 ms each take well under
/// the 4 s they would one by one.
#[tokio::test]
async fn items_are_looked_up_concurrently() {
    let provider = start_provider().await;
    let ids: Vec<String> = (0..20).map(|i| format!("slow200-{i}")).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let app = app_with(
        config(&provider.url, "max_concurrency = 10", r#"["a"]"#),
        &id_refs,
    )
    .await;
    let (_, key) = app.account(10_000).await;
    let started = Instant::now();
    let task = unlock_and_work(&app, &key, &id_refs).await;
    let elapsed = started.elapsed();
    assert!(item_states(&task).values().all(|s| *s == unlocked()));
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert_eq!(app.balance(&key).await["totalBalance"], 10_000 - 20 * 15);
    app.assert_ledger_ok().await;
}

/// Two accounts' tasks that need the same people at the same moment: each person's
/// provider is asked once, the second task reads what the first stored.
#[tokio::test]
async fn concurrent_tasks_of_two_accounts_pay_the_provider_once_per_person() {
    let provider = start_provider().await;
    let ids = ["slow200-a", "slow200-b", "slow200-c", "nf-a", "nf-b"];
    let app = app_with(config(&provider.url, "", r#"["a"]"#), &ids).await;
    let (_, first) = app.account(1_000).await;
    let (_, second) = app.account(1_000).await;
    let mut tasks = Vec::new();
    for key in [&first, &second] {
        let (status, created) = app.unlock_ids(key, &ids).await;
        assert_eq!(status, 201, "{created}");
        tasks.push((
            key.clone(),
            created["task_id"].as_str().unwrap().to_string(),
        ));
    }
    // Both tasks claimed and worked at once, by two of the engine's loops.
    let engine = &app.server.engine;
    let (a, b) = tokio::join!(engine.run_once(), engine.run_once());
    assert!(a.unwrap() && b.unwrap(), "each step worked a task");
    app.drain().await;
    for (key, task_id) in &tasks {
        let task = app.task(key, task_id).await;
        assert_eq!(task["taskStatus"], "completed", "{task}");
        let states = item_states(&task);
        for found in &ids[..3] {
            assert_eq!(states[*found], unlocked(), "{task}");
        }
        for missing in &ids[3..] {
            assert_eq!(states[*missing], failed("EMAIL_NOT_FOUND"), "{task}");
        }
        assert_eq!(app.balance(key).await["totalBalance"], 1_000 - 3 * 15);
    }
    for id in ids {
        assert_eq!(provider.requests(&format!("a:{id}")), 1, "{id}");
    }
    app.assert_ledger_ok().await;
}

/// `requests_per_second` spaces the requests of the whole process out.
#[tokio::test]
async fn requests_per_second_paces_a_source() {
    let provider = start_provider().await;
    let ids = [
        "found-1", "found-2", "found-3", "found-4", "found-5", "found-6",
    ];
    let app = app_with(
        config(&provider.url, "requests_per_second = 10.0", r#"["a"]"#),
        &ids,
    )
    .await;
    let (_, key) = app.account(1_000).await;
    let started = Instant::now();
    let task = unlock_and_work(&app, &key, &ids).await;
    let elapsed = started.elapsed();
    assert!(item_states(&task).values().all(|s| *s == unlocked()));
    // Six requests at 10 a second: the last goes out 0.5 s after the first.
    assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
    app.assert_ledger_ok().await;
}
