//! The scale-out backend: PostgreSQL, shared by any number of API replicas and workers.
//!
//! Writes run at READ COMMITTED and take row locks where a decision depends on what they
//! read: a create locks its account (and the account's spendable buckets) before it
//! classifies, so classification and hold are serialised per account across processes;
//! a settlement locks its task row and checks the fencing token under that lock; claims
//! use `FOR UPDATE SKIP LOCKED` on the partial index of live tasks. Locks on buckets are
//! always taken in bucket-id order, so these transactions cannot deadlock one another (a
//! deadlock or serialization failure is retried all the same). Multi-statement reads run
//! in one REPEATABLE READ snapshot, as a SQLite read transaction does.

mod admin;
mod catalog;
mod exhibitors;
mod integrators;
mod reads;
mod search;
mod shared;
mod tasks;

use std::future::Future;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, PgConnection, PgPool, Postgres, Transaction};

use super::auth_cache::AuthCache;
use super::writer::{Connect, Writer};
use super::*;
use crate::clock::DynClock;

/// Connections per process when the URL does not say otherwise.
pub const DEFAULT_POOL_SIZE: u32 = 16;

/// How long the first connection may take before the server counts as unreachable.
const FIRST_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct PgStore {
    pool: PgPool,
    clock: DynClock,
    /// When this process last swept refilled rate-limit buckets.
    rate_pruned_at: AtomicI64,
    /// Key digests to principals (see `store::auth_cache`).
    auth_cache: AuthCache,
    /// Group-committing writers for creates, each with a connection of its own; an
    /// account's creates always go to the same one (see `create_lane`).
    create_lanes: Vec<Writer<PgConnection>>,
}

/// Create writers per process. One account's creates share a lane, so they are committed
/// in batches instead of one commit (and one turn on the account's row lock) each; other
/// accounts' creates proceed in the other lanes at the same time.
const CREATE_LANES: usize = 4;

/// A pooled connection idle this long is pinged before it is handed out again.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Takes the pool size from the URL's `pool_size` (or `max_connections`) query parameter,
/// which PostgreSQL itself does not know, and returns the URL without it.
fn split_pool_size(url: &str) -> StoreResult<(String, u32)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), DEFAULT_POOL_SIZE));
    };
    let mut size = DEFAULT_POOL_SIZE;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("pool_size" | "max_connections", value)) => {
                size = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        StoreError::Invalid(format!(
                            "pool_size must be a positive integer (got {value:?})"
                        ))
                    })?;
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, size))
}

impl PgStore {
    /// Opens a pool (`DEFAULT_POOL_SIZE` connections unless the URL carries `pool_size=N`).
    pub async fn connect(url: &str, clock: DynClock) -> StoreResult<Self> {
        Self::connect_with(url, ConnectOptions::default(), clock).await
    }

    /// [`PgStore::connect`]; `read_only` makes every transaction read-only.
    pub async fn connect_with(
        url: &str,
        connect: ConnectOptions,
        clock: DynClock,
    ) -> StoreResult<Self> {
        let (url, size) = split_pool_size(url)?;
        let mut options: PgConnectOptions = url.parse()?;
        if connect.read_only {
            options = options.options([("default_transaction_read_only", "on")]);
        }
        // One connection first, with a short deadline and no retries: the pool would keep
        // retrying an unreachable server for its whole acquire timeout.
        let probe = tokio::time::timeout(FIRST_CONNECT_TIMEOUT, async {
            use sqlx::Connection;
            sqlx::PgConnection::connect_with(&options).await
        })
        .await
        .map_err(|_| {
            StoreError::Unreachable(format!(
                "PostgreSQL at {}:{} did not answer within {} s",
                options.get_host(),
                options.get_port(),
                FIRST_CONNECT_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| match e {
            sqlx::Error::Io(io) => StoreError::Unreachable(format!(
                "cannot connect to PostgreSQL at {}:{}: {io}",
                options.get_host(),
                options.get_port()
            )),
            other => StoreError::Database(other),
        })?;
        {
            use sqlx::Connection;
            let _ = probe.close().await;
        }
        let create_lanes = (0..CREATE_LANES)
            .map(|_| {
                let options = options.clone();
                let connect: Connect<PgConnection> = Box::new(move || {
                    let options = options.clone();
                    Box::pin(async move { PgConnection::connect_with(&options).await })
                });
                Writer::start_lazily(connect, "BEGIN")
            })
            .collect();
        let pool = PgPoolOptions::new()
            .max_connections(size)
            // A request waits this long for a connection; past it the database counts as
            // unavailable (503) rather than leaving clients hanging.
            .acquire_timeout(Duration::from_secs(5))
            // sqlx pings every connection it hands out by default: one more round trip per
            // query. A connection in steady use is known to be alive; only one that sat
            // idle (through a restart or a dropped link, perhaps) is checked first.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= IDLE_BEFORE_PING {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options)
            .await?;
        Ok(PgStore {
            pool,
            clock,
            rate_pruned_at: AtomicI64::new(0),
            auth_cache: AuthCache::default(),
            create_lanes,
        })
    }

    /// The create writer of `account_id`'s lane.
    fn create_lane(&self, account_id: &str) -> &Writer<PgConnection> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        account_id.hash(&mut hasher);
        &self.create_lanes[hasher.finish() as usize % self.create_lanes.len()]
    }

    /// A time for rows that only record when something happened. Lease and expiry
    /// comparisons use the database's clock instead (`injected_now`).
    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The argument of `unlockd_now_ms(...)` in SQL: `None` (the database's clock) unless
    /// a test clock stands in for it.
    fn injected_now(&self) -> Option<i64> {
        self.clock
            .overrides_database_clock()
            .then(|| self.clock.now_ms())
    }

    /// A read-write transaction (the name matches SQLite's, whose write transactions take
    /// the database lock; here row locks do that work).
    async fn write_tx(&self) -> StoreResult<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }

    /// Runs a whole transaction again while the database asks for a retry (`retrying`).
    async fn with_retries<T, F, Fut>(&self, run: F) -> StoreResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        retrying(run).await
    }

    /// A read-only transaction on one snapshot.
    async fn snapshot(&self) -> StoreResult<Transaction<'static, Postgres>> {
        Ok(self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?)
    }
}

