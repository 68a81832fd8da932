//! The worker: the only writer of task progress. It claims a task with a lease, keeps the
//! lease alive with a heartbeat, looks items up through a contact source in small batches
//! and hands each outcome to the store, which applies the billing rule atomically.

pub mod maintenance;
pub mod source;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::settle::LookupOutcome;
use crate::metrics::Metrics;
use crate::signals::TaskSignals;
use crate::store::{Claim, ClaimPolicy, ClaimedTask, DynStore, StoreError, StoreResult};
use source::{ContactSource, SourceAnswer};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How long a claim lasts without a heartbeat.
    pub lease: Duration,
    /// Claims after which a task is failed instead of retried.
    pub max_attempts: i64,
    /// Tasks worked at once by this process.
    pub concurrency: usize,
    /// Items looked up between two settlements (one transaction each).
    pub batch_size: usize,
    /// How often an idle worker looks for work it was not told about (other processes).
    pub idle_poll: Duration,
    /// Tries per item against a failing source before `PROVIDER_ERROR`.
    pub source_attempts: u32,
    /// First retry delay; doubled per try, with jitter.
    pub source_backoff: Duration,
    /// Upper bound on lookups per second from this process (0: none), to respect the
    /// quota of an upstream source.
    pub lookups_per_second: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            lease: Duration::from_secs(30),
            max_attempts: 10,
            concurrency: 4,
            batch_size: 25,
            idle_poll: Duration::from_secs(1),
            source_attempts: 3,
            source_backoff: Duration::from_millis(200),
            lookups_per_second: 0,
        }
    }
}

pub struct Engine {
    store: DynStore,
    source: Arc<dyn ContactSource>,
    signals: Arc<TaskSignals>,
    config: EngineConfig,
    worker_id: String,
    next_lookup: Mutex<Instant>,
    metrics: Arc<Metrics>,
}

impl Engine {
    pub fn new(
        store: DynStore,
        source: Arc<dyn ContactSource>,
        signals: Arc<TaskSignals>,
        config: EngineConfig,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let worker_id = format!(
            "{}-{}-{}",
            hostname(),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Arc::new(Engine {
            store,
            source,
            signals,
            config,
            worker_id,
            next_lookup: Mutex::new(Instant::now()),
            metrics,
        })
    }

    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    fn policy(&self) -> ClaimPolicy {
        ClaimPolicy {
            lease_ms: self.config.lease.as_millis() as i64,
            max_attempts: self.config.max_attempts,
        }
    }

    /// Claims one task and works it to the end (or until its lease is lost). Returns
    /// whether there was anything to do. Tests drive the engine with this, step by step.
    pub async fn run_once(&self) -> StoreResult<bool> {
        self.step(&CancellationToken::new()).await
    }

    async fn step(&self, shutdown: &CancellationToken) -> StoreResult<bool> {
        match self
            .store
            .claim_task(&self.worker_id, self.policy())
            .await?
        {
            Claim::Idle => Ok(false),
            Claim::Aborted { task_id } => {
                tracing::warn!(
                    task_id,
                    "task failed after too many attempts; holds released"
                );
                self.signals.task_changed(&task_id);
                Ok(true)
            }
            Claim::Claimed(task) => {
                // More work may be waiting: let another idle loop look too.
                self.signals.work_available();
                self.work(task, shutdown).await?;
                Ok(true)
            }
        }
    }

    /// Runs `concurrency` claim loops until `shutdown`; a task in hand is finished batch by
    /// batch and, if shutdown interrupts it, handed back at once.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        tracing::info!(worker_id = %self.worker_id, concurrency = self.config.concurrency, "worker started");
        let mut loops = tokio::task::JoinSet::new();
        for _ in 0..self.config.concurrency.max(1) {
            let engine = self.clone();
            let shutdown = shutdown.clone();
            loops.spawn(async move { engine.claim_loop(shutdown).await });
        }
        while loops.join_next().await.is_some() {}
        tracing::info!(worker_id = %self.worker_id, "worker stopped");
    }

