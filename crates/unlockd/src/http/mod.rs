//! The HTTP edge: thin handlers that parse once, call the store, and map results to the
//! wire contract. Auth, rate limits, request ids and the error envelope live here.

mod actions;
mod admin;
mod auth;
mod body;
mod console;
mod contacts;
mod credits;
mod edge;
pub mod error;
mod events;
mod exhibitors;
pub mod integrators;
pub mod openapi;
mod ops;
mod personnel;
mod progress;
pub mod rate_limit;
pub use admin::MIN_TOKEN_CHARS as MIN_ADMIN_TOKEN_CHARS;
pub use console::CONTENT_SECURITY_POLICY;
pub mod server;
mod webhooks;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;

use crate::clock::DynClock;
use crate::domain::Pricing;
use crate::signals::TaskSignals;
use crate::store::DynStore;
use error::ApiError;
use rate_limit::RateLimiter;

pub use contacts::task_body;
pub use server::serve;
pub use webhooks::MAX_URL_CHARS as MAX_WEBHOOK_URL_CHARS;

/// Request bodies larger than this get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The longest path a request log line carries; the rest is cut.
pub const LOGGED_PATH_CHARS: usize = 200;

/// The HTTP edge's limits on slow or greedy clients.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// A connection must send a whole request head within this.
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request in hand is closed after this.
    pub idle_timeout: Duration,
    /// A request body must arrive whole within this (408 otherwise).
    pub body_read_timeout: Duration,
    /// A request must be answered within this (503 otherwise); long polls (`?wait=`) are
    /// bounded by their own wait instead.
    pub request_timeout: Duration,
    /// Open connections served at once; more are refused (only `/healthz` still answers).
    pub max_connections: usize,
    /// Long polls one API key may hold open at once (429 over it).
    pub long_polls_per_key: usize,
    /// An `Idempotency-Key` reservation whose request never finished (its process died)
    /// is taken over by a retry after this.
    pub idempotency_lock: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            max_connections: 8192,
            long_polls_per_key: 20,
            idempotency_lock: Duration::from_secs(60),
        }
    }
}

/// What every handler and middleware shares. Cloned for each request by several layers, so
/// it is one `Arc` (cloning and dropping the wide struct, a reference count per shared
/// field, took about 3 % of a poll's CPU in a perf profile).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub store: DynStore,
    pub signals: Arc<TaskSignals>,
    pub clock: DynClock,
    pub pricing: Pricing,
    pub key_limiter: Arc<RateLimiter>,
    pub ip_limiter: Arc<RateLimiter>,
    /// How often a long poll re-reads its task when no in-process signal came (changes
    /// made by a worker in another process).
    pub long_poll_recheck: Duration,
    /// Take the client IP (for the per-IP limit) from `X-Forwarded-For`.
    pub trust_forwarded_for: bool,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub limits: HttpLimits,
    pub long_polls: Arc<LongPolls>,
    pub unauthenticated_log: Arc<LogSampler>,
    /// The operator token; `None` turns the operator API off.
    pub admin_token: Option<Arc<str>>,
    /// Webhook targets may be private addresses (`--webhooks-allow-private`).
    pub webhooks_allow_private: bool,
    /// Fires at shutdown: open event streams end (clients resume elsewhere with
    /// `Last-Event-ID`) instead of holding the drain.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// Open long polls per API key.
#[derive(Default)]
pub struct LongPolls {
    open: Mutex<HashMap<String, usize>>,
}

/// One open long poll; frees its place when dropped.
pub struct LongPollSlot {
    polls: Arc<LongPolls>,
    key_id: String,
}

impl LongPolls {
    /// A place for one more long poll of `key_id`, unless it already holds `cap`.
    pub fn try_open(self: &Arc<Self>, key_id: &str, cap: usize) -> Option<LongPollSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(key_id.to_string()).or_insert(0);
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(LongPollSlot {
            polls: self.clone(),
            key_id: key_id.to_string(),
        })
    }

    pub fn open_for(&self, key_id: &str) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(key_id).copied().unwrap_or(0)
    }
}

impl Drop for LongPollSlot {
    fn drop(&mut self) {
        let mut open = self.polls.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.key_id) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key_id);
            }
        }
    }
}

/// Lets through at most `per_second` log lines a second and counts the rest, so a flood of
/// unauthenticated requests cannot flood the log.
pub struct LogSampler {
    per_second: u32,
    window: Mutex<(Instant, u32, u64)>,
}

impl LogSampler {
    pub fn new(per_second: u32) -> Self {
        LogSampler {
            per_second,
            window: Mutex::new((Instant::now(), 0, 0)),
        }
    }

    /// `Some(lines suppressed since the last one let through)` when this line may be logged.
    pub fn admit(&self) -> Option<u64> {
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let (started, count, suppressed) = &mut *window;
        if started.elapsed() >= Duration::from_secs(1) {
            *started = Instant::now();
            *count = 0;
        }
        if *count < self.per_second {
            *count += 1;
            Some(std::mem::take(suppressed))
        } else {
            *suppressed += 1;
            None
        }
    }
}

