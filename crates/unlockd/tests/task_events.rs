//! The progress stream of a task (Server-Sent Events): one `item` event per settled item in
//! settlement order, one `task` event at the end, resumable with `Last-Event-ID`, and fed
//! by a worker in another app instance on the same database. SQLite, or PostgreSQL with
//! `UNLOCKD_TEST_DATABASE_URL`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use unlockd::app::{self, ServerConfig};
use unlockd::store::sqlite::Durability;

#[derive(Debug, Clone)]
struct SseEvent {
    name: String,
    id: String,
    data: Value,
}

/// Reads a whole event stream (until the server closes it) within `limit`.
async fn read_stream(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    last_event_id: Option<&str>,
    limit: Duration,
) -> (u16, Vec<SseEvent>) {
    let mut request = http.get(url).bearer_auth(key);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let mut response = request.send().await.expect("request");
    let status = response.status().as_u16();
    if status != 200 {
        return (status, Vec::new());
    }
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut text = String::new();
    let reading = async {
        while let Some(chunk) = response.chunk().await.expect("chunk") {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(limit, reading)
        .await
        .expect("the stream ends after its task event");
    let mut events = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let (mut name, mut id, mut data) = (String::new(), String::new(), String::new());
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                name = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim());
            }
        }
        if !name.is_empty() {
            events.push(SseEvent {
                name,
                id,
                data: serde_json::from_str(&data).expect("json data"),
            });
        }
    }
    (status, events)
}

async fn create_task(app: &TestApp, key: &str, ids: &[&str]) -> String {
    let (status, body) = app.unlock_ids(key, ids).await;
    assert_eq!(status, 201, "{body}");
    body["task_id"].as_str().unwrap().to_string()
}

fn events_url(app_url: &str, task_id: &str) -> String {
    format!("{app_url}/external/contacts/unlock-tasks/{task_id}/events")
}

