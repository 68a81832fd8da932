//! Signed webhooks against a real receiver (an axum server on 127.0.0.1): deliveries
//! arrive signed and verify with the client crate's verifier, failures are retried until
//! the receiver is up (delivered once), across a restart of unlockd, redelivery on request,
//! secret rotation with an overlap, SSRF refusals, per-account isolation and `credits.low`.
//! SQLite, or PostgreSQL with `UNLOCKD_TEST_DATABASE_URL`.

mod common;

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::*;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use unlockd::app::{self, ServerConfig};
use unlockd::engine::maintenance::{self, MaintenanceConfig};
use unlockd::engine::webhooks::WebhookConfig;
use unlockd::engine::EngineConfig;
use unlockd::store::sqlite::Durability;
use unlockd_client::{verify_webhook, WebhookError};

const TOLERANCE: Duration = Duration::from_secs(300);

#[derive(Clone, Default)]
struct Inbox {
    got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    status: Arc<AtomicU16>,
}

impl Inbox {
    fn deliveries(&self) -> Vec<(HeaderMap, Bytes)> {
        self.got.lock().unwrap().clone()
    }
}

async fn receive(State(inbox): State<Inbox>, headers: HeaderMap, body: Bytes) -> StatusCode {
    inbox.got.lock().unwrap().push((headers, body));
    StatusCode::from_u16(inbox.status.load(Ordering::SeqCst)).unwrap()
}

/// A receiver answering 200 on `listener`.
fn serve_receiver(listener: tokio::net::TcpListener, inbox: Inbox) {
    inbox.status.store(200, Ordering::SeqCst);
    let router = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(inbox);
    tokio::spawn(async move { axum::serve(listener, router).await });
}

async fn receiver() -> (String, Inbox) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let inbox = Inbox::default();
    serve_receiver(listener, inbox.clone());
    (url, inbox)
}

fn fast_webhooks() -> WebhookConfig {
    WebhookConfig {
        allow_private: true,
        poll: Duration::from_millis(50),
        timeout: Duration::from_secs(2),
        first_retry: Duration::from_millis(150),
        max_retry: Duration::from_millis(600),
        ..WebhookConfig::default()
    }
}

async fn app_with_webhooks(engine: EngineConfig) -> TestApp {
    spawn_app_with(Options {
        worker: true,
        engine,
        webhooks: fast_webhooks(),
        ..Options::default()
    })
    .await
}

