//! The HTTP edge: thin handlers that parse once, call the store, and map results to the
//! wire contract. Auth, rate limits, request ids and the error envelope live here.

mod actions;
mod admin;
mod auth;
mod body;
mod console;
mod contacts;
mod credits;
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
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tracing::Instrument;

use crate::clock::DynClock;
use crate::domain::Pricing;
use crate::signals::TaskSignals;
use crate::store::DynStore;
use error::{ApiError, REQUEST_ID};
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
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(on_panic))
        .layer(middleware::from_fn_with_state(
            state.limits.request_timeout,
            time_limit,
        ))
        .layer(middleware::from_fn(strict_request))
        .layer(middleware::from_fn_with_state(state.clone(), request_id))
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

fn on_panic(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    ApiError::internal().into_response()
}

/// At most `max` characters of `text`, marked when cut.
pub fn truncate(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => text.into(),
        Some((cut, _)) => format!("{}…", &text[..cut]).into(),
    }
}

/// Refuses before routing what no handler should see: a path or query that does not
/// decode to UTF-8 (400), and a declared body over the limit (413, without reading it).
async fn strict_request(request: Request, next: Next) -> Response {
    let uri = request.uri();
    let bad_utf8 = |part: &str| !parsing::decodes_to_utf8(part);
    if bad_utf8(uri.path()) {
        return ApiError::validation("path: not valid UTF-8 once percent-decoded").into_response();
    }
    if uri.query().is_some_and(bad_utf8) {
        return ApiError::validation("query: not valid UTF-8 once percent-decoded").into_response();
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        let mut response = body::too_large().into_response();
        // The body is never read: close rather than drain it.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    next.run(request).await
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

/// Whether a request is a long poll (bounded by its own `wait`, not the request timeout).
fn is_long_poll(request: &Request) -> bool {
    request.uri().query().is_some_and(|q| {
        body::query_pairs(Some(q))
            .iter()
            .any(|(k, v)| k == "wait" && v.trim() != "0" && !v.trim().is_empty())
    })
}

/// Answers 503 when a request (other than a long poll) is not answered within `limit`.
async fn time_limit(
    axum::extract::State(limit): axum::extract::State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    if is_long_poll(&request) || progress::is_event_stream(request.uri().path()) {
        return next.run(request).await;
    }
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let mut error = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "REQUEST_TIMEOUT",
                format!(
                    "the request was not answered within {} ms",
                    limit.as_millis()
                ),
            );
            error.retry_after = Some(1);
            error.into_response()
        }
    }
}

/// An inbound id is reused when it is short and printable; otherwise a new one is made.
fn inbound_request_id(request: &Request) -> Option<String> {
    let value = request.headers().get("x-request-id")?.to_str().ok()?;
    let sane =
        !value.is_empty() && value.len() <= 128 && value.bytes().all(|b| b.is_ascii_graphic());
    sane.then(|| value.to_string())
}

/// Gives the request its id (the envelope's traceId), times it, and writes its one log
/// line and its metrics.
async fn request_id(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let id = inbound_request_id(&request).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let method = request.method().clone();
    let path = truncate(request.uri().path(), LOGGED_PATH_CHARS).into_owned();
    // Events inside the request carry only its id; the request line below stands alone.
    let span = tracing::info_span!(
        "request",
        trace_id = %id,
        account_id = tracing::field::Empty
    );
    let started = Instant::now();
    let mut response = REQUEST_ID
        .scope(id.clone(), next.run(request))
        .instrument(span)
        .await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let route = response
        .extensions()
        .get::<RouteTemplate>()
        .map(|r| r.0.as_str())
        .unwrap_or("unmatched");
    state
        .metrics
        .request(method.as_str(), route, status, elapsed);
    let key_id = response.extensions().get::<KeyId>().map(|k| k.0.as_str());
    let sampled = response.extensions().get::<Unauthenticated>().is_some();
    let suppressed = if sampled {
        state.unauthenticated_log.admit()
    } else {
        Some(0)
    };
    if let Some(suppressed) = suppressed {
        tracing::info!(
            trace_id = %id,
            method = %method,
            path = %path,
            status,
            latency_ms = elapsed.as_millis() as u64,
            key_id,
            suppressed_before = (suppressed > 0).then_some(suppressed),
            "request"
        );
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tower::ServiceExt;

    async fn status_of(router: Router, uri: &str) -> (u16, Duration) {
        let started = Instant::now();
        let response = router
            .oneshot(Request::get(uri).body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        (response.status().as_u16(), started.elapsed())
    }

    #[tokio::test]
    async fn slow_requests_are_cut_off_but_long_polls_are_not() {
        let router = Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    "done"
                }),
            )
            .layer(middleware::from_fn_with_state(
                Duration::from_millis(200),
                time_limit,
            ));
        let (status, elapsed) = status_of(router.clone(), "/slow").await;
        assert_eq!(status, 503);
        assert!(elapsed < Duration::from_millis(500), "{elapsed:?}");
        let (status, _) = status_of(router.clone(), "/slow?wait=5").await;
        assert_eq!(status, 200, "a long poll is bounded by its wait");
        let (status, _) = status_of(router, "/slow?wait=0").await;
        assert_eq!(status, 503, "wait=0 is no long poll");
    }

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
