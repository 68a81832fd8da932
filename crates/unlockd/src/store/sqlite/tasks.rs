//! Unlock tasks on SQLite: the statements of a create, a claim and its lease, and a
//! settlement (the rules and orchestrations are shared: `domain::{unlock, create, lease,
//! settle}`, `store::{create, claim, settlement}`), the write transaction they run in (the
//! writer's batch), and the read view.

use sqlx::SqliteConnection;

use super::{integrators, SqliteStore};
use crate::domain::create::CreatePlan;
use crate::domain::ledger::Bucket;
use crate::domain::settle::LookupOutcome;
use crate::domain::settle::{SettlementFacts, SettlementPlan};
use crate::domain::unlock::UnlockFacts;
use crate::domain::ContactKind;
use crate::store::claim;
use crate::store::claim::{ClaimedRow, LeaseRow, LeaseTransactions, LeaseWork};
use crate::store::create::{self, CreateFacts, CreateStatements, NewTask, INSERT_TASK_ROW};
use crate::store::rows::{item_status_str, json, SpendableBucketRow, TaskViewRow};
use crate::store::settlement::{self, HoldRow, OpenItemRow, SettlingTask};
use crate::store::{Claim, ClaimPolicy, Page, PageRequest, QueueGauges, SettleReport};
use crate::store::{CreateResult, Lease, NewUnlock, StoreError, StoreResult, TaskView};

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

/// A task's statements on SQLite (create, claim, lease, settle; the orchestrations are
/// shared: `store::create`, `store::claim`, `store::settlement`), with the store's clock.
/// A create's facts are read in two statements: one row per requested id with its four
/// facts, then the account's buckets (each statement is a round trip to the driver's
/// thread, so fewer is faster).
pub(super) struct SqliteTasks<'c> {
    pub conn: &'c mut SqliteConnection,
    pub now: i64,
}

/// One requested person's facts, as a create reads them.
#[derive(Debug, sqlx::FromRow)]
struct PersonFactsRow {
    id: String,
    present: bool,
    linked: bool,
    unlocked: bool,
    in_flight_task: Option<String>,
}

#[async_trait::async_trait]
impl CreateStatements for SqliteTasks<'_> {
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
        let people: Vec<PersonFactsRow> = sqlx::query_as(
            "SELECT r.value AS id, \
                EXISTS (SELECT 1 FROM personnel p WHERE p.id = r.value) AS present, \
                EXISTS (SELECT 1 FROM personnel_events pe WHERE pe.event_id = ?1 AND pe.personnel_id = r.value) AS linked, \
                EXISTS (SELECT 1 FROM unlocks u WHERE u.account_id = ?2 AND u.kind = ?3 \
                        AND u.personnel_id = r.value AND u.status = 'unlocked') AS unlocked, \
                (SELECT f.task_id FROM inflight f WHERE f.account_id = ?2 AND f.kind = ?3 AND f.personnel_id = r.value) \
                AS in_flight_task \
             FROM json_each(?4) r",
        )
        .bind(&event_id)
        .bind(&r.account_id)
        .bind(r.kind.as_str())
        .bind(json(&valid_ids)?)
        .fetch_all(&mut *conn)
        .await?;
        let buckets: Vec<SpendableBucketRow> = sqlx::query_as(
            "SELECT id, kind, expires_at, created_at, balance FROM credit_buckets \
             WHERE account_id = ?1 AND balance > 0",
        )
        .bind(&r.account_id)
        .fetch_all(&mut *conn)
        .await?;
        let mut facts = UnlockFacts::default();
        for person in people {
            if person.present {
                facts.existing.insert(person.id.clone());
            }
            if person.linked {
                facts.linked.insert(person.id.clone());
            }
            if person.unlocked {
                facts.already_unlocked.insert(person.id.clone());
            }
            if let Some(task) = person.in_flight_task {
                facts.in_flight.insert(person.id, task);
            }
        }
        facts.buckets = buckets
            .into_iter()
            .map(Bucket::try_from)
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

/// Runs a write transaction in the writer's batch (which holds the write lock), with the
/// store's clock read when the work is queued.
#[async_trait::async_trait]
impl LeaseTransactions for SqliteStore {
    async fn in_transaction<T: Send + 'static>(&self, work: LeaseWork<T>) -> StoreResult<T> {
        let now = self.now();
        self.batcher
            .run(move |conn| Box::pin(async move { work(&mut SqliteTasks { conn, now }).await }))
            .await
    }
}

