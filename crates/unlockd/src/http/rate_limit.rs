//! Rate limits per API key and per client IP. With a store that shares buckets between
//! processes (PostgreSQL), every replica draws from the same bucket; otherwise (SQLite, one
//! process) the buckets live in this process's memory.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use crate::clock::DynClock;
use crate::domain::rate::{is_full, take_token, TokenState};
use crate::store::DynStore;

pub use crate::domain::rate::RateDecision as Decision;

impl Decision {
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        headers.insert(LIMIT, HeaderValue::from(self.limit));
        headers.insert(REMAINING, HeaderValue::from(self.remaining));
        headers.insert(RESET, HeaderValue::from(self.reset_at));
        // The IETF draft's fields, for clients that read those.
        if let Ok(policy) = HeaderValue::from_str(&format!("\"default\";q={};w=60", self.limit)) {
            headers.insert(POLICY, policy);
        }
        let reset_in = if self.allowed { 0 } else { self.retry_after };
        if let Ok(state) =
            HeaderValue::from_str(&format!("\"default\";r={};t={}", self.remaining, reset_in))
        {
            headers.insert(STATE, state);
        }
    }
}

// Names made once, not parsed from a string on every response.
const LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const STATE: HeaderName = HeaderName::from_static("ratelimit");

const MAX_TRACKED: usize = 100_000;

pub struct RateLimiter {
    /// Bucket names are prefixed with this, so key and IP buckets never collide.
    scope: &'static str,
    per_minute: u32,
    clock: DynClock,
    store: Option<DynStore>,
    local: Mutex<HashMap<String, TokenState>>,
}

impl RateLimiter {
    /// `per_minute == 0` disables the limit. With `store`, buckets are shared through it
    /// when the store supports that.
    pub fn new(
        scope: &'static str,
        per_minute: u32,
        clock: DynClock,
        store: Option<DynStore>,
    ) -> Self {
        RateLimiter {
            scope,
            per_minute,
            clock,
            store,
            local: Mutex::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.per_minute > 0
    }

    pub async fn check(&self, key: &str) -> Decision {
        let bucket = format!("{}:{key}", self.scope);
        if let Some(store) = &self.store {
            match store.take_rate_token(&bucket, self.per_minute).await {
                Ok(Some(decision)) => return decision,
                Ok(None) => {}
                // The shared limiter is down: fall back to this process's buckets rather
                // than refuse every request.
                Err(e) => tracing::warn!(error = %e, "shared rate limit unavailable"),
            }
        }
        self.check_local(bucket)
    }

    fn check_local(&self, bucket: String) -> Decision {
        let now = self.clock.now_ms();
        let mut buckets = self.local.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&bucket) {
            // Forget buckets that have refilled: they carry no state worth keeping.
            buckets.retain(|_, s| !is_full(s, self.per_minute, now));
        }
        let (state, decision) = take_token(buckets.get(&bucket).copied(), self.per_minute, now);
        buckets.insert(bucket, state);
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    #[tokio::test]
    async fn local_buckets_are_per_key() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let limiter = RateLimiter::new("key", 2, clock.clone(), None);
        assert!(limiter.check("a").await.allowed);
        assert!(limiter.check("a").await.allowed);
        assert!(!limiter.check("a").await.allowed);
        assert!(limiter.check("b").await.allowed, "keys are independent");
        clock.advance(30_000);
        assert!(limiter.check("a").await.allowed);
    }
}
