//! Working a task, written once for both backends: claim it (and abort it when it keeps
//! being claimed: `domain::lease::claims_exhausted`), check the lease before every write
//! (`domain::lease::lease_is_current`), mark items started, settle them
//! (`store::settlement`), renew or give back the lease. A backend supplies the statements
//! (its dialect, its clock, its row locks) and how a write transaction is run.

use async_trait::async_trait;
use futures::future::BoxFuture;
use unlockd_api::TaskStatus;

use crate::domain::lease::{abort_outcomes, claims_exhausted, lease_is_current, HeldLease};
use crate::domain::settle::LookupOutcome;
use crate::store::rows::parse_kind;
use crate::store::settlement::{self, SettlementStatements};
use crate::store::{
    Claim, ClaimPolicy, ClaimedItem, ClaimedTask, Lease, SettleReport, StoreError, StoreResult,
};

// The statements both dialects read alike (`$N` placeholders work on SQLite too).

/// A claimed task's unsettled items, in request order.
pub(crate) const UNSETTLED_ITEMS: &str =
    "SELECT id AS item_id, personnel_id FROM task_items WHERE task_id = $1 \
     AND status IN ('pending', 'processing') ORDER BY position";
/// Gives a task back: claimable again at once, by anyone.
pub(crate) const GIVE_BACK_LEASE: &str =
    "UPDATE tasks SET lease_expires_at = 0, lease_owner = NULL \
     WHERE id = $1 AND attempt = $2 AND lease_owner = $3 AND status = 'processing'";

/// The task a claim took, as its statement returns it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct ClaimedRow {
    pub id: String,
    pub account_id: String,
    pub kind: String,
    pub attempt: i64,
}

/// A task's lease as stored, read (and, where the backend locks rows, locked) before a
/// write, with the time the write is stamped with.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct LeaseRow {
    pub attempt: i64,
    pub lease_owner: Option<String>,
    pub status: String,
    pub now: i64,
}

/// The statements of working a task, run inside a transaction of the backend's
/// [`LeaseTransactions`]. Times are the backend's clock (SQLite: this process's; PostgreSQL:
/// the database's unless a test clock stands in).
#[async_trait]
pub(crate) trait LeaseStatements: SettlementStatements {
    /// Leases the oldest claimable task (pending, or processing with its lease run out) to
    /// `worker_id` for `lease_ms`, counting the attempt.
    async fn claim_next(
        &mut self,
        worker_id: &str,
        lease_ms: i64,
    ) -> StoreResult<Option<ClaimedRow>>;
    /// A task's unsettled items, in request order.
    async fn unsettled_items(&mut self, task_id: &str) -> StoreResult<Vec<ClaimedItem>>;
    /// The task's lease, held until the transaction ends where the backend locks rows, and
    /// the time now; `None` when there is no such task.
    async fn lease_row(&mut self, task_id: &str) -> StoreResult<Option<LeaseRow>>;
    /// Marks the pending ones of `item_ids` as being looked up.
    async fn mark_started(&mut self, task_id: &str, item_ids: &[i64], now: i64) -> StoreResult<()>;
    /// Extends the lease by `lease_ms` from now if it is still current; returns the rows
    /// changed.
    async fn extend_lease(&mut self, lease: &Lease, lease_ms: i64) -> StoreResult<u64>;
    /// Gives the task back if the lease is still current.
    async fn give_back_lease(&mut self, lease: &Lease) -> StoreResult<()>;
}

/// Implements [`LeaseStatements`] for a backend's statements type (`$conn` names its
/// connection field): its own methods (the dialect's statements) plus the ones whose text
/// is the same for both backends.
macro_rules! lease_statements_impl {
    ($statements:ty, $conn:ident { $($own:tt)* }) => {
        #[async_trait::async_trait]
        impl $crate::store::claim::LeaseStatements for $statements {
        $($own)*
        async fn unsettled_items(
            &mut self,
            task_id: &str,
        ) -> $crate::store::StoreResult<Vec<$crate::store::ClaimedItem>> {
            let items: Vec<$crate::store::claim::UnsettledItemRow> =
                sqlx::query_as($crate::store::claim::UNSETTLED_ITEMS)
                    .bind(task_id)
                    .fetch_all(&mut *self.$conn)
                    .await?;
            Ok(items.into_iter().map(Into::into).collect())
        }

        async fn give_back_lease(
            &mut self,
            lease: &$crate::store::Lease,
        ) -> $crate::store::StoreResult<()> {
            sqlx::query($crate::store::claim::GIVE_BACK_LEASE)
                .bind(&lease.task_id)
                .bind(lease.attempt)
                .bind(&lease.worker_id)
                .execute(&mut *self.$conn)
                .await?;
            Ok(())
        }
        }
    };
}
pub(crate) use lease_statements_impl;

/// An unsettled item as [`UNSETTLED_ITEMS`] reads it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UnsettledItemRow {
    pub item_id: i64,
    pub personnel_id: String,
}

impl From<UnsettledItemRow> for ClaimedItem {
    fn from(row: UnsettledItemRow) -> Self {
        ClaimedItem {
            item_id: row.item_id,
            personnel_id: row.personnel_id,
        }
    }
}

/// Work run inside one write transaction.
pub(crate) type LeaseWork<T> =
    Box<dyn for<'c> FnOnce(&'c mut dyn LeaseStatements) -> BoxFuture<'c, StoreResult<T>> + Send>;

