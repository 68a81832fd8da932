//! The worker: the only writer of task progress. It claims a task with a lease, keeps the
//! lease alive with a heartbeat, looks items up through a contact source in small batches
//! and hands each outcome to the store, which applies the billing rule atomically.

pub mod maintenance;
pub mod retry;
pub mod source;
pub mod sources;
mod turns;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, Retryable};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::settle::LookupOutcome;
use crate::domain::ContactValue;
use crate::metrics::Metrics;
use crate::signals::TaskSignals;
use crate::store::{
    Catalog, Claim, ClaimPolicy, ClaimedTask, Coordination, DynStore, StoreError, StoreResult,
    Tasks,
};
use retry::FullJitter;
use source::{ContactSource, SourceAnswer};
use sources::provider::LogContext;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How long a claim lasts without a heartbeat.
    pub lease: Duration,
    /// Claims after which a task is failed instead of retried.
    pub max_attempts: i64,
    /// Tasks worked at once by this process.
    pub concurrency: usize,
    /// Items looked up at once (one catalog read, and one write marking them processing).
    pub batch_size: usize,
    /// Most items settled in one transaction. Fewer are settled once `settle_interval` has
    /// passed since the last settlement, so slow lookups still show progress.
    pub settle_batch: usize,
    /// How often an idle worker looks for work it was not told about (other processes).
    pub idle_poll: Duration,
    /// Tries per item against a failing source before `PROVIDER_ERROR`.
    pub source_attempts: u32,
    /// First retry delay; doubled per try, with jitter.
    pub source_backoff: Duration,
    /// Upper bound on lookups per second from this process (0: none), to respect the
    /// quota of an upstream source.
    pub lookups_per_second: u32,
    /// HTTP providers tried after the catalog (`--sources FILE`); none: the catalog only.
    pub sources: Option<Arc<sources::SourcesConfig>>,
    /// How long finished lookups wait for more before they are settled together.
    pub settle_interval: Duration,
    /// How often the sources' state is written for `admin sources status`.
    pub health_interval: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            lease: Duration::from_secs(30),
            max_attempts: 10,
            concurrency: 4,
            batch_size: 25,
            settle_batch: 100,
            idle_poll: Duration::from_secs(1),
            source_attempts: 3,
            source_backoff: Duration::from_millis(200),
            lookups_per_second: 0,
            sources: None,
            settle_interval: Duration::from_millis(200),
            health_interval: Duration::from_secs(10),
        }
    }
}

pub struct Engine {
    /// The store, by the roles the engine uses: the task queue, the catalog's contact
    /// lookups, and the health reports shared with other processes.
    tasks: Arc<dyn Tasks>,
    catalog: Arc<dyn Catalog>,
    coordination: Arc<dyn Coordination>,
    source: Arc<dyn ContactSource>,
    signals: Arc<TaskSignals>,
    config: EngineConfig,
    worker_id: String,
    next_lookup: Mutex<Instant>,
    metrics: Arc<Metrics>,
    providers: Option<Arc<sources::Sources>>,
    /// One waterfall per person and kind at a time (see `turns`).
    turns: turns::PersonTurns,
}

