//! Unlock tasks on SQLite: create (classify + hold + insert, one transaction), claim with
//! lease and fencing, the statements of a settlement (the rule and its orchestration are
//! shared: `domain::settle`, `store::settlement`), and the read view.

use sqlx::SqliteConnection;
use unlockd_api::TaskStatus;

use super::SqliteStore;
use crate::domain::create::CreatePlan;
use crate::domain::ledger::Bucket;
use crate::domain::settle::{HoldShare, LookupOutcome, SettlementFacts, SettlementPlan};
use crate::domain::unlock::UnlockFacts;
use crate::domain::ContactKind;
use crate::store::create::{self, CreateFacts, CreateStatements, NewTask, INSERT_TASK_ROW};
use crate::store::rows::{item_status_str, json, parse_bucket_kind, parse_kind, TaskViewRow};
use crate::store::settlement::{self, SettlingTask};
use crate::store::{
    Claim, ClaimPolicy, ClaimedItem, ClaimedTask, CreateResult, Lease, NewUnlock, SettleReport,
    StoreError, StoreResult, TaskView,
};

/// A create's statements on SQLite, with the store's clock (the orchestration is shared:
/// `store::create`). Facts are read in two statements: one row per requested id with its
/// four facts, then the account's buckets (each statement is a round trip to the driver's
/// thread, so fewer is faster).
pub(super) struct SqliteCreate<'c> {
    pub conn: &'c mut SqliteConnection,
    pub now: i64,
}

#[async_trait::async_trait]
impl CreateStatements for SqliteCreate<'_> {
    async fn create_facts(
        &mut self,
        r: &NewUnlock,
        valid_ids: &[&str],
        _lock: bool,
    ) -> StoreResult<Option<CreateFacts>> {
        // `_lock`: a create runs in the writer's batch, which holds the write lock already.
        let conn = &mut *self.conn;
        let event: Option<(String,)> = sqlx::query_as(
            "SELECT id FROM events WHERE id = ?1 OR event_id = ?1 ORDER BY id = ?1 DESC LIMIT 1",
        )
        .bind(&r.event_ref)
        .fetch_optional(&mut *conn)
        .await?;
        let Some((event_id,)) = event else {
            return Ok(None);
        };
        let people: Vec<(String, bool, bool, bool, Option<String>)> = sqlx::query_as(
            "SELECT r.value, \
                EXISTS (SELECT 1 FROM personnel p WHERE p.id = r.value), \
                EXISTS (SELECT 1 FROM personnel_events pe WHERE pe.event_id = ?1 AND pe.personnel_id = r.value), \
                EXISTS (SELECT 1 FROM unlocks u WHERE u.account_id = ?2 AND u.kind = ?3 \
                        AND u.personnel_id = r.value AND u.status = 'unlocked'), \
                (SELECT f.task_id FROM inflight f WHERE f.account_id = ?2 AND f.kind = ?3 AND f.personnel_id = r.value) \
             FROM json_each(?4) r",
        )
        .bind(&event_id)
        .bind(&r.account_id)
        .bind(r.kind.as_str())
        .bind(json(&valid_ids)?)
        .fetch_all(&mut *conn)
        .await?;
        let buckets: Vec<(String, String, Option<i64>, i64, i64)> = sqlx::query_as(
            "SELECT id, kind, expires_at, created_at, balance FROM credit_buckets \
             WHERE account_id = ?1 AND balance > 0",
        )
        .bind(&r.account_id)
        .fetch_all(&mut *conn)
        .await?;
        let mut facts = UnlockFacts::default();
        for (id, present, linked, unlocked, task) in people {
            if present {
                facts.existing.insert(id.clone());
            }
            if linked {
                facts.linked.insert(id.clone());
            }
            if unlocked {
                facts.already_unlocked.insert(id.clone());
            }
            if let Some(task) = task {
                facts.in_flight.insert(id, task);
            }
        }
        facts.buckets = buckets
            .into_iter()
            .map(|(id, kind, expires_at, created_at, balance)| {
                Ok(Bucket {
                    id,
                    kind: parse_bucket_kind(&kind)?,
                    expires_at,
                    created_at,
                    balance,
                })
            })
            .collect::<StoreResult<_>>()?;
        Ok(Some(CreateFacts {
            event_id,
            now: self.now,
            facts,
        }))
    }

    async fn insert_task(&mut self, task: NewTask<'_>, plan: &CreatePlan) -> StoreResult<()> {
        let conn = &mut *self.conn;
        let r = task.request;
        sqlx::query(INSERT_TASK_ROW)
            .bind(task.id)
            .bind(&r.account_id)
            .bind(r.kind.as_str())
            .bind(task.event_id)
            .bind(&r.event_ref)
            .bind(r.call_source.as_str())
            .bind(r.price)
            .bind(task.now)
            .execute(&mut *conn)
            .await?;
        let people = json(&plan.items)?;
        let mut positions: Vec<(i64, i64)> = sqlx::query_as(
            "INSERT INTO task_items (task_id, position, personnel_id, status, updated_at) \
             SELECT ?1, CAST(key AS INTEGER), value, 'pending', ?2 FROM json_each(?3) WHERE true \
             RETURNING position, id",
        )
        .bind(task.id)
        .bind(task.now)
        .bind(&people)
        .fetch_all(&mut *conn)
        .await?;
        // RETURNING order is not guaranteed: put the items back in request order.
        positions.sort_unstable();
        if positions.len() != plan.items.len() {
            return Err(StoreError::Integrity(
                "task items were not all inserted".into(),
            ));
        }
        // The guard: a primary key violation here means another live task holds the person.
        sqlx::query(
            "INSERT INTO inflight (account_id, kind, personnel_id, task_id) \
             SELECT ?1, ?2, value, ?3 FROM json_each(?4)",
        )
        .bind(&r.account_id)
        .bind(r.kind.as_str())
        .bind(task.id)
        .bind(&people)
        .execute(&mut *conn)
        .await?;
        let entries: Vec<serde_json::Value> = plan
            .holds
            .iter()
            .map(|hold| {
                serde_json::json!({
                    "b": hold.bucket_id, "a": hold.amount,
                    "i": positions[hold.position].1, "p": hold.personnel_id
                })
            })
            .collect();
        sqlx::query(
            "INSERT INTO ledger (account_id, bucket_id, entry_type, amount, task_id, item_id, kind, personnel_id, call_source, created_at) \
             SELECT ?1, value ->> '$.b', 'hold', value ->> '$.a', ?2, value ->> '$.i', ?3, value ->> '$.p', ?4, ?5 \
             FROM json_each(?6)",
        )
        .bind(&r.account_id)
        .bind(task.id)
        .bind(r.kind.as_str())
        .bind(r.call_source.as_str())
        .bind(task.now)
        .bind(json(&entries)?)
        .execute(&mut *conn)
        .await?;
        let moves: Vec<serde_json::Value> = plan
            .takes
            .iter()
            .map(|take| serde_json::json!({"b": take.bucket_id, "a": take.amount}))
            .collect();
        let done = sqlx::query(
            "UPDATE credit_buckets SET balance = balance - m.amount, held = held + m.amount \
             FROM (SELECT value ->> '$.b' AS bucket, value ->> '$.a' AS amount FROM json_each(?1)) m \
             WHERE credit_buckets.id = m.bucket AND credit_buckets.account_id = ?2 \
               AND credit_buckets.balance >= m.amount",
        )
        .bind(json(&moves)?)
        .bind(&r.account_id)
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() != moves.len() as u64 {
            return Err(StoreError::Integrity(
                "a bucket cannot cover its share of the hold".into(),
            ));
        }
        Ok(())
    }
}