/// Deadlocks and serialization failures are the database asking for a retry.
fn is_retryable(error: &StoreError) -> bool {
    match error {
        StoreError::Database(e) => e
            .as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|code| code == "40001" || code == "40P01"),
        _ => false,
    }
}

/// Runs a whole transaction again when the database asks for a retry. Each run starts
/// from scratch, so a retried settlement or create cannot apply anything twice.
async fn retrying<T, F, Fut>(mut run: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = StoreResult<T>>,
{
    let mut attempt: u32 = 0;
    loop {
        match run().await {
            Err(e) if is_retryable(&e) && attempt < 8 => {
                attempt += 1;
                let jitter = rand::random::<u64>() % 20;
                tokio::time::sleep(Duration::from_millis(u64::from(attempt) * 5 + jitter)).await;
            }
            other => return other,
        }
    }
}

#[async_trait]
impl Lifecycle for PgStore {
    async fn migrate(&self) -> StoreResult<()> {
        // The migrator takes an advisory lock: several processes may start at once.
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn migrated(&self) -> StoreResult<()> {
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
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
        // Reads working is not enough: a write must commit (a standby in recovery, a
        // read-only server or a full disk is not ready).
        sqlx::query("UPDATE readiness SET checked_at = unlockd_now_ms(NULL) WHERE id = 1")
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

crate::store::portable::catalog_impl!(PgStore, pool, pool {
    async fn contacts_of(
        &self,
        personnel_ids: &[String],
        kind: ContactKind,
    ) -> StoreResult<std::collections::HashMap<String, Option<String>>> {
        let sql = match kind {
            ContactKind::Email => "SELECT id, email FROM personnel WHERE id = ANY($1)",
            ContactKind::Phone => "SELECT id, phone FROM personnel WHERE id = ANY($1)",
        };
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(sql)
            .bind(personnel_ids)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().collect())
    }

    async fn person_fields(
        &self,
        personnel_ids: &[String],
    ) -> StoreResult<std::collections::HashMap<String, sources::PersonFields>> {
        let sql = format!("{}p.id = ANY($1)", sources::PERSON_FIELDS_SELECT);
        let rows: Vec<sources::PersonFieldsRow> = sqlx::query_as(&sql)
            .bind(personnel_ids)
            .fetch_all(&self.pool)
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
        let mut tx = self.write_tx().await?;
        use crate::store::settlement::SettlementStatements;
        let mut statements = tasks::PgTasks {
            conn: &mut tx,
            injected_now: None,
        };
        for (sql, binds) in sources::lookup_writes(records, self.now()) {
            statements.execute_shared(sql, &binds).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn remembered_not_found(
        &self,
        personnel_ids: &[String],
        kind: ContactKind,
    ) -> StoreResult<std::collections::HashMap<String, Vec<String>>> {
        let pairs: Vec<(String, String)> = sqlx::query_as(
            "SELECT personnel_id, source FROM lookup_not_found \
             WHERE personnel_id = ANY($1) AND kind = $2 AND until_ms > $3",
        )
        .bind(personnel_ids)
        .bind(kind.as_str())
        .bind(self.now())
        .fetch_all(&self.pool)
        .await?;
        Ok(sources::sources_by_person(pairs))
    }
});

crate::store::portable::accounts_impl!(PgStore, pool, pool {
    async fn find_account_by_name(&self, name: &str) -> StoreResult<Option<AccountInfo>> {
        Ok(sqlx::query_as(
            "SELECT id, name, created_at FROM accounts WHERE name = $1 \
             ORDER BY created_at, id LIMIT 1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn add_api_key(
        &self,
        account_id: &str,
        key: &GeneratedKey,
        prefix: KeyPrefix,
    ) -> StoreResult<()> {
        // One statement: the key is inserted only if the account exists.
        let done = sqlx::query(
            "INSERT INTO api_keys (id, account_id, digest, prefix, created_at) \
             SELECT $1, id, $3, $4, $5 FROM accounts WHERE id = $2",
        )
        .bind(&key.key_id)
        .bind(account_id)
        .bind(&key.digest)
        .bind(prefix.as_str())
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("account {account_id}")));
        }
        Ok(())
    }

    async fn grant_credits(&self, grant: &Grant) -> StoreResult<String> {
        if grant.amount <= 0 {
            return Err(StoreError::Invalid("amount must be positive".into()));
        }
        let now = self.now();
        let bucket_id = uuid::Uuid::now_v7().to_string();
        // One statement: bucket and grant entry together, only for an existing account.
        let done = sqlx::query(
            "WITH bucket AS ( \
                 INSERT INTO credit_buckets (id, account_id, kind, granted, balance, expires_at, created_at) \
                 SELECT $1, id, $3, $4, $4, $5, $6 FROM accounts WHERE id = $2 \
                 RETURNING id, account_id) \
             INSERT INTO ledger (account_id, bucket_id, entry_type, amount, created_at) \
             SELECT account_id, id, 'grant', $4, $6 FROM bucket",
        )
        .bind(&bucket_id)
        .bind(&grant.account_id)
        .bind(grant.kind.as_str())
        .bind(grant.amount)
        .bind(grant.expires_at)
        .bind(now)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "account {}",
                grant.account_id
            )));
        }
        Ok(bucket_id)
    }
});

