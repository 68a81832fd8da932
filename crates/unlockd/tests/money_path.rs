//! Regression tests for defects of the money path (issue 13), each on both backends:
//! item ids reused after pruning, process clocks in leases and expiry, blind spots of
//! `ledger verify`, and a poisoned task that stopped the queue.

mod common;

use std::sync::Arc;

use common::{fresh_store, seed_catalog, TestDb};
use unlockd::clock::{Clock, DynClock, ManualClock, SkewedClock, SystemClock};
use unlockd::domain::ledger::BucketKind;
use unlockd::domain::settle::LookupOutcome;
use unlockd::domain::{ContactKind, ContactValue};
use unlockd::store::{Claim, ClaimPolicy, CreateResult, DynStore, Grant, NewUnlock};
use unlockd_api::{CallSource, ItemStatus, TaskStatus};

const START_MS: i64 = 1_800_000_000_000;
const DAY_MS: i64 = 24 * 3600 * 1000;

const POLICY: ClaimPolicy = ClaimPolicy {
    lease_ms: 1_000,
    max_attempts: 2,
};

async fn account_with(
    store: &DynStore,
    kind: BucketKind,
    amount: i64,
    expires_at: Option<i64>,
) -> String {
    let account = store.create_account("money").await.unwrap();
    store
        .grant_credits(&Grant {
            account_id: account.id.clone(),
            kind,
            amount,
            expires_at,
        })
        .await
        .unwrap();
    account.id
}

/// Creates an email task; panics unless one was created.
async fn unlock(store: &DynStore, account: &str, ids: &[&str]) -> String {
    let request = NewUnlock {
        account_id: account.into(),
        kind: ContactKind::Email,
        event_ref: "139574".into(),
        personnel_ids: ids.iter().map(|s| s.to_string()).collect(),
        call_source: CallSource::Api,
        price: 15,
    };
    match store.create_unlock_task(&request).await {
        Ok(CreateResult::Decided {
            task_id: Some(task_id),
            ..
        }) => task_id,
        other => panic!("expected a task for {ids:?}, got {other:?}"),
    }
}

fn found() -> LookupOutcome {
    LookupOutcome::Found(ContactValue::new("found@acme.example"))
}

/// Claims and settles (every contact found) until nothing is claimable.
async fn work_all(store: &DynStore) {
    for _ in 0..100 {
        match store.claim_task("worker", POLICY).await.unwrap() {
            Claim::Claimed(task) => {
                let outcomes = task.items.iter().map(|i| (i.item_id, found())).collect();
                store.settle_items(&task.lease, outcomes).await.unwrap();
            }
            Claim::Aborted { .. } => {}
            Claim::Idle => return,
        }
    }
    panic!("the queue never drained");
}

async fn assert_verified(store: &DynStore) {
    let problems = store.verify_ledger().await.unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
}

async fn task_status(store: &DynStore, account: &str, task: &str) -> TaskStatus {
    store
        .task_view(account, ContactKind::Email, task)
        .await
        .unwrap()
        .expect("task exists")
        .status
}

// ---- 1. Item ids are never reused after pruning -------------------------------------

