//! Unlock tasks on SQLite: the statements of a create, a claim and its lease, and a
//! settlement (the rules and orchestrations are shared: `domain::{unlock, create, lease,
//! settle}`, `store::{create, claim, settlement}`), the write transaction they run in (the
//! writer's batch), and the read view.

use rusqlite::types::ToSql;
use rusqlite::Connection;
use unlockd_api::TaskStatus;

use super::statements::{execute, query, query_one, query_optional, shared_values};
use super::writer::finish_now;
use super::{integrators, SqliteStore};
use crate::domain::create::CreatePlan;
use crate::domain::ledger::Bucket;
use crate::domain::settle::LookupOutcome;
use crate::domain::settle::{SettlementFacts, SettlementPlan};
use crate::domain::unlock::UnlockFacts;
use crate::domain::ContactKind;
use crate::store::claim;
use crate::store::claim::{
    ClaimedRow, LeaseRow, LeaseStatements, LeaseTransactions, LeaseWork, GIVE_BACK_LEASE,
    UNSETTLED_ITEMS,
};
use crate::store::create::{self, CreateFacts, CreateStatements, NewTask, INSERT_TASK_ROW};
use crate::store::rows::{
    item_status_str, json, parse_kind, task_status_str, SpendableBucketRow, TaskViewRow,
};
use crate::store::settlement::{
    self, HoldRow, OpenItemRow, SettlementStatements, SettlingTask, SettlingTaskRow, SharedBind,
    FINISH_TASK, OPEN_ITEMS, SETTLING_TASK, TOUCH_TASK,
};
use crate::store::{Claim, ClaimPolicy, ClaimedItem, Page, PageRequest, QueueGauges, SettleReport};
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
/// shared: `store::create`, `store::claim`, `store::settlement`), with the store's clock,
/// on a rusqlite connection: the writer's for writes, an inline reader's for a precheck.
/// Every method does only synchronous work (no `.await` inside): the writer runs them to
/// their end in one poll (`writer::finish_now`).
pub(super) struct SqliteTasks<'c> {
    pub conn: &'c mut Connection,
    pub now: i64,
}

const FIND_EVENT: &str =
    "SELECT id FROM events WHERE id = ?1 OR event_id = ?1 ORDER BY id = ?1 DESC LIMIT 1";
/// One row per requested id with its four facts (one statement instead of four).
const PERSON_FACTS: &str = "SELECT r.value AS id, \
        EXISTS (SELECT 1 FROM personnel p WHERE p.id = r.value) AS present, \
        EXISTS (SELECT 1 FROM personnel_events pe WHERE pe.event_id = ?1 AND pe.personnel_id = r.value) AS linked, \
        EXISTS (SELECT 1 FROM unlocks u WHERE u.account_id = ?2 AND u.kind = ?3 \
                AND u.personnel_id = r.value AND u.status = 'unlocked') AS unlocked, \
        (SELECT f.task_id FROM inflight f WHERE f.account_id = ?2 AND f.kind = ?3 AND f.personnel_id = r.value) \
        AS in_flight_task \
     FROM json_each(?4) r";

/// [`PERSON_FACTS`]'s row.
struct PersonFactsRow {
    id: String,
    present: bool,
    linked: bool,
    unlocked: bool,
    in_flight_task: Option<String>,
}

impl PersonFactsRow {
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(PersonFactsRow {
            id: row.get(0)?,
            present: row.get(1)?,
            linked: row.get(2)?,
            unlocked: row.get(3)?,
            in_flight_task: row.get(4)?,
        })
    }
}

const SPENDABLE_BUCKETS: &str =
    "SELECT id, kind, expires_at, created_at, balance FROM credit_buckets \
     WHERE account_id = ?1 AND balance > 0";
// A create's writes, one row per cached statement (see the settlement's below for why).
const INSERT_ITEM: &str =
    "INSERT INTO task_items (task_id, position, personnel_id, status, updated_at) \
     VALUES (?1, ?2, ?3, 'pending', ?4)";
