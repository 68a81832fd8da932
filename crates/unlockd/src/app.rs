//! Wiring: the HTTP server and the worker over one store, as the CLI and the tests run them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::DynClock;
use crate::domain::Pricing;
use crate::engine::maintenance::{self, MaintenanceConfig};
use crate::engine::source::CatalogSource;
use crate::engine::{Engine, EngineConfig};
use crate::http::rate_limit::RateLimiter;
use crate::http::{self, AppState, Shared};
use crate::metrics::Metrics;
use crate::signals::TaskSignals;
use crate::store::DynStore;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: String,
    pub run_worker: bool,
    pub pricing: Pricing,
    /// Requests per minute per API key; 0 disables.
    pub key_rate_limit: u32,
    /// Requests per minute per client IP; 0 disables.
    pub ip_rate_limit: u32,
    pub engine: EngineConfig,
    pub maintenance: MaintenanceConfig,
    pub long_poll_recheck: Duration,
    /// Behind a load balancer: the per-IP limit reads `X-Forwarded-For`.
    pub trust_forwarded_for: bool,
    /// Timeouts and caps on connections and requests.
    pub http: crate::http::HttpLimits,
    /// The operator token for `/admin/api/`; `None` keeps the operator API off.
    pub admin_token: Option<String>,
    /// The webhook sender (run with the worker) and the target checks at registration.
    pub webhooks: crate::engine::webhooks::WebhookConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            run_worker: true,
            pricing: Pricing::default(),
            key_rate_limit: 120,
            ip_rate_limit: 600,
            engine: EngineConfig::default(),
            maintenance: MaintenanceConfig::default(),
            long_poll_recheck: Duration::from_millis(500),
            trust_forwarded_for: false,
            http: crate::http::HttpLimits::default(),
            admin_token: None,
            webhooks: Default::default(),
        }
    }
}

/// A running server (and worker, if configured).
pub struct Server {
    pub local_addr: SocketAddr,
    pub store: DynStore,
    pub signals: Arc<TaskSignals>,
    pub engine: Arc<Engine>,
    shutdown: CancellationToken,
    http: JoinHandle<std::io::Result<()>>,
    worker: Option<JoinHandle<()>>,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// Stops accepting, lets in-flight requests and the current worker batch finish.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the shutdown token fires and everything has drained.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.http.await??;
        if let Some(worker) = self.worker {
            worker.await?;
        }
        Ok(())
    }
}

pub fn engine(
    store: DynStore,
    signals: Arc<TaskSignals>,
    config: EngineConfig,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Arc<Engine>> {
    let source = Arc::new(CatalogSource::new(store.clone()));
    Engine::new(store, source, signals, config, metrics)
}

/// Keeps the store's key cache trusted: reads the auth generation every
/// `REFRESH_EVERY`. While reads fail the cache goes stale and lookups use the database.
async fn watch_auth(store: DynStore, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(crate::store::auth_cache::REFRESH_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match store.refresh_auth_cache().await {
            Ok(()) => failing = false,
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "cannot read the auth generation; keys are looked up in the database until it can");
            }
            Err(_) => {}
        }
    }
}

/// Binds the listener and starts serving (and working, unless `run_worker` is off).
pub async fn start(
    config: ServerConfig,
    store: DynStore,
    clock: DynClock,
    shutdown: CancellationToken,
) -> anyhow::Result<Server> {
    let signals = TaskSignals::new();
    let metrics = Arc::new(Metrics::default());
    let state = AppState::new(Shared {
        store: store.clone(),
        signals: signals.clone(),
        clock: clock.clone(),
        pricing: config.pricing,
        key_limiter: Arc::new(RateLimiter::new(
            "key",
            config.key_rate_limit,
            clock.clone(),
            Some(store.clone()),
        )),
        ip_limiter: Arc::new(RateLimiter::new(
            "ip",
            config.ip_rate_limit,
            clock.clone(),
            Some(store.clone()),
        )),
        long_poll_recheck: config.long_poll_recheck,
        trust_forwarded_for: config.trust_forwarded_for,
        metrics: metrics.clone(),
        limits: config.http.clone(),
        long_polls: Default::default(),
        // Refusals of unauthenticated requests: at most this many log lines a second.
        unauthenticated_log: Arc::new(crate::http::LogSampler::new(10)),
        admin_token: config.admin_token.as_deref().map(Arc::from),
        webhooks_allow_private: config.webhooks.allow_private,
        shutdown: shutdown.clone(),
    });
    {
        let store = store.clone();
        let signals = signals.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { store.relay_changes(signals, shutdown).await });
    }
    tokio::spawn(watch_auth(store.clone(), shutdown.clone()));
    http::server::raise_open_files_limit();
    let listener = tokio::net::TcpListener::bind(&config.listen).await?;
    let local_addr = listener.local_addr()?;
    let engine = engine(
        store.clone(),
        signals.clone(),
        config.engine.clone(),
        metrics.clone(),
    )?;
    // The worker process also does the upkeep (bucket expiry, pruning).
    let worker = config.run_worker.then(|| {
        tokio::spawn(maintenance::run(
            store.clone(),
            clock.clone(),
            config.maintenance.clone(),
            shutdown.clone(),
        ));
        let sender = tokio::spawn(crate::engine::webhooks::run(
            store.clone(),
            clock.clone(),
            config.webhooks.clone(),
            engine.worker_id().to_string(),
            metrics.clone(),
            shutdown.clone(),
        ));
        let work = engine.clone().run(shutdown.clone());
        tokio::spawn(async move {
            work.await;
            // Sends in flight finish (or time out) before the worker counts as stopped.
            let _ = sender.await;
        })
    });
    let stop = shutdown.clone();
    let http = tokio::spawn(http::serve(
        listener,
        http::router(state),
        config.http.clone(),
        async move { stop.cancelled().await },
    ));
    Ok(Server {
        local_addr,
        store,
        signals,
        engine,
        shutdown,
        http,
        worker,
    })
}