pub(super) async fn precheck(store: &SqliteStore, r: &NewUnlock) -> StoreResult<CreateResult> {
    let now = store.now();
    let mut tx = store.reader.begin().await?;
    let result = create::precheck(&mut SqliteCreate { conn: &mut tx, now }, r).await?;
    tx.commit().await?;
    Ok(result)
}

pub(super) async fn create(store: &SqliteStore, r: &NewUnlock) -> StoreResult<CreateResult> {
    let now = store.now();
    let r = r.clone();
    store
        .batcher
        .run(move |conn| {
            Box::pin(async move { create::create(&mut SqliteCreate { conn, now }, &r).await })
        })
        .await
}

/// The task view's one statement: the task, its items and its ledger totals agree.
const TASK_VIEW: &str = "\
    SELECT t.id, t.account_id, t.kind, t.event_ref, t.status, t.call_source, t.price, \
           t.created_at, t.updated_at, t.completed_at, \
           (SELECT json_group_array(json_array(i.id, i.personnel_id, i.status, i.value, i.error_code, i.charged)) \
            FROM (SELECT * FROM task_items WHERE task_id = t.id ORDER BY position) i) AS items, \
           (SELECT json_array(SUM(CASE WHEN entry_type = 'hold' THEN amount END), \
                              SUM(CASE WHEN entry_type = 'capture' THEN amount END), \
                              SUM(CASE WHEN entry_type = 'release' THEN amount END)) \
            FROM ledger WHERE task_id = t.id) AS totals \
    FROM tasks t WHERE t.id = ?1 AND t.account_id = ?2 AND t.kind = ?3";