/// The guard: a primary key violation here means another live task holds the person.
const INSERT_GUARD: &str = "INSERT INTO inflight (account_id, kind, personnel_id, task_id) \
     VALUES (?1, ?2, ?3, ?4)";
const INSERT_HOLD: &str =
    "INSERT INTO ledger (account_id, bucket_id, entry_type, amount, task_id, item_id, kind, personnel_id, call_source, created_at) \
     VALUES (?1, ?2, 'hold', ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
const TAKE_FROM_BUCKET: &str =
    "UPDATE credit_buckets SET balance = balance - ?1, held = held + ?1 \
     WHERE id = ?2 AND account_id = ?3 AND balance >= ?1";
const CLAIM_NEXT: &str =
    "UPDATE tasks SET status = 'processing', attempt = attempt + 1, lease_owner = ?1, \
         lease_expires_at = ?2, updated_at = ?3 \
     WHERE id = (SELECT id FROM tasks WHERE status IN ('pending', 'processing') \
                 AND (status = 'pending' OR lease_expires_at <= ?3) \
                 ORDER BY created_at, id LIMIT 1) \
     RETURNING id, account_id, kind, attempt";
const LEASE_ROW: &str = "SELECT attempt, lease_owner, status FROM tasks WHERE id = ?1";
const MARK_STARTED: &str = "UPDATE task_items SET status = 'processing', updated_at = ?1 \
     WHERE task_id = ?2 AND status = 'pending' AND id IN (SELECT value FROM json_each(?3))";
const EXTEND_LEASE: &str = "UPDATE tasks SET lease_expires_at = ?1 \
     WHERE id = ?2 AND attempt = ?3 AND lease_owner = ?4 AND status = 'processing'";
/// Open items and whether the account already has their person, in one statement.
const OPEN_ITEMS_FACTS: &str =
    "SELECT i.id AS item_id, i.personnel_id, EXISTS (SELECT 1 FROM unlocks u WHERE u.account_id = ?2 \
            AND u.kind = ?3 AND u.personnel_id = i.personnel_id AND u.status = 'unlocked') AS unlocked \
     FROM task_items i WHERE i.task_id = ?1 AND i.status IN ('pending', 'processing') \
     AND i.id IN (SELECT value FROM json_each(?4))";
const HOLDS_OF_ITEMS: &str =
    "SELECT item_id, bucket_id, amount FROM ledger WHERE entry_type = 'hold' AND task_id = ?1 \
     AND item_id IN (SELECT value FROM json_each(?2)) ORDER BY id";
// A settlement's writes, one row per statement: on the writer's own connection a cached
// statement costs microseconds, while one statement over a JSON array of the rows re-parsed
// each row's JSON object once per field it read (perf of the worker draining a backlog:
// SQLite's JSON parser took about a fifth of the server's samples).
const RECORD_UNLOCKED: &str =
    "INSERT INTO unlocks (account_id, kind, personnel_id, status, value, task_id, updated_at) \
     VALUES (?1, ?2, ?3, 'unlocked', ?4, ?5, ?6) \
     ON CONFLICT (account_id, kind, personnel_id) DO UPDATE SET status = 'unlocked', \
        value = excluded.value, task_id = excluded.task_id, updated_at = excluded.updated_at \
     WHERE unlocks.status <> 'unlocked'";
const RECORD_NOT_FOUND: &str =
    "INSERT INTO unlocks (account_id, kind, personnel_id, status, value, task_id, updated_at) \
     VALUES (?1, ?2, ?3, 'failed', NULL, ?4, ?5) \
     ON CONFLICT (account_id, kind, personnel_id) DO UPDATE SET status = 'failed', \
        value = NULL, task_id = excluded.task_id, updated_at = excluded.updated_at \
     WHERE unlocks.status <> 'unlocked'";
const INSERT_SETTLEMENT_ENTRY: &str =
    "INSERT INTO ledger (account_id, bucket_id, entry_type, amount, task_id, item_id, kind, personnel_id, call_source, created_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
