//! The `unlockd` command line: one file per command group.

mod admin;
mod backup;
mod catalog;
mod client;
mod database;
mod exhibitors;
mod log_format;
mod log_writer;
mod serve;
mod sources;
mod table;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::clock::{DynClock, SystemClock};
use crate::store::sqlite::Durability;
use crate::store::{ConnectOptions, DynStore};

#[derive(Debug, Parser)]
#[command(
    name = "unlockd",
    version,
    about = "Metered contact-unlock server (Lensmor-compatible API) and its command-line client",
    after_help = "Examples:\n  unlockd serve --demo\n  UNLOCKD_API_KEY=sk_... unlockd unlock --event ev1 p1 p2"
)]
pub struct Cli {
    /// Log format; `auto` is text on a terminal and JSON otherwise.
    #[arg(long, global = true, env = "UNLOCKD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

/// Where the database is; taken only by the commands that open it (not by client commands).
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Database URL: sqlite://FILE or postgres://USER@HOST/DB (`?pool_size=N` sets the
    /// connection pool, 16 by default).
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
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Auto,
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ServeCommand {
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    args: serve::ServeArgs,
}

#[derive(Debug, Args)]
pub struct WorkerCommand {
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    args: serve::WorkerArgs,
}

#[derive(Debug, Args)]
pub struct MigrateCommand {
    #[command(flatten)]
    database: DatabaseArgs,
}

#[derive(Debug, Args)]
pub struct ImportCommand {
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    args: catalog::ImportArgs,
}

#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// Create the SQLite database file if it does not exist (admin commands refuse to,
    /// so that a key is never issued into a stray database the server does not use).
    #[arg(long, global = true)]
    create: bool,
    #[command(subcommand)]
    command: admin::AdminCommand,
}

#[derive(Debug, Args)]
pub struct SourcesArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(subcommand)]
    command: sources::SourcesCommand,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API (and the worker, unless --no-worker); creates and migrates the database.
    #[command(
        after_help = "Example:\n  unlockd serve --database-url sqlite://unlockd.db --listen 127.0.0.1:8080"
    )]
    Serve(ServeCommand),
    /// Run only the worker (scale-out); works the tasks `serve --no-worker` accepts.
    #[command(
        after_help = "Example:\n  unlockd worker --database-url postgres://unlockd@db/unlockd --worker-concurrency 8"
    )]
    Worker(WorkerCommand),
    /// Create the database if needed and apply its migrations.
    #[command(after_help = "Example:\n  unlockd migrate --database-url sqlite://unlockd.db")]
    Migrate(MigrateCommand),
    /// Load or update the catalog from CSV or JSON Lines files.
    #[command(
        after_help = "Example:\n  unlockd import --events events.csv --exhibitors exhibitors.csv --personnel personnel.csv"
    )]
    Import(ImportCommand),
    /// Write a synthetic catalog in the import format.
    // catalog.rs defines the flags; their help lines are set here.
    #[command(
        after_help = "Example:\n  unlockd demo-data --out demo/ --events 10 --personnel 1000",
        mut_arg("events", |a| a.help("Number of events")),
        mut_arg("personnel", |a| a.help("Number of people, spread over the events")),
        mut_arg("seed", |a| a.help("Random seed: the same seed writes the same catalog"))
    )]
    DemoData(catalog::DemoDataArgs),
    /// Accounts, API keys, credits and the ledger (works on the database directly).
    #[command(after_help = "Example:\n  unlockd admin accounts create --name Acme --credits 5000")]
    Admin(AdminArgs),
    /// Client: precheck, confirm, create tasks (100 ids each), wait, print the results.
    #[command(
        after_help = "Example:\n  UNLOCKD_API_KEY=sk_... unlockd unlock --event ev1 p1 p2 --yes"
    )]
    Unlock(client::UnlockArgs),
    /// Client: show an unlock task.
    #[command(after_help = "Example:\n  unlockd task 0190c6d2-7e4f-7a51-9f00-3c1e2a4b5d6e --wait")]
    Task(client::TaskArgs),
    /// Client: the account's unlock tasks, newest first (an unlockd extension).
    #[command(
        after_help = "Example:\n  UNLOCKD_API_KEY=sk_... unlockd tasks --status completed --json"
    )]
    Tasks(client::TasksArgs),
    /// Client: show the credit balance.
    #[command(after_help = "Example:\n  UNLOCKD_API_KEY=sk_... unlockd credits --json")]
    Credits(client::CreditsArgs),
    /// Client: an event's people.
    #[command(subcommand)]
    #[command(after_help = "Example:\n  unlockd personnel list --event ev1 --search \"jane\"")]
    Personnel(client::PersonnelCommand),
    /// Client: the event catalog.
    #[command(subcommand)]
    #[command(after_help = "Example:\n  unlockd events list --keyword expo --country DE")]
    Events(client::EventsCommand),
    /// Client: an event's exhibitors.
    #[command(subcommand)]
    #[command(after_help = "Example:\n  unlockd exhibitors list --event 139574")]
    Exhibitors(exhibitors::ExhibitorsCommand),
    /// Contact sources: validate a sources file, probe a person through it.
    #[command(
        after_help = "Example:\n  unlockd sources check --sources sources.toml --probe PERSON_ID"
    )]
    Sources(SourcesArgs),
    /// Development helpers: a stand-in enrichment provider.
    #[command(subcommand)]
    #[command(after_help = "Example:\n  unlockd dev provider --listen 127.0.0.1:9090")]
    Dev(sources::DevCommand),
}