#[tokio::test]
async fn pruned_item_ids_are_never_handed_out_again() {
    let clock = Arc::new(ManualClock::new(START_MS));
    let (store, _db) = fresh_store(clock.clone()).await;
    seed_catalog(&store).await;
    let first = account_with(&store, BucketKind::Gift, 1_000, None).await;
    let second = account_with(&store, BucketKind::Gift, 1_000, None).await;

    unlock(&store, &first, &["100", "101", "102"]).await;
    work_all(&store).await;
    assert_verified(&store).await;

    // Every finished task is past its retention: pruning removes the newest items.
    clock.advance(2 * DAY_MS);
    let pruned = store
        .prune_finished_tasks(clock.now_ms() - DAY_MS, 500)
        .await
        .unwrap();
    assert_eq!(pruned, 1);

    // The same account unlocks again from the same bucket (the old ids' holds are in the
    // ledger), and another account from its own bucket (verify must not join the old
    // entries to the new items).
    let again = unlock(&store, &first, &["103", "104"]).await;
    let other = unlock(&store, &second, &["100", "101", "102"]).await;
    assert_verified(&store).await;
    work_all(&store).await;
    assert_verified(&store).await;
    assert_eq!(
        task_status(&store, &first, &again).await,
        TaskStatus::Completed
    );
    assert_eq!(
        task_status(&store, &second, &other).await,
        TaskStatus::Completed
    );
    let balance = |b: Vec<unlockd::store::BucketState>| b.iter().map(|b| b.balance).sum::<i64>();
    assert_eq!(
        balance(store.buckets(&first).await.unwrap()),
        1_000 - 5 * 15
    );
    assert_eq!(
        balance(store.buckets(&second).await.unwrap()),
        1_000 - 3 * 15
    );
}

#[tokio::test]
async fn an_existing_sqlite_database_continues_above_every_id_the_ledger_has_seen() {
    let db = TestDb::create().await;
    if db.is_postgres() {
        // PostgreSQL identity columns never hand an id out twice; nothing to migrate.
        return;
    }
    // The schema as it was before the fix, with a ledger that saw item 500 while the
    // item table's highest surviving id is 2.
    let mut old = sqlx::migrate!("./migrations/sqlite");
    old.migrations = old
        .migrations
        .iter()
        .filter(|m| m.version < 5)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    let options: sqlx::sqlite::SqliteConnectOptions = db.url.parse().unwrap();
    let pool = sqlx::SqlitePool::connect_with(options.create_if_missing(true))
        .await
        .unwrap();
    old.run(&pool).await.unwrap();
    pool.close().await;
    for sql in [
        "INSERT INTO accounts (id, name, created_at) VALUES ('a', 'a', 0)",
        "INSERT INTO tasks (id, account_id, kind, event_id, event_ref, status, call_source, price, created_at, updated_at) \
         VALUES ('t', 'a', 'email', '1001', '1001', 'completed', 'api', 15, 0, 0)",
        "INSERT INTO task_items (id, task_id, position, personnel_id, status, updated_at) VALUES (2, 't', 0, 'p', 'failed', 0)",
        "INSERT INTO ledger (account_id, bucket_id, entry_type, amount, task_id, item_id, created_at) \
         VALUES ('a', 'b', 'hold', 15, 'gone', 500, 0)",
    ] {
        db.raw_execute(sql).await.unwrap();
    }
    let store = unlockd::store::connect(
        &db.url,
        unlockd::store::sqlite::Durability::Normal,
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    db.raw_execute(
        "INSERT INTO task_items (task_id, position, personnel_id, status, updated_at) VALUES ('t', 1, 'q', 'failed', 0)",
    )
    .await
    .unwrap();
    let new_id = db
        .raw_scalar("SELECT id FROM task_items WHERE personnel_id = 'q'")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(new_id, "501");
    let kept = db
        .raw_scalar("SELECT COUNT(*) FROM task_items WHERE id = 2 AND personnel_id = 'p'")
        .await
        .unwrap();
    assert_eq!(
        kept.as_deref(),
        Some("1"),
        "existing items survive the rebuild"
    );
}

// ---- 2. Leases and expiry on the database's clock (PostgreSQL) ----------------------

#[tokio::test]
async fn a_host_whose_clock_runs_ahead_cannot_take_a_live_lease_or_expire_credits_early() {
    let clock: DynClock = Arc::new(SystemClock);
    let (honest, db) = fresh_store(clock.clone()).await;
    if !db.is_postgres() {
        // SQLite has one host by construction: every process reads the same clock. The
        // assumption is documented in the README; there is no second clock to test.
        return;
    }
    seed_catalog(&honest).await;
    let fast: DynClock = Arc::new(SkewedClock { skew_ms: 60_000 });
    let ahead = unlockd::store::connect(
        &db.url,
        unlockd::store::sqlite::Durability::Normal,
        fast.clone(),
    )
    .await
    .unwrap();

    let now = clock.now_ms();
    let account = account_with(&honest, BucketKind::Gift, 100, None).await;
    honest
        .grant_credits(&Grant {
            account_id: account.clone(),
            kind: BucketKind::Addon,
            amount: 30,
            expires_at: Some(now + 30_000),
        })
        .await
        .unwrap();
    let task = unlock(&honest, &account, &["789"]).await;
    let policy = ClaimPolicy {
        lease_ms: 30_000,
        max_attempts: 5,
    };
    let Claim::Claimed(claimed) = honest.claim_task("honest", policy).await.unwrap() else {
        panic!("claimable");
    };
    // 60 s ahead by its own clock, the lease looks expired to the fast host; by the
    // database's clock it has 30 s to run.
    assert_eq!(
        ahead.claim_task("fast", policy).await.unwrap(),
        Claim::Idle,
        "a live lease was taken over by a host with a fast clock"
    );
    assert_eq!(
        ahead.expire_buckets().await.unwrap(),
        0,
        "credits expired early by a host with a fast clock"
    );
    let outcomes = claimed.items.iter().map(|i| (i.item_id, found())).collect();
    honest.settle_items(&claimed.lease, outcomes).await.unwrap();
    assert_eq!(
        task_status(&honest, &account, &task).await,
        TaskStatus::Completed
    );
    assert_verified(&honest).await;
}

// ---- 3. Corruption that `ledger verify` used to pass ---------------------------------

/// Lifts the append-only guard of the test's own database, so a test can plant the kind
/// of damage a bug (or a hand in the database) would leave.
async fn allow_ledger_edits(db: &TestDb) {
    let sql = if db.is_postgres() {
        "DROP TRIGGER ledger_no_update_or_delete ON ledger"
    } else {
        "DROP TRIGGER ledger_no_update"
    };
    db.raw_execute(sql).await.unwrap();
}

async fn item_of(db: &TestDb, task: &str, person: &str) -> String {
    db.raw_scalar(&format!(
        "SELECT id FROM task_items WHERE task_id = '{task}' AND personnel_id = '{person}'"
    ))
    .await
    .unwrap()
    .expect("item")
}

async fn bucket_of(db: &TestDb, account: &str, kind: &str) -> String {
    db.raw_scalar(&format!(
        "SELECT id FROM credit_buckets WHERE account_id = '{account}' AND kind = '{kind}'"
    ))
    .await
    .unwrap()
    .expect("bucket")
}

async fn assert_violation(store: &DynStore, needle: &str) {
    let problems = store.verify_ledger().await.unwrap();
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "verify should report {needle:?}, said {problems:#?}"
    );
}

