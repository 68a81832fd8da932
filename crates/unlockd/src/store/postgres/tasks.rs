//! Unlock tasks on PostgreSQL: the statements of a create (lock the account, classify,
//! hold, insert: one transaction), a claim (`FOR UPDATE SKIP LOCKED`) and its lease (the
//! task row locked under the fencing check), and a settlement; the rules and
//! orchestrations are shared (`domain::{unlock, create, lease, settle}`,
//! `store::{create, claim, settlement}`). Only the statements differ from SQLite's (arrays
//! instead of JSON, the database's clock, row locks).

use sqlx::PgConnection;

use super::{integrators, retrying, PgStore};
use crate::domain::create::CreatePlan;
use crate::domain::ledger::Bucket;
use crate::domain::settle::LookupOutcome;
use crate::domain::settle::{SettlementFacts, SettlementPlan};
use crate::domain::unlock::UnlockFacts;
use crate::domain::ContactKind;
use crate::store::claim;
use crate::store::claim::{ClaimedRow, LeaseRow, LeaseTransactions, LeaseWork};
use crate::store::create::{self, CreateFacts, CreateStatements, NewTask};
use crate::store::rows::{item_status_str, parse_bucket_kind, positional_row, TaskViewRow};
use crate::store::settlement::{self, HoldRow, OpenItemRow, SettlingTask};
use crate::store::{Claim, ClaimPolicy, Page, PageRequest, QueueGauges, SettleReport};
use crate::store::{CreateResult, Lease, NewUnlock, StoreError, StoreResult, TaskView};

/// Catalog facts, read by one statement (a precheck): `n` the database's time, `v` the
/// resolved event, `e` the id exists, `l` the person is linked to the event.
const CATALOG_FACTS: &str = "\
    WITH ev AS (SELECT id FROM events WHERE id = $1 OR event_id = $1 \
                ORDER BY (id = $1) DESC, id LIMIT 1) \
    SELECT 'n'::text, '', NULL::text, unlockd_now_ms($3), NULL::bigint, NULL::bigint \
    UNION ALL SELECT 'v', id, NULL, NULL, NULL, NULL FROM ev \
    UNION ALL SELECT 'e', p.id, NULL, NULL, NULL, NULL FROM personnel p WHERE p.id = ANY($2) \
    UNION ALL SELECT 'l', pe.personnel_id, NULL, NULL, NULL, NULL FROM personnel_events pe \
        WHERE pe.event_id = (SELECT id FROM ev) AND pe.personnel_id = ANY($2)";

/// The account's facts, read by one statement (a precheck, on its snapshot): `b` a
/// spendable bucket (id, kind, expires_at, created_at, balance), `u` already unlocked, `f`
/// in flight (with its task).
const ACCOUNT_FACTS: &str = "\
    WITH b AS (SELECT id, kind, expires_at, created_at, balance FROM credit_buckets \
               WHERE account_id = $1 AND balance > 0) \
    SELECT 'b'::text, id, kind, expires_at, created_at, balance FROM b \
    UNION ALL SELECT 'u', u.personnel_id, NULL, NULL, NULL, NULL FROM unlocks u \
        WHERE u.account_id = $1 AND u.kind = $2 AND u.status = 'unlocked' AND u.personnel_id = ANY($3) \
    UNION ALL SELECT 'f', f.personnel_id, f.task_id, NULL, NULL, NULL FROM inflight f \
        WHERE f.account_id = $1 AND f.kind = $2 AND f.personnel_id = ANY($3)";

/// A create's facts in one round trip (migration 0010): the catalog facts above, then,
/// once the account row is locked (`FOR NO KEY UPDATE`), its facts, with its spendable
/// buckets locked `FOR UPDATE` in id order (the order every writer locks them in) and
/// read at their latest. This serialises the creates of one account across processes and
/// keeps the locked section to this call, the plan's single insert, and the commit.
const LOCKED_CREATE_FACTS: &str = "SELECT * FROM unlockd_locked_create_facts($1, $2, $3, $4, $5)";

