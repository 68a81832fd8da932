//! The example configurations for two public enrichment APIs (`examples/sources.hunter.toml`,
//! `examples/sources.peopledatalabs.toml`), run against local servers that answer with the
//! response shapes those APIs document: the same requests a deployment would send (path,
//! query, key header), and only deliverable contacts delivered and charged. The files are
//! used as shipped; only the provider's host is pointed at 127.0.0.1. Both backends.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use common::{spawn_app_with, Options, TestApp};
use serde_json::{json, Value};
use unlockd::catalog::{ExhibitorRecord, PersonRecord};
use unlockd::engine::sources::SourcesConfig;
use unlockd::engine::EngineConfig;

const HUNTER_EXAMPLE: &str = include_str!("../../../examples/sources.hunter.toml");
const PDL_EXAMPLE: &str = include_str!("../../../examples/sources.peopledatalabs.toml");
const KEY: &str = "test-key-0f9e8d7c";

/// What the local provider saw: one line per request (path and query, sorted).
#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<String>>,
}

fn seen_line(path: &str, query: &HashMap<String, String>) -> String {
    let mut pairs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    format!("{path}?{}", pairs.join("&"))
}

/// Hunter's Email Finder: 200 with `data.email` (null when nothing is found) and
/// `data.verification.status`; 401 without the key.
async fn hunter(
    State(seen): State<Arc<Seen>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    seen.requests
        .lock()
        .unwrap()
        .push(seen_line("/v2/email-finder", &query));
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(KEY) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(
                json!({"errors": [{"id": "authentication_failed", "code": 401,
                "details": "No user found for the API key supplied"}]}),
            ),
        )
            .into_response();
    }
    let first = query.get("first_name").cloned().unwrap_or_default();
    let last = query.get("last_name").cloned().unwrap_or_default();
    let domain = query.get("domain").cloned().unwrap_or_default();
    let (email, status, score) = match first.as_str() {
        "Anna" => (
            Some(format!(
                "{}.{}@{domain}",
                first.to_lowercase(),
                last.to_lowercase()
            )),
            Some("valid"),
            96,
        ),
        // A catch-all domain: Hunter guesses, but cannot verify the address.
        "Bruno" => (Some(format!("bruno@{domain}")), Some("accept_all"), 62),
        _ => (None, None, 0),
    };
    Json(json!({
        "data": {
            "first_name": first, "last_name": last, "email": email, "score": score,
            "domain": domain, "accept_all": status == Some("accept_all"), "position": null,
            "twitter": null, "linkedin_url": null, "phone_number": null, "company": null,
            "sources": [],
            "verification": {"date": email.as_ref().map(|_| "2026-11-01"), "status": status}
        },
        "meta": {"params": {"first_name": query.get("first_name"),
            "last_name": query.get("last_name"), "domain": query.get("domain")}}
    }))
    .into_response()
}

/// People Data Labs' Person Enrichment: 200 with the person under `data` (fields it lacks
/// are null), 404 when nothing matches.
async fn pdl(
    State(seen): State<Arc<Seen>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    seen.requests
        .lock()
        .unwrap()
        .push(seen_line("/v5/person/enrich", &query));
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(KEY) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(
                json!({"status": 401, "error": {"type": "authentication_error",
                "message": "Invalid API key"}}),
            ),
        )
            .into_response();
    }
    let name = query.get("name").cloned().unwrap_or_default();
    if !name.starts_with("Anna") {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"status": 404, "error": {"type": "not_found",
                "message": "No records were found matching your request"}})),
        )
            .into_response();
    }
    Json(json!({
        "status": 200,
        "likelihood": 8,
        "data": {
            "id": "qEnOZ5Oh0poWnQ1luFBfVw_0000",
            "full_name": name.to_lowercase(),
            "job_title": "head of sales",
            "job_company_name": query.get("company"),
            "work_email": "anna.berg@nordic-robotics.example",
            "mobile_phone": "+4930123456",
            "personal_emails": [],
            "phone_numbers": ["+4930123456"]
        }
    }))
    .into_response()
}

async fn start_provider() -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let app = Router::new()
        .route("/v2/email-finder", get(hunter))
        .route("/v5/person/enrich", get(pdl))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// An example file as shipped, its provider's host pointed at `local`.
fn example(text: &str, host: &str, local: &str, key_env: &str) -> SourcesConfig {
    assert!(text.contains(host), "the example calls {host}");
    let text = text.replace(host, local);
    SourcesConfig::parse("example.toml", &text, &|name| {
        (name == key_env).then(|| KEY.to_string())
    })
    .expect("the example is a valid sources file")
}

fn person(id: &str, name: &str) -> PersonRecord {
    let mut person = common::person(id, &["1001"], None);
    person.full_name = Some(name.into());
    person.company_name = Some("Nordic Robotics GmbH".into());
    person.exhibitor_id = Some("nordic".into());
    person.phone = None;
    person
}

async fn app_with(config: SourcesConfig) -> TestApp {
    let app = spawn_app_with(Options {
        engine: EngineConfig {
            sources: Some(Arc::new(config)),
            lease: Duration::from_secs(5),
            ..EngineConfig::default()
        },
        ..Options::default()
    })
    .await;
    app.store
        .import_exhibitors(
            &[ExhibitorRecord {
                id: "nordic".into(),
                event_id: "1001".into(),
                company_name: Some("Nordic Robotics GmbH".into()),
                website: Some("https://www.nordic-robotics.example/".into()),
                country: None,
            }],
            &|_| {},
        )
        .await
        .unwrap();
    app.store
        .import_personnel(
            &[
                person("h1", "Anna Berg"),
                person("h2", "Bruno Keller"),
                person("h3", "Carla Nunez"),
            ],
            &|_| {},
        )
        .await
        .unwrap();
    app
}