impl Engine {
    /// Fails when the sources' HTTP client cannot be built (an unreadable `ca_file`).
    pub fn new(
        store: DynStore,
        source: Arc<dyn ContactSource>,
        signals: Arc<TaskSignals>,
        config: EngineConfig,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Self>> {
        let providers = match &config.sources {
            Some(sources) => Some(Arc::new(sources::Sources::new(
                sources.clone(),
                metrics.clone(),
            )?)),
            None => None,
        };
        let worker_id = format!(
            "{}-{}-{}",
            hostname(),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Ok(Arc::new(Engine {
            tasks: store.clone(),
            catalog: store.clone(),
            coordination: store,
            source,
            signals,
            config,
            worker_id,
            next_lookup: Mutex::new(Instant::now()),
            metrics,
            providers,
            turns: turns::PersonTurns::default(),
        }))
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
            .tasks
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
        let health = self.providers.is_some().then(|| {
            let engine = self.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move { engine.report_health(shutdown).await })
        });
        while loops.join_next().await.is_some() {}
        if let Some(health) = health {
            let _ = health.await;
        }
        tracing::info!(worker_id = %self.worker_id, "worker stopped");
    }

    /// Writes the sources' breaker states and counters every `health_interval` (and once
    /// more at shutdown), for `unlockd admin sources status`.
    async fn report_health(&self, shutdown: CancellationToken) {
        let Some(providers) = &self.providers else {
            return;
        };
        loop {
            let stopping = tokio::select! {
                _ = shutdown.cancelled() => true,
                _ = tokio::time::sleep(self.config.health_interval) => false,
            };
            self.report_health_now(providers).await;
            if stopping {
                return;
            }
        }
    }

    async fn report_health_now(&self, providers: &sources::Sources) {
        let health = providers.health();
        if let Err(e) = self
            .coordination
            .report_source_health(&self.worker_id, &health)
            .await
        {
            tracing::warn!(error = %e, "source health not recorded");
        }
    }

    /// Writes the sources' state now (tests and `sources check` use it).
    pub async fn flush_source_health(&self) {
        if let Some(providers) = &self.providers {
            self.report_health_now(providers).await;
        }
    }

    async fn claim_loop(&self, shutdown: CancellationToken) {
        let backoff = FullJitter::new(Duration::from_millis(100), Duration::from_secs(10), None);
        let mut delays = backoff.build();
        while !shutdown.is_cancelled() {
            match self.step(&shutdown).await {
                Ok(true) => delays = backoff.build(),
                Ok(false) => {
                    delays = backoff.build();
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = self.signals.wait_for_work() => {}
                        _ = tokio::time::sleep(self.config.idle_poll) => {}
                    }
                }
                Err(e) => {
                    let delay = delays.next().unwrap_or(backoff.max);
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
            let store = self.tasks.clone();
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
                self.tasks.release_lease(&lease).await
            }
        }
    }

    /// Returns `Ok(true)` when every item was handed to the store.
    ///
    /// The catalog answers a batch at a time; the items it cannot answer go down the
    /// providers' waterfall concurrently (each source bounds its own requests), and are
    /// settled in batches as they complete. Each item's provider answers are persisted as
    /// soon as its waterfall ends, so a contact paid for is kept even if the worker dies
    /// before settling.
    async fn work_items(
        &self,
        task: &ClaimedTask,
        shutdown: &CancellationToken,
        lost: &CancellationToken,
    ) -> StoreResult<bool> {
        let lease = &task.lease;
        if task.items.is_empty() {
            let report = self.tasks.settle_items(lease, Vec::new()).await?;
            self.signals.task_changed(&lease.task_id);
            self.record_task_latency(task.kind, &report);
            return Ok(true);
        }
        let mut pending = futures::stream::FuturesUnordered::new();
        let mut ready = Ready::default();
        let settle_batch = self.config.settle_batch.max(1);
        let mut settled_at = Instant::now();
        for batch in task.items.chunks(self.config.batch_size.max(1)) {
            if shutdown.is_cancelled() {
                self.flush(task, &mut ready, shutdown, lost).await?;
                return Ok(false);
            }
            if lost.is_cancelled() {
                return Err(StoreError::LeaseLost);
            }
            // An item shows "processing" while its lookup takes time: a paced catalog, or
            // the providers' waterfall. An unpaced catalog answers in a read, and marking
            // its items first was a write transaction per batch for a state nobody sees
            // (the worker's drain: 4 of a 100-item task's 6 transactions).
            let paced = self.config.lookups_per_second > 0;
            if paced {
                self.mark_started(lease, batch.iter()).await?;
            }
            let mut unanswered = Vec::new();
            for (item, outcome) in batch.iter().zip(self.look_up_batch(batch, task.kind).await) {
                match outcome {
                    Some(outcome) => ready.outcomes.push((item.item_id, outcome)),
                    None => unanswered.push(item),
                }
            }
            if !paced && !unanswered.is_empty() {
                self.mark_started(lease, unanswered.iter().copied()).await?;
            }
            if let (Some(providers), false) = (&self.providers, unanswered.is_empty()) {
                let people: Vec<String> =
                    unanswered.iter().map(|i| i.personnel_id.clone()).collect();
                let mut fields = self.catalog.person_fields(&people).await?;
                let mut remembered = self
                    .catalog
                    .remembered_not_found(&people, task.kind)
                    .await?;
                for item in unanswered {
                    let person = fields.remove(&item.personnel_id).map(sources::Person::from);
                    let remembered = remembered.remove(&item.personnel_id).unwrap_or_default();
                    let kind = task.kind;
                    let task_id = lease.task_id.as_str();
                    pending.push(async move {
                        let log = LogContext {
                            task_id,
                            item_id: item.item_id,
                        };
                        // Held until the answers are stored, so a second task that needs
                        // this person now reads them instead of paying again.
                        let turn = self.turns.take(&item.personnel_id, kind).await;
                        let mut remembered = remembered;
                        if turn.waited {
                            // Read in a task of its own, like the records below: this
                            // future is not polled while its task settles a batch.
                            let (store, id) = (self.catalog.clone(), item.personnel_id.clone());
                            let (stored, told) = tokio::spawn(async move {
                                let ids = [id.clone()];
                                let mut stored = store.contacts_of(&ids, kind).await?;
                                let mut told = store.remembered_not_found(&ids, kind).await?;
                                Ok::<_, StoreError>((
                                    stored.remove(&id).flatten(),
                                    told.remove(&id).unwrap_or_default(),
                                ))
                            })
                            .await
                            .map_err(|e| {
                                StoreError::Unavailable(format!("reading stored answers: {e}"))
                            })??;
                            if let Some(value) = stored.filter(|v| !v.trim().is_empty()) {
                                let found = LookupOutcome::Found(ContactValue::new(value));
                                return Ok((item.item_id, found));
                            }
                            remembered = told;
                        }
                        let lookup = providers
                            .look_up_item(
                                &item.personnel_id,
                                person.as_ref(),
                                &remembered,
                                kind,
                                log,
                            )
                            .await;
                        // Persisted at once, before the item waits for its batch: a
                        // worker killed now does not pay the provider again on resume.
                        if !lookup.records.is_empty() {
                            let store = self.catalog.clone();
                            let records = lookup.records;
                            let task_id = lease.task_id.clone();
                            let patience = self.config.lease;
                            let (shutdown, lost) = (shutdown.clone(), lost.clone());
                            // A task of its own: it runs (and gives its connection back)
                            // while this one settles a batch and polls no lookup.
                            tokio::spawn(async move {
                                write_patiently(
                                    &task_id,
                                    patience,
                                    &shutdown,
                                    &lost,
                                    "recording lookups",
                                    || store.record_lookups(&records),
                                )
                                .await
                            })
                            .await
                            .map_err(|e| {
                                StoreError::Unavailable(format!("recording lookups: {e}"))
                            })??;
                        }
                        drop(turn);
                        Ok::<_, StoreError>((item.item_id, lookup.outcome))
                    });
                }
            }
            // Fast lookups (the catalog's) of a whole task settle in one transaction;
            // slow ones (a paced source) settle as they come, every settle interval.
            if ready.outcomes.len() >= settle_batch
                || settled_at.elapsed() >= self.config.settle_interval
            {
                self.flush(task, &mut ready, shutdown, lost).await?;
                settled_at = Instant::now();
            }
        }
        // The waterfalls: settle what completed every `settle_interval` or full batch.
        let mut flush_at: Option<Instant> = None;
        loop {
            let due = flush_at.is_some_and(|at| Instant::now() >= at);
            if ready.outcomes.len() >= settle_batch
                || due
                || (pending.is_empty() && !ready.outcomes.is_empty())
            {
                self.flush(task, &mut ready, shutdown, lost).await?;
                flush_at = None;
            }
            if pending.is_empty() {
                break;
            }
            let wake = flush_at.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                Some(done) = futures::StreamExt::next(&mut pending) => {
                    ready.outcomes.push(done?);
                    flush_at.get_or_insert_with(|| Instant::now() + self.config.settle_interval);
                }
                _ = tokio::time::sleep_until(wake) => {}
                _ = shutdown.cancelled() => {
                    // Lookups in flight are dropped; what completed is kept and settled.
                    drop(pending);
                    self.flush(task, &mut ready, shutdown, lost).await?;
                    return Ok(false);
                }
                _ = lost.cancelled() => return Err(StoreError::LeaseLost),
            }
        }
        Ok(true)
    }