positional_row! {
    /// One tagged fact row of the statements above (read by position: a create's hot path).
    /// Which columns a tag fills is said there; `n` carries the time in `expires_at`.
    struct FactRow {
        tag: String,
        id: String,
        text: Option<String>,
        expires_at: Option<i64>,
        created_at: Option<i64>,
        balance: Option<i64>,
    }
}

positional_row! {
    /// How many rows of each kind [`INSERT_TASK`] wrote (read by position: a create's hot
    /// path).
    struct InsertedCounts {
        items: i64,
        guards: i64,
        entries: i64,
        taken: i64,
    }
}

/// A task's statements on PostgreSQL (create, claim, lease, settle; the orchestrations are
/// shared: `store::create`, `store::claim`, `store::settlement`). Times are the database's
/// clock unless a test clock is injected.
pub(super) struct PgTasks<'c> {
    pub conn: &'c mut PgConnection,
    pub injected_now: Option<i64>,
}

#[async_trait::async_trait]
impl CreateStatements for PgTasks<'_> {
    /// With `lock` (a create), the account row is locked before its facts are read;
    /// without (a precheck), the caller reads inside one snapshot.
    async fn create_facts(
        &mut self,
        r: &NewUnlock,
        valid: &[&str],
        lock: bool,
    ) -> StoreResult<Option<CreateFacts>> {
        let conn = &mut *self.conn;
        if lock {
            // One round trip: the event, the account's lock, then its facts.
            let rows: Vec<FactRow> = sqlx::query_as(LOCKED_CREATE_FACTS)
                .bind(&r.event_ref)
                .bind(valid)
                .bind(self.injected_now)
                .bind(&r.account_id)
                .bind(r.kind.as_str())
                .fetch_all(&mut *conn)
                .await?;
            return parse_facts(rows);
        }
        let mut rows: Vec<FactRow> = sqlx::query_as(CATALOG_FACTS)
            .bind(&r.event_ref)
            .bind(valid)
            .bind(self.injected_now)
            .fetch_all(&mut *conn)
            .await?;
        if !rows.iter().any(|row| row.tag == "v") {
            return Ok(None);
        }
        let account_rows: Vec<FactRow> = sqlx::query_as(ACCOUNT_FACTS)
            .bind(&r.account_id)
            .bind(r.kind.as_str())
            .bind(valid)
            .fetch_all(&mut *conn)
            .await?;
        rows.extend(account_rows);
        parse_facts(rows)
    }

    async fn insert_task(&mut self, task: NewTask<'_>, plan: &CreatePlan) -> StoreResult<()> {
        let r = task.request;
        let hold_people: Vec<&str> = plan.holds.iter().map(|h| h.personnel_id.as_str()).collect();
        let hold_buckets: Vec<&str> = plan.holds.iter().map(|h| h.bucket_id.as_str()).collect();
        let hold_amounts: Vec<i64> = plan.holds.iter().map(|h| h.amount).collect();
        let bucket_ids: Vec<&str> = plan.takes.iter().map(|t| t.bucket_id.as_str()).collect();
        let amounts: Vec<i64> = plan.takes.iter().map(|t| t.amount).collect();
        let counts: InsertedCounts = sqlx::query_as(INSERT_TASK)
            .bind(task.id)
            .bind(&r.account_id)
            .bind(r.kind.as_str())
            .bind(task.event_id)
            .bind(&r.event_ref)
            .bind(r.call_source.as_str())
            .bind(r.price)
            .bind(task.now)
            .bind(&plan.items)
            .bind(&hold_people)
            .bind(&hold_buckets)
            .bind(&hold_amounts)
            .bind(&bucket_ids)
            .bind(&amounts)
            .fetch_one(&mut *self.conn)
            .await?;
        let expected = plan.items.len() as i64;
        if counts.items != expected
            || counts.guards != expected
            || counts.entries != plan.holds.len() as i64
        {
            return Err(StoreError::Integrity(
                "task items, guards or holds were not all inserted".into(),
            ));
        }
        if counts.taken != bucket_ids.len() as i64 {
            // The caller's transaction is rolled back whole.
            return Err(StoreError::Integrity(
                "a bucket cannot cover its hold".into(),
            ));
        }
        Ok(())
    }
}

