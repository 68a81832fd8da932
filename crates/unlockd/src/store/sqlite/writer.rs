//! SQLite's group-committing writer, on a thread of its own with a rusqlite connection.
//!
//! The semantics are those of `store::writer` (a savepoint per request, one commit per
//! batch, callers answered after the commit; `BEGIN IMMEDIATE`, so other processes on the
//! file take turns with whole batches). What differs is where the statements run: sqlx
//! runs each SQLite statement on a connection thread of its own and hands the rows back
//! through channels, so a 10-person create (about ten statements) cost about twenty thread
//! wake-ups; perf showed 60% of the server's samples on that thread and 37% in the
//! scheduler, SQLite itself under 10%. Here the thread that owns the connection runs whole
//! batches: one wake-up to take a batch, one answer per request.
//!
//! A request's work is synchronous. The shared orchestrations (`store::create`,
//! `store::claim`, `store::settlement`) are async traits; their SQLite statements
//! (`statements`) do only synchronous rusqlite work, so their futures finish on the first
//! poll and [`finish_now`] runs them. A future that waited on anything (a timer, a socket,
//! another task) would never be woken on this thread: it is answered with an error
//! instead of hanging the writer.
//!
//! After a failure that leaves the transaction state in doubt (a failed `COMMIT`, a
//! transaction SQLite rolled back by itself, as it does on a full disk), the connection is
//! dropped and a new one opened before the next batch, and every request of the failed
//! batch gets the error: none of them was applied.
//!
//! Checkpoints (copying the WAL back into the database file) run on a second thread with
//! its own connection, not inside the writer's commits: with SQLite's automatic
//! checkpoint, the commit that crossed 1,000 WAL pages also wrote them all back and synced
//! the file while every caller of its batch waited.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use futures::FutureExt;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use tokio::sync::oneshot;

use super::Durability;
use crate::store::writer::{hold_answer, Finish};
use crate::store::{StoreError, StoreResult};

/// Requests committed together at most.
const MAX_BATCH: usize = 256;

/// The checkpointer runs at most this often while commits come in.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// Distinct statements the writer runs (creates, leases, settlements, lookups, keys) fit
/// with room to spare; rusqlite keeps 16 by default.
const STATEMENT_CACHE: usize = 128;

/// How the writer's connection is opened: as sqlx opens the store's other connections.
#[derive(Debug, Clone)]
pub(super) struct WriterOptions {
    pub path: PathBuf,
    pub read_only: bool,
    pub durability: Durability,
    pub busy_timeout: Duration,
}

impl WriterOptions {
    fn open(&self) -> rusqlite::Result<Connection> {
        let access = if self.read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        };
        let conn = Connection::open_with_flags(
            &self.path,
            access | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
        )?;
        conn.busy_timeout(self.busy_timeout)?;
        if !self.read_only {
            // WAL is a property of the file (set by the first read-write open); asking
            // again costs nothing and keeps this connection right on its own.
            conn.pragma_update(None, "journal_mode", "WAL")?;
        }
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let synchronous = match self.durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", synchronous)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }

    /// The writer's own connection: checkpoints are the checkpointer's, and statement
    /// journals and sorts stay in memory (each was a temporary file created and deleted).
    /// SQLite's default page cache (2 MiB) is kept: 64 MiB was no faster in backlog drains
    /// (runs on a busy machine, so only a coarse reading) and more than doubled the
    /// server's peak RSS (about 50 → 120 MB).
    fn open_writer(&self) -> rusqlite::Result<Connection> {
        let conn = self.open()?;
        if !self.read_only {
            conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        }
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        Ok(conn)
    }
}

/// Checkpoints the WAL after commits, at most every [`CHECKPOINT_EVERY`], on its own
/// thread and connection; ends when the writer's thread does (its `ticks` sender drops).
/// `PASSIVE`: it copies what no reader still needs and never waits for readers or blocks
/// the writer, and the WAL is started over once everything was copied (SQLite's own rule).
fn checkpoint(options: WriterOptions, ticks: mpsc::Receiver<()>) {
    let mut connection: Option<Connection> = None;
    let mut failing = false;
    while ticks.recv().is_ok() {
        let result = match connection.as_mut() {
            Some(conn) => Ok(conn),
            None => options.open().map(|conn| connection.insert(conn)),
        }
        .and_then(|conn| conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())));
        match result {
            Ok(()) => failing = false,
            // Another process's checkpoint is running: it does the same work.
            Err(error) if error.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) => {}
            Err(error) => {
                // Logged once per run of failures: a full disk would repeat it 5 times a
                // second. The connection is opened afresh next time.
                if !failing {
                    tracing::warn!(%error, "the WAL checkpoint failed; retrying after the next commit");
                }
                failing = true;
                connection = None;
            }
        }
        std::thread::sleep(CHECKPOINT_EVERY);
    }
}

