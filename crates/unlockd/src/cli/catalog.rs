//! `import` and `demo-data`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::Cli;
use crate::catalog::demo::{self, DemoOptions};
use crate::catalog::import::{self, EventIndex};

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Events file (.csv, .jsonl or .ndjson).
    #[arg(long)]
    events: Option<PathBuf>,
    /// Exhibitors file.
    #[arg(long)]
    exhibitors: Option<PathBuf>,
    /// Personnel file.
    #[arg(long)]
    personnel: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DemoDataArgs {
    /// Directory to write events.csv, exhibitors.csv and personnel.csv into.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    events: u64,
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    personnel: u64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

fn progress(path: &Path, rows: usize) -> ProgressBar {
    let bar = ProgressBar::new(rows as u64);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} rows ({per_sec})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(path.display().to_string());
    bar
}

pub async fn import(cli: &Cli, args: &ImportArgs) -> anyhow::Result<ExitCode> {
    if args.events.is_none() && args.exhibitors.is_none() && args.personnel.is_none() {
        anyhow::bail!("nothing to import: give --events, --exhibitors and/or --personnel");
    }
    let store = cli.open_store().await?;
    // Files go in dependency order; each is read and checked whole, then written in one
    // transaction, so a bad row leaves that file entirely unapplied.
    if let Some(path) = &args.events {
        let rows = import::read_events(path)?;
        let bar = progress(path, rows.len());
        store.import_events(&rows, &|n| bar.inc(n)).await?;
        bar.finish();
        println!("{}: {} events imported", path.display(), rows.len());
    }
    let index = EventIndex::new(store.event_keys().await?);
    if let Some(path) = &args.exhibitors {
        let rows = import::read_exhibitors(path, &index)?;
        let bar = progress(path, rows.len());
        store.import_exhibitors(&rows, &|n| bar.inc(n)).await?;
        bar.finish();
        println!("{}: {} exhibitors imported", path.display(), rows.len());
    }
    if let Some(path) = &args.personnel {
        let rows = import::read_personnel(path, &index)?;
        let bar = progress(path, rows.len());
        store.import_personnel(&rows, &|n| bar.inc(n)).await?;
        bar.finish();
        println!("{}: {} personnel imported", path.display(), rows.len());
    }
    // Derive the search tables now rather than at the server's next upkeep round.
    store.refresh_search_index().await?;
    let counts = store.catalog_counts().await?;
    println!(
        "catalog now holds {} events, {} exhibitors, {} personnel",
        counts.events, counts.exhibitors, counts.personnel
    );
    Ok(ExitCode::SUCCESS)
}

pub fn demo_data(args: &DemoDataArgs) -> anyhow::Result<ExitCode> {
    let catalog = demo::generate(&DemoOptions {
        events: args.events as usize,
        personnel: args.personnel as usize,
        seed: args.seed,
    });
    demo::write_dir(&catalog, &args.out)?;
    println!(
        "wrote {} events, {} exhibitors, {} personnel to {}",
        catalog.events.len(),
        catalog.exhibitors.len(),
        catalog.personnel.len(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
