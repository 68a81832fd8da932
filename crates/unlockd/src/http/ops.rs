//! Operations endpoints (no auth): liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
}

#[utoipa::path(
    get, path = "/healthz", tag = "Operations",
    responses((status = 200, description = "The process is up", body = Object))
)]
pub(super) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

#[utoipa::path(
    get, path = "/readyz", tag = "Operations",
    responses(
        (status = 200, description = "The database is reachable and migrated", body = Object),
        (status = 503, description = "NOT_READY", body = unlockd_api::ApiError),
    )
)]
pub(super) async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    match state.store.ready().await {
        Ok(()) => Ok(Json(json!({"status": "ready"}))),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "NOT_READY",
                "database unreachable or not migrated",
            ))
        }
    }
}

#[utoipa::path(
    get, path = "/openapi.json", tag = "Operations",
    responses((status = 200, description = "This API as OpenAPI 3.1", body = Object))
)]
pub(super) async fn openapi() -> Json<Value> {
    Json(super::openapi::document())
}

#[utoipa::path(
    get, path = "/metrics", tag = "Operations",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain"))
)]
pub(super) async fn metrics(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    // The counters are always served; the queue gauges only when the store answers.
    let gauges = match state.store.queue_gauges().await {
        Ok(g) => Some(g),
        Err(e) => {
            tracing::warn!(error = %e, "queue gauges unavailable");
            None
        }
    };
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(gauges.as_ref()),
    )
}
