//! Token buckets per API key and per client IP: `limit` requests a minute, bursting to
//! `limit`. State is in process memory (one process per deployment on SQLite).

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::{HeaderMap, HeaderValue};

use crate::clock::DynClock;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Unix seconds at which the bucket is full again.
    pub reset_at: i64,
    /// Seconds until one request is allowed (when refused).
    pub retry_after: u64,
}

impl Decision {
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        headers.insert("x-ratelimit-limit", HeaderValue::from(self.limit));
        headers.insert("x-ratelimit-remaining", HeaderValue::from(self.remaining));
        headers.insert("x-ratelimit-reset", HeaderValue::from(self.reset_at));
        // The IETF draft's fields, for clients that read those.
        if let Ok(policy) = HeaderValue::from_str(&format!("\"default\";q={};w=60", self.limit)) {
            headers.insert("ratelimit-policy", policy);
        }
        let reset_in = if self.allowed { 0 } else { self.retry_after };
        if let Ok(state) =
            HeaderValue::from_str(&format!("\"default\";r={};t={}", self.remaining, reset_in))
        {
            headers.insert("ratelimit", state);
        }
    }
}

struct Bucket {
    tokens: f64,
    updated_ms: i64,
}

pub struct RateLimiter {
    per_minute: u32,
    clock: DynClock,
    buckets: Mutex<HashMap<String, Bucket>>,
}

const MAX_TRACKED: usize = 100_000;

impl RateLimiter {
    /// `per_minute == 0` disables the limit.
    pub fn new(per_minute: u32, clock: DynClock) -> Self {
        RateLimiter {
            per_minute,
            clock,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.per_minute > 0
    }

    pub fn check(&self, key: &str) -> Decision {
        let now = self.clock.now_ms();
        let capacity = f64::from(self.per_minute);
        let per_ms = capacity / 60_000.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(key) {
            // Forget buckets that have refilled: they carry no state worth keeping.
            buckets
                .retain(|_, b| b.tokens + (now - b.updated_ms).max(0) as f64 * per_ms < capacity);
        }
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: capacity,
            updated_ms: now,
        });
        let elapsed = (now - bucket.updated_ms).max(0) as f64;
        bucket.tokens = (bucket.tokens + elapsed * per_ms).min(capacity);
        bucket.updated_ms = now;
        let allowed = bucket.tokens >= 1.0;
        if allowed {
            bucket.tokens -= 1.0;
        }
        let full_in_ms = ((capacity - bucket.tokens) / per_ms).ceil() as i64;
        let one_in_ms = ((1.0 - bucket.tokens).max(0.0) / per_ms).ceil() as u64;
        Decision {
            allowed,
            limit: self.per_minute,
            remaining: bucket.tokens.floor() as u32,
            reset_at: (now + full_in_ms + 999) / 1000,
            retry_after: one_in_ms.div_ceil(1000).max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    #[test]
    fn bursts_to_the_limit_then_refills_over_a_minute() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let limiter = RateLimiter::new(3, clock.clone());
        let d: Vec<Decision> = (0..4).map(|_| limiter.check("k")).collect();
        assert_eq!(
            d.iter()
                .map(|d| (d.allowed, d.remaining))
                .collect::<Vec<_>>(),
            [(true, 2), (true, 1), (true, 0), (false, 0)]
        );
        assert_eq!(d[3].retry_after, 20, "one token per 20 s at 3/min");
        assert!(limiter.check("other").allowed, "keys are independent");
        clock.advance(20_000);
        assert!(limiter.check("k").allowed);
        assert!(!limiter.check("k").allowed);
    }
}