/// Turns tagged fact rows into the facts `decide` reads.
fn parse_facts(rows: Vec<FactRow>) -> StoreResult<Option<CreateFacts>> {
    let mut event_id = None;
    let mut now = None;
    let mut facts = UnlockFacts::default();
    for row in rows {
        let id = row.id;
        match row.tag.as_str() {
            "n" => now = row.expires_at,
            "v" => event_id = Some(id),
            "e" => {
                facts.existing.insert(id);
            }
            "l" => {
                facts.linked.insert(id);
            }
            "u" => {
                facts.already_unlocked.insert(id);
            }
            "f" => {
                facts.in_flight.insert(id, row.text.unwrap_or_default());
            }
            "b" => facts.buckets.push(Bucket {
                id,
                kind: parse_bucket_kind(row.text.as_deref().unwrap_or_default())?,
                expires_at: row.expires_at,
                created_at: row.created_at.unwrap_or_default(),
                balance: row.balance.unwrap_or_default(),
            }),
            tag => return Err(StoreError::Integrity(format!("unknown fact tag {tag}"))),
        }
    }
    let Some(event_id) = event_id else {
        return Ok(None);
    };
    let now = now.ok_or_else(|| StoreError::Integrity("the database gave no time".into()))?;
    Ok(Some(CreateFacts {
        event_id,
        now,
        facts,
    }))
}

/// Task, items, in-flight guards, hold entries and the buckets' holds in one statement.
/// The guard insert is where the constraint speaks: a primary-key violation there fails
/// the statement, and the caller's transaction is rolled back whole. A bucket is taken
/// from only if it covers its part (the row is locked, so it always does); the counts
/// returned let the caller check that every row was written.
const INSERT_TASK: &str = "\
    WITH task AS ( \
        INSERT INTO tasks (id, account_id, kind, event_id, event_ref, status, call_source, price, created_at, updated_at) \
        VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $8) RETURNING id), \
    items AS ( \
        INSERT INTO task_items (task_id, position, personnel_id, status, updated_at) \
        SELECT (SELECT id FROM task), u.ord - 1, u.person, 'pending', $8 \
        FROM UNNEST($9::text[]) WITH ORDINALITY AS u(person, ord) ORDER BY u.ord \
        RETURNING id, personnel_id), \
    guards AS ( \
        INSERT INTO inflight (account_id, kind, personnel_id, task_id) \
        SELECT $2, $3, u.person, (SELECT id FROM task) FROM UNNEST($9::text[]) AS u(person) \
        RETURNING 1), \
    holds AS ( \
        INSERT INTO ledger (account_id, bucket_id, entry_type, amount, task_id, item_id, kind, personnel_id, call_source, created_at) \
        SELECT $2, h.bucket, 'hold', h.amount, (SELECT id FROM task), i.id, $3, h.person, $6, $8 \
        FROM UNNEST($10::text[], $11::text[], $12::bigint[]) WITH ORDINALITY AS h(person, bucket, amount, ord) \
        JOIN items i ON i.personnel_id = h.person ORDER BY h.ord \
        RETURNING 1), \
    taken AS ( \
        UPDATE credit_buckets b SET balance = b.balance - u.amount, held = b.held + u.amount \
        FROM UNNEST($13::text[], $14::bigint[]) AS u(id, amount) \
        WHERE b.id = u.id AND b.account_id = $2 AND b.balance >= u.amount \
        RETURNING b.id) \
    SELECT (SELECT COUNT(*) FROM items), (SELECT COUNT(*) FROM guards), \
           (SELECT COUNT(*) FROM holds), (SELECT COUNT(*) FROM taken)";