    /// Settles the items whose lookups finished (their provider answers were persisted
    /// as each finished, so a found contact is in the catalog before its item settles).
    async fn flush(
        &self,
        task: &ClaimedTask,
        ready: &mut Ready,
        shutdown: &CancellationToken,
        lost: &CancellationToken,
    ) -> StoreResult<()> {
        let lease = &task.lease;
        if ready.outcomes.is_empty() {
            return Ok(());
        }
        let outcomes = std::mem::take(&mut ready.outcomes);
        let count = outcomes.len();
        let unlocked = outcomes
            .iter()
            .filter(|(_, o)| matches!(o, LookupOutcome::Found(_)))
            .count();
        let report = self
            .patiently(lease, shutdown, lost, "settlement", || {
                self.tasks.settle_items(lease, outcomes.clone())
            })
            .await?;
        // Counted once the store accepted them (a replayed item is not counted twice).
        if report.settled == count {
            for i in 0..count {
                self.metrics.item_worked(task.kind, i < unlocked);
            }
        }
        self.signals.task_changed(&lease.task_id);
        if let Some(status) = report.finished {
            tracing::info!(task_id = %lease.task_id, ?status, "task finished");
            self.record_task_latency(task.kind, &report);
        }
        Ok(())
    }

    /// Runs a write, retrying while the database is unavailable (a full disk, a restarting
    /// server) and the lease may still be ours: the lookups are done and must not be
    /// repeated for nothing. Fencing keeps a late retry from settling anything once the
    /// lease has passed to another worker.
    async fn patiently<T, F, Fut>(
        &self,
        lease: &crate::store::Lease,
        shutdown: &CancellationToken,
        lost: &CancellationToken,
        what: &str,
        write: F,
    ) -> StoreResult<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = StoreResult<T>>,
    {
        write_patiently(
            &lease.task_id,
            self.config.lease,
            shutdown,
            lost,
            what,
            write,
        )
        .await
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

    /// Marks items "processing" under the lease, and wakes their task's pollers.
    async fn mark_started<'i>(
        &self,
        lease: &crate::store::Lease,
        items: impl Iterator<Item = &'i crate::store::ClaimedItem>,
    ) -> StoreResult<()> {
        let ids: Vec<i64> = items.map(|i| i.item_id).collect();
        self.tasks.start_items(lease, &ids).await?;
        self.signals.task_changed(&lease.task_id);
        Ok(())
    }

