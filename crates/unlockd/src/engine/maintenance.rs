//! Periodic upkeep: expire the unheld remainder of expired credit buckets, and prune
//! finished tasks past their retention (their ledger entries stay).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::DynClock;
use crate::store::{DynStore, StoreResult};

#[derive(Debug, Clone)]
pub struct MaintenanceConfig {
    pub interval: Duration,
    /// Finished tasks are kept this long.
    pub retention: Duration,
    /// Tasks deleted per transaction, so the hot tables never lock for long.
    pub prune_batch: i64,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        MaintenanceConfig {
            interval: Duration::from_secs(60),
            retention: Duration::from_secs(30 * 24 * 3600),
            prune_batch: 500,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub credits_expired: i64,
    pub tasks_pruned: i64,
    pub idempotency_keys_pruned: i64,
}

/// One round of upkeep.
pub async fn run_once(
    store: &DynStore,
    clock: &DynClock,
    config: &MaintenanceConfig,
) -> StoreResult<MaintenanceReport> {
    let credits_expired = store.expire_buckets().await?;
    // New company names and words become indexed for ranked search.
    store.refresh_search_index().await?;
    let before = clock.now_ms() - config.retention.as_millis() as i64;
    let mut tasks_pruned = 0;
    loop {
        let pruned = store
            .prune_finished_tasks(before, config.prune_batch)
            .await?;
        tasks_pruned += pruned;
        if pruned < config.prune_batch {
            break;
        }
    }
    // Idempotency keys are answered for 24 hours, then forgotten.
    let keys_before = clock.now_ms() - crate::store::integrators::IDEMPOTENCY_KEY_TTL_MS;
    let idempotency_keys_pruned = store.prune_idempotency_keys(keys_before).await?;
    Ok(MaintenanceReport {
        credits_expired,
        tasks_pruned,
        idempotency_keys_pruned,
    })
}

/// Runs upkeep every `interval` until `shutdown`.
pub async fn run(
    store: DynStore,
    clock: DynClock,
    config: MaintenanceConfig,
    shutdown: CancellationToken,
) {
    loop {
        match run_once(&store, &clock, &config).await {
            Ok(report) if report != MaintenanceReport::default() => {
                tracing::info!(?report, "maintenance")
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "maintenance failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(config.interval) => {}
        }
    }
}