/// A create, committed with whatever else its account's lane has queued (`store::writer`):
/// the account's row lock is then taken once per batch rather than once per request.
async fn create_once(store: &PgStore, r: &NewUnlock) -> StoreResult<CreateResult> {
    let injected_now = store.injected_now();
    let request = r.clone();
    store
        .create_lane(&r.account_id)
        .run_keyed(r.account_id.clone(), move |conn| {
            Box::pin(
                async move { create::create(&mut PgTasks { conn, injected_now }, &request).await },
            )
        })
        .await
}

/// Runs a write transaction at READ COMMITTED on a pooled connection; a failed one is
/// rolled back before the error is returned, so its row locks are gone by the time the
/// caller (or the next claim) looks again. A dropped transaction would only be rolled back
/// later, when its connection goes back to the pool.
#[async_trait::async_trait]
impl LeaseTransactions for PgStore {
    async fn in_transaction<T: Send + 'static>(&self, work: LeaseWork<T>) -> StoreResult<T> {
        let mut tx = self.pool.begin().await?;
        let done = work(&mut PgTasks {
            conn: &mut tx,
            injected_now: self.injected_now(),
        })
        .await;
        match done {
            Ok(value) => {
                tx.commit().await?;
                Ok(value)
            }
            Err(e) => {
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }
}

// The statements written once are added by the macro (see `claim`).
crate::store::claim::lease_statements_impl!(PgTasks<'_>, conn {
    /// The oldest claimable task that no other worker is claiming right now; the partial
    /// index holds only live tasks. Times are the database's.
    async fn claim_next(
        &mut self,
        worker_id: &str,
        lease_ms: i64,
    ) -> StoreResult<Option<ClaimedRow>> {
        Ok(sqlx::query_as(
            "UPDATE tasks SET status = 'processing', attempt = attempt + 1, lease_owner = $1, \
                 lease_expires_at = unlockd_now_ms($3) + $2, updated_at = unlockd_now_ms($3) \
             WHERE id = (SELECT id FROM tasks WHERE status IN ('pending', 'processing') \
                         AND (status = 'pending' OR lease_expires_at <= unlockd_now_ms($3)) \
                         ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING id, account_id, kind, attempt",
        )
        .bind(worker_id)
        .bind(lease_ms)
        .bind(self.injected_now)
        .fetch_optional(&mut *self.conn)
        .await?)
    }

    /// The task row stays locked until the transaction ends, so no claim can overtake the
    /// write that follows.
    async fn lease_row(&mut self, task_id: &str) -> StoreResult<Option<LeaseRow>> {
        Ok(sqlx::query_as(
            "SELECT attempt, lease_owner, status, unlockd_now_ms($2) AS now \
             FROM tasks WHERE id = $1 FOR UPDATE",
        )
        .bind(task_id)
        .bind(self.injected_now)
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
            "UPDATE task_items SET status = 'processing', updated_at = $1 \
             WHERE task_id = $2 AND status = 'pending' AND id = ANY($3)",
        )
        .bind(now)
        .bind(task_id)
        .bind(item_ids)
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    async fn extend_lease(&mut self, lease: &Lease, lease_ms: i64) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE tasks SET lease_expires_at = unlockd_now_ms($5) + $1 \
             WHERE id = $2 AND attempt = $3 AND lease_owner = $4 AND status = 'processing'",
        )
        .bind(lease_ms)
        .bind(&lease.task_id)
        .bind(lease.attempt)
        .bind(&lease.worker_id)
        .bind(self.injected_now)
        .execute(&mut *self.conn)
        .await?;
        Ok(done.rows_affected())
    }
});

