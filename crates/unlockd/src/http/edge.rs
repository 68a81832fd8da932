//! The outermost layer of the router, as one service: it gives each request its id, refuses
//! what no handler should see, cuts off slow requests, turns a handler's panic into a 500,
//! and writes the request's log line and metrics.
//!
//! These were five `middleware::from_fn` layers. Each of those boxes the rest of the stack
//! and its own future and takes the request apart and back together for every request
//! (`/healthz`, which does nothing else, answered 58 % of a bare axum server's rate). One
//! hand-written service does the same work with one boxed future. Its own effect was not
//! measured apart from the changes that came with it.

use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use futures::FutureExt;
use tower::{Layer, Service};
use tracing::Instrument;

use super::error::{ApiError, REQUEST_ID};
use super::{body, parsing, progress, truncate, AppState, KeyId, RouteTemplate, Unauthenticated};
use super::{LOGGED_PATH_CHARS, MAX_BODY_BYTES};

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Clone)]
pub(super) struct EdgeLayer {
    state: AppState,
}

impl EdgeLayer {
    pub(super) fn new(state: AppState) -> Self {
        EdgeLayer { state }
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            state: self.state.clone(),
        }
    }
}

#[derive(Clone)]
pub(super) struct Edge<S> {
    inner: S,
    state: AppState,
}

impl<S> Service<Request> for Edge<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The service that was made ready is the one that answers; a fresh clone stays.
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        let state = self.state.clone();
        Box::pin(async move { Ok(serve(state, ready, request).await) })
    }
}

/// Gives the request its id (the envelope's traceId), times it, and writes its one log line
/// and its metrics.
async fn serve<S>(state: AppState, inner: S, request: Request) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    let id = inbound_request_id(&request).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let method = request.method().clone();
    let uri = request.uri().clone();
    // Events inside the request carry only its id; the request line below stands alone.
    let span = tracing::info_span!(
        "request",
        trace_id = %id,
        account_id = tracing::field::Empty
    );
    let started = Instant::now();
    let limit = state.limits.request_timeout;
    let mut response = REQUEST_ID
        .scope(id.clone(), guarded(inner, request, limit))
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
            path = %truncate(uri.path(), LOGGED_PATH_CHARS),
            status,
            latency_ms = elapsed.as_millis() as u64,
            key_id,
            suppressed_before = (suppressed > 0).then_some(suppressed),
            "request"
        );
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    response
}

/// The request refused before routing, or answered by `inner` within `limit` (long polls
/// and event streams are bounded by their own wait instead), with a panic turned into a 500.
async fn guarded<S>(mut inner: S, request: Request, limit: Duration) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    if let Some(refusal) = refusal(&request) {
        return refusal;
    }
    let unbounded = is_long_poll(&request) || progress::is_event_stream(request.uri().path());
    // The call is made inside the guarded future, so a panic in it is caught too.
    let answer = AssertUnwindSafe(async move {
        match inner.call(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    })
    .catch_unwind()
    .map(|outcome| {
        outcome.unwrap_or_else(|_| {
            tracing::error!("handler panicked");
            ApiError::internal().into_response()
        })
    });
    if unbounded {
        return answer.await;
    }
    match tokio::time::timeout(limit, answer).await {
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

/// What no handler should see: a path or query that does not decode to UTF-8 (400), and a
/// declared body over the limit (413, without reading it).
fn refusal(request: &Request) -> Option<Response> {
    let uri = request.uri();
    let bad_utf8 = |part: &str| !parsing::decodes_to_utf8(part);
    if bad_utf8(uri.path()) {
        return Some(
            ApiError::validation("path: not valid UTF-8 once percent-decoded").into_response(),
        );
    }
    if uri.query().is_some_and(bad_utf8) {
        return Some(
            ApiError::validation("query: not valid UTF-8 once percent-decoded").into_response(),
        );
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
        return Some(response);
    }
    None
}

/// Whether a request is a long poll (bounded by its own `wait`, not the request timeout).
fn is_long_poll(request: &Request) -> bool {
    request.uri().query().is_some_and(|q| {
        body::query_pairs(Some(q))
            .iter()
            .any(|(k, v)| k == "wait" && v.trim() != "0" && !v.trim().is_empty())
    })
}

/// An inbound id is reused when it is short and printable; otherwise a new one is made.
fn inbound_request_id(request: &Request) -> Option<String> {
    let value = request.headers().get(X_REQUEST_ID)?.to_str().ok()?;
    let sane =
        !value.is_empty() && value.len() <= 128 && value.bytes().all(|b| b.is_ascii_graphic());
    sane.then(|| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tower::ServiceExt;

    /// The edge's time limit and panic guard around `router`, without the rest of the state.
    async fn status_of(router: axum::Router, uri: &str) -> (u16, Duration) {
        let started = Instant::now();
        let service = tower::service_fn(move |request: Request| {
            let router = router.clone();
            async move {
                Ok::<_, Infallible>(guarded(router, request, Duration::from_millis(200)).await)
            }
        });
        let response = service
            .oneshot(Request::get(uri).body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        (response.status().as_u16(), started.elapsed())
    }

    fn buggy_handler() -> &'static str {
        panic!("a handler bug")
    }

    fn slow_router() -> axum::Router {
        axum::Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    "done"
                }),
            )
            .route("/panics", get(|| async { buggy_handler() }))
    }

    #[tokio::test]
    async fn slow_requests_are_cut_off_but_long_polls_are_not() {
        let (status, elapsed) = status_of(slow_router(), "/slow").await;
        assert_eq!(status, 503);
        assert!(elapsed < Duration::from_millis(550), "{elapsed:?}");
        let (status, elapsed) = status_of(slow_router(), "/slow?wait=1").await;
        assert_eq!(status, 200, "a long poll is bounded by its wait");
        assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
        let (status, _) = status_of(slow_router(), "/slow?wait=0").await;
        assert_eq!(status, 503, "wait=0 is no long poll");
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500() {
        let (status, _) = status_of(slow_router(), "/panics").await;
        assert_eq!(status, 500);
    }

    #[test]
    fn refuses_undecodable_paths_and_oversized_declared_bodies() {
        let bad_path = Request::get("/a%FF")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(refusal(&bad_path).unwrap().status(), 400);
        let too_large = Request::post("/x")
            .header(header::CONTENT_LENGTH, (MAX_BODY_BYTES + 1).to_string())
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(refusal(&too_large).unwrap().status(), 413);
        let fine = Request::get("/x?q=%C3%A9")
            .body(axum::body::Body::empty())
            .unwrap();
        assert!(refusal(&fine).is_none());
    }
}