const SETTLE_ITEM: &str =
    "UPDATE task_items SET status = ?1, value = ?2, error_code = ?3, charged = ?4, updated_at = ?5 \
     WHERE id = ?6 AND task_id = ?7 AND status IN ('pending', 'processing')";
const REMOVE_GUARD: &str =
    "DELETE FROM inflight WHERE account_id = ?1 AND kind = ?2 AND task_id = ?3 AND personnel_id = ?4";

#[async_trait::async_trait]
impl CreateStatements for SqliteTasks<'_> {
    async fn create_facts(
        &mut self,
        r: &NewUnlock,
        valid_ids: &[&str],
        _lock: bool,
    ) -> StoreResult<Option<CreateFacts>> {
        // `_lock`: a create runs in the writer's batch, which holds the write lock already.
        let conn = &*self.conn;
        let event = query_optional(conn, FIND_EVENT, &[&r.event_ref], |row| {
            row.get::<_, String>(0)
        })?;
        let Some(event_id) = event else {
            return Ok(None);
        };
        let ids = json(&valid_ids)?;
        let kind = r.kind.as_str();
        let values: [&dyn ToSql; 4] = [&event_id, &r.account_id, &kind, &ids];
        let mut facts = UnlockFacts::default();
        for person in query(conn, PERSON_FACTS, &values, PersonFactsRow::from_row)? {
            let id = person.id;
            if person.present {
                facts.existing.insert(id.clone());
            }
            if person.linked {
                facts.linked.insert(id.clone());
            }
            if person.unlocked {
                facts.already_unlocked.insert(id.clone());
            }
            if let Some(task) = person.in_flight_task {
                facts.in_flight.insert(id, task);
            }
        }
        let buckets = query(conn, SPENDABLE_BUCKETS, &[&r.account_id], |row| {
            Ok(SpendableBucketRow {
                id: row.get(0)?,
                kind: row.get(1)?,
                expires_at: row.get(2)?,
                created_at: row.get(3)?,
                balance: row.get(4)?,
            })
        })?;
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
        let conn = &*self.conn;
        let r = task.request;
        let (kind, call_source) = (r.kind.as_str(), r.call_source.as_str());
        execute(
            conn,
            INSERT_TASK_ROW,
            &[
                &task.id,
                &r.account_id,
                &kind,
                &task.event_id,
                &r.event_ref,
                &call_source,
                &r.price,
                &task.now,
            ],
        )?;
        let mut item_ids = Vec::with_capacity(plan.items.len());
        for (position, person) in plan.items.iter().enumerate() {
            execute(
                conn,
                INSERT_ITEM,
                &[&task.id, &(position as i64), person, &task.now],
            )?;
            item_ids.push(conn.last_insert_rowid());
            execute(
                conn,
                INSERT_GUARD,
                &[&r.account_id, &kind, person, &task.id],
            )?;
        }
        for hold in &plan.holds {
            let item_id = item_ids.get(hold.position).ok_or_else(|| {
                StoreError::Integrity("a hold names an item the plan does not have".into())
            })?;
            execute(
                conn,
                INSERT_HOLD,
                &[
                    &r.account_id,
                    &hold.bucket_id,
                    &hold.amount,
                    &task.id,
                    item_id,
                    &kind,
                    &hold.personnel_id,
                    &call_source,
                    &task.now,
                ],
            )?;
        }
        for take in &plan.takes {
            let taken = execute(
                conn,
                TAKE_FROM_BUCKET,
                &[&take.amount, &take.bucket_id, &r.account_id],
            )?;
            if taken != 1 {
                return Err(StoreError::Integrity(
                    "a bucket cannot cover its share of the hold".into(),
                ));
            }
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
            .run(move |conn| finish_now(work(&mut SqliteTasks { conn, now })))
            .await
    }
}

