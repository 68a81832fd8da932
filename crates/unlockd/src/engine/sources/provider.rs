//! One configured HTTP enrichment source at run time: the request it sends, how its answer
//! is read, and the limits every task of the process shares (a FIFO semaphore for
//! `max_concurrency`, a pacer for `requests_per_second`, a circuit breaker).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::Retryable;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::config::{json_escape, url_escape, HttpSourceConfig, Method};
use super::Person;
use crate::domain::ContactKind;
use crate::engine::retry::FullJitter;
use crate::metrics::Metrics;

/// Larger answers are not read whole: no enrichment answer is anywhere near this.
const MAX_BODY_BYTES: usize = 1 << 20;

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Found(String),
    NotFound,
    /// A 4xx other than 429 (or another unusable status): asking again will not help.
    Permanent(String),
    /// Timeouts, connection errors, 5xx, 429: worth another try, after `retry_after`
    /// when the source said so.
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// A body that is not the documented JSON: a source failure.
    Garbage(String),
}

impl Attempt {
    fn outcome_label(&self) -> &'static str {
        match self {
            Attempt::Found(_) => "found",
            Attempt::NotFound => "not_found",
            Attempt::Permanent(_) => "permanent",
            Attempt::Transient { .. } => "transient",
            Attempt::Garbage(_) => "garbage",
        }
    }
}

/// What a source answered for an item, once retries are done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceResult {
    Found(String),
    NotFound,
    /// Permanent answer or transient failures until the attempts ran out.
    Failed(String),
    /// The breaker is open: the source was not asked.
    BreakerOpen,
}

/// Where a log line comes from (never the contact itself).
#[derive(Debug, Clone, Copy)]
pub struct LogContext<'a> {
    pub task_id: &'a str,
    pub item_id: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { probe_since: Option<Instant> },
}

#[derive(Debug)]
struct BreakerState {
    phase: Phase,
    consecutive_failures: u32,
}

/// Closed, open after `failures_to_open` consecutive failures, half-open after the cool
/// down (one probe request at a time), closed again on a success.
#[derive(Debug)]
pub struct Breaker {
    failures_to_open: u32,
    cool_down: Duration,
    /// A probe that never reported back (its lookup was dropped) stops blocking after this.
    probe_timeout: Duration,
    state: Mutex<BreakerState>,
}