// The statements written once are added by the macro (see `settlement`).
crate::store::settlement::settlement_statements_impl!(PgTasks<'_>, conn {
    async fn settlement_facts(
        &mut self,
        task: &SettlingTask,
        item_ids: &[i64],
    ) -> StoreResult<SettlementFacts> {
        // Open items and whether the account already has their person, in one statement.
        // A scalar subquery, not EXISTS: PostgreSQL may run an EXISTS in the select list as
        // one hashed pass over every unlock of the account, which grows with the account.
        let open: Vec<OpenItemRow> = sqlx::query_as(
            "SELECT i.id AS item_id, i.personnel_id, (SELECT u.status = 'unlocked' FROM unlocks u WHERE u.account_id = $2 \
                    AND u.kind = $3 AND u.personnel_id = i.personnel_id) IS TRUE AS unlocked \
             FROM task_items i WHERE i.task_id = $1 AND i.status IN ('pending', 'processing') \
             AND i.id = ANY($4)",
        )
        .bind(&task.id)
        .bind(&task.account_id)
        .bind(task.kind.as_str())
        .bind(item_ids)
        .fetch_all(&mut *self.conn)
        .await?;
        let holds: Vec<HoldRow> = sqlx::query_as(
            "SELECT item_id, bucket_id, amount FROM ledger WHERE entry_type = 'hold' AND task_id = $1 \
             AND item_id = ANY($2) ORDER BY id",
        )
        .bind(&task.id)
        .bind(item_ids)
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
            let people: Vec<&str> = plan.unlocked.iter().map(|(p, _)| p.as_str()).collect();
            let values: Vec<&str> = plan.unlocked.iter().map(|(_, v)| v.as_str()).collect();
            let done = sqlx::query(
                "INSERT INTO unlocks (account_id, kind, personnel_id, status, value, task_id, updated_at) \
                 SELECT $1, $2, u.person, 'unlocked', u.value, $3, $4 \
                 FROM UNNEST($5::text[], $6::text[]) AS u(person, value) \
                 ON CONFLICT (account_id, kind, personnel_id) DO UPDATE SET status = 'unlocked', \
                    value = excluded.value, task_id = excluded.task_id, updated_at = excluded.updated_at \
                 WHERE unlocks.status <> 'unlocked'",
            )
            .bind(&task.account_id)
            .bind(kind)
            .bind(&task.id)
            .bind(now)
            .bind(&people)
            .bind(&values)
            .execute(&mut *self.conn)
            .await?;
            if done.rows_affected() != plan.unlocked.len() as u64 {
                // The plan charges only people the account did not have, and the in-flight
                // guard keeps every other settlement off them: this is corruption.
                return Err(StoreError::Integrity(
                    "an unlock record changed under a settlement".into(),
                ));
            }
        }
        if !plan.not_found.is_empty() {
            sqlx::query(
                "INSERT INTO unlocks (account_id, kind, personnel_id, status, value, task_id, updated_at) \
                 SELECT $1, $2, u.person, 'failed', NULL, $3, $4 FROM UNNEST($5::text[]) AS u(person) \
                 ON CONFLICT (account_id, kind, personnel_id) DO UPDATE SET status = 'failed', \
                    value = NULL, task_id = excluded.task_id, updated_at = excluded.updated_at \
                 WHERE unlocks.status <> 'unlocked'",
            )
            .bind(&task.account_id)
            .bind(kind)
            .bind(&task.id)
            .bind(now)
            .bind(&plan.not_found)
            .execute(&mut *self.conn)
            .await?;
        }
        if !plan.entries.is_empty() {
            let buckets: Vec<&str> = plan.entries.iter().map(|e| e.bucket_id.as_str()).collect();
            let types: Vec<&str> = plan.entries.iter().map(|e| e.entry.as_str()).collect();
            let amounts: Vec<i64> = plan.entries.iter().map(|e| e.amount).collect();
            let items: Vec<i64> = plan.entries.iter().map(|e| e.item_id).collect();
            let people: Vec<&str> = plan.entries.iter().map(|e| e.person.as_str()).collect();
            sqlx::query(
                "INSERT INTO ledger (account_id, bucket_id, entry_type, amount, task_id, item_id, kind, personnel_id, call_source, created_at) \
                 SELECT $1, e.bucket, e.entry, e.amount, $2, e.item, $3, e.person, $4, $5 \
                 FROM UNNEST($6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::text[]) \
                     WITH ORDINALITY AS e(bucket, entry, amount, item, person, ord) \
                 ORDER BY e.ord",
            )
            .bind(&task.account_id)
            .bind(&task.id)
            .bind(kind)
            .bind(&task.call_source)
            .bind(now)
            .bind(&buckets)
            .bind(&types)
            .bind(&amounts)
            .bind(&items)
            .bind(&people)
            .execute(&mut *self.conn)
            .await?;
        }
        let ids: Vec<i64> = plan.items.iter().map(|i| i.item_id).collect();
        let statuses: Vec<String> = plan
            .items
            .iter()
            .map(|i| item_status_str(i.status))
            .collect();
        let values: Vec<Option<&str>> = plan.items.iter().map(|i| i.value.as_deref()).collect();
        let errors: Vec<Option<&str>> = plan.items.iter().map(|i| i.error_code).collect();
        let charged: Vec<i64> = plan.items.iter().map(|i| i.charged).collect();
        let updated = sqlx::query(
            "UPDATE task_items t SET status = u.status, value = u.value, error_code = u.error, \
                charged = u.charged, updated_at = $1 \
             FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[]) \
                 AS u(id, status, value, error, charged) \
             WHERE t.id = u.id AND t.task_id = $7 AND t.status IN ('pending', 'processing')",
        )
        .bind(now)
        .bind(&ids)
        .bind(&statuses)
        .bind(&values)
        .bind(&errors)
        .bind(&charged)
        .bind(&task.id)
        .execute(&mut *self.conn)
        .await?;
        if updated.rows_affected() != plan.items.len() as u64 {
            return Err(StoreError::Integrity("a settled item was not open".into()));
        }
        sqlx::query(
            "DELETE FROM inflight WHERE account_id = $1 AND kind = $2 AND task_id = $3 \
             AND personnel_id = ANY($4)",
        )
        .bind(&task.account_id)
        .bind(kind)
        .bind(&task.id)
        .bind(&plan.guards_removed)
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }
});