/// How a backend runs one write transaction: committed when the work succeeds, rolled back
/// (nothing written) when it fails.
#[async_trait]
pub(crate) trait LeaseTransactions: Send + Sync {
    async fn in_transaction<T: Send + 'static>(&self, work: LeaseWork<T>) -> StoreResult<T>;
}

/// Claims the oldest claimable task. The claim commits on its own, before anything else is
/// tried: the attempt counter advances even when the work (or the abort) of this task fails
/// every time, so a poisoned task is leased away from the head of the queue and the attempt
/// limit is reached.
pub(crate) async fn claim<T>(store: &T, worker_id: &str, policy: ClaimPolicy) -> StoreResult<Claim>
where
    T: LeaseTransactions + ?Sized,
{
    let worker = worker_id.to_string();
    let claimed = store
        .in_transaction(Box::new(move |conn| {
            Box::pin(async move { claim_in(conn, &worker, policy.lease_ms).await })
        }))
        .await?;
    let Some(task) = claimed else {
        return Ok(Claim::Idle);
    };
    if !claims_exhausted(task.lease.attempt, policy.max_attempts) {
        return Ok(Claim::Claimed(task));
    }
    // A task that keeps losing its workers is aborted: every unfinished item fails and its
    // hold goes back. If even that fails, the lease just taken keeps other workers off the
    // task until it runs out, and the tasks behind it go on.
    let outcomes = abort_outcomes(task.items.iter().map(|item| item.item_id));
    let lease = task.lease.clone();
    store
        .in_transaction(Box::new(move |conn| {
            Box::pin(async move { settle_in(conn, &lease, outcomes, TaskStatus::Failed).await })
        }))
        .await?;
    Ok(Claim::Aborted {
        task_id: task.lease.task_id,
    })
}

async fn claim_in(
    conn: &mut dyn LeaseStatements,
    worker_id: &str,
    lease_ms: i64,
) -> StoreResult<Option<ClaimedTask>> {
    let Some(row) = conn.claim_next(worker_id, lease_ms).await? else {
        return Ok(None);
    };
    let items = conn.unsettled_items(&row.id).await?;
    Ok(Some(ClaimedTask {
        kind: parse_kind(&row.kind)?,
        account_id: row.account_id,
        lease: Lease {
            task_id: row.id,
            attempt: row.attempt,
            worker_id: worker_id.to_string(),
        },
        items,
    }))
}

/// Fencing: the lease must still be this worker's current attempt. Returns the time the
/// caller's writes are stamped with.
async fn check_lease(conn: &mut dyn LeaseStatements, lease: &Lease) -> StoreResult<i64> {
    let row = conn.lease_row(&lease.task_id).await?;
    match row {
        Some(row)
            if lease_is_current(
                HeldLease {
                    attempt: row.attempt,
                    owner: row.lease_owner.as_deref(),
                    processing: row.status == "processing",
                },
                lease.attempt,
                &lease.worker_id,
            ) =>
        {
            Ok(row.now)
        }
        _ => Err(StoreError::LeaseLost),
    }
}

async fn settle_in(
    conn: &mut dyn LeaseStatements,
    lease: &Lease,
    outcomes: Vec<(i64, LookupOutcome)>,
    finish_as: TaskStatus,
) -> StoreResult<SettleReport> {
    let now = check_lease(conn, lease).await?;
    settlement::settle(conn, &lease.task_id, now, outcomes, finish_as).await
}

/// Marks items as being looked up, if the lease is still current.
pub(crate) async fn start_items<T>(store: &T, lease: &Lease, item_ids: &[i64]) -> StoreResult<()>
where
    T: LeaseTransactions + ?Sized,
{
    let lease = lease.clone();
    let item_ids = item_ids.to_vec();
    store
        .in_transaction(Box::new(move |conn| {
            Box::pin(async move {
                let now = check_lease(conn, &lease).await?;
                conn.mark_started(&lease.task_id, &item_ids, now).await
            })
        }))
        .await
}

/// Settles items under the lease; the task completes when nothing is left.
pub(crate) async fn settle<T>(
    store: &T,
    lease: &Lease,
    outcomes: Vec<(i64, LookupOutcome)>,
) -> StoreResult<SettleReport>
where
    T: LeaseTransactions + ?Sized,
{
    let lease = lease.clone();
    store
        .in_transaction(Box::new(move |conn| {
            Box::pin(async move { settle_in(conn, &lease, outcomes, TaskStatus::Completed).await })
        }))
        .await
}

/// Extends the lease; `LeaseLost` when the task was claimed again meanwhile.
pub(crate) async fn renew_lease<T>(store: &T, lease: &Lease, lease_ms: i64) -> StoreResult<()>
where
    T: LeaseTransactions + ?Sized,
{
    let lease = lease.clone();
    store
        .in_transaction(Box::new(move |conn| {
            Box::pin(async move {
                match conn.extend_lease(&lease, lease_ms).await? {
                    1 => Ok(()),
                    _ => Err(StoreError::LeaseLost),
                }
            })
        }))
        .await
}

/// Gives the task back (graceful shutdown): claimable again at once.
pub(crate) async fn release_lease<T>(store: &T, lease: &Lease) -> StoreResult<()>
where
    T: LeaseTransactions + ?Sized,
{
    let lease = lease.clone();
    store
        .in_transaction(Box::new(move |conn| {
            Box::pin(async move { conn.give_back_lease(&lease).await })
        }))
        .await
}