#[tokio::test]
async fn verify_reports_an_unlock_that_was_never_paid_for() {
    let (store, db) = fresh_store(Arc::new(SystemClock)).await;
    seed_catalog(&store).await;
    let account = account_with(&store, BucketKind::Gift, 100, None).await;
    let task = unlock(&store, &account, &["789"]).await;
    work_all(&store).await;
    assert_verified(&store).await;
    // A contact on record as delivered to this account, with no capture behind it.
    db.raw_execute(&format!(
        "INSERT INTO unlocks (account_id, kind, personnel_id, status, value, task_id, updated_at) \
         VALUES ('{account}', 'email', '790', 'unlocked', 'john.roe@acme.example', '{task}', 0)"
    ))
    .await
    .unwrap();
    assert_violation(&store, "person 790 is on record as unlocked").await;
}

#[tokio::test]
async fn verify_reports_an_item_charged_to_another_accounts_bucket() {
    let (store, db) = fresh_store(Arc::new(SystemClock)).await;
    seed_catalog(&store).await;
    let payer = account_with(&store, BucketKind::Gift, 100, None).await;
    let victim = account_with(&store, BucketKind::Gift, 100, None).await;
    let task = unlock(&store, &payer, &["789"]).await;
    work_all(&store).await;
    assert_verified(&store).await;
    let item = item_of(&db, &task, "789").await;
    let (payer_bucket, victim_bucket) = (
        bucket_of(&db, &payer, "gift").await,
        bucket_of(&db, &victim, "gift").await,
    );
    // The payer's hold and capture rewritten onto the victim's bucket, with both buckets'
    // cached columns made to agree: every per-bucket sum still adds up.
    allow_ledger_edits(&db).await;
    for sql in [
        format!(
            "UPDATE ledger SET account_id = '{victim}', bucket_id = '{victim_bucket}' WHERE item_id = {item}"
        ),
        format!("UPDATE credit_buckets SET balance = balance + 15 WHERE id = '{payer_bucket}'"),
        format!("UPDATE credit_buckets SET balance = balance - 15 WHERE id = '{victim_bucket}'"),
    ] {
        db.raw_execute(&sql).await.unwrap();
    }
    assert_violation(&store, &format!("a ledger entry names account {victim}")).await;
    assert_violation(&store, "person 789 is on record as unlocked").await;
}