// The methods written once are added by the macro (see `portable`).
crate::store::portable::tasks_impl!(PgStore, pool, pool {
    async fn create_unlock_task(&self, request: &NewUnlock) -> StoreResult<CreateResult> {
        retrying(|| create_once(self, request)).await
    }

    async fn precheck_unlock(&self, request: &NewUnlock) -> StoreResult<CreateResult> {
        let mut tx = self.snapshot().await?;
        let injected_now = self.injected_now();
        let result = create::precheck(
            &mut PgTasks {
                conn: &mut tx,
                injected_now,
            },
            request,
        )
        .await?;
        tx.commit().await?;
        Ok(result)
    }

    async fn task_view(
        &self,
        account_id: &str,
        kind: ContactKind,
        task_id: &str,
    ) -> StoreResult<Option<TaskView>> {
        // One statement, so one snapshot: the task, its items and its ledger totals agree.
        let row: Option<TaskViewRow> = sqlx::query_as(
            "SELECT t.id, t.account_id, t.kind, t.event_ref, t.status, t.call_source, t.price, \
                    t.created_at, t.updated_at, t.completed_at, \
                    (SELECT COALESCE(json_agg(json_build_array(i.id, i.personnel_id, i.status, i.value, \
                            i.error_code, i.charged) ORDER BY i.position), '[]'::json)::text \
                     FROM task_items i WHERE i.task_id = t.id) AS items, \
                    (SELECT json_build_array(SUM(amount) FILTER (WHERE entry_type = 'hold'), \
                            SUM(amount) FILTER (WHERE entry_type = 'capture'), \
                            SUM(amount) FILTER (WHERE entry_type = 'release'))::text \
                     FROM ledger WHERE task_id = t.id) AS totals \
             FROM tasks t WHERE t.id = $1 AND t.account_id = $2 AND t.kind = $3",
        )
        .bind(task_id)
        .bind(account_id)
        .bind(kind.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(TaskViewRow::into_view).transpose()
    }

});
