//! `admin backup` and `admin restore`: SQLite files. PostgreSQL has its own tools.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::Cli;
use crate::store::sqlite::backup::{self, database_path, side_files};

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The file to write; it must not exist.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A backup written by `admin backup`.
    #[arg(long)]
    from: PathBuf,
    /// Replace an existing database at the target (stop every server on it first).
    #[arg(long)]
    force: bool,
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres:") || url.starts_with("postgresql:")
}

pub async fn backup(cli: &Cli, args: &BackupArgs) -> anyhow::Result<ExitCode> {
    let url = cli.database_url()?;
    if is_postgres(url) {
        eprintln!(
            "admin backup copies SQLite files only. For PostgreSQL use pg_dump, which also \
             takes a consistent copy while the server runs, e.g.\n  \
             pg_dump --format=custom --file=unlockd.dump \"$UNLOCKD_DATABASE_URL\"\n\
             and pg_restore to bring it back (see the README)."
        );
        return Ok(ExitCode::FAILURE);
    }
    if !url.starts_with("sqlite:") {
        anyhow::bail!("--database-url must be sqlite://FILE for a backup");
    }
    let source = database_path(url)?;
    let bytes = backup::backup(&source, &args.out).await?;
    println!(
        "backup of {} written to {} ({bytes} bytes)",
        source.display(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn restore(cli: &Cli, args: &RestoreArgs) -> anyhow::Result<ExitCode> {
    let url = cli.database_url()?;
    if is_postgres(url) {
        eprintln!(
            "admin restore puts SQLite files in place only. For PostgreSQL restore a pg_dump \
             archive into an empty database with pg_restore, e.g.\n  \
             createdb unlockd_restored && pg_restore --dbname=unlockd_restored unlockd.dump\n\
             then run `unlockd admin ledger verify` against it (see the README)."
        );
        return Ok(ExitCode::FAILURE);
    }
    if !url.starts_with("sqlite:") {
        anyhow::bail!("--database-url must be sqlite://FILE for a restore");
    }
    let target = database_path(url)?;
    if target.exists() && !args.force {
        anyhow::bail!(
            "{} already exists; pass --force to replace it (stop every server on it first)",
            target.display()
        );
    }
    if !args.from.is_file() {
        anyhow::bail!("--from: no backup file at {}", args.from.display());
    }
    // The copy is checked beside the target, so the final rename stays on one filesystem
    // and the backup itself is never modified.
    let mut staging = target.clone().into_os_string();
    staging.push(format!(".restore-{}", std::process::id()));
    let staging = PathBuf::from(staging);
    std::fs::copy(&args.from, &staging).map_err(|e| {
        anyhow::anyhow!(
            "cannot copy {} to {}: {e}",
            args.from.display(),
            staging.display()
        )
    })?;
    let checked = backup::check_copy(&staging).await;
    let check = match checked {
        Ok(check) if check.problems.is_empty() => check,
        Ok(check) => {
            let _ = std::fs::remove_file(&staging);
            for problem in &check.problems {
                eprintln!("VIOLATION: {problem}");
            }
            anyhow::bail!(
                "{}: {} ledger invariant violation(s); nothing was restored",
                args.from.display(),
                check.problems.len()
            );
        }
        Err(e) => {
            let _ = std::fs::remove_file(&staging);
            anyhow::bail!("{}: {e}; nothing was restored", args.from.display());
        }
    };
    // A write-ahead log left from the old database would be replayed into the new one.
    for side in side_files(&target) {
        match std::fs::remove_file(&side) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                let _ = std::fs::remove_file(&staging);
                anyhow::bail!("cannot remove {}: {e}", side.display());
            }
        }
    }
    std::fs::rename(&staging, &target).map_err(|e| {
        anyhow::anyhow!(
            "cannot move {} to {}: {e}",
            staging.display(),
            target.display()
        )
    })?;
    println!(
        "restored {} to {}: integrity ok, ledger ok ({} accounts, {} tasks, {} ledger entries)",
        args.from.display(),
        target.display(),
        check.accounts,
        check.tasks,
        check.ledger_entries
    );
    Ok(ExitCode::SUCCESS)
}
