//! The email-unlock contract (SPEC §2.1, §2.2, §2.4, §1), black-box over HTTP.

mod common;

use std::time::{Duration, Instant};

use common::{assert_envelope, spawn_app, spawn_app_with, Options};
use serde_json::{json, Value};

fn ids(body: &Value, field: &str) -> Vec<String> {
    body[field]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_documented_example_works_verbatim_and_charges_15_per_email() {
    let app = spawn_app().await;
    let (_, key) = app.account(10_000).await;
    // The seed's request, byte for byte but for the host.
    let response = app
        .http
        .post(format!("{}/external/contacts/unlock", app.url))
        .header("Authorization", format!("Bearer {key}"))
        .header("Content-Type", "application/json")
        .header("x-call-source", "api")
        .body(r#"{"event_id":"139574","personnel_ids":["789","790"]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "accepted");
    let task_id = body["task_id"].as_str().unwrap().to_string();
    assert_eq!(body["job_id"], body["task_id"]);
    assert!(body.get("skipped_personnel_ids").is_none(), "{body}");
    assert_eq!(body.as_object().unwrap().len(), 3, "{body}");

    let pending = app.task(&key, &task_id).await;
    assert_eq!(pending["taskId"], task_id.as_str());
    assert_eq!(pending["taskStatus"], "pending");
    assert_eq!(pending["items"][0]["personnelId"], "789");
    assert_eq!(pending["items"][1]["personnelId"], "790");
    assert!(pending["items"][0].get("email").is_none());
    assert_eq!(
        pending["credits"],
        json!({"held": 30, "charged": 0, "released": 0})
    );
    let held = app.balance(&key).await;
    assert_eq!(
        (held["totalBalance"].as_i64(), held["heldCredits"].as_i64()),
        (Some(9_970), Some(30))
    );

    app.drain().await;
    let done = app.task(&key, &task_id).await;
    assert_eq!(done["taskStatus"], "completed");
    assert_eq!(done["items"][0]["status"], "unlocked");
    assert_eq!(done["items"][0]["email"], "jane.doe@acme.example");
    assert_eq!(done["items"][1]["email"], "john.roe@acme.example");
    assert_eq!(done["items"][0]["charged"], 15);
    assert_eq!(
        done["summary"],
        json!({"total": 2, "pending": 0, "processing": 0, "unlocked": 2, "failed": 0})
    );
    assert_eq!(
        done["credits"],
        json!({"held": 0, "charged": 30, "released": 0})
    );
    assert_eq!(done["eventId"], "139574");
    assert_eq!(done["callSource"], "api");
    assert!(done["completedAt"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));

    let balance = app.balance(&key).await;
    assert_eq!(balance["giftAmount"], 10_000);
    assert_eq!(balance["totalBalance"], 9_970);
    assert_eq!(balance["giftBalance"], 9_970);
    assert_eq!(balance["heldCredits"], 0);
    assert_eq!(balance["availableCredits"], 9_970);
    assert_eq!(balance["subscriptionAmount"], 0);
    assert_eq!(balance["resetAt"], Value::Null);
    assert_eq!(balance["addonExpireAt"], Value::Null);

    // Unlocked people are free forever after: nothing to charge, no task.
    let (status, again) = app.unlock_ids(&key, &["789", "790"]).await;
    assert_eq!(status, 201);
    assert_eq!(again["status"], "success");
    assert!(again.get("task_id").is_none());
    assert_eq!(ids(&again, "skipped_personnel_ids"), ["789", "790"]);
    assert_eq!(
        ids(&again["skipped_detail"], "already_unlocked_personnel_ids"),
        ["789", "790"]
    );
    assert_eq!(app.balance(&key).await["totalBalance"], 9_970);
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn only_delivered_emails_are_charged() {
    let app = spawn_app().await;
    let (_, key) = app.account(100).await;
    let (status, body) = app.unlock_ids(&key, &["789", "791"]).await;
    assert_eq!(status, 201, "{body}");
    app.drain().await;
    let task = app.task(&key, body["task_id"].as_str().unwrap()).await;
    assert_eq!(
        task["taskStatus"], "completed",
        "completed even with a failed item"
    );
    assert_eq!(task["items"][1]["status"], "failed");
    assert_eq!(task["items"][1]["errorCode"], "EMAIL_NOT_FOUND");
    assert!(task["items"][1].get("email").is_none());
    assert_eq!(task["items"][1]["charged"], 0);
    assert_eq!(
        task["credits"],
        json!({"held": 0, "charged": 15, "released": 15})
    );
    assert_eq!(app.balance(&key).await["totalBalance"], 85);
    app.assert_ledger_ok().await;

    // A failed person stays chargeable: a later attempt is a new task.
    let (status, retry) = app.unlock_ids(&key, &["791"]).await;
    assert_eq!((status, retry["status"].as_str()), (201, Some("accepted")));
}

#[tokio::test]
async fn every_class_is_skipped_in_request_order_and_duplicates_collapse() {
    let app = spawn_app().await;
    let (_, key) = app.account(1_000).await;
    let (_, first) = app.unlock_ids(&key, &["790"]).await;
    app.drain().await;
    let (_, in_flight) = app.unlock_ids(&key, &["100"]).await;
    let long = "9".repeat(65);
    let (status, body) = app
        .unlock_ids(
            &key,
            &[
                "nope", "789", "800", "bad id", "", "789", "790", "100", &long, "101",
            ],
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "accepted");
    assert_ne!(body["task_id"], first["task_id"]);
    assert_eq!(
        ids(&body, "skipped_personnel_ids"),
        ["nope", "800", "bad id", "", "790", "100", long.as_str()]
    );
    let detail = &body["skipped_detail"];
    assert_eq!(
        ids(detail, "invalid_personnel_ids"),
        ["bad id", "", long.as_str()]
    );
    assert_eq!(ids(detail, "missing_personnel_ids"), ["nope"]);
    assert_eq!(ids(detail, "unlinked_personnel_ids"), ["800"]);
    assert_eq!(ids(detail, "already_unlocked_personnel_ids"), ["790"]);
    assert_eq!(ids(detail, "unlocking_personnel_ids"), ["100"]);
    let task = app.task(&key, body["task_id"].as_str().unwrap()).await;
    let people: Vec<&str> = task["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["personnelId"].as_str().unwrap())
        .collect();
    assert_eq!(
        people,
        ["789", "101"],
        "duplicates removed, first occurrence wins"
    );
    assert_eq!(task["credits"]["held"], 30);
    assert!(in_flight["task_id"].is_string());
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn a_person_in_a_live_task_is_409_and_named_by_task() {
    let app = spawn_app().await;
    let (_, key) = app.account(1_000).await;
    let (_, first) = app.unlock_ids(&key, &["789"]).await;
    let task_id = first["task_id"].as_str().unwrap();
    let (status, body) = app.unlock_ids(&key, &["789"]).await;
    assert_envelope(status, &body, "UNLOCK_IN_PROGRESS", &["taskIds"]);
    assert_eq!(status, 409);
    assert_eq!(body["taskIds"], json!([task_id]));
    // With something chargeable left, the in-flight ids are skipped instead.
    let (status, body) = app.unlock_ids(&key, &["789", "790"]).await;
    assert_eq!(status, 201);
    assert_eq!(
        ids(&body["skipped_detail"], "unlocking_personnel_ids"),
        ["789"]
    );
    app.drain().await;
    // Once settled, the guard is gone: the person is simply already unlocked.
    let (status, body) = app.unlock_ids(&key, &["789"]).await;
    assert_eq!((status, body["status"].as_str()), (201, Some("success")));
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn unknown_event_and_unknown_people_are_404() {
    let app = spawn_app().await;
    let (_, key) = app.account(1_000).await;
    let (status, body) = app
        .unlock(
            &key,
            json!({"event_id": "does-not-exist", "personnel_ids": ["789"]}),
        )
        .await;
    assert_eq!(status, 404);
    assert_envelope(status, &body, "EVENT_NOT_FOUND", &[]);
    let (status, body) = app.unlock_ids(&key, &["nope", "bad id"]).await;
    assert_eq!(status, 404);
    assert_envelope(status, &body, "PERSONNEL_NOT_FOUND", &[]);
    // The internal id works as well as the public alias.
    let (status, body) = app
        .unlock(&key, json!({"event_id": "1001", "personnel_ids": ["789"]}))
        .await;
    assert_eq!((status, body["status"].as_str()), (201, Some("accepted")));
    // Only unlinked people: nothing to do, but not "not found".
    let (status, body) = app.unlock_ids(&key, &["800"]).await;
    assert_eq!((status, body["status"].as_str()), (201, Some("success")));
    assert_eq!(
        ids(&body["skipped_detail"], "unlinked_personnel_ids"),
        ["800"]
    );
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn insufficient_credits_is_402_with_amounts_and_creates_nothing() {
    let app = spawn_app().await;
    for credits in [0, 29] {
        let (_, key) = app.account(credits).await;
        let (status, body) = app.unlock_ids(&key, &["789", "790"]).await;
        assert_eq!(status, 402);
        assert_envelope(
            status,
            &body,
            "INSUFFICIENT_CREDITS",
            &["availableCredits", "requiredCredits"],
        );
        assert_eq!(body["requiredCredits"], 30);
        assert_eq!(body["availableCredits"], credits);
        assert!(body["message"].as_str().unwrap().contains("30"));
        let balance = app.balance(&key).await;
        assert_eq!(
            (
                balance["totalBalance"].as_i64(),
                balance["heldCredits"].as_i64()
            ),
            (Some(credits), Some(0))
        );
        // Nothing was created: the same people can be unlocked once credits arrive.
        assert_eq!(app.unlock_ids(&key, &["789", "790"]).await.0, 402);
    }
    let (_, key) = app.account(30).await;
    assert_eq!(
        app.unlock_ids(&key, &["789", "790"]).await.0,
        201,
        "exactly enough"
    );
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn bad_input_is_400_naming_the_field_and_changes_nothing() {
    let app = spawn_app().await;
    let (_, key) = app.account(1_000).await;
    let hundred_one: Vec<String> = (0..101).map(|i| i.to_string()).collect();
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (b"{".to_vec(), "VALIDATION_ERROR", "body"),
        (b"".to_vec(), "VALIDATION_ERROR", "body"),
        (b"[1,2]".to_vec(), "VALIDATION_ERROR", "body"),
        (
            b"{\"event_id\":\"139574\"}".to_vec(),
            "VALIDATION_ERROR",
            "personnel_ids",
        ),
        (
            b"{\"personnel_ids\":[\"789\"]}".to_vec(),
            "VALIDATION_ERROR",
            "event_id",
        ),
        (
            b"{\"event_id\":139574,\"personnel_ids\":[\"789\"]}".to_vec(),
            "VALIDATION_ERROR",
            "event_id",
        ),
        (
            b"{\"event_id\":\"\",\"personnel_ids\":[\"789\"]}".to_vec(),
            "VALIDATION_ERROR",
            "event_id",
        ),
        (
            json!({"event_id": "x".repeat(101), "personnel_ids": ["789"]})
                .to_string()
                .into_bytes(),
            "VALIDATION_ERROR",
            "event_id",
        ),
        (
            b"{\"event_id\":\"139574\",\"personnel_ids\":[]}".to_vec(),
            "VALIDATION_ERROR",
            "personnel_ids",
        ),
        (
            b"{\"event_id\":\"139574\",\"personnel_ids\":\"789\"}".to_vec(),
            "VALIDATION_ERROR",
            "personnel_ids",
        ),
        (
            b"{\"event_id\":\"139574\",\"personnel_ids\":[\"789\",790]}".to_vec(),
            "VALIDATION_ERROR",
            "personnel_ids[1]",
        ),
        (
            json!({"event_id": "139574", "personnel_ids": hundred_one})
                .to_string()
                .into_bytes(),
            "TOO_MANY_PERSONNEL_IDS",
            "personnel_ids",
        ),
        (
            b"{\"event_id\":\"139\xff574\",\"personnel_ids\":[\"789\"]}".to_vec(),
            "VALIDATION_ERROR",
            "body",
        ),
    ];
    for (raw, key_name, field) in cases {
        let response = app
            .http
            .post(format!("{}/external/contacts/unlock", app.url))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(raw.clone())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 400, "{}: {body}", String::from_utf8_lossy(&raw));
        assert_envelope(status, &body, key_name, &[]);
        assert!(
            body["message"].as_str().unwrap().contains(field),
            "{field}: {body}"
        );
    }
    let balance = app.balance(&key).await;
    assert_eq!(
        (
            balance["totalBalance"].as_i64(),
            balance["heldCredits"].as_i64()
        ),
        (Some(1_000), Some(0))
    );
    assert!(
        !app.server.engine.run_once().await.unwrap(),
        "no task was created"
    );
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn auth_failures_are_401_and_the_scheme_is_case_insensitive() {
    let app = spawn_app().await;
    let (account, key) = app.account(1_000).await;
    let url = format!("{}/external/credits/balance", app.url);
    let unknown = unlockd::domain::keys::generate(unlockd::domain::keys::KeyPrefix::Sk).secret;
    let attempts: Vec<Option<String>> = vec![
        None,
        Some(key.clone()),
        Some(format!("Basic {key}")),
        Some("Bearer".into()),
        Some("Bearer not-a-key".into()),
        Some(format!("Bearer {}", key.to_uppercase())),
        Some(format!("Bearer {unknown}")),
    ];
    for header in attempts {
        let mut request = app.http.get(&url);
        if let Some(h) = &header {
            request = request.header("authorization", h);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 401, "{header:?}");
        assert_envelope(status, &body, "INVALID_API_KEY", &[]);
    }
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let response = app
            .http
            .get(&url)
            .header("authorization", format!("{scheme} {key}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{scheme}");
    }
    // Legacy uak_ keys work; a revoked key stops working at once.
    let legacy = unlockd::domain::keys::generate(unlockd::domain::keys::KeyPrefix::Uak);
    app.store
        .add_api_key(&account, &legacy, unlockd::domain::keys::KeyPrefix::Uak)
        .await
        .unwrap();
    assert_eq!(
        app.get(&legacy.secret, "/external/credits/balance").await.0,
        200
    );
    assert!(app.store.revoke_api_key(&legacy.key_id).await.unwrap());
    assert_eq!(
        app.get(&legacy.secret, "/external/credits/balance").await.0,
        401
    );
    assert_eq!(app.get(&key, "/external/credits/balance").await.0, 200);
}

#[tokio::test]
async fn unknown_routes_wrong_methods_and_huge_bodies_get_the_envelope() {
    let app = spawn_app().await;
    let (_, key) = app.account(1_000).await;
    let response = app
        .http
        .get(format!("{}/nope", app.url))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert!(response.headers().contains_key("x-request-id"));
    assert_envelope(status, &response.json().await.unwrap(), "NOT_FOUND", &[]);
    assert_eq!(status, 404);

    let response = app
        .http
        .get(format!("{}/external/contacts/unlock", app.url))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert_eq!(status, 405);
    assert_envelope(
        status,
        &response.json().await.unwrap(),
        "METHOD_NOT_ALLOWED",
        &[],
    );

    let huge = format!(
        "{{\"event_id\":\"139574\",\"personnel_ids\":[\"789\"],\"pad\":\"{}\"}}",
        "x".repeat(1024 * 1024 + 10)
    );
    let response = app
        .http
        .post(format!("{}/external/contacts/unlock", app.url))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert_eq!(status, 413);
    assert_envelope(
        status,
        &response.json().await.unwrap(),
        "PAYLOAD_TOO_LARGE",
        &[],
    );
    assert_eq!(app.balance(&key).await["heldCredits"], 0);
}

#[tokio::test]
async fn request_ids_are_reused_when_sane_and_match_the_trace_id() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(format!("{}/external/credits/balance", app.url))
        .header("x-request-id", "client-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "client-abc-123");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["traceId"], "client-abc-123");

    let response = app
        .http
        .get(format!("{}/healthz", app.url))
        .header("x-request-id", "x".repeat(500))
        .send()
        .await
        .unwrap();
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        id.len() == 36,
        "a fresh uuid replaces an oversized id: {id}"
    );
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "ok");
    let (status, ready) = app.get("", "/readyz").await;
    assert_eq!((status, ready["status"].as_str()), (200, Some("ready")));
}

#[tokio::test]
async fn another_accounts_task_is_404_and_its_unlocks_reveal_nothing() {
    let app = spawn_app().await;
    let (_, alice) = app.account(1_000).await;
    let (_, bob) = app.account(1_000).await;
    let (_, created) = app.unlock_ids(&alice, &["789"]).await;
    let task_id = created["task_id"].as_str().unwrap();
    app.drain().await;
    assert_eq!(
        app.task(&alice, task_id).await["items"][0]["email"],
        "jane.doe@acme.example"
    );
    let (status, body) = app
        .get(&bob, &format!("/external/contacts/unlock-tasks/{task_id}"))
        .await;
    assert_eq!(status, 404);
    assert_envelope(status, &body, "TASK_NOT_FOUND", &[]);
    assert!(!body.to_string().contains("jane"));
    let (status, _) = app
        .get(&alice, "/external/contacts/unlock-tasks/no-such-task")
        .await;
    assert_eq!(status, 404);
    // Alice's unlock is hers: Bob still pays for his own, and Alice's balance is untouched.
    let (status, body) = app.unlock_ids(&bob, &["789"]).await;
    assert_eq!((status, body["status"].as_str()), (201, Some("accepted")));
    assert_eq!(app.balance(&bob).await["heldCredits"], 15);
    assert_eq!(app.balance(&alice).await["totalBalance"], 985);
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn long_poll_answers_when_the_task_finishes_not_when_the_wait_ends() {
    let app = spawn_app().await;
    let (_, key) = app.account(1_000).await;
    let (_, created) = app.unlock_ids(&key, &["789", "790"]).await;
    let task_id = created["task_id"].as_str().unwrap().to_string();

    let started = Instant::now();
    let (status, body) = app
        .get(
            &key,
            &format!("/external/contacts/unlock-tasks/{task_id}?wait=1"),
        )
        .await;
    assert_eq!(
        (status, body["taskStatus"].as_str()),
        (200, Some("pending"))
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited the full second"
    );

    let poll = {
        let http = app.http.clone();
        let url = format!(
            "{}/external/contacts/unlock-tasks/{task_id}?wait=20",
            app.url
        );
        let key = key.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let body: Value = http
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (body, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    app.drain().await;
    let (body, waited) = poll.await.unwrap();
    assert_eq!(body["taskStatus"], "completed");
    assert!(
        waited < Duration::from_secs(5),
        "woke on the change, after {waited:?}"
    );

    let (status, body) = app
        .get(
            &key,
            &format!("/external/contacts/unlock-tasks/{task_id}?wait=31"),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("wait"));
}

#[tokio::test]
async fn rate_limits_per_key_and_per_ip_answer_429_with_headers() {
    let app = spawn_app_with(Options {
        key_rate_limit: 3,
        ..Options::default()
    })
    .await;
    let (_, key) = app.account(1_000).await;
    for remaining in [2, 1, 0] {
        let response = app
            .http
            .get(format!("{}/external/credits/balance", app.url))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let h = response.headers();
        assert_eq!(h["x-ratelimit-limit"], "3");
        assert_eq!(h["x-ratelimit-remaining"], remaining.to_string().as_str());
        let reset: i64 = h["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
        assert!(reset > chrono::Utc::now().timestamp() - 1);
        assert!(h.contains_key("ratelimit-policy"));
    }
    let response = app
        .http
        .get(format!("{}/external/credits/balance", app.url))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert_envelope(
        429,
        &response.json().await.unwrap(),
        "RATE_LIMIT_EXCEEDED",
        &[],
    );
    // Another key has its own bucket.
    let (_, other) = app.account(0).await;
    assert_eq!(app.get(&other, "/external/credits/balance").await.0, 200);

    let app = spawn_app_with(Options {
        ip_rate_limit: 2,
        ..Options::default()
    })
    .await;
    let statuses: Vec<u16> = futures_statuses(&app, 3).await;
    assert_eq!(
        statuses,
        [401, 401, 429],
        "the IP limit applies before auth"
    );
}

async fn futures_statuses(app: &common::TestApp, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(app.get("", "/external/credits/balance").await.0);
    }
    out
}

#[tokio::test]
async fn call_source_is_recorded_and_unknown_values_mean_api() {
    let app = spawn_app().await;
    let (_, key) = app.account(1_000).await;
    for (header, expected, person) in [
        ("agent", "agent", "100"),
        ("robot", "api", "101"),
        ("AGENT", "agent", "102"),
    ] {
        let response = app
            .http
            .post(format!("{}/external/contacts/unlock", app.url))
            .bearer_auth(&key)
            .header("x-call-source", header)
            .json(&json!({"event_id": "139574", "personnel_ids": [person]}))
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        let task = app.task(&key, body["task_id"].as_str().unwrap()).await;
        assert_eq!(task["callSource"], expected, "{header}");
    }
}

#[tokio::test]
async fn the_background_worker_finishes_tasks_and_stops_gracefully() {
    let app = spawn_app_with(Options {
        worker: true,
        ..Options::default()
    })
    .await;
    let (_, key) = app.account(10_000).await;
    let people: Vec<String> = (100..200).map(|i| i.to_string()).collect();
    let (status, created) = app
        .unlock(&key, json!({"event_id": "139574", "personnel_ids": people}))
        .await;
    assert_eq!(status, 201);
    let task_id = created["task_id"].as_str().unwrap();
    let (_, body) = app
        .get(
            &key,
            &format!("/external/contacts/unlock-tasks/{task_id}?wait=20"),
        )
        .await;
    assert_eq!(body["taskStatus"], "completed");
    assert_eq!(body["summary"]["unlocked"], 100);
    assert_eq!(app.balance(&key).await["totalBalance"], 10_000 - 1_500);
    app.assert_ledger_ok().await;
    tokio::time::timeout(Duration::from_secs(10), app.server.stop())
        .await
        .expect("stops promptly")
        .expect("clean stop");
}
