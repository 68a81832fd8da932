//! `sources check` (validate a sources file, optionally probe one person) and
//! `dev provider` (the stand-in enrichment API).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::{Access, Cli};
use crate::domain::ContactKind;
use crate::engine::sources::dev_provider::{DevProvider, DevProviderOptions};
use crate::engine::sources::provider::{Attempt, LogContext};
use crate::engine::sources::{Person, Sources, SourcesConfig};

#[derive(Debug, Subcommand)]
pub enum SourcesCommand {
    /// Validate a sources file; with --probe, ask every source about one person.
    #[command(
        after_help = "Example:\n  unlockd sources check --sources sources.toml --probe PERSON_ID"
    )]
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The sources file (TOML).
    #[arg(long, env = "UNLOCKD_SOURCES")]
    sources: PathBuf,
    /// A person of the catalog to look up once through every source (reads the database,
    /// sends real requests, stores nothing).
    #[arg(long)]
    probe: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// A stand-in enrichment API: slow and flaky as asked, for demos and tests.
    #[command(
        after_help = "Example:\n  unlockd dev provider --listen 127.0.0.1:9090 --latency 300ms --error-rate 0.1"
    )]
    Provider(ProviderArgs),
}

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| e.to_string())
}

fn rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err("a fraction from 0 to 1".into()),
    }
}

#[derive(Debug, Args)]
pub struct ProviderArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: String,
    /// Time taken by every answer.
    #[arg(long, default_value = "200ms", value_parser = duration)]
    latency: Duration,
    /// Share of people it finds nothing for (404).
    #[arg(long, default_value_t = 0.2, value_parser = rate)]
    not_found_rate: f64,
    /// Share of people whose email it marks "invalid".
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    invalid_rate: f64,
    /// Share of requests answered 500.
    #[arg(long, default_value_t = 0.1, value_parser = rate)]
    error_rate: f64,
    /// Share of requests answered 429 (Retry-After: 1).
    #[arg(long = "rate-429", default_value_t = 0.05, value_parser = rate)]
    rate_429: f64,
    /// Start an outage (503 to everything) this often.
    #[arg(long, value_parser = duration)]
    outage_every: Option<Duration>,
    /// How long each outage lasts.
    #[arg(long, default_value = "10s", value_parser = duration)]
    outage_for: Duration,
    /// Random seed: who is found, and the sequence of failures.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub async fn dev(command: &DevCommand) -> anyhow::Result<ExitCode> {
    let DevCommand::Provider(args) = command;
    let options = DevProviderOptions {
        latency: args.latency,
        not_found_rate: args.not_found_rate,
        invalid_rate: args.invalid_rate,
        error_rate: args.error_rate,
        rate_429: args.rate_429,
        outage_every: args.outage_every,
        outage_for: args.outage_for,
        seed: args.seed,
    };
    let provider = DevProvider::start(&args.listen, options)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    println!(
        "stand-in provider at {url}: GET {url}/v1/find?personnel_id=..&full_name=..&company_domain=.. ; GET {url}/stats",
        url = provider.url()
    );
    provider.wait().await?;
    Ok(ExitCode::SUCCESS)
}

pub fn load(path: &std::path::Path) -> anyhow::Result<SourcesConfig> {
    SourcesConfig::load(path).map_err(anyhow::Error::msg)
}

pub async fn sources(cli: &Cli, command: &SourcesCommand) -> anyhow::Result<ExitCode> {
    let SourcesCommand::Check(args) = command;
    let config = Arc::new(load(&args.sources)?);
    println!("{}: valid", args.sources.display());
    for source in &config.sources {
        let kinds: Vec<&str> = source.contact.iter().map(|k| k.as_str()).collect();
        let headers: Vec<String> = source.headers.iter().map(|h| format!("{h:?}")).collect();
        println!(
            "  source {}: finds {}; {:?} {}; uses {}; headers [{}]; timeout {:?}, {} in flight, {} attempts",
            source.name,
            kinds.join(", "),
            source.method,
            source.url_text(),
            source.fields_used().join(", "),
            headers.join("; "),
            source.timeout,
            source.max_concurrency,
            source.attempts,
        );
    }
    for kind in [ContactKind::Email, ContactKind::Phone] {
        let mut steps = vec!["catalog".to_string()];
        steps.extend(config.waterfall(kind).iter().cloned());
        println!("  waterfall {}: {}", kind.as_str(), steps.join(" -> "));
    }
    let Some(personnel_id) = &args.probe else {
        return Ok(ExitCode::SUCCESS);
    };
    let store = cli.open_store_with(Access::ReadOnly).await?;
    let ids = vec![personnel_id.clone()];
    let Some(fields) = store.person_fields(&ids).await?.remove(personnel_id) else {
        anyhow::bail!("no person {personnel_id:?} in the catalog");
    };
    let person = Person::from(fields);
    let sources = Sources::new(config.clone(), Default::default())?;
    let log = LogContext {
        task_id: "probe",
        item_id: 0,
    };
    println!("probe {personnel_id}:");
    for kind in [ContactKind::Email, ContactKind::Phone] {
        let stored = store.contact_of(personnel_id, kind).await?.flatten();
        println!(
            "  catalog ({}): {}",
            kind.as_str(),
            match stored {
                Some(value) if !value.is_empty() => format!("found {value}"),
                _ => "not found".into(),
            }
        );
        for provider in sources.waterfall(kind) {
            if !provider.can_ask_about(&person) {
                println!(
                    "  {} ({}): skipped: the person lacks a field it uses ({})",
                    provider.name(),
                    kind.as_str(),
                    provider.config.fields_used().join(", ")
                );
                continue;
            }
            let started = std::time::Instant::now();
            let answer = provider.request(&person, kind, log).await;
            let ms = started.elapsed().as_millis();
            let said = match answer {
                Attempt::Found(value) => format!("found {value}"),
                Attempt::NotFound => "not found".into(),
                Attempt::Permanent(reason) => format!("refused: {reason}"),
                Attempt::Transient {
                    reason,
                    retry_after,
                } => match retry_after {
                    Some(wait) => format!("failed (transient): {reason}; retry after {wait:?}"),
                    None => format!("failed (transient): {reason}"),
                },
                Attempt::Garbage(reason) => format!("garbage: {reason}"),
            };
            println!(
                "  {} ({}): {said} in {ms} ms",
                provider.name(),
                kind.as_str()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
