//! The HTTP edge: thin handlers that parse once, call the store, and map results to the
//! wire contract. Auth, rate limits, request ids and the error envelope live here.

mod actions;
mod auth;
mod body;
mod contacts;
mod credits;
pub mod error;
mod events;
mod exhibitors;
pub mod openapi;
mod ops;
mod personnel;
pub mod rate_limit;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, StatusCode};
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

/// Request bodies larger than this get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
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
}

pub fn router(state: AppState) -> Router {
    let external = Router::new()
        .merge(contacts::routes())
        .merge(credits::routes())
        .merge(personnel::routes())
        .merge(events::routes())
        .merge(exhibitors::routes())
        .merge(actions::routes())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    Router::new()
        .merge(ops::routes())
        .merge(external)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(on_panic))
        .layer(middleware::from_fn_with_state(state.clone(), request_id))
        .with_state(state)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(
        "NOT_FOUND",
        format!("no route for {} {}", request.method(), request.uri().path()),
    )
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

fn on_panic(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    ApiError::internal().into_response()
}

/// An inbound id is reused when it is short and printable; otherwise a new one is made.
fn inbound_request_id(request: &Request) -> Option<String> {
    let value = request.headers().get("x-request-id")?.to_str().ok()?;
    let sane =
        !value.is_empty() && value.len() <= 128 && value.bytes().all(|b| b.is_ascii_graphic());
    sane.then(|| value.to_string())
}

async fn request_id(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let id = inbound_request_id(&request).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
        account_id = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let mut response = REQUEST_ID
        .scope(id.clone(), next.run(request))
        .instrument(span.clone())
        .await;
    state.metrics.response(response.status().as_u16());
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "served"
        )
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
