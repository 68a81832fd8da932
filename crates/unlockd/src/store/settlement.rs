//! Settling items, written once for both backends: read the facts, let the domain plan
//! what moves (`domain::settle::plan_settlement`), write the plan, finish the task when
//! nothing is left. A backend supplies only the statements, in its own dialect.

use async_trait::async_trait;
use unlockd_api::TaskStatus;

use crate::domain::settle::{
    plan_settlement, HoldShare, LookupOutcome, SettlementFacts, SettlementPlan,
};
use crate::domain::ContactKind;
use crate::store::{SettleReport, StoreError, StoreResult};

// The statements both dialects read alike (`$N` placeholders work on SQLite too).

/// Unsettled items left in a task.
pub(crate) const OPEN_ITEMS: &str =
    "SELECT COUNT(*) FROM task_items WHERE task_id = $1 AND status IN ('pending', 'processing')";
/// Ends a task: its status, when, and no lease any more.
pub(crate) const FINISH_TASK: &str =
    "UPDATE tasks SET status = $1, completed_at = $2, updated_at = $2, \
     lease_owner = NULL, lease_expires_at = NULL WHERE id = $3";
/// Moves a bucket's settled share out of its held credits: the captured part is spent,
/// the released part goes back to the balance ($1 captured + released, $2 released).
pub(crate) const MOVE_HELD: &str =
    "UPDATE credit_buckets SET held = held - $1, balance = balance + $2 \
     WHERE id = $3 AND held >= $1";
/// The task a settlement is for.
pub(crate) const SETTLING_TASK: &str =
    "SELECT account_id, kind, call_source, created_at FROM tasks WHERE id = $1";
/// Records that a task moved.
pub(crate) const TOUCH_TASK: &str = "UPDATE tasks SET updated_at = $1 WHERE id = $2";
/// Numbers this settlement (the task's next round) on the items it settled, so progress
/// events come out in settlement order and can be resumed.
pub(crate) const NUMBER_SETTLED: &str = "UPDATE task_items SET settle_round = \
         (SELECT COALESCE(MAX(settle_round), 0) + 1 FROM task_items WHERE task_id = $1) \
     WHERE task_id = $1 AND settle_round IS NULL AND status IN ('unlocked', 'failed')";
/// The outbox: one delivery per live endpoint of the task's account that takes this event
/// type ($2), due at once. The id is stable, so the event is enqueued at most once.
pub(crate) const ENQUEUE_TASK_WEBHOOKS: &str =
    "INSERT INTO webhook_deliveries \
         (id, endpoint_id, account_id, event_type, task_id, task_kind, status, attempts, \
          next_attempt_at, retry_from, created_at) \
     SELECT 'msg_' || e.id || '_' || t.id, e.id, e.account_id, $2, t.id, t.kind, 'pending', 0, $3, $3, $3 \
     FROM tasks t JOIN webhook_endpoints e ON e.account_id = t.account_id \
     WHERE t.id = $1 AND e.deleted_at IS NULL \
       AND (' ' || e.events || ' ') LIKE ('% ' || $2 || ' %') \
     ON CONFLICT (id) DO NOTHING";

/// A value bound to a shared statement.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SharedBind<'a> {
    Text(&'a str),
    /// Text, or NULL.
    OptText(Option<&'a str>),
    Int(i64),
}

/// Implements `SettlementStatements` for a backend's statements type (`$conn` names its
/// connection field): its own methods (the dialect's statements) plus the ones whose text
/// is the same for both backends.
macro_rules! settlement_statements_impl {
    ($statements:ty, $conn:ident { $($own:tt)* }) => {
        #[async_trait::async_trait]
        impl $crate::store::settlement::SettlementStatements for $statements {
            $($own)*
            async fn settling_task(
                &mut self,
                task_id: &str,
            ) -> $crate::store::StoreResult<$crate::store::settlement::SettlingTask> {
                let row: $crate::store::settlement::SettlingTaskRow =
                    sqlx::query_as($crate::store::settlement::SETTLING_TASK)
                        .bind(task_id)
                        .fetch_one(&mut *self.$conn)
                        .await?;
                Ok($crate::store::settlement::SettlingTask {
                    id: task_id.to_string(),
                    account_id: row.account_id,
                    kind: $crate::store::rows::parse_kind(&row.kind)?,
                    call_source: row.call_source,
                    created_at: row.created_at,
                })
            }

            async fn open_items(&mut self, task_id: &str) -> $crate::store::StoreResult<i64> {
                Ok(sqlx::query_scalar($crate::store::settlement::OPEN_ITEMS)
                    .bind(task_id)
                    .fetch_one(&mut *self.$conn)
                    .await?)
            }

            async fn mark_task(
                &mut self,
                task_id: &str,
                now: i64,
                finished: Option<unlockd_api::TaskStatus>,
            ) -> $crate::store::StoreResult<()> {
                match finished {
                    Some(status) => {
                        sqlx::query($crate::store::settlement::FINISH_TASK)
                            .bind($crate::store::rows::task_status_str(status))
                            .bind(now)
                            .bind(task_id)
                            .execute(&mut *self.$conn)
                            .await?;
                    }
                    None => {
                        sqlx::query($crate::store::settlement::TOUCH_TASK)
                            .bind(now)
                            .bind(task_id)
                            .execute(&mut *self.$conn)
                            .await?;
                    }
                }
                Ok(())
            }

            async fn execute_shared(
                &mut self,
                sql: &'static str,
                binds: &[$crate::store::settlement::SharedBind<'_>],
            ) -> $crate::store::StoreResult<u64> {
                let mut query = sqlx::query(sql);
                for bind in binds {
                    query = match *bind {
                        $crate::store::settlement::SharedBind::Text(text) => query.bind(text),
                        $crate::store::settlement::SharedBind::OptText(text) => query.bind(text),
                        $crate::store::settlement::SharedBind::Int(value) => query.bind(value),
                    };
                }
                Ok(query.execute(&mut *self.$conn).await?.rows_affected())
            }
        }
    };
}
pub(crate) use settlement_statements_impl;

/// The webhook event type of a task that ended as `status`.
pub(crate) fn task_event_type(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Failed => "unlock_task.failed",
        _ => "unlock_task.completed",
    }
}

/// The task whose items are settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SettlingTask {
    pub id: String,
    pub account_id: String,
    pub kind: ContactKind,
    pub call_source: String,
    pub created_at: i64,
}

