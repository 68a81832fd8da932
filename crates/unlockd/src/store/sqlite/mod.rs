//! The embedded backend: SQLite in WAL mode, one writer connection (writes queue in
//! process and take the database lock with `BEGIN IMMEDIATE`, so several processes on one
//! file are safe too) and a small pool of readers.

mod admin;
pub mod backup;
mod catalog;
mod exhibitors;
mod inline;
mod integrators;
mod reads;
mod search;
mod statements;
mod tasks;
mod writer;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use self::writer::{SqliteWriter, WriterOptions};
use super::auth_cache::AuthCache;
use super::*;
use crate::clock::DynClock;

/// How hard a commit waits for the disk. `Full` syncs the WAL on every commit: an
/// acknowledged charge survives power loss. `Normal` survives process crashes only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Durability {
    #[default]
    Full,
    Normal,
}

pub struct SqliteStore {
    /// Low-rate writes (imports, accounts, grants, upkeep) and migrations.
    writer: SqlitePool,
    /// The hot writes, group-committed on a thread of their own (see `writer`).
    batcher: SqliteWriter,
    reader: SqlitePool,
    /// The hottest point reads, run on the calling thread.
    inline: inline::InlineReader,
    clock: DynClock,
    /// Key digests to principals (see `store::auth_cache`).
    auth_cache: AuthCache,
}

/// How long a write waits for another process's write lock.
pub const LOCK_WAIT: Duration = Duration::from_secs(5);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

impl SqliteStore {
    pub async fn connect(url: &str, durability: Durability, clock: DynClock) -> StoreResult<Self> {
        let options = ConnectOptions {
            durability,
            ..ConnectOptions::default()
        };
        Self::connect_with(url, options, clock).await
    }

