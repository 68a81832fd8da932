//! Key digests to principals, kept in memory so that an authenticated request does not pay
//! a database read for its key.
//!
//! Correctness rests on the database's auth generation (a counter bumped by triggers in the
//! same transaction as any change to a key or an account's disabled flag, whichever process
//! made it): `refresh` reads it, and a change forgets every entry. A change made through
//! this process's store forgets them at once. The cache answers only while a refresh has
//! succeeded within `MAX_STALENESS`; without a watcher running (CLI commands, tests that use
//! a bare store), or while the database cannot be read, every lookup goes to the database.
//! So a key revoked or an account disabled by another process is refused within
//! `MAX_STALENESS` at worst, and at once when done through this process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Pool, Type};

use super::{Principal, StoreResult};

/// How old the last successful refresh may be for the cache to answer.
pub const MAX_STALENESS: Duration = Duration::from_secs(1);

/// How often the server's watcher refreshes (well inside `MAX_STALENESS`).
pub const REFRESH_EVERY: Duration = Duration::from_millis(200);

/// Entries kept at most; past it the cache starts over (a flood of distinct valid keys is
/// not a case worth an eviction policy).
const MAX_ENTRIES: usize = 10_000;

#[derive(Default)]
struct State {
    /// The auth generation the entries were read under, once a refresh has seen one.
    generation: Option<i64>,
    /// When the last successful refresh started reading.
    verified_at: Option<Instant>,
    /// Bumped whenever entries are forgotten: a load that began before cannot store what
    /// it read (it may predate the change).
    epoch: u64,
    entries: HashMap<String, Principal>,
}

#[derive(Default)]
pub struct AuthCache {
    state: Mutex<State>,
}

/// Taken before a database read of a key; `store` accepts the read only if nothing was
/// forgotten in between.
#[derive(Debug, Clone, Copy)]
pub struct LoadTicket {
    epoch: u64,
}

impl AuthCache {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The principal of `digest`, when the cache holds it and is fresh at `now`.
    pub fn get(&self, digest: &str, now: Instant) -> Option<Principal> {
        let state = self.state();
        let fresh = state
            .verified_at
            .is_some_and(|at| now.saturating_duration_since(at) < MAX_STALENESS);
        if !fresh {
            return None;
        }
        state.entries.get(digest).cloned()
    }

    pub fn ticket(&self) -> LoadTicket {
        LoadTicket {
            epoch: self.state().epoch,
        }
    }

    /// Remembers what a database read found, unless entries were forgotten since `ticket`.
    /// Unknown and revoked keys are not remembered: they are refused by the database each
    /// time (the per-IP limit bounds how often).
    pub fn store(&self, ticket: LoadTicket, digest: &str, principal: &Principal) {
        let mut state = self.state();
        if state.epoch != ticket.epoch {
            return;
        }
        if state.entries.len() >= MAX_ENTRIES {
            state.entries.clear();
        }
        state.entries.insert(digest.to_string(), principal.clone());
    }

    /// Forgets every entry: a key or an account changed.
    pub fn forget_all(&self) {
        let mut state = self.state();
        state.epoch += 1;
        state.entries.clear();
    }

    /// Records the auth generation a refresh read; `read_started` is when its read began, so
    /// a slow read does not extend the cache's trust past what it saw.
    pub fn observe(&self, generation: i64, read_started: Instant) {
        let mut state = self.state();
        if state.generation != Some(generation) {
            state.generation = Some(generation);
            state.epoch += 1;
            state.entries.clear();
        }
        if state.verified_at.is_none_or(|at| at < read_started) {
            state.verified_at = Some(read_started);
        }
    }
}

/// A key's principal: its account, and whether that account is disabled. Revoked keys are
/// not found.
const PRINCIPAL: &str = "SELECT k.id AS key_id, k.account_id, \
     a.disabled_at IS NOT NULL AS account_disabled FROM api_keys k JOIN accounts a ON a.id = k.account_id \
     WHERE k.digest = $1 AND k.revoked_at IS NULL";

const GENERATION: &str = "SELECT generation FROM auth_generation WHERE id = 1";