/// Unlocks `ids` (emails, or phones with `phone`), works the task, returns person ->
/// (status, value or error code).
async fn unlock(
    app: &TestApp,
    key: &str,
    ids: &[&str],
    phone: bool,
) -> HashMap<String, (String, String)> {
    let path = if phone { "unlock-phone" } else { "unlock" };
    let response = app
        .http
        .post(format!("{}/external/contacts/{path}", app.url))
        .bearer_auth(key)
        .json(&json!({"event_id": "139574", "personnel_ids": ids}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let created: Value = response.json().await.unwrap();
    let task_id = created["task_id"].as_str().unwrap().to_string();
    app.drain().await;
    let tasks = if phone {
        "unlock-phone-tasks"
    } else {
        "unlock-tasks"
    };
    let (status, task) = app
        .get(key, &format!("/external/contacts/{tasks}/{task_id}"))
        .await;
    assert_eq!(status, 200, "{task}");
    assert_eq!(task["taskStatus"], "completed", "{task}");
    let field = if phone { "phone" } else { "email" };
    task["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            let id = item["personnelId"].as_str().unwrap().to_string();
            let status = item["status"].as_str().unwrap().to_string();
            let detail = item[field]
                .as_str()
                .or(item["errorCode"].as_str())
                .unwrap_or_default()
                .to_string();
            (id, (status, detail))
        })
        .collect()
}

#[tokio::test]
async fn the_hunter_example_finds_verified_emails_by_domain_and_name() {
    let (url, seen) = start_provider().await;
    let config = example(
        HUNTER_EXAMPLE,
        "https://api.hunter.io",
        &url,
        "HUNTER_API_KEY",
    );
    let app = app_with(config).await;
    let (payer, key) = app.account(1_000).await;
    let items = unlock(&app, &key, &["h1", "h2", "h3"], false).await;
    assert_eq!(
        items["h1"],
        (
            "unlocked".to_string(),
            "anna.berg@nordic-robotics.example".to_string()
        )
    );
    // accept_all is not a verified address: not delivered, not charged.
    assert_eq!(items["h2"].0, "failed");
    assert_eq!(items["h2"].1, "EMAIL_NOT_FOUND");
    assert_eq!(items["h3"].1, "EMAIL_NOT_FOUND", "email: null");
    let balance = app.balance(&key).await;
    assert_eq!(balance["availableCredits"], 985, "{balance}");

    // The operator's accounting: three requests at the example's price, one found.
    let (account, _) = app.account(1).await;
    let costs = app.store.provider_costs(None, 0, i64::MAX).await.unwrap();
    assert_eq!(costs.len(), 1, "{costs:?}");
    assert_eq!(
        (costs[0].source.as_str(), costs[0].requests, costs[0].found),
        ("hunter", 3, 1)
    );
    assert_eq!(costs[0].cost_micros, 3 * 49_000);
    let paid = app
        .store
        .provider_costs(Some(&payer), 0, i64::MAX)
        .await
        .unwrap();
    assert_eq!(
        paid, costs,
        "the requests were made for the paying account's task"
    );
    let others = app
        .store
        .provider_costs(Some(&account), 0, i64::MAX)
        .await
        .unwrap();
    assert!(
        others.is_empty(),
        "another account paid nothing: {others:?}"
    );

    let mut requests = seen.requests.lock().unwrap().clone();
    requests.sort();
    assert_eq!(
        requests,
        [
            "/v2/email-finder?domain=nordic-robotics.example&first_name=Anna&last_name=Berg",
            "/v2/email-finder?domain=nordic-robotics.example&first_name=Bruno&last_name=Keller",
            "/v2/email-finder?domain=nordic-robotics.example&first_name=Carla&last_name=Nunez",
        ]
    );
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn the_people_data_labs_example_finds_emails_and_phones_and_404_is_not_found() {
    let (url, seen) = start_provider().await;
    let config = example(
        PDL_EXAMPLE,
        "https://api.peopledatalabs.com",
        &url,
        "PDL_API_KEY",
    );
    let app = app_with(config).await;
    let (_, key) = app.account(1_000).await;
    let emails = unlock(&app, &key, &["h1", "h2"], false).await;
    assert_eq!(
        emails["h1"],
        (
            "unlocked".to_string(),
            "anna.berg@nordic-robotics.example".to_string()
        )
    );
    assert_eq!(emails["h2"].1, "EMAIL_NOT_FOUND", "a 404 is not found");
    let phones = unlock(&app, &key, &["h1"], true).await;
    assert_eq!(
        phones["h1"],
        ("unlocked".to_string(), "+4930123456".to_string())
    );
    let requests = seen.requests.lock().unwrap().clone();
    assert!(
        requests.contains(
            &"/v5/person/enrich?company=Nordic Robotics GmbH&min_likelihood=6&name=Anna Berg"
                .to_string()
        ),
        "{requests:?}"
    );
    app.assert_ledger_ok().await;
}

#[test]
fn the_examples_refuse_to_start_without_their_keys() {
    for (text, key_env) in [
        (HUNTER_EXAMPLE, "HUNTER_API_KEY"),
        (PDL_EXAMPLE, "PDL_API_KEY"),
    ] {
        let Err(error) = SourcesConfig::parse("example.toml", text, &|_| None) else {
            panic!("an unset {key_env} must be an error");
        };
        assert!(error.contains(key_env), "{error}");
    }
}
