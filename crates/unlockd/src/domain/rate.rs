//! Token buckets for rate limits: `per_minute` requests a minute, bursting to `per_minute`.
//! One pure function, used by the in-process limiter and by the shared (database) one.

/// A bucket's stored state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenState {
    pub tokens: f64,
    pub updated_ms: i64,
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Unix seconds at which the bucket is full again.
    pub reset_at: i64,
    /// Seconds until one request is allowed (meaningful when refused).
    pub retry_after: u64,
}

/// Refills `state` (a fresh bucket when `None`) up to `now_ms`, takes one token if there is
/// one, and returns the new state with the decision.
pub fn take_token(
    state: Option<TokenState>,
    per_minute: u32,
    now_ms: i64,
) -> (TokenState, RateDecision) {
    let capacity = f64::from(per_minute.max(1));
    let per_ms = capacity / 60_000.0;
    let mut state = state.unwrap_or(TokenState {
        tokens: capacity,
        updated_ms: now_ms,
    });
    let elapsed = (now_ms - state.updated_ms).max(0) as f64;
    state.tokens = (state.tokens + elapsed * per_ms).min(capacity);
    state.updated_ms = state.updated_ms.max(now_ms);
    let allowed = state.tokens >= 1.0;
    if allowed {
        state.tokens -= 1.0;
    }
    let full_in_ms = ((capacity - state.tokens) / per_ms).ceil() as i64;
    let one_in_ms = ((1.0 - state.tokens).max(0.0) / per_ms).ceil() as u64;
    let decision = RateDecision {
        allowed,
        limit: per_minute,
        remaining: state.tokens.floor() as u32,
        reset_at: (now_ms + full_in_ms + 999) / 1000,
        retry_after: one_in_ms.div_ceil(1000).max(1),
    };
    (state, decision)
}

/// Whether a bucket has refilled completely by `now_ms` (and so need not be kept).
pub fn is_full(state: &TokenState, per_minute: u32, now_ms: i64) -> bool {
    let capacity = f64::from(per_minute.max(1));
    state.tokens + (now_ms - state.updated_ms).max(0) as f64 * capacity / 60_000.0 >= capacity
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_to_the_limit_then_refills_over_a_minute() {
        let mut state = None;
        let mut seen = Vec::new();
        for _ in 0..4 {
            let (s, d) = take_token(state, 3, 1_000_000);
            state = Some(s);
            seen.push((d.allowed, d.remaining, d.retry_after));
        }
        assert_eq!(
            seen,
            [(true, 2, 1), (true, 1, 1), (true, 0, 20), (false, 0, 20)]
        );
        let (s, d) = take_token(state, 3, 1_020_000);
        assert!(d.allowed, "one token back after 20 s at 3/min");
        let (_, d) = take_token(Some(s), 3, 1_020_000);
        assert!(!d.allowed);
        assert!(is_full(&s, 3, 1_080_000));
        assert!(!is_full(&s, 3, 1_021_000));
    }

    #[test]
    fn a_clock_step_backwards_never_mints_tokens() {
        let (s, _) = take_token(None, 60, 10_000);
        let (s2, d) = take_token(Some(s), 60, 5_000);
        assert!(d.allowed);
        assert!(s2.tokens < s.tokens);
        assert_eq!(s2.updated_ms, 10_000);
    }
}