#[async_trait]
impl Upkeep for PgStore {
    async fn refresh_search_index(&self) -> StoreResult<i64> {
        retrying(|| search::refresh_search_index(self)).await
    }

    async fn expire_buckets(&self) -> StoreResult<i64> {
        retrying(|| reads::expire_buckets(self)).await
    }

    async fn prune_finished_tasks(&self, before_ms: i64, limit: i64) -> StoreResult<i64> {
        reads::prune_finished_tasks(self, before_ms, limit).await
    }

    async fn verify_ledger(&self) -> StoreResult<Vec<String>> {
        // One snapshot: every sum is of the same state.
        let mut tx = self.snapshot().await?;
        // Every check reads whole tables: hash joins are right whatever the statistics
        // say. A nested loop chosen on statistics not yet refreshed after a bulk load (a
        // fresh database) would turn a second of work into minutes.
        sqlx::query("SET LOCAL enable_nestloop = off")
            .execute(&mut *tx)
            .await?;
        let problems = crate::store::verify::verify::<sqlx::Postgres>(&mut tx).await?;
        tx.commit().await?;
        Ok(problems)
    }

    async fn prune_idempotency_keys(&self, before_ms: i64) -> StoreResult<i64> {
        integrators::prune_keys(self, before_ms).await
    }
}

#[async_trait]
impl Coordination for PgStore {
    fn integrations(&self) -> &dyn crate::store::integrations::Integrations {
        self
    }

    async fn report_source_health(
        &self,
        worker_id: &str,
        health: &[sources::SourceHealth],
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sources::write_health::<Postgres>(&mut tx, worker_id, health, self.now()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn source_health(&self) -> StoreResult<Vec<sources::SourceHealthRow>> {
        let mut conn = self.pool.acquire().await?;
        sources::read_health::<Postgres>(&mut conn).await
    }

    async fn provider_costs(
        &self,
        account_id: Option<&str>,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreResult<Vec<sources::ProviderCost>> {
        let mut conn = self.pool.acquire().await?;
        sources::read_provider_costs::<Postgres>(&mut conn, account_id, from_ms, to_ms).await
    }

    async fn take_rate_token(
        &self,
        bucket: &str,
        per_minute: u32,
    ) -> StoreResult<Option<crate::domain::rate::RateDecision>> {
        Ok(Some(
            retrying(|| shared::take_rate_token(self, bucket, per_minute)).await?,
        ))
    }

    async fn relay_changes(
        &self,
        signals: Arc<crate::signals::TaskSignals>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        shared::relay_changes(self, signals, shutdown).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_size_comes_off_the_url() {
        assert_eq!(
            split_pool_size("postgres://u@h/db").unwrap(),
            ("postgres://u@h/db".to_string(), DEFAULT_POOL_SIZE)
        );
        assert_eq!(
            split_pool_size("postgres://u@h/db?pool_size=4&sslmode=disable").unwrap(),
            ("postgres://u@h/db?sslmode=disable".to_string(), 4)
        );
        assert_eq!(
            split_pool_size("postgres://u@h/db?max_connections=2").unwrap(),
            ("postgres://u@h/db".to_string(), 2)
        );
        assert!(split_pool_size("postgres://u@h/db?pool_size=0").is_err());
    }
}

crate::store::integrations::integrations_impl!(PgStore, pool, pool);