    async fn claim_loop(&self, shutdown: CancellationToken) {
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            match self.step(&shutdown).await {
                Ok(true) => failures = 0,
                Ok(false) => {
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = self.signals.wait_for_work() => {}
                        _ = tokio::time::sleep(self.config.idle_poll) => {}
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let delay = Duration::from_millis(100 * 2u64.pow(failures.min(6)));
                    tracing::error!(error = %e, ?delay, "worker step failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    async fn work(&self, task: ClaimedTask, shutdown: &CancellationToken) -> StoreResult<()> {
        let lease = task.lease.clone();
        tracing::debug!(task_id = %lease.task_id, attempt = lease.attempt, items = task.items.len(), "claimed");

        let lost = CancellationToken::new();
        let heartbeat = {
            let store = self.store.clone();
            let lease = lease.clone();
            let lost = lost.clone();
            let lease_ms = self.config.lease.as_millis() as i64;
            let every = (self.config.lease / 3).max(Duration::from_millis(50));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    match store.renew_lease(&lease, lease_ms).await {
                        Ok(()) => {}
                        Err(StoreError::LeaseLost) => {
                            lost.cancel();
                            return;
                        }
                        Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                    }
                }
            })
        };

        let result = self.work_items(&task, shutdown, &lost).await;
        heartbeat.abort();
        match result {
            Err(StoreError::LeaseLost) => {
                tracing::warn!(task_id = %lease.task_id, "lease lost; another worker owns the task");
                Ok(())
            }
            Err(e) => Err(e),
            Ok(true) => Ok(()),
            Ok(false) => {
                // Interrupted by shutdown: give the task back so another worker can go on.
                self.store.release_lease(&lease).await
            }
        }
    }

    /// Returns `Ok(true)` when every item was handed to the store.
    async fn work_items(
        &self,
        task: &ClaimedTask,
        shutdown: &CancellationToken,
        lost: &CancellationToken,
    ) -> StoreResult<bool> {
        let lease = &task.lease;
        if task.items.is_empty() {
            let report = self.store.settle_items(lease, Vec::new()).await?;
            self.signals.task_changed(&lease.task_id);
            self.record_task_latency(task.kind, &report);
            return Ok(true);
        }
        for batch in task.items.chunks(self.config.batch_size.max(1)) {
            if shutdown.is_cancelled() {
                return Ok(false);
            }
            if lost.is_cancelled() {
                return Err(StoreError::LeaseLost);
            }
            let ids: Vec<i64> = batch.iter().map(|i| i.item_id).collect();
            self.store.start_items(lease, &ids).await?;
            self.signals.task_changed(&lease.task_id);
            let outcomes = self.look_up_batch(batch, task.kind).await;
            let unlocked = outcomes
                .iter()
                .filter(|(_, o)| matches!(o, LookupOutcome::Found(_)))
                .count();
            let report = self
                .settle_patiently(lease, outcomes, shutdown, lost)
                .await?;
            // Counted once the store accepted them (a replayed item is not counted twice).
            if report.settled == batch.len() {
                for i in 0..batch.len() {
                    self.metrics.item_worked(task.kind, i < unlocked);
                }
            }
            self.signals.task_changed(&lease.task_id);
            if let Some(status) = report.finished {
                tracing::info!(task_id = %lease.task_id, ?status, "task finished");
                self.record_task_latency(task.kind, &report);
            }
        }
        Ok(true)
    }