    /// Looks a batch up in the catalog with one request where it can; answers that
    /// failed transiently are retried one by one with backoff. `None`: the catalog has no
    /// contact and providers are configured for this kind (the waterfall goes on).
    async fn look_up_batch(
        &self,
        batch: &[crate::store::ClaimedItem],
        kind: crate::domain::ContactKind,
    ) -> Vec<Option<LookupOutcome>> {
        let people: Vec<String> = batch.iter().map(|i| i.personnel_id.clone()).collect();
        for _ in 0..people.len() {
            self.pace().await;
        }
        let answers = self.source.lookup_many(&people, kind).await;
        let has_waterfall = self
            .providers
            .as_ref()
            .is_some_and(|p| !p.config().waterfall(kind).is_empty());
        let mut outcomes = Vec::with_capacity(batch.len());
        for (item, answer) in batch.iter().zip(answers) {
            let outcome = match answer {
                SourceAnswer::Transient(reason) => {
                    self.metrics.lookup_error();
                    tracing::warn!(source = self.source.name(), %reason, "batch lookup failed; retrying one by one");
                    self.look_up(&item.personnel_id, kind).await
                }
                answer => answer_outcome(self.source.name(), &self.metrics, answer),
            };
            if outcome == LookupOutcome::NotFound && has_waterfall {
                outcomes.push(None);
            } else {
                outcomes.push(Some(outcome));
            }
        }
        outcomes
    }

    async fn look_up(&self, personnel_id: &str, kind: crate::domain::ContactKind) -> LookupOutcome {
        let retries = self.config.source_attempts.max(1) as usize - 1;
        let answer = (|| async {
            self.pace().await;
            match self.source.lookup(personnel_id, kind).await {
                SourceAnswer::Transient(reason) => Err(reason),
                answer => Ok(answer),
            }
        })
        .retry(FullJitter::new(
            self.config.source_backoff,
            self.config.source_backoff * 16,
            Some(retries),
        ))
        .sleep(tokio::time::sleep)
        .notify(|reason, _| {
            self.metrics.lookup_error();
            tracing::warn!(source = self.source.name(), %reason, "lookup failed");
        })
        .await;
        match answer {
            Ok(answer) => answer_outcome(self.source.name(), &self.metrics, answer),
            Err(reason) => {
                self.metrics.lookup_error();
                tracing::warn!(source = self.source.name(), %reason, "lookup failed; giving up");
                LookupOutcome::ProviderError
            }
        }
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

/// Runs a write, retrying with backoff while the database is unavailable, for at most
/// `patience` and while neither shutdown nor the loss of the lease stops the task.
async fn write_patiently<T, F, Fut>(
    task_id: &str,
    patience: Duration,
    shutdown: &CancellationToken,
    lost: &CancellationToken,
    what: &str,
    write: F,
) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StoreResult<T>>,
{
    let give_up = Instant::now() + patience;
    write
        .retry(FullJitter::new(
            Duration::from_millis(100),
            Duration::from_secs(2),
            None,
        ))
        .sleep(tokio::time::sleep)
        .when(|e: &StoreError| {
            e.is_unavailable()
                && Instant::now() < give_up
                && !shutdown.is_cancelled()
                && !lost.is_cancelled()
        })
        .notify(|e, delay| {
            tracing::warn!(task_id, error = %e, ?delay, "database unavailable; {what} retried");
        })
        .await
}

/// Finished lookups not yet settled (their provider answers are already persisted).
#[derive(Default)]
struct Ready {
    outcomes: Vec<(i64, LookupOutcome)>,
}

/// A catalog answer that is final (not transient).
fn answer_outcome(source: &str, metrics: &Metrics, answer: SourceAnswer) -> LookupOutcome {
    match answer {
        SourceAnswer::Found(value) => LookupOutcome::Found(value),
        SourceAnswer::NotFound => LookupOutcome::NotFound,
        SourceAnswer::Removed => LookupOutcome::Removed,
        SourceAnswer::Permanent(reason) | SourceAnswer::Transient(reason) => {
            metrics.lookup_error();
            tracing::warn!(source, %reason, "lookup failed permanently");
            LookupOutcome::ProviderError
        }
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