// The statements written once are added by the macro (see `claim`).
crate::store::claim::lease_statements_impl!(SqliteTasks<'_>, conn {
    async fn claim_next(
        &mut self,
        worker_id: &str,
        lease_ms: i64,
    ) -> StoreResult<Option<ClaimedRow>> {
        Ok(sqlx::query_as(
            "UPDATE tasks SET status = 'processing', attempt = attempt + 1, lease_owner = ?1, \
                 lease_expires_at = ?2, updated_at = ?3 \
             WHERE id = (SELECT id FROM tasks WHERE status IN ('pending', 'processing') \
                         AND (status = 'pending' OR lease_expires_at <= ?3) \
                         ORDER BY created_at, id LIMIT 1) \
             RETURNING id, account_id, kind, attempt",
        )
        .bind(worker_id)
        .bind(self.now + lease_ms)
        .bind(self.now)
        .fetch_optional(&mut *self.conn)
        .await?)
    }

    async fn lease_row(&mut self, task_id: &str) -> StoreResult<Option<LeaseRow>> {
        // The batch holds the write lock: nothing can change the row before the write.
        Ok(sqlx::query_as(
            "SELECT attempt, lease_owner, status, ?2 AS now FROM tasks WHERE id = ?1",
        )
        .bind(task_id)
        .bind(self.now)
        .fetch_optional(&mut *self.conn)
        .await?)
    }

    async fn mark_started(
        &mut self,
        task_id: &str,
        item_ids: &[i64],
        now: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE task_items SET status = 'processing', updated_at = ?1 \
             WHERE task_id = ?2 AND status = 'pending' AND id IN (SELECT value FROM json_each(?3))",
        )
        .bind(now)
        .bind(task_id)
        .bind(json(&item_ids)?)
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    async fn extend_lease(&mut self, lease: &Lease, lease_ms: i64) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE tasks SET lease_expires_at = ?1 \
             WHERE id = ?2 AND attempt = ?3 AND lease_owner = ?4 AND status = 'processing'",
        )
        .bind(self.now + lease_ms)
        .bind(&lease.task_id)
        .bind(lease.attempt)
        .bind(&lease.worker_id)
        .execute(&mut *self.conn)
        .await?;
        Ok(done.rows_affected())
    }
});

// The statements written once are added by the macro (see `settlement`).
crate::store::settlement::settlement_statements_impl!(SqliteTasks<'_>, conn {
    async fn settlement_facts(
        &mut self,
        task: &SettlingTask,
        item_ids: &[i64],
    ) -> StoreResult<SettlementFacts> {
        let ids = json(&item_ids)?;
        // Open items and whether the account already has their person, in one statement.
        let open: Vec<OpenItemRow> = sqlx::query_as(
            "SELECT i.id AS item_id, i.personnel_id, EXISTS (SELECT 1 FROM unlocks u WHERE u.account_id = ?2 \
                    AND u.kind = ?3 AND u.personnel_id = i.personnel_id AND u.status = 'unlocked') AS unlocked \
             FROM task_items i WHERE i.task_id = ?1 AND i.status IN ('pending', 'processing') \
             AND i.id IN (SELECT value FROM json_each(?4))",
        )
        .bind(&task.id)
        .bind(&task.account_id)
        .bind(task.kind.as_str())
        .bind(&ids)
        .fetch_all(&mut *self.conn)
        .await?;
        let holds: Vec<HoldRow> = sqlx::query_as(
            "SELECT item_id, bucket_id, amount FROM ledger WHERE entry_type = 'hold' AND task_id = ?1 \
             AND item_id IN (SELECT value FROM json_each(?2)) ORDER BY id",
        )
        .bind(&task.id)
        .bind(&ids)
        .fetch_all(&mut *self.conn)
        .await?;
        Ok(settlement::settlement_facts(open, holds))
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
            .execute(&mut *self.conn)
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
            .execute(&mut *self.conn)
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
            .execute(&mut *self.conn)
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
        .execute(&mut *self.conn)
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
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }
});

// The methods written once are added by the macro (see `portable`).
crate::store::portable::tasks_impl!(SqliteStore, reader, writer {
    async fn create_unlock_task(&self, request: &NewUnlock) -> StoreResult<CreateResult> {
        let now = self.now();
        let request = request.clone();
        self.batcher
            .run(move |conn| {
                Box::pin(async move {
                    create::create(&mut SqliteTasks { conn, now }, &request).await
                })
            })
            .await
    }

    async fn precheck_unlock(&self, request: &NewUnlock) -> StoreResult<CreateResult> {
        let now = self.now();
        let mut tx = self.reader.begin().await?;
        let result = create::precheck(&mut SqliteTasks { conn: &mut tx, now }, request).await?;
        tx.commit().await?;
        Ok(result)
    }

    /// A poll: one indexed statement, run on the calling thread (see `inline`).
    async fn task_view(
        &self,
        account_id: &str,
        kind: ContactKind,
        task_id: &str,
    ) -> StoreResult<Option<TaskView>> {
        use rusqlite::OptionalExtension;
        let row = self.inline.read(|conn| {
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
});
