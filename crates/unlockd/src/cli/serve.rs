//! `serve`, `worker` and the demo set-up.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::Cli;
use crate::app::{self, ServerConfig};
use crate::catalog::demo::{self, DemoOptions, EXAMPLE_EVENT_ALIAS, EXAMPLE_PEOPLE};
use crate::domain::keys::{self, KeyPrefix};
use crate::domain::ledger::BucketKind;
use crate::domain::Pricing;
use crate::engine::maintenance::{self, MaintenanceConfig};
use crate::engine::webhooks::WebhookConfig;
use crate::engine::EngineConfig;
use crate::signals::TaskSignals;
use crate::store::{DynStore, Grant};

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Seconds a claim lasts without a heartbeat.
    #[arg(long, env = "UNLOCKD_LEASE_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    lease_seconds: u64,
    /// Tasks worked at once by this process.
    #[arg(long, env = "UNLOCKD_WORKER_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=256))]
    worker_concurrency: u64,
    /// Most items of a task settled in one transaction (fewer when its lookups are slow:
    /// what is ready is settled every 200 ms).
    #[arg(long, env = "UNLOCKD_SETTLE_BATCH", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=100))]
    settle_batch: u64,
    /// Claims after which a task is failed (its holds released) instead of retried.
    #[arg(long, env = "UNLOCKD_MAX_ATTEMPTS", default_value_t = 10, value_parser = clap::value_parser!(i64).range(1..=1000))]
    max_attempts: i64,
    /// Upper bound on contact lookups per second from this process (0: none).
    #[arg(long, env = "UNLOCKD_LOOKUPS_PER_SECOND", default_value_t = 0)]
    lookups_per_second: u32,
    /// Days finished tasks are kept before they are pruned (ledger entries are kept).
    #[arg(long, env = "UNLOCKD_TASK_RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=36_500))]
    task_retention_days: u64,
    /// Seconds between upkeep rounds (bucket expiry, pruning).
    #[arg(long, env = "UNLOCKD_MAINTENANCE_INTERVAL_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    maintenance_interval_seconds: u64,
    /// Let webhook targets resolve to private, loopback, link-local or unspecified
    /// addresses (refused by default, at registration and at every send).
    #[arg(long, env = "UNLOCKD_WEBHOOKS_ALLOW_PRIVATE")]
    webhooks_allow_private: bool,
    /// Milliseconds before the first retry of a failed webhook delivery (doubled per
    /// attempt, up to an hour; retries stop a day after the event).
    #[arg(long, env = "UNLOCKD_WEBHOOK_FIRST_RETRY_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    webhook_first_retry_ms: u64,
    /// Contact sources file (TOML): HTTP providers tried after the catalog. Without it,
    /// only the catalog's contacts are delivered.
    #[arg(long, env = "UNLOCKD_SOURCES")]
    sources: Option<std::path::PathBuf>,
}

impl WorkerArgs {
    fn engine_config(&self) -> anyhow::Result<EngineConfig> {
        let sources = match &self.sources {
            Some(path) => Some(std::sync::Arc::new(super::sources::load(path)?)),
            None => None,
        };
        Ok(EngineConfig {
            lease: Duration::from_secs(self.lease_seconds),
            concurrency: self.worker_concurrency as usize,
            settle_batch: self.settle_batch as usize,
            max_attempts: self.max_attempts,
            lookups_per_second: self.lookups_per_second,
            sources,
            ..EngineConfig::default()
        })
    }

    fn webhook_config(&self) -> WebhookConfig {
        WebhookConfig {
            allow_private: self.webhooks_allow_private,
            first_retry: Duration::from_millis(self.webhook_first_retry_ms),
            ..WebhookConfig::default()
        }
    }