async fn post(app: &TestApp, key: &str, path: &str, body: Value) -> (u16, Value) {
    let response = app
        .http
        .post(format!("{}{path}", app.url))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn register(app: &TestApp, key: &str, body: Value) -> (String, String) {
    let (status, created) = post(app, key, "/external/webhooks", body).await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (created["id"].as_str().unwrap().to_string(), secret)
}

async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn log_of(app: &TestApp, key: &str, endpoint: &str) -> Vec<Value> {
    let (status, body) = app
        .get(key, &format!("/external/webhooks/{endpoint}/deliveries"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().unwrap().clone()
}

fn body_json(delivery: &(HeaderMap, Bytes)) -> Value {
    serde_json::from_slice(&delivery.1).unwrap()
}

#[tokio::test]
async fn a_finished_task_is_delivered_once_signed_with_the_task_as_get_shows_it() {
    let app = app_with_webhooks(EngineConfig::default()).await;
    let (url, inbox) = receiver().await;
    let (_, key) = app.account(1_000).await;
    let (endpoint, secret) = register(&app, &key, json!({"url": url})).await;
    let (status, listed) = app.get(&key, "/external/webhooks").await;
    assert_eq!(status, 200);
    assert_eq!(listed["items"][0]["id"], endpoint.as_str());
    assert!(
        listed["items"][0].get("secret").is_none(),
        "shown once only"
    );

    let (status, created) = app.unlock_ids(&key, &["789", "790", "791"]).await;
    assert_eq!(status, 201, "{created}");
    let task_id = created["task_id"].as_str().unwrap();
    eventually("the delivery", Duration::from_secs(20), || async {
        !inbox.deliveries().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let got = inbox.deliveries();
    assert_eq!(got.len(), 1, "a 2xx ends the delivery");
    let (headers, body) = &got[0];
    verify_webhook(&secret, headers, body, TOLERANCE).expect("signed with the secret");
    assert_eq!(
        verify_webhook(&secret, headers, b"{\"forged\":true}", TOLERANCE),
        Err(WebhookError::SignatureMismatch)
    );
    let payload = body_json(&got[0]);
    assert_eq!(payload["type"], "unlock_task.completed");
    assert_eq!(payload["data"], app.task(&key, task_id).await);
    let log = log_of(&app, &key, &endpoint).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["id"], headers["webhook-id"].to_str().unwrap());
    assert_eq!(log[0]["status"], "delivered");
    assert_eq!(log[0]["attempts"], 1);
    assert_eq!(log[0]["lastStatusCode"], 200);
    assert_eq!(log[0]["taskId"], task_id);
    let metrics = app
        .http
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("unlockd_webhook_attempts_total{outcome=\"delivered\"} 1"),
        "{metrics}"
    );

    // Redelivery on request: the same message (same webhook-id) once more.
    let path = format!(
        "/external/webhooks/{endpoint}/deliveries/{}/redeliver",
        log[0]["id"].as_str().unwrap()
    );
    let (status, body) = post(&app, &key, &path, json!({})).await;
    assert_eq!(status, 202, "{body}");
    eventually("the redelivery", Duration::from_secs(10), || async {
        inbox.deliveries().len() == 2
    })
    .await;
    let again = &inbox.deliveries()[1];
    assert_eq!(again.0["webhook-id"], headers["webhook-id"]);
    verify_webhook(&secret, &again.0, &again.1, TOLERANCE).unwrap();
    app.assert_ledger_ok().await;

    // Upkeep prunes finished deliveries past the retention, like finished tasks.
    eventually("delivered again", Duration::from_secs(10), || async {
        log_of(&app, &key, &endpoint).await[0]["status"] == "delivered"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let upkeep = MaintenanceConfig {
        retention: Duration::ZERO,
        ..MaintenanceConfig::default()
    };
    let report = maintenance::run_once(&app.store, &app.clock, &upkeep)
        .await
        .unwrap();
    assert_eq!(report.webhook_deliveries_pruned, 1);
    assert_eq!(log_of(&app, &key, &endpoint).await, Vec::<Value>::new());
}

#[tokio::test]
async fn a_failed_task_is_delivered_as_unlock_task_failed() {
    // Every claim past the first attempt aborts: the task fails and its holds go back.
    let app = app_with_webhooks(EngineConfig {
        max_attempts: 0,
        ..EngineConfig::default()
    })
    .await;
    let (url, inbox) = receiver().await;
    let (_, key) = app.account(1_000).await;
    let (_, secret) = register(
        &app,
        &key,
        json!({"url": url, "events": ["unlock_task.failed"]}),
    )
    .await;
    let (status, created) = app.unlock_ids(&key, &["789"]).await;
    assert_eq!(status, 201, "{created}");
    eventually("the failed event", Duration::from_secs(20), || async {
        !inbox.deliveries().is_empty()
    })
    .await;
    let got = inbox.deliveries();
    verify_webhook(&secret, &got[0].0, &got[0].1, TOLERANCE).unwrap();
    let payload = body_json(&got[0]);
    assert_eq!(payload["type"], "unlock_task.failed");
    assert_eq!(payload["data"]["taskStatus"], "failed");
    assert_eq!(payload["data"]["taskId"], created["task_id"]);
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn a_receiver_down_for_a_while_gets_the_delivery_once_when_it_is_back() {
    let app = app_with_webhooks(EngineConfig::default()).await;
    // A port nobody listens on yet.
    let reserved = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = reserved.local_addr().unwrap();
    drop(reserved);
    let (_, key) = app.account(1_000).await;
    let (endpoint, secret) =
        register(&app, &key, json!({"url": format!("http://{address}/hook")})).await;
    app.unlock_ids(&key, &["789"]).await;
    eventually("three failed attempts", Duration::from_secs(20), || async {
        let log = log_of(&app, &key, &endpoint).await;
        log.len() == 1 && log[0]["attempts"].as_i64().unwrap() >= 3
    })
    .await;
    let log = log_of(&app, &key, &endpoint).await;
    assert_eq!(log[0]["status"], "pending");
    assert!(
        log[0]["lastError"].as_str().unwrap().contains("sending"),
        "{log:?}"
    );
    let inbox = Inbox::default();
    serve_receiver(
        tokio::net::TcpListener::bind(address).await.unwrap(),
        inbox.clone(),
    );
    eventually(
        "the delivery after retries",
        Duration::from_secs(20),
        || async { !inbox.deliveries().is_empty() },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = inbox.deliveries();
    assert_eq!(got.len(), 1, "delivered once");
    verify_webhook(&secret, &got[0].0, &got[0].1, TOLERANCE).unwrap();
    let log = log_of(&app, &key, &endpoint).await;
    assert_eq!(log[0]["status"], "delivered");
    assert!(log[0]["attempts"].as_i64().unwrap() >= 4, "{log:?}");
}

#[tokio::test]
async fn a_receiver_answering_errors_is_retried_until_it_answers_2xx() {
    let app = app_with_webhooks(EngineConfig::default()).await;
    let (url, inbox) = receiver().await;
    inbox.status.store(503, Ordering::SeqCst);
    let (_, key) = app.account(1_000).await;
    let (endpoint, _) = register(&app, &key, json!({"url": url})).await;
    app.unlock_ids(&key, &["789"]).await;
    eventually("two refused attempts", Duration::from_secs(20), || async {
        inbox.deliveries().len() >= 2
    })
    .await;
    inbox.status.store(204, Ordering::SeqCst);
    eventually("delivered", Duration::from_secs(20), || async {
        log_of(&app, &key, &endpoint).await[0]["status"] == "delivered"
    })
    .await;
    let count = inbox.deliveries().len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(inbox.deliveries().len(), count, "nothing after the 2xx");
    let log = log_of(&app, &key, &endpoint).await;
    assert_eq!(log[0]["attempts"].as_i64().unwrap(), count as i64);
    assert_eq!(log[0]["lastStatusCode"], 204);
}

#[tokio::test]
async fn deliveries_survive_a_restart_of_unlockd_mid_retry() {
    let app = app_with_webhooks(EngineConfig::default()).await;
    let reserved = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = reserved.local_addr().unwrap();
    drop(reserved);
    let (_, key) = app.account(1_000).await;
    let (endpoint, secret) =
        register(&app, &key, json!({"url": format!("http://{address}/hook")})).await;
    app.unlock_ids(&key, &["789", "790"]).await;
    eventually("a failed attempt", Duration::from_secs(20), || async {
        let log = log_of(&app, &key, &endpoint).await;
        log.len() == 1 && log[0]["attempts"].as_i64().unwrap() >= 1
    })
    .await;
    // Stop the first instance (API, worker, sender) and start another on the database.
    let TestApp {
        server,
        dir,
        clock,
        http,
        ..
    } = app;
    server.stop().await.unwrap();
    let store = unlockd::store::connect(&dir.url, Durability::Normal, clock.clone())
        .await
        .unwrap();
    let second = app::start(
        ServerConfig {
            listen: "127.0.0.1:0".into(),
            run_worker: true,
            key_rate_limit: 0,
            ip_rate_limit: 0,
            webhooks: fast_webhooks(),
            ..ServerConfig::default()
        },
        store.clone(),
        clock,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let inbox = Inbox::default();
    serve_receiver(
        tokio::net::TcpListener::bind(address).await.unwrap(),
        inbox.clone(),
    );
    eventually(
        "the delivery after the restart",
        Duration::from_secs(30),
        || async { !inbox.deliveries().is_empty() },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = inbox.deliveries();
    assert_eq!(got.len(), 1, "delivered once");
    verify_webhook(&secret, &got[0].0, &got[0].1, TOLERANCE).unwrap();
    let response = http
        .get(format!(
            "{}/external/webhooks/{endpoint}/deliveries",
            second.url()
        ))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let log: Value = response.json().await.unwrap();
    assert_eq!(log["items"][0]["status"], "delivered");
    assert!(log["items"][0]["attempts"].as_i64().unwrap() >= 2);
    second.stop().await.unwrap();
    assert_ledger_ok(&store).await;
}

#[tokio::test]
async fn rotation_signs_with_both_secrets_during_the_overlap_then_the_new_one_only() {
    let app = app_with_webhooks(EngineConfig::default()).await;
    let (url, inbox) = receiver().await;
    let (_, key) = app.account(1_000).await;
    let (endpoint, old) = register(&app, &key, json!({"url": url})).await;
    let rotate = format!("/external/webhooks/{endpoint}/rotate-secret");
    let (status, rotated) = post(&app, &key, &rotate, json!({"overlapSeconds": 3600})).await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert!(rotated["previousSecretExpiresAt"].is_string(), "{rotated}");
    app.unlock_ids(&key, &["789"]).await;
    eventually("the first delivery", Duration::from_secs(20), || async {
        inbox.deliveries().len() == 1
    })
    .await;
    let first = &inbox.deliveries()[0];
    let signature = first.0["webhook-signature"].to_str().unwrap().to_string();
    assert_eq!(signature.split(' ').count(), 2, "{signature}");
    verify_webhook(&new, &first.0, &first.1, TOLERANCE).expect("new secret");
    verify_webhook(&old, &first.0, &first.1, TOLERANCE).expect("old secret, overlapping");

    let (status, _) = post(&app, &key, &rotate, json!({"overlapSeconds": 0})).await;
    assert_eq!(status, 200);
    let (_, listed) = app.get(&key, "/external/webhooks").await;
    assert!(listed["items"][0].get("previousSecretExpiresAt").is_none());
    let (status, bad) = post(&app, &key, &rotate, json!({"overlapSeconds": -1})).await;
    assert_eq!(status, 400, "{bad}");
    assert!(bad["message"].as_str().unwrap().contains("overlapSeconds"));
}

#[tokio::test]
async fn a_rotation_without_overlap_stops_the_old_secret_at_once() {
    let app = app_with_webhooks(EngineConfig::default()).await;
    let (url, inbox) = receiver().await;
    let (_, key) = app.account(1_000).await;
    let (endpoint, old) = register(&app, &key, json!({"url": url})).await;
    let rotate = format!("/external/webhooks/{endpoint}/rotate-secret");
    let (status, rotated) = post(&app, &key, &rotate, json!({"overlapSeconds": 0})).await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_string();
    app.unlock_ids(&key, &["789"]).await;
    eventually("the delivery", Duration::from_secs(20), || async {
        inbox.deliveries().len() == 1
    })
    .await;
    let got = &inbox.deliveries()[0];
    verify_webhook(&new, &got.0, &got.1, TOLERANCE).unwrap();
    assert_eq!(
        verify_webhook(&old, &got.0, &got.1, TOLERANCE),
        Err(WebhookError::SignatureMismatch)
    );
}

#[tokio::test]
async fn private_targets_are_refused_at_registration_and_at_send_time() {
    // The operator did not allow private targets here.
    let app = spawn_app_with(Options {
        worker: true,
        webhooks: WebhookConfig {
            allow_private: false,
            ..fast_webhooks()
        },
        ..Options::default()
    })
    .await;
    let (url, inbox) = receiver().await;
    let (account, key) = app.account(1_000).await;
    for target in [
        url.as_str(),
        "http://localhost:9/hook",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:9/hook",
        "http://0.0.0.0:9/",
        "ftp://example.com/hook",
        "not a url",
    ] {
        let (status, body) = post(&app, &key, "/external/webhooks", json!({"url": target})).await;
        assert_eq!(status, 400, "{target}: {body}");
        assert!(
            body["message"].as_str().unwrap().starts_with("url"),
            "{body}"
        );
    }
    let (status, body) = post(
        &app,
        &key,
        "/external/webhooks",
        json!({"url": "http://93.184.216.34/", "events": ["nope"]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("events"));
    let (_, listed) = app.get(&key, "/external/webhooks").await;
    assert_eq!(listed["items"], json!([]), "nothing was registered");

    // An endpoint that points at a private address by other means is still not sent to:
    // the check runs again after resolution at every attempt.
    app.raw_execute(&format!(
        "INSERT INTO webhook_endpoints (id, account_id, url, events, secret, created_at) \
         VALUES ('wh_sneaky', '{account}', '{url}', 'unlock_task.completed', \
                 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 0)"
    ))
    .await
    .unwrap();
    app.unlock_ids(&key, &["789"]).await;
    eventually("a refused attempt", Duration::from_secs(20), || async {
        let log = log_of(&app, &key, "wh_sneaky").await;
        log.len() == 1 && log[0]["attempts"].as_i64().unwrap() >= 1
    })
    .await;
    let log = log_of(&app, &key, "wh_sneaky").await;
    assert!(
        log[0]["lastError"].as_str().unwrap().contains("127.0.0.1"),
        "{log:?}"
    );
    assert!(
        inbox.deliveries().is_empty(),
        "nothing reached the private address"
    );
}

#[tokio::test]
async fn an_account_sees_and_touches_only_its_own_endpoints() {
    let app = app_with_webhooks(EngineConfig::default()).await;
    let (url, inbox) = receiver().await;
    let (_, key) = app.account(1_000).await;
    let (_, other) = app.account(1_000).await;
    let (endpoint, _) = register(&app, &key, json!({"url": url})).await;
    app.unlock_ids(&key, &["789"]).await;
    eventually("the delivery", Duration::from_secs(20), || async {
        inbox.deliveries().len() == 1
    })
    .await;
    let delivery = log_of(&app, &key, &endpoint).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let (status, listed) = app.get(&other, "/external/webhooks").await;
    assert_eq!((status, listed["items"].clone()), (200, json!([])));
    let (status, body) = app
        .get(&other, &format!("/external/webhooks/{endpoint}/deliveries"))
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["errorKey"], "WEBHOOK_NOT_FOUND");
    let redeliver = format!("/external/webhooks/{endpoint}/deliveries/{delivery}/redeliver");
    let (status, _) = post(&app, &other, &redeliver, json!({})).await;
    assert_eq!(status, 404);
    let rotate = format!("/external/webhooks/{endpoint}/rotate-secret");
    let (status, _) = post(&app, &other, &rotate, json!({})).await;
    assert_eq!(status, 404);
    let delete = |k: &str| {
        app.http
            .delete(format!("{}/external/webhooks/{endpoint}", app.url))
            .bearer_auth(k.to_string())
            .send()
    };
    assert_eq!(delete(&other).await.unwrap().status().as_u16(), 404);
    assert_eq!(delete(&key).await.unwrap().status().as_u16(), 204);
    assert_eq!(delete(&key).await.unwrap().status().as_u16(), 404);
    // Another account's task events never go to this account's endpoints, and a deleted
    // endpoint gets nothing more.
    app.unlock_ids(&other, &["790"]).await;
    app.unlock_ids(&key, &["790"]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(inbox.deliveries().len(), 1);
}

#[tokio::test]
async fn credits_low_fires_once_when_the_balance_crosses_the_threshold() {
    let app = app_with_webhooks(EngineConfig::default()).await;
    let (url, inbox) = receiver().await;
    let (_, key) = app.account(100).await;
    let (status, body) = post(
        &app,
        &key,
        "/external/webhooks",
        json!({"url": url, "events": ["credits.low"]}),
    )
    .await;
    assert_eq!(status, 400, "a threshold is required: {body}");
    let (_, secret) = register(
        &app,
        &key,
        json!({"url": url, "events": ["credits.low"], "lowBalanceThreshold": 50}),
    )
    .await;
    // 100 - 2 x 15 = 70: over the threshold, nothing.
    let (_, first) = app.unlock_ids(&key, &["789", "790"]).await;
    app.task(&key, first["task_id"].as_str().unwrap()).await;
    eventually("the first task done", Duration::from_secs(20), || async {
        app.task(&key, first["task_id"].as_str().unwrap()).await["taskStatus"] == "completed"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(inbox.deliveries().is_empty());
    // 70 - 3 x 15 = 25: under it, once.
    app.unlock_ids(&key, &["100", "101", "102"]).await;
    eventually("credits.low", Duration::from_secs(20), || async {
        !inbox.deliveries().is_empty()
    })
    .await;
    // 25 - 15 = 10: still under, no second event.
    let (_, last) = app.unlock_ids(&key, &["103"]).await;
    eventually("the last task done", Duration::from_secs(20), || async {
        app.task(&key, last["task_id"].as_str().unwrap()).await["taskStatus"] == "completed"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let got = inbox.deliveries();
    assert_eq!(got.len(), 1, "once per crossing");
    verify_webhook(&secret, &got[0].0, &got[0].1, TOLERANCE).unwrap();
    let payload = body_json(&got[0]);
    assert_eq!(payload["type"], "credits.low");
    assert_eq!(payload["data"]["threshold"], 50);
    assert!(
        payload["data"]["availableCredits"].as_i64().unwrap() < 50,
        "{payload}"
    );
    app.assert_ledger_ok().await;
}

/// A create's hold lowers the available balance without any settlement: the sender's
/// sweep fires `credits.low` for it, once, and a grant that lifts the balance re-arms it.
#[tokio::test]
async fn credits_low_fires_on_a_hold_before_anything_settles() {
    use unlockd::domain::ledger::BucketKind;
    use unlockd::store::integrations::NewWebhook;
    use unlockd::store::{CreateResult, Grant, NewUnlock};

    let (store, db) = common::fresh_store(Arc::new(unlockd::clock::SystemClock)).await;
    common::seed_catalog(&store).await;
    let account = store.create_account("low").await.unwrap().id;
    let grant = |amount| Grant {
        account_id: account.clone(),
        kind: BucketKind::Gift,
        amount,
        expires_at: None,
    };
    store.grant_credits(&grant(100)).await.unwrap();
    store
        .integrations()
        .create_webhook(&NewWebhook {
            account_id: account.clone(),
            url: "https://hooks.example.com/low".into(),
            events: vec!["credits.low".into()],
            secret: "whsec_dGVzdA==".into(),
            low_balance_threshold: Some(50),
        })
        .await
        .unwrap();
    let sweep = || async { store.integrations().sweep_low_balances().await.unwrap() };
    assert_eq!(sweep().await, 0, "100 is not under 50");

    // 100 - 4 x 15 held = 40 available: under the threshold, and nothing has settled.
    let created = store
        .create_unlock_task(&NewUnlock {
            account_id: account.clone(),
            kind: unlockd::domain::ContactKind::Email,
            event_ref: "139574".into(),
            personnel_ids: ["789", "790", "100", "101"].map(String::from).to_vec(),
            call_source: unlockd_api::CallSource::Api,
            price: 15,
        })
        .await
        .unwrap();
    assert!(matches!(
        created,
        CreateResult::Decided {
            task_id: Some(_),
            ..
        }
    ));
    assert_eq!(sweep().await, 1);
    assert_eq!(sweep().await, 0, "once per crossing");
    let data = db
        .raw_scalar("SELECT data FROM webhook_deliveries WHERE event_type = 'credits.low'")
        .await
        .unwrap()
        .unwrap();
    let data: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(data, json!({"availableCredits": 40, "threshold": 50}));

    // Back over the threshold (a grant re-arms), then under again: a second event.
    store.grant_credits(&grant(20)).await.unwrap();
    assert_eq!(sweep().await, 0, "60 is not under 50");
    let again = store
        .create_unlock_task(&NewUnlock {
            account_id: account.clone(),
            kind: unlockd::domain::ContactKind::Email,
            event_ref: "139574".into(),
            personnel_ids: vec!["102".into()],
            call_source: unlockd_api::CallSource::Api,
            price: 15,
        })
        .await
        .unwrap();
    assert!(matches!(
        again,
        CreateResult::Decided {
            task_id: Some(_),
            ..
        }
    ));
    assert_eq!(sweep().await, 1);
    let count = db
        .raw_scalar(
            "SELECT CAST(COUNT(*) AS TEXT) FROM webhook_deliveries WHERE event_type = 'credits.low'",
        )
        .await
        .unwrap();
    assert_eq!(count.as_deref(), Some("2"));
    common::assert_ledger_ok(&store).await;
}

#[tokio::test]
async fn two_senders_on_one_database_never_send_a_delivery_twice() {
    let app = app_with_webhooks(EngineConfig::default()).await;
    let store = unlockd::store::connect(&app.dir.url, Durability::Normal, app.clock.clone())
        .await
        .unwrap();
    let second = app::start(
        ServerConfig {
            listen: "127.0.0.1:0".into(),
            run_worker: true,
            key_rate_limit: 0,
            ip_rate_limit: 0,
            webhooks: fast_webhooks(),
            ..ServerConfig::default()
        },
        store,
        app.clock.clone(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let (url, inbox) = receiver().await;
    let (_, key) = app.account(10_000).await;
    for _ in 0..3 {
        register(&app, &key, json!({"url": url})).await;
    }
    let people: Vec<String> = (100..112).map(|i| i.to_string()).collect();
    for person in &people {
        let (status, body) = app.unlock_ids(&key, &[person.as_str()]).await;
        assert_eq!(status, 201, "{body}");
    }
    let expected = people.len() * 3;
    eventually("every delivery", Duration::from_secs(30), || async {
        inbox.deliveries().len() >= expected
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let got = inbox.deliveries();
    let mut ids: Vec<String> = got
        .iter()
        .map(|(h, _)| h["webhook-id"].to_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), expected, "one id per (endpoint, task)");
    assert_eq!(got.len(), expected, "no delivery was sent twice");
    second.stop().await.unwrap();
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn operators_manage_endpoints_with_the_cli() {
    let app = spawn_app().await;
    let (account, key) = app.account(100).await;
    let run = |args: &[&str], allow: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_unlockd"));
        command
            .env("UNLOCKD_DATABASE_URL", &app.dir.url)
            .env("UNLOCKD_LOG", "warn")
            .env_remove("UNLOCKD_WEBHOOKS_ALLOW_PRIVATE")
            .args(args);
        if allow {
            command.env("UNLOCKD_WEBHOOKS_ALLOW_PRIVATE", "true");
        }
        command.output().expect("runs")
    };
    let create = [
        "admin",
        "webhooks",
        "create",
        "--account",
        &account,
        "--url",
        "http://127.0.0.1:9/hook",
        "--json",
    ];
    let refused = run(&create, false);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--url"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let created = run(&create, true);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let created: Value = serde_json::from_slice(&created.stdout).unwrap();
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    let id = created["id"].as_str().unwrap();

    // The customer sees what the operator registered.
    let (_, listed) = app.get(&key, "/external/webhooks").await;
    assert_eq!(listed["items"][0]["id"], id);
    let listed = run(
        &["admin", "webhooks", "list", "--account", &account, "--json"],
        false,
    );
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["id"], id);
    assert!(listed[0].get("secret").is_none());

    let deleted = run(
        &["admin", "webhooks", "delete", "--account", &account, id],
        false,
    );
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    let again = run(
        &["admin", "webhooks", "delete", "--account", &account, id],
        false,
    );
    assert!(!again.status.success());
    let (_, listed) = app.get(&key, "/external/webhooks").await;
    assert_eq!(listed["items"], json!([]));
}

/// `unlockd serve` as a child process; killed with SIGKILL when dropped.
struct ServeProcess {
    child: std::process::Child,
    url: String,
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve_process(db_url: &str, log: &std::path::Path) -> ServeProcess {
    let file = std::fs::File::create(log).unwrap();
    // Owned at once, so it is killed even if it never announces its URL.
    let mut process = ServeProcess {
        child: std::process::Command::new(env!("CARGO_BIN_EXE_unlockd"))
            .env("UNLOCKD_DATABASE_URL", db_url)
            .env("UNLOCKD_LOG", "info")
            .env("UNLOCKD_LOG_FORMAT", "json")
            .env("UNLOCKD_RATE_LIMIT_PER_MINUTE", "0")
            .env("UNLOCKD_IP_RATE_LIMIT_PER_MINUTE", "0")
            .env("UNLOCKD_WEBHOOKS_ALLOW_PRIVATE", "true")
            .env("UNLOCKD_WEBHOOK_FIRST_RETRY_MS", "200")
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn"),
        url: String::new(),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let url = text.lines().find_map(|line| {
            serde_json::from_str::<Value>(line).ok()?["fields"]["url"]
                .as_str()
                .map(str::to_string)
        });
        if let Some(url) = url {
            process.url = url;
            return process;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no url announced: {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_delivery_survives_unlockd_killed_mid_retry() {
    // The test's own app only seeds the catalog and the account; real `unlockd serve`
    // processes do the work, and the first is killed with SIGKILL between two attempts.
    let app = spawn_app().await;
    let (_, key) = app.account(1_000).await;
    let reserved = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = reserved.local_addr().unwrap();
    drop(reserved);
    let first = serve_process(&app.dir.url, &app.dir.path().join("first.log")).await;
    let send = |url: String, body: Value| app.http.post(url).bearer_auth(&key).json(&body).send();
    let created: Value = send(
        format!("{}/external/webhooks", first.url),
        json!({"url": format!("http://{address}/hook")}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let (endpoint, secret) = (
        created["id"].as_str().unwrap().to_string(),
        created["secret"].as_str().unwrap().to_string(),
    );
    let response = send(
        format!("{}/external/contacts/unlock", first.url),
        json!({"event_id": "139574", "personnel_ids": ["789", "790"]}),
    )
    .await
    .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    eventually("two failed attempts", Duration::from_secs(30), || async {
        let log = log_of(&app, &key, &endpoint).await;
        log.len() == 1 && log[0]["attempts"].as_i64().unwrap() >= 2
    })
    .await;
    drop(first);
    let inbox = Inbox::default();
    serve_receiver(
        tokio::net::TcpListener::bind(address).await.unwrap(),
        inbox.clone(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        inbox.deliveries().is_empty(),
        "nobody sends while unlockd is down"
    );
    let _second = serve_process(&app.dir.url, &app.dir.path().join("second.log")).await;
    // Killed in the middle of an attempt, the delivery's lease (40 s) must run out first.
    eventually(
        "the delivery after the restart",
        Duration::from_secs(60),
        || async { !inbox.deliveries().is_empty() },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = inbox.deliveries();
    assert_eq!(got.len(), 1, "delivered once");
    verify_webhook(&secret, &got[0].0, &got[0].1, TOLERANCE).unwrap();
    assert_eq!(body_json(&got[0])["type"], "unlock_task.completed");
    let log = log_of(&app, &key, &endpoint).await;
    assert_eq!(log[0]["status"], "delivered");
    app.assert_ledger_ok().await;
}