impl Breaker {
    pub fn new(failures_to_open: u32, cool_down: Duration, probe_timeout: Duration) -> Self {
        Breaker {
            failures_to_open: failures_to_open.max(1),
            cool_down,
            probe_timeout,
            state: Mutex::new(BreakerState {
                phase: Phase::Closed,
                consecutive_failures: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a request may go out now (in half-open: the one probe).
    pub fn try_acquire(&self) -> bool {
        let now = Instant::now();
        let mut state = self.lock();
        match state.phase {
            Phase::Closed => true,
            Phase::Open { until } if now < until => false,
            Phase::Open { .. } => {
                state.phase = Phase::HalfOpen {
                    probe_since: Some(now),
                };
                true
            }
            Phase::HalfOpen { probe_since }
                if probe_since.is_some_and(|at| now < at + self.probe_timeout) =>
            {
                false
            }
            Phase::HalfOpen { .. } => {
                state.phase = Phase::HalfOpen {
                    probe_since: Some(now),
                };
                true
            }
        }
    }

    /// A request that reached the source and got an answer it understood (found, not
    /// found, or a permanent refusal): the source is up.
    pub fn record_success(&self) {
        let mut state = self.lock();
        state.phase = Phase::Closed;
        state.consecutive_failures = 0;
    }

    pub fn record_failure(&self) {
        let mut state = self.lock();
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        let reopen = matches!(state.phase, Phase::HalfOpen { .. })
            || state.consecutive_failures >= self.failures_to_open;
        if reopen {
            state.phase = Phase::Open {
                until: Instant::now() + self.cool_down,
            };
        }
    }

    /// When a request may next be tried (`None`: now).
    pub fn next_try_at(&self) -> Option<Instant> {
        let state = self.lock();
        match state.phase {
            Phase::Closed => None,
            Phase::Open { until } => Some(until),
            Phase::HalfOpen { probe_since } => probe_since.map(|at| at + self.probe_timeout),
        }
    }

    pub fn state_name(&self) -> &'static str {
        match self.lock().phase {
            Phase::Closed => "closed",
            Phase::Open { until } if Instant::now() < until => "open",
            Phase::Open { .. } | Phase::HalfOpen { .. } => "half_open",
        }
    }

    fn gauge_value(&self) -> f64 {
        match self.state_name() {
            "closed" => 0.0,
            "half_open" => 1.0,
            _ => 2.0,
        }
    }
}

/// Counters since the last health report.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub requests: i64,
    pub failures: i64,
    pub last_error: Option<String>,
    pub cost_micros: i64,
}

pub struct Provider {
    pub config: HttpSourceConfig,
    client: reqwest::Client,
    permits: Semaphore,
    next_slot: tokio::sync::Mutex<Instant>,
    pub breaker: Breaker,
    tally: Mutex<Tally>,
    metrics: Arc<Metrics>,
}

impl Provider {
    pub fn new(config: HttpSourceConfig, client: reqwest::Client, metrics: Arc<Metrics>) -> Self {
        let breaker = Breaker::new(
            config.breaker_failures,
            config.breaker_cool_down,
            config.timeout + Duration::from_secs(1),
        );
        metrics.source_breaker(&config.name, 0.0);
        Provider {
            permits: Semaphore::new(config.max_concurrency),
            next_slot: tokio::sync::Mutex::new(Instant::now()),
            breaker,
            tally: Mutex::new(Tally::default()),
            client,
            config,
            metrics,
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Whether the person has every field the source's templates use.
    pub fn can_ask_about(&self, person: &Person) -> bool {
        self.config
            .fields_used()
            .iter()
            .all(|field| person.get(field).is_some())
    }

    /// The counters since the last call, reset.
    pub fn take_tally(&self) -> Tally {
        std::mem::take(&mut *self.tally.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Asks the source about one person, retrying transient failures with backoff (full
    /// jitter, `Retry-After` honoured up to `max_backoff`). Returns the result and how many
    /// requests went out (each is paid).
    pub async fn look_up(
        &self,
        person: &Person,
        kind: ContactKind,
        log: LogContext<'_>,
    ) -> (SourceResult, u32) {
        let requests = AtomicU32::new(0);
        let config = &self.config;
        let backoff = FullJitter::new(
            config.backoff,
            config.max_backoff,
            Some(config.attempts.saturating_sub(1) as usize),
        );
        let outcome = (|| async {
            if !self.breaker.try_acquire() {
                return Err(RetryError::BreakerOpen);
            }
            requests.fetch_add(1, Ordering::Relaxed);
            match self.request(person, kind, log).await {
                Attempt::Found(value) => Ok(SourceResult::Found(value)),
                Attempt::NotFound => Ok(SourceResult::NotFound),
                Attempt::Permanent(reason) => Ok(SourceResult::Failed(reason)),
                Attempt::Garbage(reason) => Err(RetryError::Transient {
                    reason,
                    retry_after: None,
                }),
                Attempt::Transient {
                    reason,
                    retry_after,
                } => Err(RetryError::Transient {
                    reason,
                    retry_after,
                }),
            }
        })
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|e| matches!(e, RetryError::Transient { .. }))
        .adjust(|e, delay| match (e, delay) {
            (
                RetryError::Transient {
                    retry_after: Some(wait),
                    ..
                },
                Some(_),
            ) => Some((*wait).min(config.max_backoff)),
            _ => delay,
        })
        .notify(|e, delay| {
            if let RetryError::Transient { reason, .. } = e {
                tracing::info!(task_id = log.task_id, item_id = log.item_id, source = %config.name, %reason, ?delay, "source failed; retrying");
            }
        })
        .await;
        let result = match outcome {
            Ok(result) => result,
            Err(RetryError::BreakerOpen) => SourceResult::BreakerOpen,
            Err(RetryError::Transient { reason, .. }) => SourceResult::Failed(reason),
        };
        (result, requests.into_inner())
    }

    /// One request: waits for a concurrency permit (FIFO, shared by every task of the
    /// process) and a rate slot, sends, reads the answer.
    pub async fn request(
        &self,
        person: &Person,
        kind: ContactKind,
        log: LogContext<'_>,
    ) -> Attempt {
        let _permit = match self.permits.acquire().await {
            Ok(permit) => permit,
            Err(_) => {
                return Attempt::Transient {
                    reason: "source closed".into(),
                    retry_after: None,
                }
            }
        };
        self.pace().await;
        let started = Instant::now();
        let answer = self.send(person, kind).await;
        let elapsed = started.elapsed();
        let name = &self.config.name;
        self.metrics
            .source_request(name, answer.outcome_label(), elapsed);
        self.metrics.source_cost(name, self.config.cost_micros);
        let failed = matches!(answer, Attempt::Transient { .. } | Attempt::Garbage(_));
        if failed {
            self.breaker.record_failure();
        } else {
            self.breaker.record_success();
        }
        self.metrics
            .source_breaker(name, self.breaker.gauge_value());
        {
            let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
            tally.requests += 1;
            tally.cost_micros += self.config.cost_micros;
            match &answer {
                Attempt::Transient { reason, .. }
                | Attempt::Garbage(reason)
                | Attempt::Permanent(reason) => {
                    tally.failures += i64::from(failed);
                    tally.last_error = Some(reason.clone());
                }
                _ => {}
            }
        }
        match &answer {
            Attempt::Garbage(reason) => {
                tracing::warn!(task_id = log.task_id, item_id = log.item_id, source = %name, %reason, "source answered garbage")
            }
            Attempt::Permanent(reason) => {
                tracing::warn!(task_id = log.task_id, item_id = log.item_id, source = %name, %reason, "source refused the lookup")
            }
            Attempt::Transient { reason, .. } => {
                tracing::debug!(task_id = log.task_id, item_id = log.item_id, source = %name, %reason, "source failed")
            }
            other => {
                tracing::debug!(task_id = log.task_id, item_id = log.item_id, source = %name, outcome = other.outcome_label(), ms = elapsed.as_millis() as u64, "source answered")
            }
        }
        answer
    }

    /// Spaces requests to at most `requests_per_second` for the whole process.
    async fn pace(&self) {
        let rate = self.config.requests_per_second;
        if rate <= 0.0 {
            return;
        }
        let gap = Duration::from_secs_f64(1.0 / rate);
        let at = {
            let mut next = self.next_slot.lock().await;
            let at = (*next).max(Instant::now());
            *next = at + gap;
            at
        };
        tokio::time::sleep_until(at).await;
    }

    async fn send(&self, person: &Person, kind: ContactKind) -> Attempt {
        let config = &self.config;
        let value_of = |field: &str| person.get(field).map(str::to_string);
        let Some(url) = config.url.render(value_of, url_escape) else {
            return Attempt::Permanent("the person lacks a field the URL uses".into());
        };
        let mut request = match config.method {
            Method::Get => self.client.get(&url),
            Method::Post => self.client.post(&url),
        };
        if let Some(body) = &config.body {
            let Some(body) = body.render(value_of, json_escape) else {
                return Attempt::Permanent("the person lacks a field the body uses".into());
            };
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        for header in &config.headers {
            request = request.header(&header.name, &header.value);
        }
        let response = match request.timeout(config.timeout).send().await {
            Ok(response) => response,
            Err(e) if e.is_timeout() => {
                return Attempt::Transient {
                    reason: format!("timed out after {:?}", config.timeout),
                    retry_after: None,
                }
            }
            Err(e) => {
                return Attempt::Transient {
                    reason: format!("request failed: {}", one_line(&e.without_url())),
                    retry_after: None,
                }
            }
        };
        let status = response.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Attempt::Transient {
                reason: "HTTP 429 (rate limited)".into(),
                retry_after,
            };
        }
        if status.is_server_error() {
            return Attempt::Transient {
                reason: format!("HTTP {}", status.as_u16()),
                retry_after: None,
            };
        }
        if config.not_found_status.contains(&status.as_u16()) {
            return Attempt::NotFound;
        }
        if !status.is_success() {
            return Attempt::Permanent(format!("HTTP {}", status.as_u16()));
        }
        let body = match read_body(response, config.timeout).await {
            Ok(body) => body,
            Err(attempt) => return attempt,
        };
        read_answer(config, kind, &body)
    }
}

#[derive(Debug)]
enum RetryError {
    BreakerOpen,
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
}

async fn read_body(mut response: reqwest::Response, timeout: Duration) -> Result<Vec<u8>, Attempt> {
    let mut body = Vec::new();
    let read = async {
        while let Some(chunk) = response.chunk().await? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BODY_BYTES {
                return Ok(false);
            }
        }
        Ok::<bool, reqwest::Error>(true)
    };
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(Attempt::Transient {
            reason: format!("body not read within {timeout:?}"),
            retry_after: None,
        }),
        Ok(Err(e)) => Err(Attempt::Transient {
            reason: format!("reading the body failed: {}", one_line(&e.without_url())),
            retry_after: None,
        }),
        Ok(Ok(false)) => Err(Attempt::Garbage(format!(
            "body larger than {MAX_BODY_BYTES} bytes"
        ))),
        Ok(Ok(true)) => Ok(body),
    }
}

/// Reads the contact (and its verification status) out of a successful answer.
pub fn read_answer(config: &HttpSourceConfig, kind: ContactKind, body: &[u8]) -> Attempt {
    let json: serde_json::Value = match serde_json::from_slice(body) {
        Ok(json) => json,
        Err(e) => return Attempt::Garbage(format!("body is not JSON ({e}; {} bytes)", body.len())),
    };
    let Some(pointer) = config.pointer(kind) else {
        return Attempt::NotFound;
    };
    let value = match json.pointer(pointer) {
        None | Some(serde_json::Value::Null) => return Attempt::NotFound,
        Some(serde_json::Value::String(s)) => s.trim().to_string(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Attempt::Garbage(format!("{pointer} is a {}, not a string", json_type(other)))
        }
    };
    if value.is_empty() {
        return Attempt::NotFound;
    }
    if let Some(status_pointer) = &config.status_pointer {
        let status = match json.pointer(status_pointer) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Null) | None => return Attempt::NotFound,
            Some(other) => other.to_string(),
        };
        if !config.deliverable.iter().any(|d| d == &status) {
            return Attempt::NotFound;
        }
    }
    Attempt::Found(value)
}

fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

fn one_line(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_consecutive_failures_and_half_opens_after_the_cool_down() {
        let breaker = Breaker::new(2, Duration::from_millis(30), Duration::from_secs(5));
        assert!(breaker.try_acquire());
        breaker.record_failure();
        breaker.record_success();
        breaker.record_failure();
        assert_eq!(breaker.state_name(), "closed");
        breaker.record_failure();
        assert_eq!(breaker.state_name(), "open");
        assert!(!breaker.try_acquire());
        std::thread::sleep(Duration::from_millis(40));
        assert!(breaker.try_acquire(), "the probe");
        assert!(!breaker.try_acquire(), "one probe at a time");
        breaker.record_failure();
        assert_eq!(
            breaker.state_name(),
            "open",
            "a failed probe opens it again"
        );
        std::thread::sleep(Duration::from_millis(40));
        assert!(breaker.try_acquire());
        breaker.record_success();
        assert_eq!(breaker.state_name(), "closed");
        assert!(breaker.try_acquire() && breaker.try_acquire());
    }
}
