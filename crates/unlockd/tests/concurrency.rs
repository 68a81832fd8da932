//! Many overlapping creates at once, against a balance too small for all of them: no
//! overdraft, no person in two live tasks, every capture exactly once.

mod common;

use std::collections::{HashMap, HashSet};

use common::spawn_app;
use serde_json::{json, Value};

/// Deterministic overlapping subsets of people 100..130.
fn request_people(i: usize) -> Vec<String> {
    let start = (i * 7) % 30;
    let len = 3 + i % 6;
    (0..len)
        .map(|k| (100 + (start + k * 3) % 30).to_string())
        .collect()
}

async fn fire(app: &common::TestApp, key: &str, requests: usize) -> Vec<(u16, Value, Vec<String>)> {
    let mut handles = Vec::new();
    for i in 0..requests {
        let http = app.http.clone();
        let url = format!("{}/external/contacts/unlock", app.url);
        let key = key.to_string();
        let people = request_people(i);
        handles.push(tokio::spawn(async move {
            let response = http
                .post(url)
                .bearer_auth(key)
                .json(&json!({"event_id": "139574", "personnel_ids": people}))
                .send()
                .await
                .expect("request");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
                people,
            )
        }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_concurrent_creates_never_overdraw_or_double_hold() {
    let app = spawn_app().await;
    let budget = 15 * 20; // room for 20 of the 30 people
    let (_, key) = app.account(budget).await;

    // Wave 1: 40 creates at once, nothing worked yet, so every accepted task is live.
    let answers = fire(&app, &key, 40).await;
    let mut held_people: HashMap<String, String> = HashMap::new();
    let mut held = 0;
    let mut statuses = HashSet::new();
    for (status, body, people) in &answers {
        statuses.insert(*status);
        assert!(matches!(status, 201 | 402 | 409), "{status}: {body}");
        if *status == 201 && body["status"] == "accepted" {
            let task_id = body["task_id"].as_str().unwrap().to_string();
            let task = app.task(&key, &task_id).await;
            for item in task["items"].as_array().unwrap() {
                let person = item["personnelId"].as_str().unwrap().to_string();
                assert!(people.contains(&person));
                if let Some(other) = held_people.insert(person.clone(), task_id.clone()) {
                    panic!("person {person} held by two live tasks: {other} and {task_id}");
                }
                held += 15;
            }
        }
    }
    assert!(statuses.contains(&201), "some creates succeed");
    assert!(
        statuses.len() > 1,
        "the budget and overlaps make some fail: {statuses:?}"
    );
    assert!(held <= budget, "held {held} of {budget}");
    let balance = app.balance(&key).await;
    assert_eq!(balance["heldCredits"], held);
    assert_eq!(balance["totalBalance"].as_i64().unwrap() + held, budget);
    app.assert_ledger_ok().await;

    // Wave 2 races a worker that settles while new creates arrive.
    let worker = {
        let engine = app.server.engine.clone();
        tokio::spawn(async move {
            for _ in 0..2_000 {
                if !engine.run_once().await.expect("engine") {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let wave2 = fire(&app, &key, 32).await;
    for (status, body, _) in &wave2 {
        assert!(matches!(status, 201 | 402 | 409), "{status}: {body}");
    }
    worker.await.unwrap();
    app.drain().await;

    // Every person was captured at most once, and the balance is exactly what they cost.
    let balance = app.balance(&key).await;
    assert_eq!(balance["heldCredits"], 0);
    let spent = budget - balance["totalBalance"].as_i64().unwrap();
    assert_eq!(spent % 15, 0);
    let unlocked = spent / 15;
    assert!(
        unlocked <= 20 && unlocked >= held / 15,
        "{unlocked} unlocked"
    );
    app.assert_ledger_ok().await;
    let (status, again) = app.unlock_ids(&key, &["100", "101", "102"]).await;
    assert!(matches!(status, 201 | 402), "{again}");
}
