//! Online backup and checked restore of a SQLite database.
//!
//! A backup is `VACUUM INTO` on a connection of its own: it reads one consistent snapshot
//! (a WAL read transaction), so writers keep going while it runs and the copy holds every
//! transaction committed before it started and none after. A restore checks a copy before
//! it is put in place: `PRAGMA integrity_check`, the migrations, and every ledger invariant.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};

use super::MIGRATOR;
use crate::store::{StoreError, StoreResult};

/// The database file a `sqlite://` URL names.
pub fn database_path(url: &str) -> StoreResult<PathBuf> {
    let options = SqliteConnectOptions::from_str(url)?;
    let path = options.get_filename();
    if url.contains(":memory:") || path.as_os_str().is_empty() {
        return Err(StoreError::Invalid(format!(
            "{url:?} does not name a database file"
        )));
    }
    Ok(path.to_path_buf())
}

/// Opens an existing file (never creates one); `busy_timeout` covers a writer's commit.
async fn open_existing(path: &Path) -> StoreResult<SqliteConnection> {
    if !path.is_file() {
        return Err(StoreError::NotFound(format!(
            "database file {}",
            path.display()
        )));
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(30));
    Ok(SqliteConnection::connect_with(&options).await?)
}

/// Writes a consistent copy of the live database at `source` to `out`, which must not
/// exist. Returns the size of the copy in bytes.
pub async fn backup(source: &Path, out: &Path) -> StoreResult<u64> {
    if out.exists() {
        return Err(StoreError::Invalid(format!(
            "--out: {} already exists; a backup never overwrites a file",
            out.display()
        )));
    }
    let out_text = out.to_str().ok_or_else(|| {
        StoreError::Invalid(format!("--out: {} is not valid UTF-8", out.display()))
    })?;
    let mut conn = open_existing(source).await?;
    // VACUUM INTO itself also refuses a file that is there and not empty.
    let copied = sqlx::query("VACUUM INTO ?1")
        .bind(out_text)
        .execute(&mut conn)
        .await;
    conn.close().await?;
    copied?;
    Ok(std::fs::metadata(out).map(|m| m.len()).unwrap_or(0))
}

/// What a restore found in a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyCheck {
    pub accounts: i64,
    pub tasks: i64,
    pub ledger_entries: i64,
    /// Ledger invariant violations; a copy is put in place only when there are none.
    pub problems: Vec<String>,
}

/// Checks a copy in place: its pages (`PRAGMA integrity_check`), then, after bringing its
/// schema up to date, every ledger invariant. The copy is left in rollback-journal mode
/// with no side files, ready to be moved.
pub async fn check_copy(path: &Path) -> StoreResult<CopyCheck> {
    let mut conn = open_existing(path).await?;
    let checked = check_open_copy(&mut conn).await;
    conn.close().await?;
    checked
}

/// A copy's row counts.
#[derive(Debug, sqlx::FromRow)]
struct CopyCounts {
    accounts: i64,
    tasks: i64,
    ledger_entries: i64,
}

async fn check_open_copy(conn: &mut SqliteConnection) -> StoreResult<CopyCheck> {
    let integrity: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut *conn)
        .await?;
    if integrity != ["ok"] {
        return Err(StoreError::Integrity(format!(
            "PRAGMA integrity_check: {}",
            integrity.join("; ")
        )));
    }
    sqlx::query("PRAGMA journal_mode = DELETE")
        .execute(&mut *conn)
        .await?;
    MIGRATOR.run(&mut *conn).await?;
    let counts: CopyCounts = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM accounts) AS accounts, (SELECT COUNT(*) FROM tasks) AS tasks, \
         (SELECT COUNT(*) FROM ledger) AS ledger_entries",
    )
    .fetch_one(&mut *conn)
    .await?;
    let mut tx = conn.begin().await?;
    let problems = crate::store::verify::verify::<sqlx::Sqlite>(&mut tx).await?;
    tx.commit().await?;
    Ok(CopyCheck {
        accounts: counts.accounts,
        tasks: counts.tasks,
        ledger_entries: counts.ledger_entries,
        problems,
    })
}

/// The `-wal` and `-shm` files SQLite keeps beside a database in WAL mode.
pub fn side_files(path: &Path) -> [PathBuf; 2] {
    let with = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [with("-wal"), with("-shm")]
}
