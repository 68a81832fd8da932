//! Durable state behind one interface. Every multi-row change is one transaction; the
//! uniqueness that matters for money is enforced by database constraints.

pub mod audit;
pub mod auth_cache;
mod claim;
mod create;
mod event_search;
pub mod integrations;
pub mod integrators;
pub mod invariants;
mod operator;
mod portable;
pub mod postgres;
mod rows;
mod settlement;
pub mod sources;
pub mod sqlite;
mod verify;
mod writer;

use std::sync::Arc;

use async_trait::async_trait;
use unlockd_api::{CallSource, ItemStatus, TaskStatus};

use crate::catalog::{
    CatalogCounts, CatalogImport, EventRecord, ExhibitorRecord, PersonRecord, Upsert,
};
use crate::domain::keys::{GeneratedKey, KeyPrefix};
use crate::domain::ledger::BucketKind;
use crate::domain::settle::LookupOutcome;
use crate::domain::unlock::UnlockDecision;
use crate::domain::ContactKind;

pub type DynStore = Arc<dyn Store>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The task's lease was taken over (fencing): this worker may no longer settle it.
    #[error("lease lost: the task is held by another claim")]
    LeaseLost,
    #[error("{0} not found")]
    NotFound(String),
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("integrity violation: {0}")]
    Integrity(String),
    /// The database cannot take this now (disk full, file unwritable, server down or
    /// restarting); nothing was written, and a retry later may succeed.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database server could not be reached (or did not answer in time).
    #[error("{0}")]
    Unreachable(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Whether the database is unavailable rather than the request wrong or the code
    /// broken: clients are told to retry (503) and workers back off.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Unavailable(_) | StoreError::Unreachable(_) => true,
            StoreError::Database(e) => database_unavailable(e),
            _ => false,
        }
    }

    /// Another writer holds the database (SQLite `BUSY`/`LOCKED`).
    pub fn is_busy(&self) -> bool {
        matches!(self, StoreError::Database(e) if sqlite_primary_code(e).is_some_and(|c| c == 5 || c == 6))
    }
}

/// SQLite's primary result code (the low byte of the extended code sqlx reports).
fn sqlite_primary_code(e: &sqlx::Error) -> Option<i64> {
    let db = e.as_database_error()?;
    db.try_downcast_ref::<sqlx::sqlite::SqliteError>()?;
    db.code()?.parse::<i64>().ok().map(|code| code & 0xff)
}