/// Set by the auth middleware on its response: the key that made the request.
#[derive(Clone)]
pub(crate) struct KeyId(pub String);

/// Set on responses refused before a key was accepted (401, 429 by IP): sampled in the log.
#[derive(Clone, Copy)]
pub(crate) struct Unauthenticated;

/// The matched route template, carried from inside the router out to the request log.
#[derive(Clone)]
struct RouteTemplate(String);

pub fn router(state: AppState) -> Router {
    let external = Router::new()
        .merge(contacts::routes())
        .merge(credits::routes())
        .merge(personnel::routes())
        .merge(events::routes())
        .merge(exhibitors::routes())
        .merge(actions::routes())
        .merge(progress::routes())
        .merge(webhooks::routes())
        .merge(integrators::routes())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    Router::new()
        .merge(ops::routes())
        .merge(external)
        .merge(admin::routes(state.clone()))
        .merge(console::routes())
        .route_layer(middleware::from_fn(remember_route))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(edge::EdgeLayer::new(state.clone()))
        .with_state(state)
}

async fn remember_route(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let mut response = next.run(request).await;
    if let Some(route) = route {
        response.extensions_mut().insert(RouteTemplate(route));
    }
    response
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(
        "NOT_FOUND",
        format!(
            "no route for {} {}",
            request.method(),
            truncate(request.uri().path(), LOGGED_PATH_CHARS)
        ),
    )
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!(
            "{} is not allowed on {}",
            request.method(),
            truncate(request.uri().path(), LOGGED_PATH_CHARS)
        ),
    )
}

/// At most `max` characters of `text`, marked when cut.
pub fn truncate(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => text.into(),
        Some((cut, _)) => format!("{}…", &text[..cut]).into(),
    }
}

/// The edge's pure parsing (bodies, query strings), for the fuzz targets and tests.
pub mod parsing {
    use serde_json::{Map, Value};

    pub use super::body::{decode_object, is_json_content_type, parse_whole, QueryParams};
    use super::error::ApiError;

    /// Whether every percent-decoded piece of a path or query is UTF-8.
    pub fn decodes_to_utf8(part: &str) -> bool {
        part.split(['&', '=', '/']).all(|piece| {
            percent_encoding::percent_decode_str(piece)
                .decode_utf8()
                .is_ok()
        })
    }

    /// An unlock create body, as the handler reads it: `(event_id, deduplicated ids)`.
    pub fn unlock_body(bytes: &[u8]) -> Result<(String, Vec<String>), ApiError> {
        let body = decode_object(bytes)?;
        super::contacts::parse_unlock(&body).map_err(ApiError::from)
    }

    /// What a precheck body parses to: the action type, its params and, for the unlock
    /// actions with at most 100 ids, the parsed params.
    pub type Precheck = (String, Map<String, Value>, Option<(String, Vec<String>)>);

    /// A precheck body, as the handler reads it.
    pub fn precheck_body(bytes: &[u8]) -> Result<Precheck, ApiError> {
        let body = decode_object(bytes)?;
        let (action_type, params) = super::actions::parse_precheck(&body)?;
        let unlock = match action_type.as_str() {
            "unlock_contact_emails" | "unlock_contact_phones" => {
                match super::contacts::parse_unlock(&params) {
                    Ok(parsed) => Some(parsed),
                    Err(super::contacts::UnlockParseError::TooMany(_)) => None,
                    Err(super::contacts::UnlockParseError::Invalid(e)) => return Err(e),
                }
            }
            _ => None,
        };
        Ok((action_type, params, unlock))
    }

    /// Every kind of query parameter the handlers read, read the way they read it.
    pub fn read_query(raw: &str) -> Vec<Result<String, ApiError>> {
        let q = QueryParams::parse(Some(raw));
        let mut out: Vec<Result<String, ApiError>> = Vec::new();
        for (name, max) in [("keyword", 200), ("event_id", 100), ("sourceType", 50)] {
            out.push(q.text(name, max).map(Option::unwrap_or_default));
        }
        out.push(q.required_text("company_name", 200));
        out.push(q.date("date_start_from").map(Option::unwrap_or_default));
        out.push(
            q.page(20, 100)
                .map(|p| format!("{}/{}", p.page, p.page_size)),
        );
        out.push(super::contacts::parse_wait(Some(raw)).map(|w| format!("{w:?}")));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_char_boundaries() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("ééééé", 2), "éé…");
    }

    #[test]
    fn the_log_sampler_lets_a_few_through_and_counts_the_rest() {
        let sampler = LogSampler::new(3);
        let admitted: Vec<Option<u64>> = (0..5).map(|_| sampler.admit()).collect();
        assert_eq!(admitted, [Some(0), Some(0), Some(0), None, None]);
    }
}