/// One queued request.
trait Job: Send {
    /// Runs the request's statements inside the batch's transaction. Returns whether they
    /// succeeded (the savepoint is kept) and how to answer the caller.
    fn run(self: Box<Self>, conn: &mut Connection) -> (bool, Finish);
    /// Answers the caller without running: the batch could not begin or went wrong before
    /// this request's turn.
    fn refuse(self: Box<Self>, error: StoreError);
}

struct Request<T, F> {
    work: F,
    answer: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> Job for Request<T, F>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> StoreResult<T> + Send,
{
    fn run(self: Box<Self>, conn: &mut Connection) -> (bool, Finish) {
        let Request { work, answer } = *self;
        // A request that panics fails alone: its statements have all ended (a rusqlite
        // statement resets when dropped, also while unwinding), and its savepoint is
        // rolled back like any failed request's.
        let result = catch_unwind(AssertUnwindSafe(|| work(conn))).unwrap_or_else(|_| {
            Err(StoreError::Integrity(
                "a write request panicked; it was rolled back".into(),
            ))
        });
        hold_answer(result, answer)
    }

    fn refuse(self: Box<Self>, error: StoreError) {
        let _ = self.answer.send(Err(error));
    }
}

/// Runs a request's future to its end on the writer's thread. The futures routed here are
/// the shared orchestrations over this module's synchronous statements: nothing in them
/// waits, so they finish on their first poll. One that did wait would never be woken here;
/// it is an error (and a bug), not a hang.
pub(super) fn finish_now<T>(work: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    work.now_or_never().unwrap_or_else(|| {
        tracing::error!("a write request waited on something outside the writer");
        Err(StoreError::Integrity(
            "a write request waited on something outside the writer".into(),
        ))
    })
}

#[derive(Clone)]
pub(super) struct SqliteWriter {
    queue: mpsc::Sender<Box<dyn Job>>,
}

impl SqliteWriter {
    /// Opens the writer's connection (here, so a bad path fails the store's start) and
    /// starts its thread.
    pub(super) fn start(options: WriterOptions) -> StoreResult<Self> {
        let connection = options.open_writer()?;
        let (queue, jobs) = mpsc::channel();
        // One pending tick is enough: commits while a checkpoint runs are all in the next.
        let (ticks, ticked) = mpsc::sync_channel(1);
        if !options.read_only {
            let options = options.clone();
            std::thread::Builder::new()
                .name("sqlite-checkpoint".into())
                .spawn(move || checkpoint(options, ticked))
                .map_err(|e| {
                    StoreError::Unavailable(format!("starting the WAL checkpointer: {e}"))
                })?;
        }
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(options, Some(connection), jobs, ticks))
            .map_err(|e| StoreError::Unavailable(format!("starting the database writer: {e}")))?;
        Ok(SqliteWriter { queue })
    }

    /// Runs `work` in the next batch and answers once that batch is committed. `work` runs
    /// on the writer's thread and must neither block on anything but the database nor
    /// begin or end transactions itself.
    pub(super) async fn run<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel::<StoreResult<T>>();
        self.queue
            .send(Box::new(Request { work, answer }))
            .map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the database writer has stopped".into())
}

/// The writer's thread: ends when every `SqliteWriter` is dropped.
fn run(
    options: WriterOptions,
    mut connection: Option<Connection>,
    jobs: mpsc::Receiver<Box<dyn Job>>,
    checkpoint_ticks: mpsc::SyncSender<()>,
) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(error) = begin_batch(&mut connection, &options) {
            tracing::warn!(%error, jobs = batch.len(), "could not begin a write batch");
            refuse_all(batch, &error);
            if connection.is_none() {
                // Not a busy loop: the next batch waits a little for the database to come
                // back.
                std::thread::sleep(Duration::from_millis(200));
            }
            continue;
        }
        let Some(conn) = connection.as_mut() else {
            refuse_all(
                batch,
                &StoreError::Unavailable("the writer lost its connection".into()),
            );
            continue;
        };
        if run_batch(conn, batch).is_err() {
            // The transaction state is in doubt: never reuse this connection.
            connection = None;
        } else {
            // Full: a tick is already waiting; disconnected: read-only, no checkpointer.
            let _ = checkpoint_ticks.try_send(());
        }
    }
}

