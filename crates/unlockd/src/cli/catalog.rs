//! `import` and `demo-data`.

use std::fmt::Write as FmtWrite;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressState, ProgressStyle};

use super::Cli;
use crate::catalog::demo::{self, DemoOptions};
use crate::catalog::import::{self, ImportFiles};

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

/// Import progress on stderr: a spinner while the files are read and checked, then a bar
/// with a rounded rate and an ETA on a terminal; elsewhere (a log, CI) a plain line every
/// tenth of the rows or every few seconds, whichever comes first.
enum Progress {
    Terminal(ProgressBar),
    Lines(Mutex<PlainLines>),
}

struct PlainLines {
    total: u64,
    done: u64,
    started: Instant,
    last_line: Instant,
    last_done: u64,
}

const PLAIN_LINE_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    fn checking(files: &str) -> Progress {
        if std::io::stderr().is_terminal() {
            let spinner = ProgressBar::new_spinner();
            spinner.set_message(format!("reading and checking {files}"));
            spinner.enable_steady_tick(Duration::from_millis(100));
            Progress::Terminal(spinner)
        } else {
            eprintln!("import: reading and checking {files}");
            let now = Instant::now();
            Progress::Lines(Mutex::new(PlainLines {
                total: 0,
                done: 0,
                started: now,
                last_line: now,
                last_done: 0,
            }))
        }
    }

    /// From checking to writing `total` rows.
    fn writing(self, total: u64) -> Progress {
        match self {
            Progress::Terminal(spinner) => {
                spinner.finish_and_clear();
                let bar = ProgressBar::new(total);
                if let Ok(style) = ProgressStyle::with_template(
                    "importing [{bar:30}] {human_pos}/{human_len} rows, {rows_per_sec}, ETA {eta}",
                ) {
                    bar.set_style(
                        style
                            .with_key(
                                "rows_per_sec",
                                |state: &ProgressState, w: &mut dyn FmtWrite| {
                                    let _ = w.write_str(&rate(state.per_sec()));
                                },
                            )
                            .progress_chars("=> "),
                    );
                }
                Progress::Terminal(bar)
            }
            Progress::Lines(lines) => {
                let now = Instant::now();
                eprintln!("import: checked, writing {} rows", group(total));
                let mut lines = lines.into_inner().unwrap_or_else(|e| e.into_inner());
                lines.total = total;
                lines.started = now;
                lines.last_line = now;
                Progress::Lines(Mutex::new(lines))
            }
        }
    }

    fn advance(&self, rows: u64) {
        match self {
            Progress::Terminal(bar) => bar.inc(rows),
            Progress::Lines(lines) => {
                let mut p = lines.lock().unwrap_or_else(|e| e.into_inner());
                p.done += rows;
                let tenth = (p.total / 10).max(1);
                if p.done < p.total
                    && (p.done - p.last_done >= tenth || p.last_line.elapsed() >= PLAIN_LINE_EVERY)
                {
                    let secs = p.started.elapsed().as_secs_f64();
                    let per_sec = if secs > 0.0 {
                        p.done as f64 / secs
                    } else {
                        0.0
                    };
                    let eta = if per_sec > 0.0 {
                        duration((p.total - p.done) as f64 / per_sec)
                    } else {
                        "unknown".into()
                    };
                    eprintln!(
                        "import: {}/{} rows ({}%), {}, ETA {eta}",
                        group(p.done),
                        group(p.total),
                        p.done * 100 / p.total.max(1),
                        rate(per_sec),
                    );
                    p.last_line = Instant::now();
                    p.last_done = p.done;
                }
            }
        }
    }

    fn finish(self) {
        match self {
            Progress::Terminal(bar) => bar.finish_and_clear(),
            Progress::Lines(lines) => {
                let p = lines.into_inner().unwrap_or_else(|e| e.into_inner());
                let secs = p.started.elapsed().as_secs_f64();
                eprintln!("import: wrote {} rows in {}", group(p.done), duration(secs));
            }
        }
    }

    fn abandon(self) {
        if let Progress::Terminal(bar) = self {
            bar.abandon();
        }
    }
}

/// `12,345 rows/s`; below 10 rows a second, one decimal.
fn rate(per_sec: f64) -> String {
    if per_sec < 10.0 {
        format!("{per_sec:.1} rows/s")
    } else {
        format!("{} rows/s", group(per_sec.round() as u64))
    }
}

/// Thousands separated by commas.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `4.2s`, `3m 05s`, `1h 02m`.
fn duration(secs: f64) -> String {
    if secs < 60.0 {
        return format!("{secs:.1}s");
    }
    let whole = secs.round() as u64;
    if whole < 3600 {
        format!("{}m {:02}s", whole / 60, whole % 60)
    } else {
        format!("{}h {:02}m", whole / 3600, whole % 3600 / 60)
    }
}

pub async fn import(cli: &Cli, args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let files = ImportFiles {
        events: args.events.clone(),
        exhibitors: args.exhibitors.clone(),
        personnel: args.personnel.clone(),
    };
    let named: Vec<String> = [&files.events, &files.exhibitors, &files.personnel]
        .into_iter()
        .flatten()
        // The names alone: full paths would overflow a terminal line.
        .map(|p| {
            p.file_name()
                .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into())
        })
        .collect();
    if named.is_empty() {
        anyhow::bail!("nothing to import: give --events, --exhibitors and/or --personnel");
    }
    let store = cli.open_store().await?;

    // Every file is read and checked (against each other and the stored catalog) before
    // anything is written; then all of them are applied in one transaction.
    let progress = Progress::checking(&named.join(", "));
    let stored_events = store.event_keys().await?;
    let checked = {
        let files = files.clone();
        tokio::task::spawn_blocking(move || import::read_catalog(&files, &stored_events)).await?
    };
    let rows = match checked {
        Ok(rows) => rows,
        Err(problems) => {
            progress.abandon();
            eprintln!(
                "error: nothing was imported; {} problem{} found:",
                problems.total(),
                if problems.total() == 1 { "" } else { "s" }
            );
            for line in problems.to_string().lines() {
                eprintln!("  {line}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let progress = progress.writing(rows.total_rows());
    if let Err(e) = store.import_catalog(&rows, &|n| progress.advance(n)).await {
        progress.abandon();
        anyhow::bail!("nothing was imported: {e}");
    }
    progress.finish();

    for (path, count, noun) in [
        (&files.events, rows.events.len(), "events"),
        (&files.exhibitors, rows.exhibitors.len(), "exhibitors"),
        (&files.personnel, rows.personnel.len(), "personnel"),
    ] {
        if let Some(path) = path {
            println!("{}: {count} {noun} imported", path.display());
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_counts_and_durations_read_easily() {
        assert_eq!(rate(12_345.678), "12,346 rows/s");
        assert_eq!(rate(2.71), "2.7 rows/s");
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1_000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(duration(4.24), "4.2s");
        assert_eq!(duration(185.0), "3m 05s");
        assert_eq!(duration(3_720.0), "1h 02m");
    }
}
