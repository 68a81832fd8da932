//! The group-committing writer of PostgreSQL's creates (SQLite has its own, on a thread
//! of its own: `sqlite/writer.rs`). A durable commit costs an fsync, and one account's
//! creates take turns on its row lock, which is held until the commit. So creates are
//! queued to a task that owns one connection and commits whatever is queued as one
//! transaction: a savepoint per request, so one request's failure (a 402, a constraint)
//! rolls back only that request, and one commit (one fsync) for the batch. Callers are
//! answered only after that commit, so an acknowledged charge is as durable as before.
//!
//! A batch forms from what is already queued when the writer is free: there is no delay
//! when the queue is empty. A batch runs its requests in the order of their keys (the
//! account), so that two processes' batches take row locks in the same order and cannot
//! deadlock.
//!
//! After any failure that leaves the transaction state in doubt (a failed `COMMIT`, a lost
//! connection), the connection is dropped and a new one opened before the next batch, and
//! every request of the failed batch gets the error: none of them was applied.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::time::Duration;

use futures::FutureExt;
use sqlx::{Connection, Executor};
use tokio::sync::{mpsc, oneshot};

use crate::store::{StoreError, StoreResult};

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Opens the writer's connection (again, after one was dropped).
pub(crate) type Connect<C> =
    Box<dyn Fn() -> BoxFuture<'static, Result<C, sqlx::Error>> + Send + Sync>;

/// What a job does once the batch's fate is known: answer its caller with its own result
/// when the batch committed, or with the batch's error.
pub(crate) type Finish = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// A request's own result, kept until its batch's fate is known: whether it succeeded (its
/// savepoint is kept), and how its caller is then answered. Both writers (this one and
/// SQLite's) answer this way.
pub(crate) fn hold_answer<T: Send + 'static>(
    result: StoreResult<T>,
    answer: oneshot::Sender<StoreResult<T>>,
) -> (bool, Finish) {
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
}

/// One queued request.
trait Job<C>: Send {
    /// Where the request goes in its batch.
    fn key(&self) -> &str;
    /// Runs the request's statements inside the batch's transaction. Returns whether they
    /// succeeded (the savepoint is kept) and how to answer the caller.
    fn run<'c>(self: Box<Self>, conn: &'c mut C) -> BoxFuture<'c, (bool, Finish)>;
    /// Answers the caller without running: the batch could not be started or went wrong
    /// before this request's turn.
    fn refuse(self: Box<Self>, error: StoreError);
}

struct Request<T, F> {
    key: String,
    work: F,
    answer: oneshot::Sender<StoreResult<T>>,
}

impl<C, T, F> Job<C> for Request<T, F>
where
    C: Send + 'static,
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut C) -> BoxFuture<'c, StoreResult<T>> + Send + 'static,
{
    fn key(&self) -> &str {
        &self.key
    }

    fn run<'c>(self: Box<Self>, conn: &'c mut C) -> BoxFuture<'c, (bool, Finish)> {
        let Request { work, answer, .. } = *self;
        Box::pin(async move { hold_answer(work(conn).await, answer) })
    }

    fn refuse(self: Box<Self>, error: StoreError) {
        let _ = self.answer.send(Err(error));
    }
}

/// Requests committed together at most.
const MAX_BATCH: usize = 256;

pub(crate) struct Writer<C> {
    queue: mpsc::UnboundedSender<Box<dyn Job<C>>>,
}

impl<C> Clone for Writer<C> {
    fn clone(&self) -> Self {
        Writer {
            queue: self.queue.clone(),
        }
    }
}

impl<C> Writer<C>
where
    C: Connection + 'static,
    for<'c> &'c mut C: Executor<'c>,
{
    /// Starts the writer's task; `begin` starts each batch's transaction. The connection
    /// is opened for the first batch: a writer that is never used holds no connection.
    pub(crate) fn start_lazily(connect: Connect<C>, begin: &'static str) -> Self {
        let (queue, jobs) = mpsc::unbounded_channel();
        tokio::spawn(run(connect, begin, None, jobs));
        Writer { queue }
    }

    /// Runs `work` in the next batch and answers once that batch is committed, placed in
    /// the batch by `key` (requests of equal keys keep their order). `work` must not begin
    /// or end transactions itself.
    pub(crate) async fn run_keyed<T, F>(&self, key: String, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut C) -> BoxFuture<'c, StoreResult<T>> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel::<StoreResult<T>>();
        self.queue
            .send(Box::new(Request { key, work, answer }))
            .map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the database writer has stopped".into())
}

async fn run<C>(
    connect: Connect<C>,
    begin: &'static str,
    mut connection: Option<C>,
    mut jobs: mpsc::UnboundedReceiver<Box<dyn Job<C>>>,
) where
    C: Connection + 'static,
    for<'c> &'c mut C: Executor<'c>,
{
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        batch.sort_by(|a, b| a.key().cmp(b.key()));
        if let Err(error) = begin_batch(&mut connection, &connect, begin).await {
            tracing::warn!(%error, jobs = batch.len(), "could not begin a write batch");
            refuse_all(batch, &error);
            if connection.is_none() {
                // Not a busy loop: the next batch waits a little for the database to come
                // back.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            continue;
        }
        // A batch that began has its connection in place.
        let Some(conn) = connection.as_mut() else {
            refuse_all(
                batch,
                &StoreError::Unavailable("the writer lost its connection".into()),
            );
            continue;
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

/// Opens the batch's transaction, connecting first when the writer has no connection. A
/// connection that cannot begin (one cut while it sat idle: a database restart, a dropped
/// link) is replaced and tried once more; nothing has run yet, so the retry is safe. A busy
/// database (another process's SQLite batch) is no fault of the connection: it is kept, and
/// waiting longer is the caller's to decide.
async fn begin_batch<C>(
    connection: &mut Option<C>,
    connect: &Connect<C>,
    begin: &str,
) -> StoreResult<()>
where
    C: Connection,
    for<'c> &'c mut C: Executor<'c>,
{
    let mut attempts_left = 2;
    loop {
        let conn = match connection.as_mut() {
            Some(conn) => conn,
            None => connection.insert(connect().await?),
        };
        let error = match conn.execute(begin).await {
            Ok(_) => return Ok(()),
            Err(error) => StoreError::from(error),
        };
        if error.is_busy() {
            return Err(error);
        }
        if let Some(conn) = connection.take() {
            let _ = conn.close().await;
        }
        attempts_left -= 1;
        if attempts_left == 0 {
            return Err(error);
        }
    }
}

fn refuse_all<C>(batch: Vec<Box<dyn Job<C>>>, error: &StoreError) {
    for job in batch {
        job.refuse(StoreError::Unavailable(error.to_string()));
    }
}

/// Runs one batch in the transaction just begun. `Err(true)`: the batch failed but the
/// connection is back in autocommit and can be reused; `Err(false)`: the connection must
/// be replaced.
async fn run_batch<C>(conn: &mut C, batch: Vec<Box<dyn Job<C>>>) -> Result<(), bool>
where
    C: Connection,
    for<'c> &'c mut C: Executor<'c>,
{
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
    let unrun: Vec<Box<dyn Job<C>>> = jobs.collect();
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