/// [`SETTLING_TASK`]'s row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SettlingTaskRow {
    pub account_id: String,
    pub kind: String,
    pub call_source: String,
    pub created_at: i64,
}

impl SettlingTaskRow {
    /// The row as SQLite's writer reads it (rusqlite, by position).
    pub(crate) fn from_rusqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(SettlingTaskRow {
            account_id: row.get(0)?,
            kind: row.get(1)?,
            call_source: row.get(2)?,
            created_at: row.get(3)?,
        })
    }
}

/// A reported item still open, and whether the account already has its person.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct OpenItemRow {
    pub item_id: i64,
    pub personnel_id: String,
    pub unlocked: bool,
}

/// One share of a reported item's hold, in ledger order.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct HoldRow {
    pub item_id: i64,
    pub bucket_id: String,
    pub amount: i64,
}

/// The facts a settlement plans from, out of the backend's rows.
pub(crate) fn settlement_facts(open: Vec<OpenItemRow>, holds: Vec<HoldRow>) -> SettlementFacts {
    let mut facts = SettlementFacts::default();
    for item in open {
        if item.unlocked {
            facts.already_unlocked.insert(item.personnel_id.clone());
        }
        facts.open.insert(item.item_id, item.personnel_id);
    }
    for hold in holds {
        facts
            .holds
            .entry(hold.item_id)
            .or_default()
            .push(HoldShare {
                bucket_id: hold.bucket_id,
                amount: hold.amount,
            });
    }
    facts
}

/// The statements a settlement needs, run inside the caller's transaction (which holds the
/// task's fencing check).
#[async_trait]
pub(crate) trait SettlementStatements: Send {
    async fn settling_task(&mut self, task_id: &str) -> StoreResult<SettlingTask>;
    /// The reported items still open, their hold shares, and which of their people this
    /// account already has unlocked.
    async fn settlement_facts(
        &mut self,
        task: &SettlingTask,
        item_ids: &[i64],
    ) -> StoreResult<SettlementFacts>;
    /// Writes the plan's rows: unlock records, ledger entries, item states, guard removal
    /// (the bucket moves are written by `settle`). Fails (and the caller rolls back) when a
    /// write does not match the plan.
    async fn write_settlement(
        &mut self,
        task: &SettlingTask,
        now: i64,
        plan: &SettlementPlan,
    ) -> StoreResult<()>;
    /// Unsettled items left in the task.
    async fn open_items(&mut self, task_id: &str) -> StoreResult<i64>;
    /// Ends the task (`Some`) or only records that it moved (`None`).
    async fn mark_task(
        &mut self,
        task_id: &str,
        now: i64,
        finished: Option<TaskStatus>,
    ) -> StoreResult<()>;
    /// Runs one of the statements written once for both dialects (this module's
    /// constants); returns the rows it changed.
    async fn execute_shared(
        &mut self,
        sql: &'static str,
        binds: &[SharedBind<'_>],
    ) -> StoreResult<u64>;
}

/// Settles the reported items; the task ends as `finish_as` when nothing is left.
pub(crate) async fn settle<C>(
    conn: &mut C,
    task_id: &str,
    now: i64,
    outcomes: Vec<(i64, LookupOutcome)>,
    finish_as: TaskStatus,
) -> StoreResult<SettleReport>
where
    C: SettlementStatements + ?Sized,
{
    let task = conn.settling_task(task_id).await?;
    let ids: Vec<i64> = outcomes.iter().map(|(id, _)| *id).collect();
    let facts = conn.settlement_facts(&task, &ids).await?;
    let plan = plan_settlement(task.kind, &facts, outcomes);
    if !plan.items.is_empty() {
        conn.write_settlement(&task, now, &plan).await?;
        // Bucket by bucket in id order (the plan's), the order every writer locks them in.
        for (bucket_id, moved) in &plan.buckets {
            let binds = [
                SharedBind::Int(moved.captured + moved.released),
                SharedBind::Int(moved.released),
                SharedBind::Text(bucket_id),
            ];
            if conn.execute_shared(MOVE_HELD, &binds).await? != 1 {
                return Err(StoreError::Integrity(format!(
                    "bucket {bucket_id} holds less than its settlement"
                )));
            }
        }
        conn.execute_shared(NUMBER_SETTLED, &[SharedBind::Text(task_id)])
            .await?;
    }
    let finished = (conn.open_items(task_id).await? == 0).then_some(finish_as);
    conn.mark_task(task_id, now, finished).await?;
    if let Some(status) = finished {
        let event_type = task_event_type(status);
        let binds = [
            SharedBind::Text(task_id),
            SharedBind::Text(event_type),
            SharedBind::Int(now),
        ];
        conn.execute_shared(ENQUEUE_TASK_WEBHOOKS, &binds).await?;
    }
    Ok(SettleReport {
        settled: plan.items.len(),
        finished,
        lifetime_ms: finished.map(|_| now - task.created_at),
    })
}