/// A poll: one indexed statement, run on the calling thread (see `inline`).
pub(super) async fn view(
    store: &SqliteStore,
    account_id: &str,
    kind: ContactKind,
    task_id: &str,
) -> StoreResult<Option<TaskView>> {
    use rusqlite::OptionalExtension;
    let row = store.inline.read(|conn| {
        conn.prepare_cached(TASK_VIEW)?
            .query_row((task_id, account_id, kind.as_str()), |r| {
                Ok(TaskViewRow {
                    id: r.get(0)?,
                    account_id: r.get(1)?,
                    kind: r.get(2)?,
                    event_ref: r.get(3)?,
                    status: r.get(4)?,
                    call_source: r.get(5)?,
                    price: r.get(6)?,
                    created_at: r.get(7)?,
                    updated_at: r.get(8)?,
                    completed_at: r.get(9)?,
                    items: r.get(10)?,
                    totals: r.get(11)?,
                })
            })
            .optional()
    })?;
    row.map(TaskViewRow::into_view).transpose()
}

pub(super) async fn claim(
    store: &SqliteStore,
    worker_id: &str,
    policy: ClaimPolicy,
) -> StoreResult<Claim> {
    // The claim commits on its own, before anything else is tried: the attempt counter
    // advances even when the work (or the abort) of this task fails every time, so a
    // poisoned task is leased away from the head of the queue and the attempt limit is
    // reached. Times are this process's clock: SQLite lives on one host.
    let now = store.now();
    let worker = worker_id.to_string();
    let claimed = store
        .batcher
        .run(move |conn| Box::pin(async move { claim_in(conn, &worker, policy, now).await }))
        .await?;
    let Some((lease, account_id, kind, items)) = claimed else {
        return Ok(Claim::Idle);
    };
    if lease.attempt > policy.max_attempts {
        // A task that keeps losing its workers is aborted: every unfinished item fails and
        // its hold goes back. If even that fails, the lease just taken keeps other workers
        // off the task until it runs out, and the tasks behind it go on.
        let outcomes = items
            .iter()
            .map(|(id, _)| (*id, LookupOutcome::TaskFailed))
            .collect();
        let aborting = lease.clone();
        store
            .batcher
            .run(move |conn| {
                Box::pin(async move {
                    check_lease(conn, &aborting).await?;
                    settlement::settle(conn, &aborting.task_id, now, outcomes, TaskStatus::Failed)
                        .await
                })
            })
            .await?;
        return Ok(Claim::Aborted {
            task_id: lease.task_id,
        });
    }
    Ok(Claim::Claimed(ClaimedTask {
        lease,
        account_id,
        kind,
        items: items
            .into_iter()
            .map(|(item_id, personnel_id)| ClaimedItem {
                item_id,
                personnel_id,
            })
            .collect(),
    }))
}

/// The claimed task's lease, account, kind and unsettled items (id, person).
type ClaimRow = (Lease, String, ContactKind, Vec<(i64, String)>);

async fn claim_in(
    conn: &mut SqliteConnection,
    worker_id: &str,
    policy: ClaimPolicy,
    now: i64,
) -> StoreResult<Option<ClaimRow>> {
    let claimed: Option<(String, String, String, i64)> = sqlx::query_as(
        "UPDATE tasks SET status = 'processing', attempt = attempt + 1, lease_owner = ?1, \
             lease_expires_at = ?2, updated_at = ?3 \
         WHERE id = (SELECT id FROM tasks WHERE status IN ('pending', 'processing') \
                     AND (status = 'pending' OR lease_expires_at <= ?3) \
                     ORDER BY created_at, id LIMIT 1) \
         RETURNING id, account_id, kind, attempt",
    )
    .bind(worker_id)
    .bind(now + policy.lease_ms)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((task_id, account_id, kind, attempt)) = claimed else {
        return Ok(None);
    };
    let items: Vec<(i64, String)> = sqlx::query_as(
        "SELECT id, personnel_id FROM task_items WHERE task_id = ?1 \
         AND status IN ('pending', 'processing') ORDER BY position",
    )
    .bind(&task_id)
    .fetch_all(&mut *conn)
    .await?;
    let lease = Lease {
        task_id,
        attempt,
        worker_id: worker_id.to_string(),
    };
    Ok(Some((lease, account_id, parse_kind(&kind)?, items)))
}

