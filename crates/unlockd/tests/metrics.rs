//! `/metrics`: Prometheus text with request, task and item counters and the queue gauges.

mod common;

use common::spawn_app;

async fn scrape(app: &common::TestApp) -> String {
    let response = app
        .http
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    response.text().await.unwrap()
}

fn value(text: &str, series: &str) -> i64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{series} missing in\n{text}"))
}

#[tokio::test]
async fn metrics_follow_tasks_through_the_queue() {
    let app = spawn_app().await;
    let (_, key) = app.account(1_000).await;
    let (status, _) = app.unlock_ids(&key, &["789", "790", "791"]).await;
    assert_eq!(status, 201);
    assert_eq!(
        app.get(&key, "/external/contacts/unlock-tasks/nope")
            .await
            .0,
        404
    );
    let before = scrape(&app).await;
    assert_eq!(
        value(&before, "unlockd_tasks_created_total{kind=\"email\"}"),
        1
    );
    assert_eq!(value(&before, "unlockd_live_tasks"), 1);
    assert_eq!(value(&before, "unlockd_unsettled_items"), 3);
    assert_eq!(value(&before, "unlockd_credits_held"), 45);
    assert!(value(&before, "unlockd_http_responses_total{class=\"4xx\"}") >= 1);
    app.drain().await;
    let after = scrape(&app).await;
    assert_eq!(value(&after, "unlockd_live_tasks"), 0);
    assert_eq!(value(&after, "unlockd_credits_held"), 0);
    assert_eq!(
        value(
            &after,
            "unlockd_items_worked_total{kind=\"email\",outcome=\"unlocked\"}"
        ),
        2
    );
    assert_eq!(
        value(
            &after,
            "unlockd_items_worked_total{kind=\"email\",outcome=\"failed\"}"
        ),
        1
    );
    // Latency by matched route template (never the raw path) and status.
    assert_eq!(
        value(
            &after,
            "unlockd_http_request_duration_seconds_count{method=\"GET\",route=\"/external/contacts/unlock-tasks/{task_id}\",status=\"404\"}"
        ),
        1
    );
    assert_eq!(
        value(
            &after,
            "unlockd_http_request_duration_seconds_count{method=\"POST\",route=\"/external/contacts/unlock\",status=\"201\"}"
        ),
        1
    );
    assert!(
        !after.contains("nope"),
        "a raw path made a series of its own"
    );
    // The finished task's time from create to finish.
    assert_eq!(
        value(
            &after,
            "unlockd_task_duration_seconds_count{kind=\"email\",status=\"completed\"}"
        ),
        1
    );
}

#[tokio::test]
async fn unmatched_paths_share_one_series() {
    let app = spawn_app().await;
    for path in ["/nothing/here", "/another/one", "/x"] {
        let response = app
            .http
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 404);
    }
    let text = scrape(&app).await;
    assert_eq!(
        value(
            &text,
            "unlockd_http_request_duration_seconds_count{method=\"GET\",route=\"unmatched\",status=\"404\"}"
        ),
        3
    );
}
