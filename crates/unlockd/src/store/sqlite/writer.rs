//! The group-committing writer. SQLite allows one writer at a time and a durable commit
//! costs an fsync, so the hot writes (creates, claims, settlements, leases) are queued to
//! one task that owns one connection and commits whatever is queued as one transaction:
//! a savepoint per request, so one request's failure (a 402, a lost lease, a constraint)
//! rolls back only that request, and one commit (one fsync) for the batch. Callers are
//! answered only after that commit, so an acknowledged charge is as durable as before.
//!
//! A batch forms from what is already queued when the writer is free: there is no delay
//! when the queue is empty. The transaction starts with `BEGIN IMMEDIATE`, so other
//! processes on the same file take turns with whole batches.
//!
//! After any failure that leaves the transaction state in doubt (a failed `COMMIT`, a
//! savepoint SQLite no longer knows because it rolled the transaction back itself, as it
//! does on a full disk), the connection is dropped and a new one opened before the next
//! batch, and every request of the failed batch gets the error: none of them was applied.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::time::Duration;

use futures::FutureExt;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use crate::store::{StoreError, StoreResult};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a job does once the batch's fate is known: answer its caller with its own result
/// when the batch committed, or with the batch's error.
type Finish = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// One queued request.
trait Job: Send {
    /// Runs the request's statements inside the batch's transaction. Returns whether they
    /// succeeded (the savepoint is kept) and how to answer the caller.
    fn run<'c>(self: Box<Self>, conn: &'c mut SqliteConnection) -> BoxFuture<'c, (bool, Finish)>;
    /// Answers the caller without running: the batch could not be started or went wrong
    /// before this request's turn.
    fn refuse(self: Box<Self>, error: StoreError);
}

struct Request<T, F> {
    work: F,
    answer: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> Job for Request<T, F>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, StoreResult<T>> + Send + 'static,
{
    fn run<'c>(self: Box<Self>, conn: &'c mut SqliteConnection) -> BoxFuture<'c, (bool, Finish)> {
        let Request { work, answer } = *self;
        Box::pin(async move {
            let result = work(conn).await;
            let succeeded = result.is_ok();
            let finish: Finish = Box::new(move |batch: Result<(), StoreError>| {
                let _ = answer.send(match (batch, result) {
                    (Ok(()), result) => result,
                    // Its own error explains it best; nothing of it was applied either way.
                    (Err(_), Err(own)) => Err(own),
                    (Err(batch_error), Ok(_)) => Err(batch_error),
                });
            });
            (succeeded, finish)
        })
    }

    fn refuse(self: Box<Self>, error: StoreError) {
        let _ = self.answer.send(Err(error));
    }
}

/// Requests committed together at most.
const MAX_BATCH: usize = 256;

#[derive(Clone)]
pub(super) struct Writer {
    queue: mpsc::UnboundedSender<Box<dyn Job>>,
}

impl Writer {
    /// Opens the writer's connection and starts its task.
    pub(super) async fn start(options: SqliteConnectOptions) -> StoreResult<Writer> {
        let connection = options.connect().await?;
        let (queue, jobs) = mpsc::unbounded_channel();
        tokio::spawn(run(options, connection, jobs));
        Ok(Writer { queue })
    }

    /// Runs `work` in the next batch and answers once that batch is committed. `work`
    /// must not begin or end transactions itself.
    pub(super) async fn run<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, StoreResult<T>>
            + Send
            + 'static,
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

async fn run(
    options: SqliteConnectOptions,
    connection: SqliteConnection,
    mut jobs: mpsc::UnboundedReceiver<Box<dyn Job>>,
) {
    let mut connection = Some(connection);
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let conn = match connection.as_mut() {
            Some(conn) => conn,
            None => match options.connect().await.map_err(StoreError::from) {
                Ok(conn) => connection.insert(conn),
                Err(error) => {
                    tracing::error!(%error, "the database writer cannot reconnect");
                    refuse_all(batch, &error);
                    // Not a busy loop: the next batch waits a little for the disk or the
                    // file to come back.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        if let Err(healthy) = run_batch(conn, batch).await {
            if !healthy {
                // The transaction state is in doubt: never reuse this connection.
                if let Some(conn) = connection.take() {
                    let _ = conn.close().await;
                }
            }
        }
    }
    if let Some(conn) = connection {
        let _ = conn.close().await;
    }
}

fn refuse_all(batch: Vec<Box<dyn Job>>, error: &StoreError) {
    for job in batch {
        job.refuse(StoreError::Unavailable(error.to_string()));
    }
}

/// Runs one batch. `Err(true)`: the batch failed but the connection is back in autocommit
/// and can be reused; `Err(false)`: the connection must be replaced.
async fn run_batch(conn: &mut SqliteConnection, batch: Vec<Box<dyn Job>>) -> Result<(), bool> {
    if let Err(error) = conn.execute("BEGIN IMMEDIATE").await {
        let error = StoreError::from(error);
        tracing::warn!(%error, jobs = batch.len(), "could not begin a write batch");
        refuse_all(batch, &error);
        // A failed BEGIN leaves no transaction open; the connection itself may be broken,
        // so it is replaced all the same unless the database was merely busy.
        return Err(error.is_busy());
    }
    let mut finishes: Vec<Finish> = Vec::with_capacity(batch.len());
    let mut jobs = batch.into_iter();
    let mut broken: Option<StoreError> = None;
    for job in jobs.by_ref() {
        if let Err(error) = conn.execute("SAVEPOINT request").await {
            broken = Some(error.into());
            break;
        }
        // A request that panics must not take the writer down with it: its transaction
        // state is unknown, so the batch is abandoned and the connection replaced.
        let (succeeded, finish) = match AssertUnwindSafe(job.run(conn)).catch_unwind().await {
            Ok(ran) => ran,
            Err(_) => {
                broken = Some(StoreError::Integrity(
                    "a write request panicked; its batch was rolled back".into(),
                ));
                break;
            }
        };
        finishes.push(finish);
        let end = if succeeded {
            conn.execute("RELEASE request").await
        } else {
            match conn.execute("ROLLBACK TO request").await {
                Ok(_) => conn.execute("RELEASE request").await,
                Err(error) => Err(error),
            }
        };
        if let Err(error) = end {
            // SQLite rolled the whole transaction back on its own (a full disk, an I/O
            // error): everything before in this batch is gone too.
            broken = Some(error.into());
            break;
        }
    }
    let unrun: Vec<Box<dyn Job>> = jobs.collect();
    if let Some(error) = broken {
        let _ = conn.execute("ROLLBACK").await;
        tracing::error!(%error, "a write batch was rolled back");
        for finish in finishes {
            finish(Err(StoreError::Unavailable(error.to_string())));
        }
        refuse_all(unrun, &error);
        return Err(false);
    }
    match conn.execute("COMMIT").await {
        Ok(_) => {
            for finish in finishes {
                finish(Ok(()));
            }
            Ok(())
        }
        Err(error) => {
            let error = StoreError::from(error);
            tracing::error!(%error, "a write batch failed to commit");
            let _ = conn.execute("ROLLBACK").await;
            for finish in finishes {
                finish(Err(StoreError::Unavailable(error.to_string())));
            }
            Err(false)
        }
    }
}