/// Fencing: the lease must still be this worker's current attempt.
async fn check_lease(conn: &mut SqliteConnection, lease: &Lease) -> StoreResult<()> {
    let current: Option<(i64, Option<String>, String)> =
        sqlx::query_as("SELECT attempt, lease_owner, status FROM tasks WHERE id = ?1")
            .bind(&lease.task_id)
            .fetch_optional(&mut *conn)
            .await?;
    match current {
        Some((attempt, Some(owner), status))
            if attempt == lease.attempt && owner == lease.worker_id && status == "processing" =>
        {
            Ok(())
        }
        _ => Err(StoreError::LeaseLost),
    }
}

pub(super) async fn start_items(
    store: &SqliteStore,
    lease: &Lease,
    item_ids: &[i64],
) -> StoreResult<()> {
    let now = store.now();
    let lease = lease.clone();
    let ids = json(&item_ids)?;
    store
        .batcher
        .run(move |conn| {
            Box::pin(async move {
                check_lease(conn, &lease).await?;
                sqlx::query(
                    "UPDATE task_items SET status = 'processing', updated_at = ?1 \
                     WHERE task_id = ?2 AND status = 'pending' AND id IN (SELECT value FROM json_each(?3))",
                )
                .bind(now)
                .bind(&lease.task_id)
                .bind(&ids)
                .execute(&mut *conn)
                .await?;
                Ok(())
            })
        })
        .await
}

pub(super) async fn settle(
    store: &SqliteStore,
    lease: &Lease,
    outcomes: Vec<(i64, LookupOutcome)>,
) -> StoreResult<SettleReport> {
    let now = store.now();
    let lease = lease.clone();
    store
        .batcher
        .run(move |conn| {
            Box::pin(async move {
                check_lease(conn, &lease).await?;
                settlement::settle(conn, &lease.task_id, now, outcomes, TaskStatus::Completed).await
            })
        })
        .await
}