    /// Settles, retrying while the database is unavailable (a full disk, a restarting
    /// server) and the lease may still be ours: the lookups are done and must not be
    /// repeated for nothing. Fencing keeps a late retry from settling anything once the
    /// lease has passed to another worker.
    async fn settle_patiently(
        &self,
        lease: &crate::store::Lease,
        outcomes: Vec<(i64, LookupOutcome)>,
        shutdown: &CancellationToken,
        lost: &CancellationToken,
    ) -> StoreResult<crate::store::SettleReport> {
        let mut delay = Duration::from_millis(100);
        let give_up = Instant::now() + self.config.lease;
        loop {
            match self.store.settle_items(lease, outcomes.clone()).await {
                Err(e)
                    if e.is_unavailable()
                        && Instant::now() < give_up
                        && !shutdown.is_cancelled()
                        && !lost.is_cancelled() =>
                {
                    tracing::warn!(task_id = %lease.task_id, error = %e, ?delay, "database unavailable; settlement retried");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                other => return other,
            }
        }
    }

    /// The create-to-finish time of a task this settlement finished, for the histogram
    /// (the settlement reports it; nothing is read again).
    fn record_task_latency(
        &self,
        kind: crate::domain::ContactKind,
        report: &crate::store::SettleReport,
    ) {
        if let (Some(status), Some(ms)) = (report.finished, report.lifetime_ms) {
            let status = format!("{status:?}").to_ascii_lowercase();
            let elapsed = Duration::from_millis(u64::try_from(ms).unwrap_or(0));
            self.metrics.task_finished(kind, &status, elapsed);
        }
    }

    /// Looks a batch up with one request to the source where it can (the catalog: one
    /// query); answers that failed transiently are retried one by one with backoff.
    async fn look_up_batch(
        &self,
        batch: &[crate::store::ClaimedItem],
        kind: crate::domain::ContactKind,
    ) -> Vec<(i64, LookupOutcome)> {
        let people: Vec<String> = batch.iter().map(|i| i.personnel_id.clone()).collect();
        for _ in 0..people.len() {
            self.pace().await;
        }
        let answers = self.source.lookup_many(&people, kind).await;
        let mut outcomes = Vec::with_capacity(batch.len());
        for (item, answer) in batch.iter().zip(answers) {
            let outcome = match answer {
                SourceAnswer::Found(value) => LookupOutcome::Found(value),
                SourceAnswer::NotFound => LookupOutcome::NotFound,
                SourceAnswer::Removed => LookupOutcome::Removed,
                SourceAnswer::Permanent(reason) => {
                    self.metrics.lookup_error();
                    tracing::warn!(source = self.source.name(), %reason, "lookup failed permanently");
                    LookupOutcome::ProviderError
                }
                SourceAnswer::Transient(reason) => {
                    self.metrics.lookup_error();
                    tracing::warn!(source = self.source.name(), %reason, "batch lookup failed; retrying one by one");
                    self.look_up(&item.personnel_id, kind).await
                }
            };
            outcomes.push((item.item_id, outcome));
        }
        outcomes
    }

    async fn look_up(&self, personnel_id: &str, kind: crate::domain::ContactKind) -> LookupOutcome {
        let mut delay = self.config.source_backoff;
        for attempt in 1..=self.config.source_attempts.max(1) {
            self.pace().await;
            match self.source.lookup(personnel_id, kind).await {
                SourceAnswer::Found(value) => return LookupOutcome::Found(value),
                SourceAnswer::NotFound => return LookupOutcome::NotFound,
                SourceAnswer::Removed => return LookupOutcome::Removed,
                SourceAnswer::Permanent(reason) => {
                    self.metrics.lookup_error();
                    tracing::warn!(source = self.source.name(), %reason, "lookup failed permanently");
                    return LookupOutcome::ProviderError;
                }
                SourceAnswer::Transient(reason) => {
                    self.metrics.lookup_error();
                    tracing::warn!(source = self.source.name(), attempt, %reason, "lookup failed");
                    if attempt < self.config.source_attempts {
                        let jitter = rand::rng().random_range(0.5..1.5);
                        tokio::time::sleep(delay.mul_f64(jitter)).await;
                        delay = delay.saturating_mul(2);
                    }
                }
            }
        }
        LookupOutcome::ProviderError
    }

    /// Spaces lookups out to at most `lookups_per_second` for the whole process.
    async fn pace(&self) {
        if self.config.lookups_per_second == 0 {
            return;
        }
        let gap = Duration::from_secs(1) / self.config.lookups_per_second;
        let at = {
            let mut next = self.next_lookup.lock().await;
            let at = (*next).max(Instant::now());
            *next = at + gap;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into())
}
