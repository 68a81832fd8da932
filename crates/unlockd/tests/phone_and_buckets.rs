//! Phone unlock (SPEC §2.3) through the same engine and ledger, and credit buckets with
//! spending order and expiry (SPEC §2.4, §3).

mod common;

use common::{assert_envelope, spawn_app, spawn_app_with, Options, TestApp};
use serde_json::{json, Value};
use unlockd::domain::ledger::BucketKind;
use unlockd::store::Grant;

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

async fn unlock_phones(app: &TestApp, key: &str, ids: &[&str]) -> (u16, Value) {
    post(
        app,
        key,
        "/external/contacts/unlock-phone",
        json!({"event_id": "139574", "personnel_ids": ids}),
    )
    .await
}

#[tokio::test]
async fn phones_cost_150_and_are_independent_of_emails() {
    let app = spawn_app().await;
    varied_phone_people(&app).await;
    let (_, key) = app.account(1_000).await;
    let (status, email) = app.unlock_ids(&key, &["789"]).await;
    assert_eq!(status, 201);
    // The email guard does not block the phone: a separate kind, a separate guard.
    let (status, phone) = unlock_phones(&app, &key, &["789", "nophone"]).await;
    assert_eq!(
        (status, phone["status"].as_str()),
        (201, Some("accepted")),
        "{phone}"
    );
    let balance = app.balance(&key).await;
    assert_eq!(balance["heldCredits"], 15 + 300);
    let (status, body) = unlock_phones(&app, &key, &["789"]).await;
    assert_eq!(status, 409);
    assert_envelope(status, &body, "UNLOCK_IN_PROGRESS", &["taskIds"]);

    let phone_task = phone["task_id"].as_str().unwrap();
    // An email task is not visible on the phone path, and the other way round.
    let (status, _) = app
        .get(
            &key,
            &format!("/external/contacts/unlock-tasks/{phone_task}"),
        )
        .await;
    assert_eq!(status, 404);
    let email_task = email["task_id"].as_str().unwrap();
    let (status, _) = app
        .get(
            &key,
            &format!("/external/contacts/unlock-phone-tasks/{email_task}"),
        )
        .await;
    assert_eq!(status, 404);

    app.drain().await;
    let (status, task) = app
        .get(
            &key,
            &format!("/external/contacts/unlock-phone-tasks/{phone_task}?wait=5"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(task["taskStatus"], "completed");
    assert_eq!(task["items"][0]["phone"], "+1 415 555 789");
    assert!(task["items"][0].get("email").is_none());
    assert_eq!(task["items"][0]["charged"], 150);
    assert_eq!(task["items"][1]["errorCode"], "PHONE_NOT_FOUND");
    assert_eq!(
        task["credits"],
        json!({"held": 0, "charged": 150, "released": 150})
    );
    assert_eq!(app.balance(&key).await["totalBalance"], 1_000 - 15 - 150);
    let (status, again) = unlock_phones(&app, &key, &["789"]).await;
    assert_eq!((status, again["status"].as_str()), (201, Some("success")));
    assert_eq!(
        again["skipped_detail"]["already_unlocked_personnel_ids"],
        json!(["789"])
    );
    let (status, short) =
        unlock_phones(&app, &key, &["100", "101", "102", "103", "104", "105"]).await;
    assert_eq!(status, 402);
    assert_eq!(
        (
            short["requiredCredits"].as_i64(),
            short["availableCredits"].as_i64()
        ),
        (Some(900), Some(835))
    );
    app.assert_ledger_ok().await;
}

async fn varied_phone_people(app: &TestApp) {
    let mut p = common::person("nophone", &["1001"], Some("np@example.com"));
    p.phone = None;
    app.store.import_personnel(&[p], &|_| {}).await.unwrap();
}

async fn grant(
    app: &TestApp,
    account: &str,
    kind: BucketKind,
    amount: i64,
    expires_in_ms: Option<i64>,
) -> String {
    let now = unlockd::clock::Clock::now_ms(&*app.clock);
    app.store
        .grant_credits(&Grant {
            account_id: account.into(),
            kind,
            amount,
            expires_at: expires_in_ms.map(|d| now + d),
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn holds_spend_subscription_then_addon_then_gift_and_release_to_their_origin() {
    let app = spawn_app_with(Options {
        manual_clock: true,
        ..Options::default()
    })
    .await;
    let (account, key) = app.account(0).await;
    grant(&app, &account, BucketKind::Gift, 100, None).await;
    grant(&app, &account, BucketKind::Addon, 20, Some(2_000_000)).await;
    grant(
        &app,
        &account,
        BucketKind::Subscription,
        20,
        Some(1_000_000),
    )
    .await;
    let balance = app.balance(&key).await;
    assert_eq!(balance["subscriptionBalance"], 20);
    assert_eq!(balance["addonBalance"], 20);
    assert_eq!(balance["giftBalance"], 100);
    assert_eq!(balance["totalAmount"], 140);
    assert_eq!(balance["resetAt"], 1_800_000_000_000i64 + 1_000_000);
    assert_eq!(balance["addonExpireAt"], 1_800_000_000_000i64 + 2_000_000);

    // Four emails = 60 credits: subscription 20, add-on 20, gift 20 (items straddle buckets).
    let (status, created) = app.unlock_ids(&key, &["789", "791", "100", "101"]).await;
    assert_eq!(status, 201, "{created}");
    let held = app.balance(&key).await;
    assert_eq!(
        (
            held["subscriptionBalance"].as_i64(),
            held["addonBalance"].as_i64(),
            held["giftBalance"].as_i64()
        ),
        (Some(0), Some(0), Some(80))
    );
    assert_eq!(held["heldCredits"], 60);
    app.drain().await;
    // 791 has no email: its 15 (5 of subscription + 10 of add-on) go back where they came from.
    let after = app.balance(&key).await;
    assert_eq!(
        (
            after["subscriptionBalance"].as_i64(),
            after["addonBalance"].as_i64(),
            after["giftBalance"].as_i64()
        ),
        (Some(5), Some(10), Some(80))
    );
    assert_eq!(
        (
            after["heldCredits"].as_i64(),
            after["totalBalance"].as_i64()
        ),
        (Some(0), Some(95))
    );
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn expiry_takes_the_unheld_remainder_and_held_credits_stay_capturable() {
    let app = spawn_app_with(Options {
        manual_clock: true,
        ..Options::default()
    })
    .await;
    let (account, key) = app.account(0).await;
    grant(&app, &account, BucketKind::Subscription, 40, Some(60_000)).await;
    grant(&app, &account, BucketKind::Gift, 15, None).await;
    let (_, created) = app.unlock_ids(&key, &["789", "790"]).await;
    assert!(created["task_id"].is_string());
    assert_eq!(app.balance(&key).await["subscriptionBalance"], 10);

    app.manual_clock().advance(60_000);
    // Past expiry the bucket is no longer spendable, even before the sweep runs.
    let balance = app.balance(&key).await;
    assert_eq!(
        (
            balance["subscriptionAmount"].as_i64(),
            balance["totalBalance"].as_i64()
        ),
        (Some(0), Some(15))
    );
    assert_eq!(balance["heldCredits"], 30);
    let (status, short) = app.unlock_ids(&key, &["100", "101"]).await;
    assert_eq!(
        (status, short["availableCredits"].as_i64()),
        (402, Some(15)),
        "{short}"
    );
    let (status, body) = app.unlock_ids(&key, &["100"]).await;
    assert_eq!(status, 201, "the gift covers one: {body}");
    app.drain().await;
    let expired = app.store.expire_buckets().await.unwrap();
    assert_eq!(expired, 10, "only the unheld remainder expires");
    assert_eq!(app.store.expire_buckets().await.unwrap(), 0, "once");
    app.assert_ledger_ok().await;
    let buckets = app.store.buckets(&account).await.unwrap();
    let sub = buckets
        .iter()
        .find(|b| b.kind == BucketKind::Subscription)
        .unwrap();
    assert_eq!(
        (sub.granted, sub.balance, sub.held, sub.expired),
        (40, 0, 0, 10)
    );
    let gift = buckets.iter().find(|b| b.kind == BucketKind::Gift).unwrap();
    assert_eq!(
        gift.balance, 0,
        "the third email came out of the gift bucket"
    );
    let done = app.balance(&key).await;
    assert_eq!(
        (done["totalBalance"].as_i64(), done["heldCredits"].as_i64()),
        (Some(0), Some(0))
    );
}

#[tokio::test]
async fn a_release_after_expiry_is_expired_by_the_next_sweep() {
    let app = spawn_app_with(Options {
        manual_clock: true,
        ..Options::default()
    })
    .await;
    let (account, key) = app.account(0).await;
    grant(&app, &account, BucketKind::Addon, 15, Some(1_000)).await;
    let (_, created) = app.unlock_ids(&key, &["791"]).await; // no email: will be released
    assert!(created["task_id"].is_string());
    app.manual_clock().advance(1_000);
    app.drain().await;
    let buckets = app.store.buckets(&account).await.unwrap();
    assert_eq!(
        (buckets[0].balance, buckets[0].held),
        (15, 0),
        "released back into the expired bucket"
    );
    assert_eq!(
        app.balance(&key).await["totalBalance"],
        0,
        "but it is not spendable"
    );
    assert_eq!(app.store.expire_buckets().await.unwrap(), 15);
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn maintenance_prunes_finished_tasks_but_keeps_the_ledger() {
    let app = spawn_app_with(Options {
        manual_clock: true,
        ..Options::default()
    })
    .await;
    let (_, key) = app.account(1_000).await;
    let (_, created) = app.unlock_ids(&key, &["789"]).await;
    let task_id = created["task_id"].as_str().unwrap().to_string();
    let (_, live) = app.unlock_ids(&key, &["790"]).await;
    let live_id = live["task_id"].as_str().unwrap().to_string();
    // Finish only the first task.
    let claim = app
        .store
        .claim_task(
            "w",
            unlockd::store::ClaimPolicy {
                lease_ms: 30_000,
                max_attempts: 3,
            },
        )
        .await
        .unwrap();
    let unlockd::store::Claim::Claimed(t) = claim else {
        panic!()
    };
    assert_eq!(t.lease.task_id, task_id);
    app.store
        .settle_items(
            &t.lease,
            vec![(
                t.items[0].item_id,
                unlockd::domain::settle::LookupOutcome::NotFound,
            )],
        )
        .await
        .unwrap();

    let config = unlockd::engine::maintenance::MaintenanceConfig {
        retention: std::time::Duration::from_secs(3600),
        prune_batch: 1,
        ..Default::default()
    };
    let report = unlockd::engine::maintenance::run_once(&app.store, &app.clock, &config)
        .await
        .unwrap();
    assert_eq!(report.tasks_pruned, 0, "not old enough yet");
    app.manual_clock().advance(3_600_001);
    let report = unlockd::engine::maintenance::run_once(&app.store, &app.clock, &config)
        .await
        .unwrap();
    assert_eq!(report.tasks_pruned, 1);
    let (status, _) = app
        .get(&key, &format!("/external/contacts/unlock-tasks/{task_id}"))
        .await;
    assert_eq!(status, 404, "pruned");
    let (status, _) = app
        .get(&key, &format!("/external/contacts/unlock-tasks/{live_id}"))
        .await;
    assert_eq!(status, 200, "live tasks are never pruned");
    app.assert_ledger_ok().await;
    assert_eq!(app.balance(&key).await["totalBalance"], 985);
}
