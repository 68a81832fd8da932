//! The `unlockd` command line: one file per command group.

mod admin;
mod backup;
mod catalog;
mod client;
mod serve;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

use crate::clock::{DynClock, SystemClock};
use crate::store::sqlite::Durability;
use crate::store::DynStore;

#[derive(Debug, Parser)]
#[command(
    name = "unlockd",
    version,
    about = "Metered contact-unlock server (Lensmor-compatible API)"
)]
pub struct Cli {
    /// Database URL: sqlite://FILE (created if missing) or postgres://USER@HOST/DB
    /// (`?pool_size=N` sets the connection pool, 16 by default).
    #[arg(
        long,
        global = true,
        env = "UNLOCKD_DATABASE_URL",
        default_value = "sqlite://unlockd.db"
    )]
    database_url: String,

    /// SQLite commit durability: `full` syncs every commit (an acknowledged charge survives
    /// power loss); `normal` survives process crashes only, and is faster.
    #[arg(long, global = true, env = "UNLOCKD_SQLITE_SYNCHRONOUS", value_enum, default_value_t = Durability::Full)]
    sqlite_synchronous: Durability,

    /// Log format; `auto` is text on a terminal and JSON otherwise.
    #[arg(long, global = true, env = "UNLOCKD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Auto,
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API (and the worker, unless --no-worker); migrates on start.
    Serve(serve::ServeArgs),
    /// Run only the worker (scale-out).
    Worker(serve::WorkerArgs),
    /// Apply database migrations.
    Migrate,
    /// Load or update the catalog from CSV or JSON Lines files.
    Import(catalog::ImportArgs),
    /// Write a synthetic catalog in the import format.
    DemoData(catalog::DemoDataArgs),
    /// Accounts, API keys, credits and the ledger.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Client: precheck, confirm, create tasks (100 ids each), wait, print the results.
    Unlock(client::UnlockArgs),
    /// Client: show an unlock task.
    Task(client::TaskArgs),
    /// Client: show the credit balance.
    Credits(client::CreditsArgs),
    /// Client: an event's people.
    #[command(subcommand)]
    Personnel(client::PersonnelCommand),
    /// Client: the event catalog.
    #[command(subcommand)]
    Events(client::EventsCommand),
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("UNLOCKD_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

impl Cli {
    fn clock(&self) -> DynClock {
        Arc::new(SystemClock)
    }

    /// Connects and migrates.
    async fn open_store(&self) -> anyhow::Result<DynStore> {
        let store =
            crate::store::connect(&self.database_url, self.sqlite_synchronous, self.clock())
                .await?;
        store.migrate().await?;
        Ok(store)
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Serve(args) => serve::serve(&cli, args).await,
        Command::Worker(args) => serve::worker(&cli, args).await,
        Command::Migrate => {
            cli.open_store().await?;
            println!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Import(args) => catalog::import(&cli, args).await,
        Command::DemoData(args) => catalog::demo_data(args),
        Command::Admin(command) => admin::run(&cli, command).await,
        Command::Unlock(args) => client::unlock(args).await,
        Command::Task(args) => client::task(args).await,
        Command::Credits(args) => client::credits(args).await,
        Command::Personnel(command) => client::personnel(command).await,
        Command::Events(command) => client::events(command).await,
    }
}