#[async_trait::async_trait]
impl LeaseStatements for SqliteTasks<'_> {
    async fn claim_next(
        &mut self,
        worker_id: &str,
        lease_ms: i64,
    ) -> StoreResult<Option<ClaimedRow>> {
        let expires = self.now + lease_ms;
        Ok(query_optional(
            self.conn,
            CLAIM_NEXT,
            &[&worker_id, &expires, &self.now],
            |row| {
                Ok(ClaimedRow {
                    id: row.get(0)?,
                    account_id: row.get(1)?,
                    kind: row.get(2)?,
                    attempt: row.get(3)?,
                })
            },
        )?)
    }

    async fn unsettled_items(&mut self, task_id: &str) -> StoreResult<Vec<ClaimedItem>> {
        Ok(query(self.conn, UNSETTLED_ITEMS, &[&task_id], |row| {
            Ok(ClaimedItem {
                item_id: row.get(0)?,
                personnel_id: row.get(1)?,
            })
        })?)
    }

    async fn lease_row(&mut self, task_id: &str) -> StoreResult<Option<LeaseRow>> {
        // The batch holds the write lock: nothing can change the row before the write.
        let now = self.now;
        Ok(query_optional(self.conn, LEASE_ROW, &[&task_id], |row| {
            Ok(LeaseRow {
                attempt: row.get(0)?,
                lease_owner: row.get(1)?,
                status: row.get(2)?,
                now,
            })
        })?)
    }

    async fn mark_started(&mut self, task_id: &str, item_ids: &[i64], now: i64) -> StoreResult<()> {
        execute(
            self.conn,
            MARK_STARTED,
            &[&now, &task_id, &json(&item_ids)?],
        )?;
        Ok(())
    }

    async fn extend_lease(&mut self, lease: &Lease, lease_ms: i64) -> StoreResult<u64> {
        let expires = self.now + lease_ms;
        Ok(execute(
            self.conn,
            EXTEND_LEASE,
            &[&expires, &lease.task_id, &lease.attempt, &lease.worker_id],
        )?)
    }

    async fn give_back_lease(&mut self, lease: &Lease) -> StoreResult<()> {
        execute(
            self.conn,
            GIVE_BACK_LEASE,
            &[&lease.task_id, &lease.attempt, &lease.worker_id],
        )?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl SettlementStatements for SqliteTasks<'_> {
    async fn settling_task(&mut self, task_id: &str) -> StoreResult<SettlingTask> {
        let row = query_one(
            self.conn,
            SETTLING_TASK,
            &[&task_id],
            SettlingTaskRow::from_rusqlite,
        )?;
        Ok(SettlingTask {
            id: task_id.to_string(),
            account_id: row.account_id,
            kind: parse_kind(&row.kind)?,
            call_source: row.call_source,
            created_at: row.created_at,
        })
    }

    async fn settlement_facts(
        &mut self,
        task: &SettlingTask,
        item_ids: &[i64],
    ) -> StoreResult<SettlementFacts> {
        let ids = json(&item_ids)?;
        let kind = task.kind.as_str();
        let open = query(
            self.conn,
            OPEN_ITEMS_FACTS,
            &[&task.id, &task.account_id, &kind, &ids],
            |row| {
                Ok(OpenItemRow {
                    item_id: row.get(0)?,
                    personnel_id: row.get(1)?,
                    unlocked: row.get(2)?,
                })
            },
        )?;
        let holds = query(self.conn, HOLDS_OF_ITEMS, &[&task.id, &ids], |row| {
            Ok(HoldRow {
                item_id: row.get(0)?,
                bucket_id: row.get(1)?,
                amount: row.get(2)?,
            })
        })?;
        Ok(settlement::settlement_facts(open, holds))
    }

    async fn write_settlement(
        &mut self,
        task: &SettlingTask,
        now: i64,
        plan: &SettlementPlan,
    ) -> StoreResult<()> {
        let conn = &*self.conn;
        let kind = task.kind.as_str();
        let mut recorded = 0;
        for (person, value) in &plan.unlocked {
            recorded += execute(
                conn,
                RECORD_UNLOCKED,
                &[&task.account_id, &kind, person, value, &task.id, &now],
            )?;
        }
        if recorded != plan.unlocked.len() as u64 {
            // The plan charges only people the account did not have; the write lock is
            // held, so this cannot differ unless something is badly wrong.
            return Err(StoreError::Integrity(
                "an unlock record changed under a settlement".into(),
            ));
        }
        for person in &plan.not_found {
            execute(
                conn,
                RECORD_NOT_FOUND,
                &[&task.account_id, &kind, person, &task.id, &now],
            )?;
        }
        for e in &plan.entries {
            execute(
                conn,
                INSERT_SETTLEMENT_ENTRY,
                &[
                    &task.account_id,
                    &e.bucket_id,
                    &e.entry.as_str(),
                    &e.amount,
                    &task.id,
                    &e.item_id,
                    &kind,
                    &e.person,
                    &task.call_source,
                    &now,
                ],
            )?;
        }
        let mut updated = 0;
        for i in &plan.items {
            updated += execute(
                conn,
                SETTLE_ITEM,
                &[
                    &item_status_str(i.status),
                    &i.value,
                    &i.error_code,
                    &i.charged,
                    &now,
                    &i.item_id,
                    &task.id,
                ],
            )?;
        }
        if updated != plan.items.len() as u64 {
            return Err(StoreError::Integrity("a settled item was not open".into()));
        }
        for person in &plan.guards_removed {
            execute(
                conn,
                REMOVE_GUARD,
                &[&task.account_id, &kind, &task.id, person],
            )?;
        }
        Ok(())
    }

    async fn open_items(&mut self, task_id: &str) -> StoreResult<i64> {
        Ok(query_one(self.conn, OPEN_ITEMS, &[&task_id], |row| {
            row.get(0)
        })?)
    }

    async fn mark_task(
        &mut self,
        task_id: &str,
        now: i64,
        finished: Option<TaskStatus>,
    ) -> StoreResult<()> {
        match finished {
            Some(status) => execute(
                self.conn,
                FINISH_TASK,
                &[&task_status_str(status), &now, &task_id],
            )?,
            None => execute(self.conn, TOUCH_TASK, &[&now, &task_id])?,
        };
        Ok(())
    }

    async fn execute_shared(
        &mut self,
        sql: &'static str,
        binds: &[SharedBind<'_>],
    ) -> StoreResult<u64> {
        Ok(execute(self.conn, sql, &shared_values(binds))?)
    }
}

// The methods written once are added by the macro (see `portable`).
crate::store::portable::tasks_impl!(SqliteStore, reader, writer {
    async fn create_unlock_task(&self, request: &NewUnlock) -> StoreResult<CreateResult> {
        let now = self.now();
        let request = request.clone();
        self.batcher
            .run(move |conn| finish_now(create::create(&mut SqliteTasks { conn, now }, &request)))
            .await
    }

    /// The create's decision without its writes, on one snapshot of an inline reader (see
    /// `inline`): three short indexed statements.
    async fn precheck_unlock(&self, request: &NewUnlock) -> StoreResult<CreateResult> {
        let now = self.now();
        self.inline.read(|conn| {
            conn.execute_batch("BEGIN")?;
            let result = finish_now(create::precheck(&mut SqliteTasks { conn, now }, request));
            // It only read: ending it cannot lose anything.
            conn.execute_batch("COMMIT")?;
            result
        })
    }

    /// A poll: one indexed statement, run on the calling thread (see `inline`).
    async fn task_view(
        &self,
        account_id: &str,
        kind: ContactKind,
        task_id: &str,
    ) -> StoreResult<Option<TaskView>> {
        let row = self.inline.read(|conn| {
            Ok(query_optional(conn, TASK_VIEW, &[&task_id, &account_id, &kind.as_str()], |r| {
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
            })?)
        })?;
        row.map(TaskViewRow::into_view).transpose()
    }
});
