//! The engine's guarantees at the store boundary, with an injected clock: leases, fencing,
//! resumption after a crash, aborting a poison task. Nothing here sleeps.

mod common;

use common::{spawn_app_with, Options};
use unlockd::domain::settle::LookupOutcome;
use unlockd::domain::ContactValue;
use unlockd::store::{Claim, ClaimPolicy, StoreError};

const POLICY: ClaimPolicy = ClaimPolicy {
    lease_ms: 30_000,
    max_attempts: 3,
};

fn found(v: &str) -> LookupOutcome {
    LookupOutcome::Found(ContactValue::new(v))
}

#[tokio::test]
async fn a_worker_whose_lease_was_taken_over_can_settle_nothing() {
    let app = spawn_app_with(Options {
        manual_clock: true,
        ..Options::default()
    })
    .await;
    let (account, key) = app.account(1_000).await;
    let (_, created) = app.unlock_ids(&key, &["789", "790", "791"]).await;
    let task_id = created["task_id"].as_str().unwrap().to_string();

    let Claim::Claimed(a) = app.store.claim_task("worker-a", POLICY).await.unwrap() else {
        panic!("claimable")
    };
    assert_eq!(a.account_id, account);
    assert_eq!(a.items.len(), 3);
    assert!(
        matches!(
            app.store.claim_task("worker-b", POLICY).await.unwrap(),
            Claim::Idle
        ),
        "leased"
    );
    let first = a.items[0].item_id;
    app.store.start_items(&a.lease, &[first]).await.unwrap();
    let report = app
        .store
        .settle_items(&a.lease, vec![(first, found("x@y.example"))])
        .await
        .unwrap();
    assert_eq!((report.settled, report.finished), (1, None));
    assert_eq!(app.task(&key, &task_id).await["taskStatus"], "processing");

    // Worker A stalls past its lease; worker B takes over with a newer attempt.
    app.manual_clock().advance(30_001);
    let Claim::Claimed(b) = app.store.claim_task("worker-b", POLICY).await.unwrap() else {
        panic!("lease expired, so claimable")
    };
    assert_eq!(b.lease.attempt, a.lease.attempt + 1);
    assert_eq!(b.items.len(), 2, "the settled item is not redone");

    let second = a.items[1].item_id;
    for result in [
        app.store
            .settle_items(&a.lease, vec![(second, found("late@y.example"))])
            .await
            .map(|_| ()),
        app.store.renew_lease(&a.lease, 30_000).await,
        app.store.start_items(&a.lease, &[second]).await,
    ] {
        assert!(matches!(result, Err(StoreError::LeaseLost)), "{result:?}");
    }

    // B replays the first item too (as a confused worker might): it is skipped, not re-charged.
    let outcomes = vec![
        (first, found("again@y.example")),
        (second, found("b@y.example")),
        (a.items[2].item_id, LookupOutcome::NotFound),
    ];
    let report = app.store.settle_items(&b.lease, outcomes).await.unwrap();
    assert_eq!(report.settled, 2);
    assert_eq!(report.finished, Some(unlockd_api::TaskStatus::Completed));
    let task = app.task(&key, &task_id).await;
    assert_eq!(
        task["items"][0]["email"], "x@y.example",
        "first settlement stands"
    );
    assert_eq!(task["credits"]["charged"], 30);
    assert_eq!(task["credits"]["released"], 15);
    assert_eq!(app.balance(&key).await["totalBalance"], 970);
    // Settling a finished task is refused outright.
    assert!(matches!(
        app.store
            .settle_items(&b.lease, vec![(second, found("z@y.example"))])
            .await,
        Err(StoreError::LeaseLost)
    ));
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn a_task_that_keeps_losing_its_workers_fails_and_releases_everything() {
    let app = spawn_app_with(Options {
        manual_clock: true,
        ..Options::default()
    })
    .await;
    let (_, key) = app.account(1_000).await;
    let (_, created) = app.unlock_ids(&key, &["789", "790"]).await;
    let task_id = created["task_id"].as_str().unwrap();
    let mut attempts = Vec::new();
    loop {
        match app.store.claim_task("crashy", POLICY).await.unwrap() {
            Claim::Claimed(t) => {
                attempts.push(t.lease.attempt);
                if attempts.len() == 1 {
                    // One item gets through before the first crash.
                    app.store
                        .settle_items(&t.lease, vec![(t.items[0].item_id, found("ok@y.example"))])
                        .await
                        .unwrap();
                }
                app.manual_clock().advance(30_001); // the worker dies; its lease runs out
            }
            Claim::Aborted { task_id: aborted } => {
                assert_eq!(aborted, task_id);
                break;
            }
            Claim::Idle => panic!("the task must stay claimable until aborted"),
        }
    }
    assert_eq!(attempts, [1, 2, 3]);
    let task = app.task(&key, task_id).await;
    assert_eq!(task["taskStatus"], "failed");
    assert_eq!(task["items"][0]["status"], "unlocked");
    assert_eq!(task["items"][1]["status"], "failed");
    assert_eq!(task["items"][1]["errorCode"], "TASK_FAILED");
    assert_eq!(
        task["credits"],
        serde_json::json!({"held": 0, "charged": 15, "released": 15})
    );
    assert_eq!(app.balance(&key).await["totalBalance"], 985);
    assert!(matches!(
        app.store.claim_task("x", POLICY).await.unwrap(),
        Claim::Idle
    ));
    // The released person can be unlocked again.
    assert_eq!(app.unlock_ids(&key, &["790"]).await.0, 201);
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn a_released_lease_is_claimable_at_once_and_the_old_holder_is_fenced() {
    let app = spawn_app_with(Options {
        manual_clock: true,
        ..Options::default()
    })
    .await;
    let (_, key) = app.account(1_000).await;
    let (_, created) = app.unlock_ids(&key, &["789"]).await;
    let Claim::Claimed(a) = app.store.claim_task("a", POLICY).await.unwrap() else {
        panic!()
    };
    app.store.release_lease(&a.lease).await.unwrap();
    let Claim::Claimed(b) = app.store.claim_task("b", POLICY).await.unwrap() else {
        panic!("released: claimable without waiting for the lease")
    };
    assert!(matches!(
        app.store
            .settle_items(&a.lease, vec![(a.items[0].item_id, found("a@y.example"))])
            .await,
        Err(StoreError::LeaseLost)
    ));
    app.store
        .settle_items(&b.lease, vec![(b.items[0].item_id, found("b@y.example"))])
        .await
        .unwrap();
    let task = app.task(&key, created["task_id"].as_str().unwrap()).await;
    assert_eq!(task["items"][0]["email"], "b@y.example");
    app.assert_ledger_ok().await;
}

#[tokio::test]
async fn the_ledger_is_append_only_and_guards_are_constraints() {
    let app = spawn_app_with(Options::default()).await;
    let (account, key) = app.account(1_000).await;
    let (_, created) = app.unlock_ids(&key, &["789"]).await;
    // Straight at the database, past the store: the constraints themselves refuse.
    for sql in ["UPDATE ledger SET amount = 1", "DELETE FROM ledger"] {
        let err = app.raw_execute(sql).await.unwrap_err();
        assert!(err.contains("append-only"), "{err}");
    }
    let err = app
        .raw_execute(&format!(
            "INSERT INTO inflight (account_id, kind, personnel_id, task_id) \
             VALUES ('{account}', 'email', '789', 'other')"
        ))
        .await
        .unwrap_err();
    assert!(err.to_lowercase().contains("unique"), "{err}");
    let task_id = created["task_id"].as_str().unwrap();
    let item = app
        .raw_scalar(&format!(
            "SELECT id FROM task_items WHERE task_id = '{task_id}'"
        ))
        .await
        .unwrap()
        .unwrap();
    let bucket = app
        .raw_scalar(&format!(
            "SELECT bucket_id FROM ledger WHERE item_id = {item}"
        ))
        .await
        .unwrap()
        .unwrap();
    for entry in ["capture", "release"] {
        let result = app
            .raw_execute(&format!(
                "INSERT INTO ledger (account_id, bucket_id, entry_type, amount, item_id, created_at) \
                 VALUES ('{account}', '{bucket}', '{entry}', 15, {item}, 0)"
            ))
            .await;
        if entry == "capture" {
            result.unwrap();
        } else {
            assert!(
                result.unwrap_err().to_lowercase().contains("unique"),
                "one settlement per item and bucket"
            );
        }
    }
    // And verify notices the smuggled capture.
    let problems = app.store.verify_ledger().await.unwrap();
    assert!(problems.iter().any(|p| p.contains("held")), "{problems:#?}");
}
