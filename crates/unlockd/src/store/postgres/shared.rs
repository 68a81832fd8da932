//! What replicas share through PostgreSQL beyond the billing data: rate-limit buckets
//! (the domain's token-bucket rule, applied under a row lock) and the task change feed
//! (`LISTEN unlockd_tasks`, fed by a trigger on `tasks`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use super::PgStore;
use crate::domain::rate::{is_full, take_token, RateDecision, TokenState};
use crate::signals::TaskSignals;
use crate::store::rows::positional_row;
use crate::store::StoreResult;

pub(super) const CHANGES_CHANNEL: &str = "unlockd_tasks";

/// How often one process sweeps refilled buckets away.
const PRUNE_EVERY_MS: i64 = 60_000;

positional_row! {
    /// A rate bucket's state (`None` until first written) and the database's time, in the
    /// order `take_rate_token` returns them (read by position: once per limited request).
    struct RateBucketRow {
        tokens: Option<f64>,
        updated_ms: Option<i64>,
        now: i64,
    }
}

/// A rate bucket that may have refilled completely.
#[derive(Debug, sqlx::FromRow)]
struct IdleBucketRow {
    bucket: String,
    tokens: Option<f64>,
    updated_ms: Option<i64>,
    per_minute: i64,
}

pub(super) async fn take_rate_token(
    store: &PgStore,
    bucket: &str,
    per_minute: u32,
) -> StoreResult<RateDecision> {
    let mut tx = store.pool.begin().await?;
    // Creates the bucket or locks it, and reads its state, in one statement. Refills are
    // timed by the database's clock, which every replica shares.
    let row: RateBucketRow = sqlx::query_as(
        "INSERT INTO rate_buckets (bucket, per_minute) VALUES ($1, $2) \
         ON CONFLICT (bucket) DO UPDATE SET per_minute = excluded.per_minute \
         RETURNING tokens, updated_ms, unlockd_now_ms($3)",
    )
    .bind(bucket)
    .bind(i64::from(per_minute))
    .bind(store.injected_now())
    .fetch_one(&mut *tx)
    .await?;
    let now = row.now;
    let state = match (row.tokens, row.updated_ms) {
        (Some(tokens), Some(updated_ms)) => Some(TokenState { tokens, updated_ms }),
        _ => None,
    };
    let (state, decision) = take_token(state, per_minute, now);
    sqlx::query("UPDATE rate_buckets SET tokens = $2, updated_ms = $3 WHERE bucket = $1")
        .bind(bucket)
        .bind(state.tokens)
        .bind(state.updated_ms)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;

    let last = store.rate_pruned_at.load(Ordering::Relaxed);
    if now - last >= PRUNE_EVERY_MS
        && store
            .rate_pruned_at
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        prune_full_buckets(store, now).await?;
    }
    Ok(decision)
}

/// Deletes buckets that have refilled completely (they carry no state worth keeping), as
/// the in-process limiter forgets them. A bucket touched meanwhile is kept.
async fn prune_full_buckets(store: &PgStore, now: i64) -> StoreResult<()> {
    let idle: Vec<IdleBucketRow> = sqlx::query_as(
        "SELECT bucket, tokens, updated_ms, per_minute FROM rate_buckets \
         WHERE updated_ms < $1 ORDER BY updated_ms LIMIT 10000",
    )
    .bind(now - PRUNE_EVERY_MS)
    .fetch_all(&store.pool)
    .await?;
    let (mut buckets, mut stamps) = (Vec::new(), Vec::new());
    for row in idle {
        let (Some(tokens), Some(updated_ms)) = (row.tokens, row.updated_ms) else {
            continue;
        };
        let per_minute = u32::try_from(row.per_minute).unwrap_or(u32::MAX);
        if is_full(&TokenState { tokens, updated_ms }, per_minute, now) {
            buckets.push(row.bucket);
            stamps.push(updated_ms);
        }
    }
    if !buckets.is_empty() {
        sqlx::query(
            "DELETE FROM rate_buckets r USING UNNEST($1::text[], $2::bigint[]) AS d(bucket, updated_ms) \
             WHERE r.bucket = d.bucket AND r.updated_ms = d.updated_ms",
        )
        .bind(&buckets)
        .bind(&stamps)
        .execute(&store.pool)
        .await?;
    }
    Ok(())
}

/// Passes one notification on to this process's waiters.
fn dispatch(signals: &TaskSignals, payload: &str) {
    match payload.split_once(':') {
        Some(("work", _)) => signals.work_available(),
        Some(("task", task_id)) => signals.task_changed(task_id),
        _ => {}
    }
}

/// Listens until `shutdown`, reconnecting after a lost connection. While disconnected,
/// notifications are lost: waiters then rely on their re-read interval, as they do anyway.
pub(super) async fn relay_changes(
    store: &PgStore,
    signals: Arc<TaskSignals>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(250);
    while !shutdown.is_cancelled() {
        let listener = async {
            let mut listener = PgListener::connect_with(&store.pool).await?;
            listener.listen(CHANGES_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            _ = shutdown.cancelled() => return,
            listener = listener => match listener {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::warn!(error = %e, "task change feed unavailable; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            },
        };
        backoff = Duration::from_millis(250);
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = listener.try_recv() => next,
            };
            match next {
                Ok(Some(notification)) => dispatch(&signals, notification.payload()),
                // The connection dropped (some changes may have gone unheard): wake a
                // worker to look, and listen again on a new connection.
                Ok(None) => {
                    signals.work_available();
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "task change feed lost; reconnecting");
                    break;
                }
            }
        }
    }
}