#[tokio::test]
async fn verify_reports_an_entry_for_another_person_or_kind() {
    let (store, db) = fresh_store(Arc::new(SystemClock)).await;
    seed_catalog(&store).await;
    let account = account_with(&store, BucketKind::Gift, 100, None).await;
    let task = unlock(&store, &account, &["789", "790"]).await;
    work_all(&store).await;
    let first = item_of(&db, &task, "789").await;
    let second = item_of(&db, &task, "790").await;
    allow_ledger_edits(&db).await;
    db.raw_execute(&format!(
        "UPDATE ledger SET personnel_id = '100' WHERE item_id = {first}"
    ))
    .await
    .unwrap();
    db.raw_execute(&format!(
        "UPDATE ledger SET kind = 'phone' WHERE item_id = {second}"
    ))
    .await
    .unwrap();
    assert_violation(&store, "email of person 100, task").await;
    assert_violation(&store, "phone of person 790").await;
}

#[tokio::test]
async fn verify_reports_an_item_settled_part_capture_part_release() {
    let clock = Arc::new(SystemClock);
    let (store, db) = fresh_store(clock.clone()).await;
    seed_catalog(&store).await;
    // 10 subscription credits are spent first, so one 15-credit hold spans two buckets.
    let account = account_with(
        &store,
        BucketKind::Subscription,
        10,
        Some(clock.now_ms() + DAY_MS),
    )
    .await;
    store
        .grant_credits(&Grant {
            account_id: account.clone(),
            kind: BucketKind::Gift,
            amount: 100,
            expires_at: None,
        })
        .await
        .unwrap();
    let task = unlock(&store, &account, &["789"]).await;
    work_all(&store).await;
    assert_verified(&store).await;
    let item = item_of(&db, &task, "789").await;
    let gift = bucket_of(&db, &account, "gift").await;
    // The gift share turned from capture into release, with the bucket and the item's
    // charge made to agree.
    allow_ledger_edits(&db).await;
    for sql in [
        format!(
            "UPDATE ledger SET entry_type = 'release' WHERE item_id = {item} AND bucket_id = '{gift}' AND entry_type = 'capture'"
        ),
        format!("UPDATE credit_buckets SET balance = balance + 5 WHERE id = '{gift}'"),
        format!("UPDATE task_items SET charged = 10 WHERE id = {item}"),
    ] {
        db.raw_execute(&sql).await.unwrap();
    }
    assert_violation(&store, "part capture and part release").await;
}

// ---- 4. A poisoned task does not stop the queue ---------------------------------------