/// Opens the batch's transaction, connecting first when the writer has no connection. A
/// connection that cannot begin is replaced and tried once more (nothing has run yet, so
/// the retry is safe). A busy database (another process's batch, waited for up to the busy
/// timeout) is no fault of the connection: it is kept.
fn begin_batch(connection: &mut Option<Connection>, options: &WriterOptions) -> StoreResult<()> {
    let mut attempts_left = 2;
    loop {
        let conn = match connection.as_mut() {
            Some(conn) => conn,
            None => connection.insert(options.open_writer()?),
        };
        let error = match statement(conn, "BEGIN IMMEDIATE") {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        let busy = matches!(
            error.sqlite_error_code(),
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
        );
        if busy {
            return Err(error.into());
        }
        *connection = None;
        attempts_left -= 1;
        if attempts_left == 0 {
            return Err(error.into());
        }
    }
}

/// Runs one of the transaction's own statements (cached: they run several times a batch).
fn statement(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

fn refuse_all(batch: Vec<Box<dyn Job>>, error: &StoreError) {
    for job in batch {
        job.refuse(StoreError::Unavailable(error.to_string()));
    }
}

/// Runs one batch in the transaction just begun. `Err`: nothing of the batch was applied
/// and the connection must be replaced.
fn run_batch(conn: &mut Connection, batch: Vec<Box<dyn Job>>) -> Result<(), ()> {
    let mut finishes: Vec<Finish> = Vec::with_capacity(batch.len());
    let mut jobs = batch.into_iter();
    let mut broken: Option<StoreError> = None;
    for job in jobs.by_ref() {
        if let Err(error) = statement(conn, "SAVEPOINT request") {
            broken = Some(error.into());
            break;
        }
        let (succeeded, finish) = job.run(conn);
        finishes.push(finish);
        let end = if succeeded {
            statement(conn, "RELEASE request")
        } else {
            statement(conn, "ROLLBACK TO request").and_then(|()| statement(conn, "RELEASE request"))
        };
        let ended = match end {
            // Back in autocommit: the transaction is gone (SQLite rolled it back itself,
            // or the request ended it), and everything before in this batch with it.
            Ok(()) if conn.is_autocommit() => Err(StoreError::Unavailable(
                "the write batch's transaction ended early".into(),
            )),
            Ok(()) => Ok(()),
            Err(error) => Err(error.into()),
        };
        if let Err(error) = ended {
            broken = Some(error);
            break;
        }
    }
    let unrun: Vec<Box<dyn Job>> = jobs.collect();
    if let Some(error) = broken {
        let _ = conn.execute_batch("ROLLBACK");
        tracing::error!(%error, "a write batch was rolled back");
        for finish in finishes {
            finish(Err(StoreError::Unavailable(error.to_string())));
        }
        refuse_all(unrun, &error);
        return Err(());
    }
    match statement(conn, "COMMIT") {
        Ok(()) => {
            for finish in finishes {
                finish(Ok(()));
            }
            Ok(())
        }
        Err(error) => {
            let error = StoreError::from(error);
            tracing::error!(%error, "a write batch failed to commit");
            let _ = conn.execute_batch("ROLLBACK");
            for finish in finishes {
                finish(Err(StoreError::Unavailable(error.to_string())));
            }
            Err(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer_on_a_fresh_file(dir: &tempfile::TempDir) -> SqliteWriter {
        let path = dir.path().join("writer.db");
        let setup = Connection::open(&path).unwrap();
        setup
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (name TEXT PRIMARY KEY);")
            .unwrap();
        SqliteWriter::start(WriterOptions {
            path,
            read_only: false,
            durability: Durability::Full,
            busy_timeout: Duration::from_secs(1),
        })
        .unwrap()
    }

    fn insert(conn: &Connection, name: &str) -> StoreResult<()> {
        conn.execute("INSERT INTO t (name) VALUES (?1)", [name])?;
        Ok(())
    }

    async fn names(writer: &SqliteWriter) -> Vec<String> {
        writer
            .run(|conn| {
                let mut statement = conn.prepare("SELECT name FROM t ORDER BY name")?;
                let names = statement.query_map([], |row| row.get(0))?;
                Ok(names.collect::<rusqlite::Result<Vec<String>>>()?)
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn commits_reach_the_database_file_without_any_other_connection_checkpointing() {
        let dir = tempfile::tempdir().unwrap();
        let writer = writer_on_a_fresh_file(&dir);
        writer
            .run(|conn| insert(conn, "checkpointed"))
            .await
            .unwrap();
        // A copy of the database file alone (no WAL) has the table and the row only once
        // a checkpoint copied them there: the writer's connection never checkpoints, and
        // SQLite's automatic checkpoint would wait for 1,000 WAL pages.
        let copy = dir.path().join("copy.db");
        let mut rows = 0;
        for _ in 0..100 {
            std::fs::copy(dir.path().join("writer.db"), &copy).unwrap();
            // A copy taken mid-checkpoint may be torn: read as not there yet.
            rows = Connection::open(&copy)
                .and_then(|conn| {
                    conn.query_row(
                        "SELECT COUNT(*) FROM t WHERE name = 'checkpointed'",
                        [],
                        |row| row.get::<_, i64>(0),
                    )
                })
                .unwrap_or(0);
            if rows == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(rows, 1, "the commit never reached the database file");
    }

    type TestJob = Box<dyn FnOnce(&mut Connection) -> StoreResult<()> + Send>;

    fn job(work: impl FnOnce(&mut Connection) -> StoreResult<()> + Send + 'static) -> TestJob {
        Box::new(work)
    }

    /// Queues `jobs` while the writer is held up by a request of its own, so that they
    /// form one batch; returns their answers.
    async fn in_one_batch(writer: &SqliteWriter, jobs: Vec<TestJob>) -> Vec<StoreResult<()>> {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let holder = tokio::spawn({
            let writer = writer.clone();
            async move {
                writer
                    .run(move |_| {
                        held.recv().unwrap();
                        Ok(())
                    })
                    .await
            }
        });
        // Let the holder reach the writer's thread before the batch is queued.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let answers: Vec<_> = jobs
            .into_iter()
            .map(|job| {
                tokio::spawn({
                    let writer = writer.clone();
                    async move { writer.run(job).await }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        release.send(()).unwrap();
        holder.await.unwrap().unwrap();
        let mut results = Vec::new();
        for answer in answers {
            results.push(answer.await.unwrap());
        }
        results
    }

    #[tokio::test]
    async fn a_failing_or_panicking_request_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let writer = writer_on_a_fresh_file(&dir);
        let results = in_one_batch(
            &writer,
            vec![
                job(|conn| insert(conn, "a")),
                job(|conn| {
                    insert(conn, "b")?;
                    Err(StoreError::Invalid("refused after writing".into()))
                }),
                job(|conn| {
                    insert(conn, "c")?;
                    panic!("a bug in a request");
                }),
                // A constraint: the row "a" this batch wrote already.
                job(|conn| insert(conn, "a")),
                job(|conn| insert(conn, "d")),
            ],
        )
        .await;
        assert!(results[0].is_ok());
        assert!(matches!(results[1], Err(StoreError::Invalid(_))));
        assert!(matches!(results[2], Err(StoreError::Integrity(_))));
        assert!(matches!(results[3], Err(StoreError::Integrity(_))));
        assert!(results[4].is_ok());
        assert_eq!(names(&writer).await, ["a", "d"]);
    }

    #[tokio::test]
    async fn a_transaction_lost_mid_batch_fails_the_whole_batch_and_the_writer_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let writer = writer_on_a_fresh_file(&dir);
        let results = in_one_batch(
            &writer,
            vec![
                job(|conn| insert(conn, "a")),
                // As SQLite does by itself on a full disk: the whole transaction is gone.
                job(|conn| {
                    conn.execute_batch("ROLLBACK")?;
                    Ok(())
                }),
                job(|conn| insert(conn, "b")),
            ],
        )
        .await;
        assert!(results.iter().all(|result| result.is_err()), "{results:?}");
        assert!(names(&writer).await.is_empty());
        writer.run(|conn| insert(conn, "after")).await.unwrap();
        assert_eq!(names(&writer).await, ["after"]);
    }

    #[test]
    fn a_request_future_that_waits_is_an_error_not_a_hang() {
        let waits = async {
            futures::future::pending::<()>().await;
            Ok::<(), StoreError>(())
        };
        assert!(matches!(finish_now(waits), Err(StoreError::Integrity(_))));
    }
}