// The statements written once are added by the macro (see `settlement`).
crate::store::settlement::settlement_statements_impl!(SqliteConnection {
    async fn settling_task(&mut self, task_id: &str) -> StoreResult<SettlingTask> {
        let (account_id, kind, call_source, created_at): (String, String, String, i64) =
            sqlx::query_as(
                "SELECT account_id, kind, call_source, created_at FROM tasks WHERE id = ?1",
            )
            .bind(task_id)
            .fetch_one(&mut *self)
            .await?;
        Ok(SettlingTask {
            id: task_id.to_string(),
            account_id,
            kind: parse_kind(&kind)?,
            call_source,
            created_at,
        })
    }

    async fn settlement_facts(
        &mut self,
        task: &SettlingTask,
        item_ids: &[i64],
    ) -> StoreResult<SettlementFacts> {
        let ids = json(&item_ids)?;
        // Open items and whether the account already has their person, in one statement.
        let open: Vec<(i64, String, bool)> = sqlx::query_as(
            "SELECT i.id, i.personnel_id, EXISTS (SELECT 1 FROM unlocks u WHERE u.account_id = ?2 \
                    AND u.kind = ?3 AND u.personnel_id = i.personnel_id AND u.status = 'unlocked') \
             FROM task_items i WHERE i.task_id = ?1 AND i.status IN ('pending', 'processing') \
             AND i.id IN (SELECT value FROM json_each(?4))",
        )
        .bind(&task.id)
        .bind(&task.account_id)
        .bind(task.kind.as_str())
        .bind(&ids)
        .fetch_all(&mut *self)
        .await?;
        let hold_rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT item_id, bucket_id, amount FROM ledger WHERE entry_type = 'hold' AND task_id = ?1 \
             AND item_id IN (SELECT value FROM json_each(?2)) ORDER BY id",
        )
        .bind(&task.id)
        .bind(&ids)
        .fetch_all(&mut *self)
        .await?;
        let mut facts = SettlementFacts::default();
        for (item_id, person, unlocked) in open {
            if unlocked {
                facts.already_unlocked.insert(person.clone());
            }
            facts.open.insert(item_id, person);
        }
        for (item_id, bucket_id, amount) in hold_rows {
            facts
                .holds
                .entry(item_id)
                .or_default()
                .push(HoldShare { bucket_id, amount });
        }
        Ok(facts)
    }

    async fn write_settlement(
        &mut self,
        task: &SettlingTask,
        now: i64,
        plan: &SettlementPlan,
    ) -> StoreResult<()> {
        let kind = task.kind.as_str();
        if !plan.unlocked.is_empty() {
            let rows: Vec<serde_json::Value> = plan
                .unlocked
                .iter()
                .map(|(person, value)| serde_json::json!({"p": person, "v": value}))
                .collect();
            let done = sqlx::query(
                "INSERT INTO unlocks (account_id, kind, personnel_id, status, value, task_id, updated_at) \
                 SELECT ?1, ?2, value ->> '$.p', 'unlocked', value ->> '$.v', ?3, ?4 FROM json_each(?5) WHERE true \
                 ON CONFLICT (account_id, kind, personnel_id) DO UPDATE SET status = 'unlocked', \
                    value = excluded.value, task_id = excluded.task_id, updated_at = excluded.updated_at \
                 WHERE unlocks.status <> 'unlocked'",
            )
            .bind(&task.account_id)
            .bind(kind)
            .bind(&task.id)
            .bind(now)
            .bind(json(&rows)?)
            .execute(&mut *self)
            .await?;
            if done.rows_affected() != plan.unlocked.len() as u64 {
                // The plan charges only people the account did not have; the write lock
                // is held, so this cannot differ unless something is badly wrong.
                return Err(StoreError::Integrity(
                    "an unlock record changed under a settlement".into(),
                ));
            }
        }
        if !plan.not_found.is_empty() {
            sqlx::query(
                "INSERT INTO unlocks (account_id, kind, personnel_id, status, value, task_id, updated_at) \
                 SELECT ?1, ?2, value, 'failed', NULL, ?3, ?4 FROM json_each(?5) WHERE true \
                 ON CONFLICT (account_id, kind, personnel_id) DO UPDATE SET status = 'failed', \
                    value = NULL, task_id = excluded.task_id, updated_at = excluded.updated_at \
                 WHERE unlocks.status <> 'unlocked'",
            )
            .bind(&task.account_id)
            .bind(kind)
            .bind(&task.id)
            .bind(now)
            .bind(json(&plan.not_found)?)
            .execute(&mut *self)
            .await?;
        }
        if !plan.entries.is_empty() {
            let rows: Vec<serde_json::Value> = plan
                .entries
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "b": e.bucket_id, "t": e.entry.as_str(), "a": e.amount, "i": e.item_id, "p": e.person
                    })
                })
                .collect();
            sqlx::query(
                "INSERT INTO ledger (account_id, bucket_id, entry_type, amount, task_id, item_id, kind, personnel_id, call_source, created_at) \
                 SELECT ?1, value ->> '$.b', value ->> '$.t', value ->> '$.a', ?2, value ->> '$.i', ?3, value ->> '$.p', ?4, ?5 \
                 FROM json_each(?6)",
            )
            .bind(&task.account_id)
            .bind(&task.id)
            .bind(kind)
            .bind(&task.call_source)
            .bind(now)
            .bind(json(&rows)?)
            .execute(&mut *self)
            .await?;
        }
        let items: Vec<serde_json::Value> = plan
            .items
            .iter()
            .map(|i| {
                serde_json::json!({
                    "i": i.item_id, "s": item_status_str(i.status), "v": i.value, "e": i.error_code, "c": i.charged
                })
            })
            .collect();
        let updated = sqlx::query(
            "UPDATE task_items SET status = u.status, value = u.value, error_code = u.error, \
                charged = u.charged, updated_at = ?1 \
             FROM (SELECT value ->> '$.i' AS id, value ->> '$.s' AS status, value ->> '$.v' AS value, \
                          value ->> '$.e' AS error, value ->> '$.c' AS charged FROM json_each(?2)) u \
             WHERE task_items.id = u.id AND task_items.task_id = ?3 \
               AND task_items.status IN ('pending', 'processing')",
        )
        .bind(now)
        .bind(json(&items)?)
        .bind(&task.id)
        .execute(&mut *self)
        .await?;
        if updated.rows_affected() != plan.items.len() as u64 {
            return Err(StoreError::Integrity("a settled item was not open".into()));
        }
        sqlx::query(
            "DELETE FROM inflight WHERE account_id = ?1 AND kind = ?2 AND task_id = ?3 \
             AND personnel_id IN (SELECT value FROM json_each(?4))",
        )
        .bind(&task.account_id)
        .bind(kind)
        .bind(&task.id)
        .bind(json(&plan.guards_removed)?)
        .execute(&mut *self)
        .await?;
        for (bucket_id, moved) in &plan.buckets {
            let done = sqlx::query(
                "UPDATE credit_buckets SET held = held - ?1, balance = balance + ?2 \
                 WHERE id = ?3 AND held >= ?1",
            )
            .bind(moved.captured + moved.released)
            .bind(moved.released)
            .bind(bucket_id)
            .execute(&mut *self)
            .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Integrity(format!(
                    "bucket {bucket_id} holds less than its settlement"
                )));
            }
        }
        Ok(())
    }
});