fn database_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => {
            if let Some(code) = sqlite_primary_code(e) {
                // BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN
                return matches!(code, 5 | 6 | 8 | 10 | 13 | 14);
            }
            // PostgreSQL: connection exceptions (08), insufficient resources (53, a full
            // disk among them), operator intervention (57P01–57P03: shutdown, restart), a
            // read-only standby (25006).
            db.code().is_some_and(|code| {
                code.starts_with("08")
                    || code.starts_with("53")
                    || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "25006")
            })
        }
        _ => false,
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Who a request is authenticated as.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Principal {
    pub account_id: String,
    pub key_id: String,
    /// The key is valid but its account is disabled (403 `ACCOUNT_DISABLED`).
    pub account_disabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ApiKeyInfo {
    pub key_id: String,
    pub account_id: String,
    pub prefix: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AccountInfo {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

/// A grant of credits into a new bucket.
#[derive(Debug, Clone)]
pub struct Grant {
    pub account_id: String,
    pub kind: BucketKind,
    pub amount: i64,
    pub expires_at: Option<i64>,
}

pub use crate::domain::ledger::BucketState;

/// A create request, parsed and deduplicated at the edge.
#[derive(Debug, Clone)]
pub struct NewUnlock {
    pub account_id: String,
    pub kind: ContactKind,
    /// The event `id` or `eventId` the client sent.
    pub event_ref: String,
    pub personnel_ids: Vec<String>,
    pub call_source: CallSource,
    pub price: i64,
}

// Built once per request and matched at once; boxing the decision would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateResult {
    EventNotFound,
    /// The domain decision; `task_id` is set when a task was created.
    Decided {
        decision: UnlockDecision,
        task_id: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemView {
    pub item_id: i64,
    pub personnel_id: String,
    pub status: ItemStatus,
    pub value: Option<String>,
    pub error_code: Option<String>,
    pub charged: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskView {
    pub id: String,
    pub account_id: String,
    pub kind: ContactKind,
    pub event_ref: String,
    pub status: TaskStatus,
    pub call_source: CallSource,
    pub price: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub completed_at: Option<i64>,
    pub items: Vec<ItemView>,
    /// Credits still held, captured and released by this task.
    pub held: i64,
    pub charged: i64,
    pub released: i64,
}

/// Proof that a worker holds a task: only the holder of the current attempt may write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub task_id: String,
    pub attempt: i64,
    pub worker_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedItem {
    pub item_id: i64,
    pub personnel_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedTask {
    pub lease: Lease,
    pub account_id: String,
    pub kind: ContactKind,
    /// Items not yet settled, in request order.
    pub items: Vec<ClaimedItem>,
}

/// What a claim did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Nothing is claimable now.
    Idle,
    Claimed(ClaimedTask),
    /// The task had used up its attempts; it was failed and its holds released.
    Aborted {
        task_id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimPolicy {
    pub lease_ms: i64,
    /// Claims after which a task is failed rather than retried (a poison task).
    pub max_attempts: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleReport {
    /// Items settled by this call (already-settled ones are skipped, not re-settled).
    pub settled: usize,
    /// Set when this call finished the task.
    pub finished: Option<TaskStatus>,
    /// With `finished`: milliseconds from the task's creation to its end.
    pub lifetime_ms: Option<i64>,
}

/// The shared queue, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct QueueGauges {
    pub live_tasks: i64,
    pub unsettled_items: i64,
    pub credits_held: i64,
}

/// A 1-based page of `page_size` rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub page: u32,
    pub page_size: u32,
}

impl PageRequest {
    pub fn offset(&self) -> i64 {
        i64::from(self.page.saturating_sub(1)) * i64::from(self.page_size)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
}

/// An event with its cached counts.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EventView {
    /// Read from the columns of `rows::EVENT_COLUMNS`.
    #[sqlx(flatten)]
    pub event: EventRecord,
    pub exhibitor_count: i64,
    pub personnel_count: i64,
    /// Whether any of its people came from visitor data.
    pub has_visitors: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Matches name or description, case-insensitively.
    pub keyword: Option<String>,
    pub country: Option<String>,
    pub city: Option<String>,
    /// `YYYY-MM-DD`, inclusive.
    pub date_start_from: Option<String>,
    pub date_start_to: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonnelFilter {
    pub exhibitor_id: Option<String>,
    /// Case-insensitive equality.
    pub department: Option<String>,
    /// Seniority level, case-insensitive equality.
    pub level: Option<String>,
    /// Words matched against name and title, then company, ranked (`domain::search`).
    pub search_query: Option<String>,
    pub source_type: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactSearch {
    /// The company, ranked: exact name, whole words, word beginnings, misspellings.
    pub company_name: String,
    /// Word prefixes matched against the title.
    pub role: Option<String>,
    /// Word prefixes matched against the full name.
    pub person_name: Option<String>,
}

/// Filters of an event's exhibitor list. The people filters (departments, levels, job
/// titles) keep the exhibitors with at least one person at the event matching all of them,
/// and apply to the counts and previews too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExhibitorFilter {
    /// Part of the company name or website, case-insensitive (ASCII).
    pub keyword: Option<String>,
    /// Case-insensitive (ASCII) equality.
    pub country: Option<String>,
    /// Any of these departments (compared as `filter_key`s).
    pub departments: Vec<String>,
    /// Any of these seniority levels (compared as `filter_key`s).
    pub levels: Vec<String>,
    /// Any of these titles, each matched as word beginnings of the title.
    pub job_titles: Vec<String>,
    /// People previewed per exhibitor.
    pub personnel_limit: u32,
}

/// An exhibitor with the event it is listed at, its people count and a preview of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExhibitorView {
    pub id: String,
    pub company_name: Option<String>,
    pub website: Option<String>,
    pub country: Option<String>,
    /// `events.id` and the event's public `eventId` and name.
    pub event_id: String,
    pub event_alias: String,
    pub event_name: Option<String>,
    pub personnel_count: i64,
    pub personnel: Vec<ContactView>,
}

/// Where one account stands with one person's email or phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnlockState {
    Locked,
    Unlocking,
    Unlocked,
    Failed,
}

/// A person as one account sees them: contacts only where this account unlocked them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactView {
    pub id: String,
    pub full_name: Option<String>,
    pub title: Option<String>,
    pub department: Option<String>,
    pub seniority_level: Option<String>,
    pub linkedin_url: Option<String>,
    pub company_name: Option<String>,
    pub source_type: Vec<String>,
    pub event_count: i64,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub email_state: UnlockState,
    pub phone_state: UnlockState,
}

/// Opening the database for use: migrations and readiness.
#[async_trait]
pub trait Lifecycle: Send + Sync + 'static {
    /// Applies pending migrations.
    async fn migrate(&self) -> StoreResult<()>;
    /// Database reachable and every migration applied (reads only).
    async fn migrated(&self) -> StoreResult<()>;
    /// Migrated, and a write can be committed: what `/readyz` reports.
    async fn ready(&self) -> StoreResult<()>;
}

/// The catalog: imports (each one transaction, applied whole or not at all), reads as one
/// account sees them, and the contacts contact sources look up and record.
#[async_trait]
pub trait Catalog: Send + Sync + 'static {
    /// Upserts the rows of one `import` command (events, then exhibitors, then personnel)
    /// in one transaction. A row's unsupplied columns keep their stored values. Fails with
    /// `Invalid`, applying nothing, if the result would give two events one public id.
    async fn import_catalog(
        &self,
        rows: &CatalogImport,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> StoreResult<()>;
    /// Whole rows (every column), replacing any stored row of the same id.
    async fn import_events(
        &self,
        rows: &[EventRecord],
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> StoreResult<()> {
        let import = CatalogImport {
            events: rows.iter().cloned().map(Upsert::whole).collect(),
            ..Default::default()
        };
        self.import_catalog(&import, progress).await
    }
    async fn import_exhibitors(
        &self,
        rows: &[ExhibitorRecord],
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> StoreResult<()> {
        let import = CatalogImport {
            exhibitors: rows.iter().cloned().map(Upsert::whole).collect(),
            ..Default::default()
        };
        self.import_catalog(&import, progress).await
    }
    async fn import_personnel(
        &self,
        rows: &[PersonRecord],
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> StoreResult<()> {
        let import = CatalogImport {
            personnel: rows.iter().cloned().map(Upsert::whole).collect(),
            ..Default::default()
        };
        self.import_catalog(&import, progress).await
    }
    async fn catalog_counts(&self) -> StoreResult<CatalogCounts>;
    /// Every event as `(id, eventId)`, for resolving references at import.
    async fn event_keys(&self) -> StoreResult<Vec<(String, String)>>;
    /// The stored contact of a person: `None` when the person is gone, `Some(None)` when
    /// the catalog has no contact of this kind.
    async fn contact_of(
        &self,
        personnel_id: &str,
        kind: ContactKind,
    ) -> StoreResult<Option<Option<String>>>;
    /// The stored contacts of several people in one read: a person missing from the map
    /// is gone from the catalog; `None` means the catalog has no contact of this kind.
    async fn contacts_of(
        &self,
        personnel_ids: &[String],
        kind: ContactKind,
    ) -> StoreResult<std::collections::HashMap<String, Option<String>>>;
    /// What providers can be asked with, for the people still in the catalog.
    async fn person_fields(
        &self,
        personnel_ids: &[String],
    ) -> StoreResult<std::collections::HashMap<String, sources::PersonFields>>;
    /// Persists what providers answered, in one transaction: a found contact goes into the
    /// catalog (with its source and time), a not-found answer is remembered for a while, and
    /// every request is logged with its cost.
    async fn record_lookups(&self, records: &[sources::LookupRecord]) -> StoreResult<()>;
    /// For each person, the sources whose not-found answer is still remembered.
    async fn remembered_not_found(
        &self,
        personnel_ids: &[String],
        kind: ContactKind,
    ) -> StoreResult<std::collections::HashMap<String, Vec<String>>>;
    /// An event by `id` or `eventId` (the `id` wins when both match).
    async fn find_event(&self, reference: &str) -> StoreResult<Option<EventView>>;
    async fn list_events(
        &self,
        filter: &EventFilter,
        page: PageRequest,
    ) -> StoreResult<Page<EventView>>;
    /// People linked to the event (`events.id`), ordered by id.
    async fn list_personnel(
        &self,
        account_id: &str,
        event_id: &str,
        filter: &PersonnelFilter,
        page: PageRequest,
    ) -> StoreResult<Page<ContactView>>;
    async fn personnel_profile(
        &self,
        account_id: &str,
        personnel_id: &str,
    ) -> StoreResult<Option<ContactView>>;
    async fn search_contacts(
        &self,
        account_id: &str,
        search: &ContactSearch,
        page: PageRequest,
    ) -> StoreResult<Page<ContactView>>;
    /// An event's (`events.id`) exhibitors, by company name then id.
    async fn list_exhibitors(
        &self,
        account_id: &str,
        event_id: &str,
        filter: &ExhibitorFilter,
        page: PageRequest,
    ) -> StoreResult<Page<ExhibitorView>>;
    /// One exhibitor, its people counted across its events (no preview).
    async fn exhibitor_profile(&self, exhibitor_id: &str) -> StoreResult<Option<ExhibitorView>>;
    /// The events an exhibitor is listed at; `None` when there is no such exhibitor.
    async fn exhibitor_events(
        &self,
        exhibitor_id: &str,
        page: PageRequest,
    ) -> StoreResult<Option<Page<EventView>>>;
    /// The events a person is linked to, by start date; `None` when there is no such person.
    async fn personnel_events(
        &self,
        personnel_id: &str,
        page: PageRequest,
    ) -> StoreResult<Option<Page<EventView>>>;
}

/// Accounts, keys and credits. The operator actions (`admin_*`, `set_account_disabled`) are
/// each one transaction together with their audit-log row.
#[async_trait]
pub trait Accounts: Send + Sync + 'static {
    async fn create_account(&self, name: &str) -> StoreResult<AccountInfo>;
    async fn find_account_by_name(&self, name: &str) -> StoreResult<Option<AccountInfo>>;
    async fn find_account(&self, account_id: &str) -> StoreResult<Option<AccountInfo>>;
    /// Every account, oldest first, with its count of active keys.
    async fn list_accounts(&self) -> StoreResult<Vec<(AccountInfo, i64)>>;
    async fn add_api_key(
        &self,
        account_id: &str,
        key: &GeneratedKey,
        prefix: KeyPrefix,
    ) -> StoreResult<()>;
    /// `false` when no such key (or already revoked).
    async fn revoke_api_key(&self, key_id: &str) -> StoreResult<bool>;
    async fn list_api_keys(&self, account_id: &str) -> StoreResult<Vec<ApiKeyInfo>>;
    async fn authenticate(&self, key_digest: &str) -> StoreResult<Option<Principal>>;
    /// Reads the auth generation into this store's key cache (`auth_cache`); the server
    /// calls it every `auth_cache::REFRESH_EVERY`, and the cache answers only while it
    /// succeeds.
    async fn refresh_auth_cache(&self) -> StoreResult<()>;
    /// Adds a bucket with a `grant` ledger entry; returns the bucket id.
    async fn grant_credits(&self, grant: &Grant) -> StoreResult<String>;
    async fn buckets(&self, account_id: &str) -> StoreResult<Vec<BucketState>>;
    /// Creates an account with `credits` gift credits (0: no bucket) and its first key.
    async fn admin_create_account(
        &self,
        actor: &str,
        name: &str,
        credits: i64,
        key: &GeneratedKey,
        prefix: KeyPrefix,
    ) -> StoreResult<AccountInfo>;
    async fn admin_add_api_key(
        &self,
        actor: &str,
        account_id: &str,
        key: &GeneratedKey,
        prefix: KeyPrefix,
    ) -> StoreResult<()>;
    /// `false` when no such key (or already revoked); nothing is recorded then.
    async fn admin_revoke_api_key(&self, actor: &str, key_id: &str) -> StoreResult<bool>;
    /// Returns the new bucket's id.
    async fn admin_grant_credits(&self, actor: &str, grant: &Grant) -> StoreResult<String>;
    /// Disables or enables an account. `false` when it already was in that state (nothing
    /// is recorded then); `NotFound` for an unknown account.
    async fn set_account_disabled(
        &self,
        actor: &str,
        account_id: &str,
        disabled: bool,
    ) -> StoreResult<bool>;
    /// The audit log, oldest first; only one account's rows when `account_id` is given.
    async fn audit_log(&self, account_id: Option<&str>) -> StoreResult<Vec<audit::AuditEntry>>;
}

/// Unlock tasks: create (with its precheck and Idempotency-Key), the engine's claim, lease
/// and settlement (only the lease holder writes task progress), and the task reads.
#[async_trait]
pub trait Tasks: Send + Sync + 'static {
    /// Live tasks, their unsettled items and the credits held, for `/metrics`.
    async fn queue_gauges(&self) -> StoreResult<QueueGauges>;
    /// Resolve, classify, hold and insert the task, items and in-flight guards, atomically.
    async fn create_unlock_task(&self, request: &NewUnlock) -> StoreResult<CreateResult>;
    /// What `create_unlock_task` would decide now, without any effect. Both run the same
    /// code on the same facts, so they cannot disagree.
    async fn precheck_unlock(&self, request: &NewUnlock) -> StoreResult<CreateResult>;
    /// A task of this account and kind; `None` for unknown or someone else's.
    async fn task_view(
        &self,
        account_id: &str,
        kind: ContactKind,
        task_id: &str,
    ) -> StoreResult<Option<TaskView>>;
    async fn claim_task(&self, worker_id: &str, policy: ClaimPolicy) -> StoreResult<Claim>;
    /// Extends the lease; `LeaseLost` when the task was claimed again meanwhile.
    async fn renew_lease(&self, lease: &Lease, lease_ms: i64) -> StoreResult<()>;
    /// Marks items as being looked up.
    async fn start_items(&self, lease: &Lease, item_ids: &[i64]) -> StoreResult<()>;
    /// Settles items (state, capture or release, unlock record, guard removal) in one
    /// transaction, and finishes the task when nothing is left.
    async fn settle_items(
        &self,
        lease: &Lease,
        outcomes: Vec<(i64, LookupOutcome)>,
    ) -> StoreResult<SettleReport>;
    /// Gives the task back (graceful shutdown): claimable again at once.
    async fn release_lease(&self, lease: &Lease) -> StoreResult<()>;
    /// Reserves an `Idempotency-Key` for one create, or says why not. A reservation older
    /// than `lock_ms` that never completed (its process died) is taken over.
    async fn reserve_idempotency_key(
        &self,
        key: &integrators::IdempotencyKey,
        lock_ms: i64,
    ) -> StoreResult<integrators::KeyReservation>;
    /// `create_unlock_task` with the key's answer (`render`ed from the result) recorded in
    /// the same transaction as the task.
    async fn create_unlock_task_keyed(
        &self,
        request: &NewUnlock,
        key: &integrators::IdempotencyKey,
        token: &str,
        render: integrators::ResponseRenderer,
    ) -> StoreResult<integrators::KeyedCreate>;
    /// Frees a reservation that got no answer worth replaying (the database failed).
    async fn release_idempotency_key(
        &self,
        key: &integrators::IdempotencyKey,
        token: &str,
    ) -> StoreResult<()>;
    /// An account's tasks of one kind, newest first (ties by id, descending). Items carry
    /// no contact values.
    async fn list_tasks(
        &self,
        account_id: &str,
        kind: ContactKind,
        filter: &integrators::TaskFilter,
        page: PageRequest,
    ) -> StoreResult<Page<TaskView>>;
    /// An account's usage from the ledger, grouped.
    async fn usage(
        &self,
        account_id: &str,
        query: integrators::UsageQuery,
    ) -> StoreResult<Vec<integrators::UsageRow>>;
    /// Tasks still kept (finished ones until they are pruned), counted by
    /// `(kind, status)`, for the operator's view of the queue.
    async fn task_counts(&self) -> StoreResult<Vec<(String, String, i64)>>;
}

/// Maintenance run in the background or by an operator.
#[async_trait]
pub trait Upkeep: Send + Sync + 'static {
    /// Derives the search tables (company keys and words, the word vocabulary and its
    /// trigrams) for names and texts added since the last run; returns the rows derived.
    /// Searches are correct without it, and fast with it.
    async fn refresh_search_index(&self) -> StoreResult<i64>;
    /// Expires the unheld remainder of every bucket past its expiry, with a ledger entry
    /// each. Returns the credits expired.
    async fn expire_buckets(&self) -> StoreResult<i64>;
    /// Deletes up to `limit` tasks (with their items) finished before `before_ms`. Ledger
    /// entries are kept. Returns the number of tasks deleted.
    async fn prune_finished_tasks(&self, before_ms: i64, limit: i64) -> StoreResult<i64>;
    /// Checks every billing invariant; returns one line per violation.
    async fn verify_ledger(&self) -> StoreResult<Vec<String>>;
    /// Forgets keys created before `before_ms`; returns how many.
    async fn prune_idempotency_keys(&self, before_ms: i64) -> StoreResult<i64>;
}

/// What processes sharing one database coordinate through: rate-limit buckets, the change
/// feed, contact-source health and costs, live progress and webhooks.
#[async_trait]
pub trait Coordination: Send + Sync + 'static {
    /// Replaces this worker's latest health report of its sources.
    async fn report_source_health(
        &self,
        worker_id: &str,
        health: &[sources::SourceHealth],
    ) -> StoreResult<()>;
    /// The latest health report of every source in every worker.
    async fn source_health(&self) -> StoreResult<Vec<sources::SourceHealthRow>>;
    /// Provider requests and their cost per source in `[from_ms, to_ms)`, for one account
    /// (`Some`) or for the whole deployment.
    async fn provider_costs(
        &self,
        account_id: Option<&str>,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreResult<Vec<sources::ProviderCost>>;
    /// Takes a token from a rate-limit bucket shared by every process on this database.
    /// `None`: this store does not share buckets (the caller keeps them in memory).
    async fn take_rate_token(
        &self,
        _bucket: &str,
        _per_minute: u32,
    ) -> StoreResult<Option<crate::domain::rate::RateDecision>> {
        Ok(None)
    }
    /// Relays task changes made by other processes into `signals` until `shutdown`, so
    /// long polls and idle workers wake without polling. A store without a change feed
    /// returns at once; waiters then rely on their re-read interval.
    async fn relay_changes(
        &self,
        _signals: Arc<crate::signals::TaskSignals>,
        _shutdown: tokio_util::sync::CancellationToken,
    ) {
    }
    /// Live progress and webhooks (`store::integrations`).
    fn integrations(&self) -> &dyn integrations::Integrations;
}

/// Everything the store does, for a consumer that needs all of it (`DynStore`). Each
/// backend implements the role traits; this one comes with them.
pub trait Store: Lifecycle + Catalog + Accounts + Tasks + Upkeep + Coordination {}

impl<T> Store for T where T: Lifecycle + Catalog + Accounts + Tasks + Upkeep + Coordination {}

/// The statement both backends run for [`Tasks::task_counts`].
pub(crate) const TASK_COUNTS_SQL: &str =
    "SELECT kind, status, CAST(COUNT(*) AS BIGINT) AS tasks FROM tasks GROUP BY kind, status \
     ORDER BY kind, status";

/// How [`connect_with`] opens a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectOptions {
    /// SQLite only: PostgreSQL's is the server's (`synchronous_commit`).
    pub durability: sqlite::Durability,
    /// SQLite only: create the file when it does not exist.
    pub create_if_missing: bool,
    /// Open for reading only (SQLite `mode=ro`; PostgreSQL read-only transactions).
    pub read_only: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            durability: sqlite::Durability::Full,
            create_if_missing: true,
            read_only: false,
        }
    }
}

/// Opens the store a URL names without migrating it: `sqlite://path`, or
/// `postgres://...` / `postgresql://...` (a pool of `postgres::DEFAULT_POOL_SIZE`
/// connections, or `pool_size=N` from the URL's query). `durability` applies to SQLite only:
/// PostgreSQL's is the server's (`synchronous_commit`).
pub async fn connect(
    url: &str,
    durability: sqlite::Durability,
    clock: crate::clock::DynClock,
) -> StoreResult<DynStore> {
    let options = ConnectOptions {
        durability,
        ..ConnectOptions::default()
    };
    connect_with(url, options, clock).await
}

/// [`connect`] with every option.
pub async fn connect_with(
    url: &str,
    options: ConnectOptions,
    clock: crate::clock::DynClock,
) -> StoreResult<DynStore> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(
            sqlite::SqliteStore::connect_with(url, options, clock).await?,
        ))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(
            postgres::PgStore::connect_with(url, options, clock).await?,
        ))
    } else {
        Err(StoreError::Invalid(format!(
            "database URL must start with sqlite://, postgres:// or postgresql:// (got {:?})",
            url.split(':').next().unwrap_or_default()
        )))
    }
}
