//! Point reads run on the calling thread.
//!
//! sqlx runs every SQLite statement on a connection thread of its own and hands rows back
//! through channels: two or more thread wake-ups per statement. For a poll of a finished
//! task, perf showed those wake-ups (futex and the scheduler) taking about half of the
//! server's CPU, far more than the statement itself (tens of microseconds on a warm
//! page cache). So the hottest reads keep a few read-only connections of their own and
//! run on the async task that asks, with no hand-off. Only short, index-bounded statements
//! belong here: a long one would hold up the other requests of its runtime thread.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::store::{StoreError, StoreResult};

/// Connections kept open between reads; more may be open for a moment under load.
const KEEP_OPEN: usize = 8;

pub(super) struct InlineReader {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
}

impl InlineReader {
    pub(super) fn new(path: PathBuf, busy_timeout: Duration) -> Self {
        InlineReader {
            path,
            busy_timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(self.busy_timeout)?;
        Ok(conn)
    }

    /// Runs `read` on a pooled connection, on this thread.
    pub(super) fn read<T>(
        &self,
        read: impl FnOnce(&mut Connection) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => self.open().map_err(into_store_error)?,
        };
        let result = read(&mut conn);
        // A connection is safe to reuse whatever the read did, as long as it left no
        // transaction open (a snapshot read whose end failed is dropped instead).
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < KEEP_OPEN && conn.is_autocommit() {
            idle.push(conn);
        }
        drop(idle);
        result
    }
}

/// Busy, locked, read-only, unreadable, full or missing files are the database being
/// unavailable (a retry may succeed; the codes sqlx's SQLite errors count as unavailable,
/// `store::database_unavailable`); anything else (a constraint, a row that does not fit) is
/// a fault, as an sqlx error of the same kind is.
pub(super) fn into_store_error(error: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::*;
    match error.sqlite_error_code() {
        Some(
            DatabaseBusy | DatabaseLocked | ReadOnly | SystemIoFailure | DiskFull | CannotOpen,
        ) => StoreError::Unavailable(error.to_string()),
        _ => StoreError::Integrity(format!("database: {error}")),
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        into_store_error(error)
    }
}