    pub async fn connect_with(
        url: &str,
        connect: ConnectOptions,
        clock: DynClock,
    ) -> StoreResult<Self> {
        let mut options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(connect.create_if_missing && !connect.read_only)
            .synchronous(match connect.durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Normal => SqliteSynchronous::Normal,
            })
            // Another process holding the write lock (an import, a second server) makes a
            // write wait this long at most; then it is answered 503 and may be retried.
            .busy_timeout(LOCK_WAIT)
            .foreign_keys(true);
        // Switching the journal mode writes the header; a read-only connection uses the
        // database's own mode (WAL, set by the first read-write open).
        if connect.read_only {
            options = options.read_only(true);
        } else {
            options = options.journal_mode(SqliteJournalMode::Wal);
        }
        if url.contains(":memory:") {
            return Err(StoreError::Invalid(
                "an in-memory SQLite database cannot be shared by the writer and the readers; use a file".into(),
            ));
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .test_before_acquire(false)
            .before_acquire(|conn, _| Box::pin(async move { reusable(conn).await }))
            .connect_with(options.clone())
            .await?;
        // Opened after the pool above, which creates the file and sets WAL mode.
        let batcher = SqliteWriter::start(WriterOptions {
            path: options.get_filename().to_path_buf(),
            read_only: connect.read_only,
            durability: connect.durability,
            busy_timeout: LOCK_WAIT,
        })?;
        let inline = inline::InlineReader::new(options.get_filename().to_path_buf(), LOCK_WAIT);
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            // A connection to a local file cannot go stale the way a network one can; the
            // default ping on every acquire is one more hop to sqlx's connection thread per
            // read (without it, polls answered about a quarter more requests a second).
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        Ok(SqliteStore {
            writer,
            batcher,
            reader,
            inline,
            clock,
            auth_cache: AuthCache::default(),
        })
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Runs a transaction once: writes take the database lock before they read, so SQLite
    /// never asks for a retry the way PostgreSQL's deadlock and serialization checks do.
    async fn with_retries<T, F, Fut>(&self, mut run: F) -> StoreResult<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = StoreResult<T>>,
    {
        run().await
    }

    /// A write transaction that holds the database write lock from its first statement, so
    /// that a read-then-write cannot be invalidated by another process's commit.
    async fn write_tx(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// A pooled connection whose last transaction ended in doubt (its `COMMIT` failed after
/// SQLite had already rolled back, as on a full disk) still counts itself inside that
/// transaction and would refuse every later `BEGIN`: such a connection is replaced, never
/// reused. Locking the handle first lets any queued rollback finish.
async fn reusable(conn: &mut sqlx::SqliteConnection) -> Result<bool, sqlx::Error> {
    use sqlx::TransactionManager;
    conn.lock_handle().await?;
    Ok(<Sqlite as sqlx::Database>::TransactionManager::get_transaction_depth(conn) == 0)
}

#[async_trait]
impl Lifecycle for SqliteStore {
    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.writer).await?;
        Ok(())
    }

    async fn migrated(&self) -> StoreResult<()> {
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = 1")
                .fetch_one(&self.reader)
                .await?;
        let known = MIGRATOR.iter().count() as i64;
        if applied < known {
            return Err(StoreError::Integrity(format!(
                "{applied} of {known} migrations applied"
            )));
        }
        Ok(())
    }

    async fn ready(&self) -> StoreResult<()> {
        self.migrated().await?;
        // Reads working is not enough: the writer must be able to commit a write (its
        // connection is replaced after a failure, so this also tells when it recovered).
        let now = self.now();
        self.batcher
            .run(move |conn| {
                statements::execute(
                    conn,
                    "UPDATE readiness SET checked_at = ?1 WHERE id = 1",
                    &[&now],
                )?;
                Ok(())
            })
            .await
    }
}

crate::store::portable::catalog_impl!(SqliteStore, reader, writer {
    async fn contacts_of(
        &self,
        personnel_ids: &[String],
        kind: ContactKind,
    ) -> StoreResult<std::collections::HashMap<String, Option<String>>> {
        let sql = match kind {
            ContactKind::Email => {
                "SELECT id, email FROM personnel WHERE id IN (SELECT value FROM json_each(?1))"
            }
            ContactKind::Phone => {
                "SELECT id, phone FROM personnel WHERE id IN (SELECT value FROM json_each(?1))"
            }
        };
        // On the calling thread (see `inline`): the worker reads a batch's contacts here
        // for every batch it looks up, a few primary-key probes.
        let ids = crate::store::rows::json(&personnel_ids)?;
        let rows = self.inline.read(|conn| {
            Ok(statements::query(conn, sql, &[&ids], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?))
            })?)
        })?;
        Ok(rows.into_iter().collect())
    }

    async fn person_fields(
        &self,
        personnel_ids: &[String],
    ) -> StoreResult<std::collections::HashMap<String, sources::PersonFields>> {
        let sql = format!(
            "{}p.id IN (SELECT value FROM json_each(?1))",
            sources::PERSON_FIELDS_SELECT
        );
        let rows: Vec<sources::PersonFieldsRow> = sqlx::query_as(&sql)
            .bind(crate::store::rows::json(&personnel_ids)?)
            .fetch_all(&self.reader)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| (row.id.clone(), row.into()))
            .collect())
    }

    async fn record_lookups(&self, records: &[sources::LookupRecord]) -> StoreResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        let records = records.to_vec();
        let now = self.now();
        // Through the group-committing writer: every lookup of a busy worker writes here.
        self.batcher
            .run(move |conn| statements::write_lookups(conn, &records, now))
            .await
    }

    async fn remembered_not_found(
        &self,
        personnel_ids: &[String],
        kind: ContactKind,
    ) -> StoreResult<std::collections::HashMap<String, Vec<String>>> {
        let pairs: Vec<(String, String)> = sqlx::query_as(
            "SELECT personnel_id, source FROM lookup_not_found \
             WHERE personnel_id IN (SELECT value FROM json_each(?1)) AND kind = ?2 AND until_ms > ?3",
        )
        .bind(crate::store::rows::json(&personnel_ids)?)
        .bind(kind.as_str())
        .bind(self.now())
        .fetch_all(&self.reader)
        .await?;
        Ok(sources::sources_by_person(pairs))
    }
});