#[tokio::test]
async fn the_stream_reports_each_settled_item_then_the_task_and_resumes() {
    let app = spawn_app().await;
    let (_, key) = app.account(1_000).await;
    let task_id = create_task(&app, &key, &["789", "790", "791"]).await;
    let url = events_url(&app.url, &task_id);
    let live = {
        let (http, url, key) = (app.http.clone(), url.clone(), key.clone());
        tokio::spawn(
            async move { read_stream(&http, &url, &key, None, Duration::from_secs(20)).await },
        )
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.drain().await;
    let (status, events) = live.await.unwrap();
    assert_eq!(status, 200);
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["item", "item", "item", "task"], "{events:#?}");
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["1", "2", "3", "4"]);
    let task = app.task(&key, &task_id).await;
    assert_eq!(
        events[3].data, task,
        "the task event is the task as GET shows it"
    );
    for event in &events[..3] {
        let person = event.data["personnelId"].as_str().unwrap();
        let shown = task["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["personnelId"] == person)
            .unwrap();
        assert_eq!(
            &event.data, shown,
            "an item event is the item as GET shows it"
        );
    }
    let failed = events
        .iter()
        .find(|e| e.data["personnelId"] == "791")
        .unwrap();
    assert_eq!(failed.data["status"], "failed");
    assert_eq!(failed.data["errorCode"], "EMAIL_NOT_FOUND");

    // Resuming after event 2 gives the rest, in the same order with the same ids.
    let (_, rest) = read_stream(&app.http, &url, &key, Some("2"), Duration::from_secs(10)).await;
    let rest_ids: Vec<&str> = rest.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(rest_ids, ["3", "4"]);
    assert_eq!(rest[0].data, events[2].data);
    // After the task event there is nothing left to send: the stream just ends.
    let (status, none) =
        read_stream(&app.http, &url, &key, Some("4"), Duration::from_secs(10)).await;
    assert_eq!((status, none.len()), (200, 0));
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn streams_are_per_account_and_refuse_bad_input() {
    let app = spawn_app().await;
    let (_, key) = app.account(1_000).await;
    let (_, other_key) = app.account(1_000).await;
    let task_id = create_task(&app, &key, &["789"]).await;
    let url = events_url(&app.url, &task_id);
    let (status, _) = read_stream(&app.http, &url, &other_key, None, Duration::from_secs(5)).await;
    assert_eq!(status, 404, "another account's task is not found");
    let phone = format!(
        "{}/external/contacts/unlock-phone-tasks/{task_id}/events",
        app.url
    );
    let (status, _) = read_stream(&app.http, &phone, &key, None, Duration::from_secs(5)).await;
    assert_eq!(status, 404, "an email task is not a phone task");
    let (status, _) = read_stream(&app.http, &url, &key, Some("x"), Duration::from_secs(5)).await;
    assert_eq!(status, 400);
    let missing = events_url(&app.url, "no-such-task");
    let (status, _) = read_stream(&app.http, &missing, &key, None, Duration::from_secs(5)).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn open_streams_are_bounded_per_key_and_outlive_the_request_time_limit() {
    let app = spawn_app_with(Options {
        http: unlockd::http::HttpLimits {
            long_polls_per_key: 1,
            request_timeout: Duration::from_millis(500),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let (_, key) = app.account(1_000).await;
    let task_id = create_task(&app, &key, &["789", "790"]).await;
    let url = events_url(&app.url, &task_id);
    let first = {
        let (http, url, key) = (app.http.clone(), url.clone(), key.clone());
        tokio::spawn(
            async move { read_stream(&http, &url, &key, None, Duration::from_secs(20)).await },
        )
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = read_stream(&app.http, &url, &key, None, Duration::from_secs(5)).await;
    assert_eq!(status, 429, "one open stream per key here");
    // Longer than the request time limit: the stream is not cut.
    tokio::time::sleep(Duration::from_millis(800)).await;
    app.drain().await;
    let (status, events) = first.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(events.len(), 3, "{events:#?}");
    assert_eq!(events[2].data["taskStatus"], "completed");
}

#[tokio::test]
async fn a_stream_sees_settlements_made_by_a_worker_in_another_instance() {
    // The streaming instance runs no worker; a second instance on the same database (its
    // own pools, its own in-process signals) does the work.
    let api = spawn_app().await;
    let (_, key) = api.account(1_000).await;
    let task_id = create_task(&api, &key, &["789", "790", "100", "101"]).await;
    let url = events_url(&api.url, &task_id);
    let live = {
        let (http, url, key) = (api.http.clone(), url.clone(), key.clone());
        tokio::spawn(
            async move { read_stream(&http, &url, &key, None, Duration::from_secs(30)).await },
        )
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let worker_store = unlockd::store::connect(&api.dir.url, Durability::Normal, api.clock.clone())
        .await
        .expect("second store");
    let shutdown = CancellationToken::new();
    let worker = app::start(
        ServerConfig {
            listen: "127.0.0.1:0".into(),
            run_worker: true,
            key_rate_limit: 0,
            ip_rate_limit: 0,
            ..ServerConfig::default()
        },
        worker_store,
        api.clock.clone(),
        shutdown.clone(),
    )
    .await
    .expect("worker instance");
    let (status, events) = live.await.unwrap();
    assert_eq!(status, 200);
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["1", "2", "3", "4", "5"], "{events:#?}");
    assert_eq!(events[4].name, "task");
    assert_eq!(events[4].data["taskStatus"], "completed");
    worker.stop().await.unwrap();
    api.assert_ledger_ok().await;
}

#[tokio::test]
async fn open_streams_end_at_shutdown_instead_of_holding_the_drain() {
    let app = spawn_app().await;
    let (_, key) = app.account(1_000).await;
    // No worker runs: the task never finishes while the stream is open.
    let task_id = create_task(&app, &key, &["789"]).await;
    let url = events_url(&app.url, &task_id);
    let live = {
        let (http, url, key) = (app.http.clone(), url.clone(), key.clone());
        tokio::spawn(
            async move { read_stream(&http, &url, &key, None, Duration::from_secs(10)).await },
        )
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), app.server.stop())
        .await
        .expect("shutdown is not held by the stream")
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let (status, events) = live.await.unwrap();
    assert_eq!((status, events.len()), (200, 0), "{events:?}");
}
