//! `POST /external/actions/precheck` (SPEC §2.5): the create call's decision, without its
//! effect. A randomized walk checks that precheck and create agree on every input.

mod common;

use common::{assert_envelope, spawn_app, TestApp};
use serde_json::{json, Value};

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

async fn precheck(app: &TestApp, key: &str, action: &str, params: Value) -> Value {
    let (status, body) = post(
        app,
        key,
        "/external/actions/precheck",
        json!({"action_type": action, "params": params}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true);
    body
}

#[tokio::test]
async fn precheck_answers_each_reason_and_changes_nothing() {
    let app = spawn_app().await;
    let (_, key) = app.account(40).await;
    let p = |ids: &[&str]| json!({"event_id": "139574", "personnel_ids": ids});

    let ok = precheck(
        &app,
        &key,
        "unlock_contact_emails",
        p(&["789", "790", "800"]),
    )
    .await;
    assert_eq!(
        (
            ok["allowed"].as_bool(),
            ok["should_charge"].as_bool(),
            ok["credits"].as_i64()
        ),
        (Some(true), Some(true), Some(30))
    );
    assert_eq!(ok["reason_code"], "ok");
    assert_eq!(ok["biz_code"], "Contact Email Unlock - API");
    let d = &ok["detail"];
    assert_eq!(d["chargeable_personnel_ids"], json!(["789", "790"]));
    assert_eq!(d["unlinked_personnel_ids"], json!(["800"]));
    assert_eq!(d["counts"]["unlinked"], 1);
    assert_eq!(
        (d["unit_price"].as_i64(), d["cost"].as_i64()),
        (Some(15), Some(30))
    );
    assert_eq!(d["balance"], json!({"available": 40, "held": 0}));
    assert_eq!(
        app.balance(&key).await["heldCredits"],
        0,
        "nothing was held"
    );
    assert!(
        !app.server.engine.run_once().await.unwrap(),
        "no task was created"
    );

    let short = precheck(&app, &key, "unlock_contact_phones", p(&["789"])).await;
    assert_eq!(
        (
            short["allowed"].as_bool(),
            short["reason_code"].as_str(),
            short["credits"].as_i64()
        ),
        (Some(false), Some("insufficient_balance"), Some(150))
    );
    assert_eq!(short["biz_code"], "Contact Phone Unlock - API");

    let (_, created) = app.unlock_ids(&key, &["789"]).await;
    let busy = precheck(&app, &key, "unlock_contact_emails", p(&["789"])).await;
    assert_eq!(
        (busy["allowed"].as_bool(), busy["reason_code"].as_str()),
        (Some(false), Some("unlock_in_progress"))
    );
    assert_eq!(busy["detail"]["task_ids"], json!([created["task_id"]]));
    app.drain().await;
    let done = precheck(&app, &key, "unlock_contact_emails", p(&["789"])).await;
    assert_eq!(
        (
            done["allowed"].as_bool(),
            done["should_charge"].as_bool(),
            done["reason_code"].as_str()
        ),
        (Some(true), Some(false), Some("already_unlocked"))
    );
    let unlinked = precheck(&app, &key, "unlock_contact_emails", p(&["800"])).await;
    assert_eq!(unlinked["reason_code"], "no_contacts_available");
    let missing = precheck(&app, &key, "unlock_contact_emails", p(&["nope"])).await;
    assert_eq!(
        (
            missing["allowed"].as_bool(),
            missing["reason_code"].as_str()
        ),
        (Some(false), Some("not_found"))
    );
    let no_event = precheck(
        &app,
        &key,
        "unlock_contact_emails",
        json!({"event_id": "nope", "personnel_ids": ["789"]}),
    )
    .await;
    assert_eq!(no_event["reason_code"], "not_found");
    let many: Vec<String> = (0..101).map(|i| i.to_string()).collect();
    let too_many = precheck(
        &app,
        &key,
        "unlock_contact_emails",
        json!({"event_id": "139574", "personnel_ids": many}),
    )
    .await;
    assert_eq!(
        (
            too_many["allowed"].as_bool(),
            too_many["reason_code"].as_str()
        ),
        (Some(false), Some("exceed_max_unlock_limit"))
    );
    let other = precheck(
        &app,
        &key,
        "unlock_event_contacts",
        json!({"event_id": "139574"}),
    )
    .await;
    assert_eq!(
        (
            other["allowed"].as_bool(),
            other["should_charge"].as_bool(),
            other["reason_code"].as_str()
        ),
        (Some(false), Some(false), Some("unsupported_action"))
    );

    let (status, agent) = post(&app, &key, "/external/actions/precheck", json!({"action_type": "unlock_contact_emails", "params": p(&["790"]), "call_source": "agent"})).await;
    assert_eq!(
        (status, agent["biz_code"].as_str()),
        (200, Some("Contact Email Unlock - Agent"))
    );

    for (body, field) in [
        (json!({"params": {}}), "action_type"),
        (
            json!({"action_type": "launch_rockets", "params": {}}),
            "action_type",
        ),
        (json!({"action_type": "unlock_contact_emails"}), "params"),
        (
            json!({"action_type": "unlock_contact_emails", "params": []}),
            "params",
        ),
        (
            json!({"action_type": "unlock_contact_emails", "params": {"personnel_ids": ["1"]}}),
            "params.event_id",
        ),
        (
            json!({"action_type": "unlock_contact_emails", "params": {"event_id": "139574", "personnel_ids": [1]}}),
            "params.personnel_ids[0]",
        ),
        (
            json!({"action_type": "unlock_contact_emails", "params": {}, "surprise": 1}),
            "surprise",
        ),
        (
            json!({"action_type": "unlock_contact_emails", "params": {}, "locale": 5}),
            "locale",
        ),
    ] {
        let (status, err) = post(&app, &key, "/external/actions/precheck", body.clone()).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_envelope(status, &err, "VALIDATION_ERROR", &[]);
        assert!(
            err["message"].as_str().unwrap().contains(field),
            "{field}: {err}"
        );
    }
    app.assert_ledger_ok().await;
}

/// A small deterministic generator, so a failure replays exactly.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[tokio::test]
async fn precheck_and_create_agree_on_randomized_inputs() {
    let app = spawn_app().await;
    let (_, rich) = app.account(5_000).await;
    let (_, poor) = app.account(100).await;
    let pool = [
        "789", "790", "791", "800", "100", "101", "102", "103", "104", "105", "nope", "bad id", "",
    ];
    let mut rng = Lcg(20_261_128);
    let mut agreed = std::collections::HashMap::new();
    for round in 0..160 {
        let key = if rng.next(2) == 0 { &rich } else { &poor };
        let (action, path) = if rng.next(3) == 0 {
            ("unlock_contact_phones", "/external/contacts/unlock-phone")
        } else {
            ("unlock_contact_emails", "/external/contacts/unlock")
        };
        let event = ["139574", "1001", "139574", "nope"][rng.next(4) as usize];
        let ids: Vec<String> = if rng.next(40) == 0 {
            (0..101).map(|i| i.to_string()).collect()
        } else {
            (0..1 + rng.next(5))
                .map(|_| pool[rng.next(pool.len() as u64) as usize].to_string())
                .collect()
        };
        let params = json!({"event_id": event, "personnel_ids": ids});
        let check = precheck(&app, key, action, params.clone()).await;
        let (status, created) = post(&app, key, path, params.clone()).await;
        let reason = check["reason_code"].as_str().unwrap().to_string();
        let context =
            format!("round {round}: {params} -> precheck {check} / create {status} {created}");
        match reason.as_str() {
            "ok" => {
                assert_eq!(
                    (status, created["status"].as_str()),
                    (201, Some("accepted")),
                    "{context}"
                );
                let task_path = if action == "unlock_contact_phones" {
                    "unlock-phone-tasks"
                } else {
                    "unlock-tasks"
                };
                let (_, task) = app
                    .get(
                        key,
                        &format!(
                            "/external/contacts/{task_path}/{}",
                            created["task_id"].as_str().unwrap()
                        ),
                    )
                    .await;
                assert_eq!(task["credits"]["held"], check["credits"], "{context}");
                assert_eq!(
                    check["detail"]["chargeable_personnel_ids"]
                        .as_array()
                        .unwrap()
                        .len(),
                    task["items"].as_array().unwrap().len(),
                    "{context}"
                );
            }
            "already_unlocked" | "no_contacts_available" => {
                assert_eq!(
                    (status, created["status"].as_str()),
                    (201, Some("success")),
                    "{context}"
                )
            }
            "unlock_in_progress" => {
                assert_eq!(status, 409, "{context}");
                assert_eq!(created["taskIds"], check["detail"]["task_ids"], "{context}");
            }
            "insufficient_balance" => {
                assert_eq!(status, 402, "{context}");
                assert_eq!(created["requiredCredits"], check["credits"], "{context}");
            }
            "not_found" => assert_eq!(status, 404, "{context}"),
            "exceed_max_unlock_limit" => assert_eq!(
                (status, created["errorKey"].as_str()),
                (400, Some("TOO_MANY_PERSONNEL_IDS")),
                "{context}"
            ),
            other => panic!("unexpected reason {other}: {context}"),
        }
        assert_eq!(check["allowed"].as_bool(), Some(status == 201), "{context}");
        *agreed.entry(reason).or_insert(0) += 1;
        if rng.next(6) == 0 {
            app.drain().await;
        }
    }
    // The walk must have visited the interesting cases, or it proves little.
    for reason in [
        "ok",
        "already_unlocked",
        "unlock_in_progress",
        "insufficient_balance",
        "not_found",
    ] {
        assert!(
            agreed.get(reason).copied().unwrap_or(0) > 0,
            "{reason} never came up: {agreed:?}"
        );
    }
    app.drain().await;
    app.assert_ledger_ok().await;
}