/// The principal of a key digest: from the cache when it is fresh, else from the database
/// (and then remembered).
pub(crate) async fn authenticate<'p, DB>(
    cache: &AuthCache,
    pool: &'p Pool<DB>,
    digest: &str,
) -> StoreResult<Option<Principal>>
where
    DB: Database,
    &'p Pool<DB>: for<'c> Executor<'c, Database = DB>,
    for<'a> DB::Arguments<'a>: IntoArguments<'a, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    Principal: for<'r> FromRow<'r, DB::Row>,
{
    if let Some(principal) = cache.get(digest, Instant::now()) {
        return Ok(Some(principal));
    }
    let ticket = cache.ticket();
    let principal: Option<Principal> = sqlx::query_as(PRINCIPAL)
        .bind(digest)
        .fetch_optional(pool)
        .await?;
    if let Some(principal) = &principal {
        cache.store(ticket, digest, principal);
    }
    Ok(principal)
}

/// Reads the auth generation into the cache.
pub(crate) async fn refresh<'p, DB>(cache: &AuthCache, pool: &'p Pool<DB>) -> StoreResult<()>
where
    DB: Database,
    &'p Pool<DB>: for<'c> Executor<'c, Database = DB>,
    for<'a> DB::Arguments<'a>: IntoArguments<'a, DB>,
    (i64,): for<'r> FromRow<'r, DB::Row>,
{
    let started = Instant::now();
    let (generation,): (i64,) = sqlx::query_as(GENERATION).fetch_one(pool).await?;
    cache.observe(generation, started);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(account: &str) -> Principal {
        Principal {
            account_id: account.into(),
            key_id: format!("key-{account}"),
            account_disabled: false,
        }
    }

    #[test]
    fn nothing_is_answered_before_a_refresh_or_after_the_refresh_goes_stale() {
        let cache = AuthCache::default();
        let start = Instant::now();
        cache.store(cache.ticket(), "d", &principal("a"));
        assert_eq!(cache.get("d", start), None, "no generation seen yet");
        cache.observe(7, start);
        cache.store(cache.ticket(), "d", &principal("a"));
        assert_eq!(cache.get("d", start), Some(principal("a")));
        let almost = start + MAX_STALENESS - Duration::from_millis(1);
        assert_eq!(cache.get("d", almost), Some(principal("a")));
        assert_eq!(cache.get("d", start + MAX_STALENESS), None, "stale");
        cache.observe(7, start + MAX_STALENESS);
        assert_eq!(
            cache.get("d", start + MAX_STALENESS),
            Some(principal("a")),
            "the same generation keeps the entries"
        );
    }

    #[test]
    fn a_new_generation_forgets_everything() {
        let cache = AuthCache::default();
        let start = Instant::now();
        cache.observe(1, start);
        cache.store(cache.ticket(), "d", &principal("a"));
        cache.observe(2, start + Duration::from_millis(10));
        assert_eq!(cache.get("d", start + Duration::from_millis(10)), None);
    }

    #[test]
    fn a_read_that_began_before_a_change_is_not_stored() {
        let cache = AuthCache::default();
        let start = Instant::now();
        cache.observe(1, start);
        // A load takes its ticket, a revoke in this process forgets, then the load (which
        // may have read the key before the revoke) tries to store.
        let ticket = cache.ticket();
        cache.forget_all();
        cache.store(ticket, "d", &principal("a"));
        assert_eq!(cache.get("d", start), None);
        // Same when the change is seen through the generation (another process).
        let ticket = cache.ticket();
        cache.observe(2, start);
        cache.store(ticket, "d", &principal("a"));
        assert_eq!(cache.get("d", start), None);
    }

    #[test]
    fn a_slow_refresh_does_not_extend_trust_beyond_its_read() {
        let cache = AuthCache::default();
        let start = Instant::now();
        cache.observe(1, start + Duration::from_millis(500));
        // An older read finishing late must not move the verification time back or forward.
        cache.observe(1, start);
        cache.store(cache.ticket(), "d", &principal("a"));
        let late = start + Duration::from_millis(500) + MAX_STALENESS;
        assert_eq!(cache.get("d", late), None);
        assert!(cache.get("d", late - Duration::from_millis(1)).is_some());
    }
}