/// Makes every settlement of `task`'s items fail inside the database, the abort included
/// (a constraint the data breaks every time), until `cure` drops it.
async fn poison(db: &TestDb, task: &str) {
    if db.is_postgres() {
        db.raw_execute(&format!(
            "CREATE FUNCTION poisoned() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               IF NEW.task_id = '{task}' AND NEW.status IN ('unlocked', 'failed') THEN \
                 RAISE EXCEPTION 'poisoned task'; \
               END IF; RETURN NEW; END $$"
        ))
        .await
        .unwrap();
        db.raw_execute(
            "CREATE TRIGGER poisoned BEFORE UPDATE ON task_items FOR EACH ROW EXECUTE FUNCTION poisoned()",
        )
        .await
        .unwrap();
    } else {
        db.raw_execute(&format!(
            "CREATE TRIGGER poisoned BEFORE UPDATE OF status ON task_items \
             WHEN NEW.task_id = '{task}' AND NEW.status IN ('unlocked', 'failed') \
             BEGIN SELECT RAISE(ABORT, 'poisoned task'); END"
        ))
        .await
        .unwrap();
    }
}

async fn cure(db: &TestDb) {
    let sql = if db.is_postgres() {
        "DROP TRIGGER poisoned ON task_items"
    } else {
        "DROP TRIGGER poisoned"
    };
    db.raw_execute(sql).await.unwrap();
}

#[tokio::test]
async fn a_task_that_cannot_be_settled_does_not_stop_the_tasks_behind_it() {
    let clock = Arc::new(ManualClock::new(START_MS));
    let (store, db) = fresh_store(clock.clone()).await;
    seed_catalog(&store).await;
    let account = account_with(&store, BucketKind::Gift, 1_000, None).await;
    let poisoned = unlock(&store, &account, &["789", "790"]).await;
    poison(&db, &poisoned).await;

    // Every attempt at the poisoned task fails when it settles.
    for attempt in 1..=POLICY.max_attempts {
        let Claim::Claimed(task) = store.claim_task("worker", POLICY).await.unwrap() else {
            panic!("attempt {attempt}: the poisoned task is claimable");
        };
        assert_eq!(task.lease.task_id, poisoned);
        let outcomes = task.items.iter().map(|i| (i.item_id, found())).collect();
        store.settle_items(&task.lease, outcomes).await.unwrap_err();
        clock.advance(POLICY.lease_ms + 1);
    }
    let healthy = unlock(&store, &account, &["100", "101"]).await;

    // Past its attempts the poisoned task is aborted, and the abort fails too.
    store.claim_task("worker", POLICY).await.unwrap_err();
    // The next claim goes on to the task behind it (it used to pick the poisoned task
    // again, forever).
    let Claim::Claimed(task) = store.claim_task("worker", POLICY).await.unwrap() else {
        panic!("the queue is stuck behind the poisoned task");
    };
    assert_eq!(task.lease.task_id, healthy);
    let outcomes = task.items.iter().map(|i| (i.item_id, found())).collect();
    store.settle_items(&task.lease, outcomes).await.unwrap();
    assert_eq!(
        task_status(&store, &account, &healthy).await,
        TaskStatus::Completed
    );
    assert_verified(&store).await;

    // Once the fault is gone, the poisoned task is failed and its holds released.
    cure(&db).await;
    clock.advance(POLICY.lease_ms + 1);
    assert_eq!(
        store.claim_task("worker", POLICY).await.unwrap(),
        Claim::Aborted {
            task_id: poisoned.clone()
        }
    );
    let view = store
        .task_view(&account, ContactKind::Email, &poisoned)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.status, TaskStatus::Failed);
    assert!(view
        .items
        .iter()
        .all(|i| i.status == ItemStatus::Failed && i.error_code.as_deref() == Some("TASK_FAILED")));
    assert_eq!((view.held, view.charged), (0, 0));
    assert_verified(&store).await;
    let buckets = store.buckets(&account).await.unwrap();
    assert_eq!(
        buckets.iter().map(|b| b.balance).sum::<i64>(),
        1_000 - 2 * 15
    );
    assert_eq!(buckets.iter().map(|b| b.held).sum::<i64>(), 0);
}