    fn maintenance_config(&self) -> MaintenanceConfig {
        MaintenanceConfig {
            interval: Duration::from_secs(self.maintenance_interval_seconds),
            retention: Duration::from_secs(self.task_retention_days * 24 * 3600),
            ..MaintenanceConfig::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "UNLOCKD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Run the API only; tasks are worked by `unlockd worker` processes.
    #[arg(long, env = "UNLOCKD_NO_WORKER")]
    no_worker: bool,
    /// On an empty database, load the demo catalog and a demo account; print its key.
    #[arg(long, env = "UNLOCKD_DEMO")]
    demo: bool,
    /// Requests per minute per API key (burst the same); 0 disables.
    #[arg(long, env = "UNLOCKD_RATE_LIMIT_PER_MINUTE", default_value_t = 120)]
    rate_limit_per_minute: u32,
    /// Requests per minute per client IP; 0 disables.
    #[arg(long, env = "UNLOCKD_IP_RATE_LIMIT_PER_MINUTE", default_value_t = 600)]
    ip_rate_limit_per_minute: u32,
    /// Credits per unlocked email.
    #[arg(long, env = "UNLOCKD_EMAIL_PRICE", default_value_t = 15, value_parser = clap::value_parser!(i64).range(0..=1_000_000))]
    email_price: i64,
    /// Credits per unlocked phone.
    #[arg(long, env = "UNLOCKD_PHONE_PRICE", default_value_t = 150, value_parser = clap::value_parser!(i64).range(0..=1_000_000))]
    phone_price: i64,
    /// How often a long poll re-reads its task when no change signal arrived (the
    /// fallback for changes made by other processes; PostgreSQL also signals them).
    #[arg(long, env = "UNLOCKD_LONG_POLL_RECHECK_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..=60_000))]
    long_poll_recheck_ms: u64,
    /// Behind a load balancer that sets X-Forwarded-For: rate-limit by that address
    /// instead of the balancer's.
    #[arg(long, env = "UNLOCKD_TRUST_FORWARDED_FOR")]
    trust_forwarded_for: bool,
    /// Seconds a connection has to send a whole request head.
    #[arg(long, env = "UNLOCKD_HEADER_READ_TIMEOUT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_read_timeout_seconds: u64,
    /// Seconds a keep-alive connection may sit idle between requests.
    #[arg(long, env = "UNLOCKD_IDLE_TIMEOUT_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    idle_timeout_seconds: u64,
    /// Seconds a request body has to arrive whole (408 after).
    #[arg(long, env = "UNLOCKD_BODY_READ_TIMEOUT_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    body_read_timeout_seconds: u64,
    /// Seconds a request may take (503 after); long polls are bounded by their `wait`.
    #[arg(long, env = "UNLOCKD_REQUEST_TIMEOUT_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    request_timeout_seconds: u64,
    /// Connections served at once; more are refused (only /healthz still answers).
    #[arg(long, env = "UNLOCKD_MAX_CONNECTIONS", default_value_t = 8192, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,
    /// Long polls (`?wait=`) one API key may hold open at once (429 over it).
    #[arg(long, env = "UNLOCKD_LONG_POLLS_PER_KEY", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    long_polls_per_key: u64,
    /// Seconds after which an Idempotency-Key reservation whose request never finished
    /// (its process died) is taken over by a retry.
    #[arg(long, env = "UNLOCKD_IDEMPOTENCY_LOCK_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    idempotency_lock_seconds: u64,
    /// Operator token for the operator console and API under /admin/ (at least 16
    /// characters; sent as `Authorization: Bearer`). Unset: the operator pages are off,
    /// except with --demo, which generates one and prints it.
    #[arg(long, env = "UNLOCKD_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    #[command(flatten)]
    worker: WorkerArgs,
}

impl ServeArgs {
    fn http_limits(&self) -> crate::http::HttpLimits {
        crate::http::HttpLimits {
            header_read_timeout: Duration::from_secs(self.header_read_timeout_seconds),
            idle_timeout: Duration::from_secs(self.idle_timeout_seconds),
            body_read_timeout: Duration::from_secs(self.body_read_timeout_seconds),
            request_timeout: Duration::from_secs(self.request_timeout_seconds),
            max_connections: self.max_connections as usize,
            long_polls_per_key: self.long_polls_per_key as usize,
            idempotency_lock: Duration::from_secs(self.idempotency_lock_seconds),
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let fire = token.clone();
    tokio::spawn(async move {
        let interrupt = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(term) => term,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot listen for SIGTERM");
                        let _ = interrupt.await;
                        fire.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = interrupt => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = interrupt.await;
        tracing::info!("shutting down: draining requests and the current batch");
        fire.cancel();
    });
    token
}

pub async fn serve(cli: &Cli, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    // The sources file is checked before anything else starts.
    let engine = args.worker.engine_config()?;
    let store = cli.open_store().await?;
    let demo_key = if args.demo {
        Some(prepare_demo(&store).await?)
    } else {
        None
    };
    let admin_token = match args.admin_token.as_deref().map(str::trim) {
        Some(token) if token.chars().count() < crate::http::MIN_ADMIN_TOKEN_CHARS => {
            anyhow::bail!(
                "--admin-token / UNLOCKD_ADMIN_TOKEN: must be at least {} characters",
                crate::http::MIN_ADMIN_TOKEN_CHARS
            )
        }
        Some(token) => Some(AdminToken::Configured(token.to_string())),
        None if args.demo => Some(AdminToken::Generated(generate_admin_token())),
        None => None,
    };
    let config = ServerConfig {
        admin_token: admin_token.as_ref().map(|t| t.value().to_string()),
        listen: args.listen.clone(),
        run_worker: !args.no_worker,
        pricing: Pricing {
            email: args.email_price,
            phone: args.phone_price,
        },
        key_rate_limit: args.rate_limit_per_minute,
        ip_rate_limit: args.ip_rate_limit_per_minute,
        engine,
        maintenance: args.worker.maintenance_config(),
        long_poll_recheck: Duration::from_millis(args.long_poll_recheck_ms),
        trust_forwarded_for: args.trust_forwarded_for,
        http: args.http_limits(),
        webhooks: args.worker.webhook_config(),
    };
    let server = app::start(config, store, cli.clock(), shutdown_on_signals())
        .await
        .map_err(|e| listen_error(&args.listen, e))?;
    tracing::info!(url = %server.url(), worker = !args.no_worker, "unlockd listening");
    if let Some(key) = demo_key {
        print_demo_banner(&server.url(), &key);
        print_console_banner(&server.url(), admin_token.as_ref());
    }
    server.wait().await?;
    Ok(ExitCode::SUCCESS)
}

/// A failure to start, with the address and the flag that chose it when binding failed.
fn listen_error(listen: &str, error: anyhow::Error) -> anyhow::Error {
    let io_kind = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind);
    match io_kind {
        Some(std::io::ErrorKind::AddrInUse) => anyhow::anyhow!(
            "cannot listen on {listen}: the address is already in use (another unlockd?); choose another with --listen or UNLOCKD_LISTEN"
        ),
        Some(std::io::ErrorKind::AddrNotAvailable) => anyhow::anyhow!(
            "cannot listen on {listen}: no such local address; choose another with --listen or UNLOCKD_LISTEN"
        ),
        Some(std::io::ErrorKind::PermissionDenied) => anyhow::anyhow!(
            "cannot listen on {listen}: permission denied (ports below 1024 need privileges); choose another with --listen or UNLOCKD_LISTEN"
        ),
        Some(_) => anyhow::anyhow!(
            "cannot listen on {listen} (--listen / UNLOCKD_LISTEN): {}",
            super::one_line(&error)
        ),
        None => error,
    }
}

pub async fn worker(cli: &Cli, args: &WorkerArgs) -> anyhow::Result<ExitCode> {
    let engine_config = args.engine_config()?;
    let store = cli.open_store().await?;
    let shutdown = shutdown_on_signals();
    let upkeep = tokio::spawn(maintenance::run(
        store.clone(),
        cli.clock(),
        args.maintenance_config(),
        shutdown.clone(),
    ));
    let signals = TaskSignals::new();
    let relay = {
        let store = store.clone();
        let signals = signals.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { store.relay_changes(signals, shutdown).await })
    };
    // A worker process serves no HTTP; its counters show in its logs, not on /metrics.
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::default());
    let engine = app::engine(store.clone(), signals, engine_config, metrics.clone())?;
    let webhooks = tokio::spawn(crate::engine::webhooks::run(
        store,
        cli.clock(),
        args.webhook_config(),
        engine.worker_id().to_string(),
        metrics,
        shutdown.clone(),
    ));
    engine.run(shutdown).await;
    webhooks.await?;
    relay.await?;
    upkeep.await?;
    Ok(ExitCode::SUCCESS)
}

const DEMO_ACCOUNT: &str = "demo";
const DEMO_CREDITS: i64 = 10_000;

/// Loads the demo catalog into an empty database, makes sure the demo account exists (with
/// 10,000 credits when new) and issues it a fresh key, returned for printing.
async fn prepare_demo(store: &DynStore) -> anyhow::Result<String> {
    let counts = store.catalog_counts().await?;
    if counts.personnel == 0 && counts.events == 0 {
        let catalog = demo::generate(&DemoOptions::default());
        let quiet = |_| {};
        store.import_events(&catalog.events, &quiet).await?;
        store.import_exhibitors(&catalog.exhibitors, &quiet).await?;
        store.import_personnel(&catalog.personnel, &quiet).await?;
        store.refresh_search_index().await?;
        tracing::info!(
            events = catalog.events.len(),
            exhibitors = catalog.exhibitors.len(),
            personnel = catalog.personnel.len(),
            "demo catalog loaded"
        );
    } else {
        tracing::info!(?counts, "catalog not empty; demo catalog not loaded");
    }
    let account = match store.find_account_by_name(DEMO_ACCOUNT).await? {
        Some(account) => account,
        None => {
            let account = store.create_account(DEMO_ACCOUNT).await?;
            store
                .grant_credits(&Grant {
                    account_id: account.id.clone(),
                    kind: BucketKind::Gift,
                    amount: DEMO_CREDITS,
                    expires_at: None,
                })
                .await?;
            account
        }
    };
    let key = keys::generate(KeyPrefix::Sk);
    store.add_api_key(&account.id, &key, KeyPrefix::Sk).await?;
    Ok(key.secret)
}

fn print_demo_banner(url: &str, key: &str) {
    let people = EXAMPLE_PEOPLE.map(|p| format!("\"{p}\"")).join(",");
    println!(
        "\nunlockd demo is running at {url}\n\
         Demo account API key (shown once; a new one is issued on every --demo start):\n\
         \n  export UNLOCKD_API_KEY={key}\n\
         \nUnlock the documented example's two emails:\n\
         \n  curl -X POST \"{url}/external/contacts/unlock\" \\\n    -H \"Authorization: Bearer {key}\" \\\n    -H \"Content-Type: application/json\" \\\n    -H \"x-call-source: api\" \\\n    -d '{{\"event_id\":\"{EXAMPLE_EVENT_ALIAS}\",\"personnel_ids\":[{people}]}}'\n\
         \nThen poll the task it returns:\n\
         \n  curl \"{url}/external/contacts/unlock-tasks/TASK_ID?wait=10\" -H \"Authorization: Bearer {key}\"\n"
    );
}

/// Where the operator token came from: configured tokens are never printed.
enum AdminToken {
    Configured(String),
    Generated(String),
}

impl AdminToken {
    fn value(&self) -> &str {
        match self {
            AdminToken::Configured(token) | AdminToken::Generated(token) => token,
        }
    }
}

/// A random operator token for a demo run (32 bytes, hex).
fn generate_admin_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("adm_{}", hex::encode(bytes))
}

fn print_console_banner(url: &str, admin_token: Option<&AdminToken>) {
    println!("Web console (paste the API key above to sign in):\n\n  {url}/\n");
    match admin_token {
        Some(AdminToken::Generated(token)) => println!(
            "Operator console (generated token for this run; set --admin-token / UNLOCKD_ADMIN_TOKEN to choose one):\n\n  {url}/admin/\n  operator token: {token}\n"
        ),
        Some(AdminToken::Configured(_)) => println!(
            "Operator console (sign in with your --admin-token / UNLOCKD_ADMIN_TOKEN):\n\n  {url}/admin/\n"
        ),
        None => {}
    }
}