crate::store::portable::accounts_impl!(SqliteStore, reader, writer {
    async fn find_account_by_name(&self, name: &str) -> StoreResult<Option<AccountInfo>> {
        Ok(sqlx::query_as(
            "SELECT id, name, created_at FROM accounts WHERE name = ?1 ORDER BY created_at LIMIT 1",
        )
        .bind(name)
        .fetch_optional(&self.reader)
        .await?)
    }

    async fn add_api_key(
        &self,
        account_id: &str,
        key: &GeneratedKey,
        prefix: KeyPrefix,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let exists: Option<(String,)> = sqlx::query_as("SELECT id FROM accounts WHERE id = ?1")
            .bind(account_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound(format!("account {account_id}")));
        }
        sqlx::query(
            "INSERT INTO api_keys (id, account_id, digest, prefix, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(&key.key_id)
        .bind(account_id)
        .bind(&key.digest)
        .bind(prefix.as_str())
        .bind(self.now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn grant_credits(&self, grant: &Grant) -> StoreResult<String> {
        if grant.amount <= 0 {
            return Err(StoreError::Invalid("amount must be positive".into()));
        }
        let now = self.now();
        let bucket_id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.write_tx().await?;
        let exists: Option<(String,)> = sqlx::query_as("SELECT id FROM accounts WHERE id = ?1")
            .bind(&grant.account_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound(format!(
                "account {}",
                grant.account_id
            )));
        }
        sqlx::query(
            "INSERT INTO credit_buckets (id, account_id, kind, granted, balance, expires_at, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6)",
        )
        .bind(&bucket_id)
        .bind(&grant.account_id)
        .bind(grant.kind.as_str())
        .bind(grant.amount)
        .bind(grant.expires_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO ledger (account_id, bucket_id, entry_type, amount, created_at) \
             VALUES (?1, ?2, 'grant', ?3, ?4)",
        )
        .bind(&grant.account_id)
        .bind(&bucket_id)
        .bind(grant.amount)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(bucket_id)
    }
});

#[async_trait]
impl Upkeep for SqliteStore {
    async fn refresh_search_index(&self) -> StoreResult<i64> {
        search::refresh_search_index(self).await
    }

    async fn expire_buckets(&self) -> StoreResult<i64> {
        reads::expire_buckets(self).await
    }

    async fn prune_finished_tasks(&self, before_ms: i64, limit: i64) -> StoreResult<i64> {
        reads::prune_finished_tasks(self, before_ms, limit).await
    }

    async fn verify_ledger(&self) -> StoreResult<Vec<String>> {
        let mut tx = self.reader.begin().await?;
        let problems = crate::store::verify::verify::<sqlx::Sqlite>(&mut tx).await?;
        tx.commit().await?;
        Ok(problems)
    }

    async fn prune_idempotency_keys(&self, before_ms: i64) -> StoreResult<i64> {
        integrators::prune_keys(self, before_ms).await
    }
}

#[async_trait]
impl Coordination for SqliteStore {
    fn integrations(&self) -> &dyn crate::store::integrations::Integrations {
        self
    }

    async fn report_source_health(
        &self,
        worker_id: &str,
        health: &[sources::SourceHealth],
    ) -> StoreResult<()> {
        let mut conn = self.writer.acquire().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sources::write_health::<Sqlite>(&mut tx, worker_id, health, self.now()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn source_health(&self) -> StoreResult<Vec<sources::SourceHealthRow>> {
        let mut conn = self.reader.acquire().await?;
        sources::read_health::<Sqlite>(&mut conn).await
    }

    async fn provider_costs(
        &self,
        account_id: Option<&str>,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreResult<Vec<sources::ProviderCost>> {
        let mut conn = self.reader.acquire().await?;
        sources::read_provider_costs::<Sqlite>(&mut conn, account_id, from_ms, to_ms).await
    }
}

crate::store::integrations::integrations_impl!(SqliteStore, reader, writer);