/// Log lines are written to stderr by a thread of their own, in batches: a request formats
/// its line and queues it, instead of waiting for the write. The guard flushes what is
/// queued when it drops, at the end of `main`.
fn init_logging(format: LogFormat) -> log_writer::FlushGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_env("UNLOCKD_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let (writer, guard) = log_writer::batch_writer(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    if json {
        builder
            .json()
            .event_format(log_format::FastJson::new())
            .init();
    } else {
        builder.init();
    }
    guard
}

/// How a command may open the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Create the SQLite file if missing, then migrate (`serve`, `migrate`, `import`).
    Create,
    /// The database must already exist; migrate it (admin commands that write).
    Existing,
    /// Only read: open read-only and do not migrate (`admin ledger verify`, the lists).
    ReadOnly,
}

impl Cli {
    fn clock(&self) -> DynClock {
        Arc::new(SystemClock)
    }

    /// The database URL of a command that takes one.
    fn database_url(&self) -> anyhow::Result<&str> {
        self.database()
            .map(|d| d.database_url.as_str())
            .ok_or_else(|| anyhow::anyhow!("this command does not use a database"))
    }

    fn database(&self) -> Option<&DatabaseArgs> {
        match &self.command {
            Command::Serve(c) => Some(&c.database),
            Command::Worker(c) => Some(&c.database),
            Command::Migrate(c) => Some(&c.database),
            Command::Import(c) => Some(&c.database),
            Command::Admin(c) => Some(&c.database),
            Command::Sources(c) => Some(&c.database),
            _ => None,
        }
    }

    /// Connects (creating a missing SQLite file) and migrates.
    async fn open_store(&self) -> anyhow::Result<DynStore> {
        self.open_store_with(Access::Create).await
    }

    /// A write refused by a read-only SQLite database, said as such.
    fn explain_read_only(&self, error: anyhow::Error) -> anyhow::Error {
        let Some(database) = self.database() else {
            return error;
        };
        if !one_line(&error).contains("readonly database") {
            return error;
        }
        match database::sqlite_file(&database.database_url) {
            Ok(file) => database::explain(
                &database.database_url,
                file.as_deref(),
                Access::Existing,
                error,
            ),
            Err(_) => error,
        }
    }

    async fn open_store_with(&self, access: Access) -> anyhow::Result<DynStore> {
        let database = self
            .database()
            .ok_or_else(|| anyhow::anyhow!("this command does not use a database"))?;
        let url = database.database_url.as_str();
        let sqlite_file = database::sqlite_file(url)?;
        if let Some(path) = &sqlite_file {
            database::check_sqlite_file(path, access)?;
        }
        let options = ConnectOptions {
            durability: database.sqlite_synchronous,
            create_if_missing: access == Access::Create,
            read_only: access == Access::ReadOnly,
        };
        let store = crate::store::connect_with(url, options, self.clock())
            .await
            .map_err(|e| database::explain(url, sqlite_file.as_deref(), access, e.into()))?;
        let prepared = if access == Access::ReadOnly {
            store.migrated().await
        } else {
            store.migrate().await
        };
        prepared.map_err(|e| database::explain(url, sqlite_file.as_deref(), access, e.into()))?;
        Ok(store)
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let _log_flush = init_logging(cli.log_format);
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
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each cause once: driver errors often repeat
/// their source's text in their own.
pub(crate) fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    // Multi-line reports (an import's bad rows) keep their lines.
    line
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Serve(c) => serve::serve(&cli, &c.args).await,
        Command::Worker(c) => serve::worker(&cli, &c.args).await,
        Command::Migrate(_) => {
            cli.open_store().await?;
            println!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Import(c) => catalog::import(&cli, &c.args)
            .await
            .map_err(|e| cli.explain_read_only(e)),
        Command::DemoData(args) => catalog::demo_data(args),
        Command::Admin(c) => admin::run(&cli, c.create, &c.command)
            .await
            .map_err(|e| cli.explain_read_only(e)),
        Command::Unlock(args) => client::unlock(args).await,
        Command::Task(args) => client::task(args).await,
        Command::Credits(args) => client::credits(args).await,
        Command::Tasks(args) => client::tasks(args).await,
        Command::Personnel(command) => client::personnel(command).await,
        Command::Events(command) => client::events(command).await,
        Command::Exhibitors(command) => exhibitors::exhibitors(command).await,
        Command::Sources(c) => sources::sources(&cli, &c.command).await,
        Command::Dev(command) => sources::dev(command).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every command and flag explains itself, every leaf command ends with an example, and
    /// only server and admin commands take database flags.
    #[test]
    fn every_command_and_flag_has_help_and_an_example() {
        fn walk(command: &clap::Command, path: &str, problems: &mut Vec<String>) {
            let path = format!("{path} {}", command.get_name());
            if command.get_about().is_none() {
                problems.push(format!("{path}: no help line"));
            }
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" && arg.get_help().is_none() {
                    problems.push(format!("{path} {id}: no help line"));
                }
            }
            let is_client = [
                "unlock",
                "task",
                "credits",
                "personnel",
                "events",
                "demo-data",
                "dev",
            ]
            .iter()
            .any(|name| path.starts_with(&format!(" unlockd {name}")));
            let takes_database = command
                .get_arguments()
                .any(|arg| arg.get_id().as_str() == "database_url");
            if is_client && takes_database {
                problems.push(format!("{path}: a client command shows --database-url"));
            }
            let example = command
                .get_after_help()
                .is_some_and(|text| text.to_string().contains("Example"));
            if !example {
                problems.push(format!("{path}: no example"));
            }
            for sub in command.get_subcommands() {
                if sub.get_name() != "help" {
                    walk(sub, &path, problems);
                }
            }
        }
        let mut command = Cli::command();
        command.build();
        let mut problems = Vec::new();
        walk(&command, "", &mut problems);
        assert!(problems.is_empty(), "{problems:#?}");
    }
}
