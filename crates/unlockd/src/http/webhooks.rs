//! Webhook endpoints of the calling account [extension]: register (the signing secret is
//! shown once), list, delete, rotate the secret, read the delivery log, redeliver.

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde::Serialize;
use serde_json::{Map, Value};

use super::body::{decode_object, required_string, JsonObject, QueryParams};
use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::clock::rfc3339;
use crate::engine::webhooks::{new_secret, resolve_target, EVENT_TYPES};
use crate::store::integrations::{DeliveryView, NewWebhook, WebhookEndpoint};
use crate::store::{Principal, StoreError};

/// Longest target URL.
pub const MAX_URL_CHARS: usize = 2000;
/// Longest overlap of an old and a new secret after a rotation (7 days), in seconds.
pub const MAX_OVERLAP_SECONDS: u64 = 7 * 24 * 3600;
/// Overlap when the rotation does not say (24 hours), in seconds.
pub const DEFAULT_OVERLAP_SECONDS: u64 = 24 * 3600;
/// Most deliveries one log page shows.
pub const MAX_DELIVERIES: u32 = 200;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/external/webhooks", post(create).get(list))
        .route("/external/webhooks/{id}", delete(remove))
        .route("/external/webhooks/{id}/deliveries", get(deliveries))
        .route(
            "/external/webhooks/{id}/deliveries/{delivery_id}/redeliver",
            post(redeliver),
        )
        .route("/external/webhooks/{id}/rotate-secret", post(rotate_secret))
}

/// A registered endpoint. `secret` only in the answers that create one (once).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpointBody {
    pub id: String,
    pub url: String,
    /// `unlock_task.completed`, `unlock_task.failed`, `credits.low`.
    pub events: Vec<String>,
    /// `credits.low` fires when the available balance falls below this.
    pub low_balance_threshold: Option<i64>,
    pub created_at: String,
    /// After a rotation: until when the previous secret also signs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<String>,
    /// `whsec_` + base64; shown only here, once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookEndpointList {
    pub items: Vec<WebhookEndpointBody>,
}

/// One delivery (one event to one endpoint) and where it stands.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDeliveryBody {
    /// Also the `webhook-id` header: the same for every attempt.
    pub id: String,
    pub event_type: String,
    pub task_id: Option<String>,
    /// `pending`, `delivered` or `failed` (retries used up).
    pub status: String,
    pub attempts: i64,
    /// While pending: when the next attempt is due.
    pub next_attempt_at: Option<String>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookDeliveryList {
    pub items: Vec<WebhookDeliveryBody>,
}

/// A new endpoint.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateWebhookRequest {
    /// http(s); must not resolve to a private, loopback or link-local address.
    #[schema(max_length = 2000)]
    pub url: String,
    /// Default: both task events.
    #[schema(value_type = Option<Vec<WebhookEventName>>, min_items = 1)]
    pub events: Option<Vec<String>>,
    /// Required with `credits.low`.
    #[schema(minimum = 0)]
    pub low_balance_threshold: Option<i64>,
}

/// The events an endpoint can take (the schema of `events`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[allow(dead_code)] // only its schema is used; requests are parsed by hand
pub enum WebhookEventName {
    #[serde(rename = "unlock_task.completed")]
    Completed,
    #[serde(rename = "unlock_task.failed")]
    Failed,
    #[serde(rename = "credits.low")]
    CreditsLow,
}

/// A rotation; the body is optional.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotateSecretRequest {
    /// Seconds the old secret keeps signing beside the new one (0-604800, default 86400).
    #[schema(minimum = 0, maximum = 604800)]
    pub overlap_seconds: Option<u64>,
}

fn endpoint_body(
    endpoint: WebhookEndpoint,
    secret: Option<String>,
    now: i64,
) -> WebhookEndpointBody {
    WebhookEndpointBody {
        id: endpoint.id,
        url: endpoint.url,
        events: endpoint.events.split(' ').map(str::to_string).collect(),
        low_balance_threshold: endpoint.low_balance_threshold,
        created_at: rfc3339(endpoint.created_at),
        previous_secret_expires_at: endpoint
            .previous_secret_until
            .filter(|until| *until > now)
            .map(rfc3339),
        secret,
    }
}

fn delivery_body(d: DeliveryView) -> WebhookDeliveryBody {
    WebhookDeliveryBody {
        next_attempt_at: (d.status == "pending").then(|| rfc3339(d.next_attempt_at)),
        id: d.id,
        event_type: d.event_type,
        task_id: d.task_id,
        status: d.status,
        attempts: d.attempts,
        last_status_code: d.last_status_code,
        last_error: d.last_error,
        created_at: rfc3339(d.created_at),
        delivered_at: d.delivered_at.map(rfc3339),
    }
}

fn endpoint_not_found(id: &str) -> ApiError {
    ApiError::not_found(
        "WEBHOOK_NOT_FOUND",
        format!("webhook endpoint {:?} not found", super::truncate(id, 64)),
    )
}

fn path_id(path: Result<Path<String>, PathRejection>) -> ApiResult<String> {
    let Path(id) = path.map_err(|e| ApiError::validation(format!("id: {}", e.body_text())))?;
    if id.is_empty() || id.chars().count() > 64 {
        return Err(endpoint_not_found(&id));
    }
    Ok(id)
}

/// The event types of a create body (default: both task events), checked.
fn parse_events(body: &Map<String, Value>) -> ApiResult<Vec<String>> {
    let Some(value) = body.get("events").filter(|v| !v.is_null()) else {
        return Ok(vec![
            "unlock_task.completed".to_string(),
            "unlock_task.failed".to_string(),
        ]);
    };
    let invalid = || {
        ApiError::validation(format!(
            "events must be a non-empty array of: {}",
            EVENT_TYPES.join(", ")
        ))
    };
    let list = value
        .as_array()
        .filter(|l| !l.is_empty())
        .ok_or_else(invalid)?;
    let mut events: Vec<String> = Vec::new();
    for item in list {
        let name = item
            .as_str()
            .filter(|n| EVENT_TYPES.contains(n))
            .ok_or_else(invalid)?;
        if !events.iter().any(|e| e == name) {
            events.push(name.to_string());
        }
    }
    Ok(events)
}

#[utoipa::path(
    post, path = "/external/webhooks", tag = "Webhooks",
    request_body = CreateWebhookRequest,
    responses(
        (status = 201, description = "Registered; the signing secret is in this answer only", body = WebhookEndpointBody),
        (status = 400, description = "VALIDATION_ERROR naming the field (a refused URL, an unknown event type, too many endpoints)", body = unlockd_api::ApiError),
        (status = 401, description = "INVALID_API_KEY", body = unlockd_api::ApiError),
        (status = 403, description = "ACCOUNT_DISABLED: the key's account is disabled by the operator", body = unlockd_api::ApiError),
        (status = 415, description = "UNSUPPORTED_MEDIA_TYPE: the body must be sent as application/json", body = unlockd_api::ApiError),
        (status = 429, description = "RATE_LIMIT_EXCEEDED", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE (the database is unavailable; nothing changed; retry after Retry-After seconds) or REQUEST_TIMEOUT", body = unlockd_api::ApiError),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<WebhookEndpointBody>)> {
    let url = required_string(&body, "url", MAX_URL_CHARS)?;
    let events = parse_events(&body)?;
    let threshold = match body.get("lowBalanceThreshold") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().filter(|t| *t >= 0).ok_or_else(|| {
            ApiError::validation("lowBalanceThreshold must be a whole number >= 0")
        })?),
    };
    if events.iter().any(|e| e == "credits.low") && threshold.is_none() {
        return Err(ApiError::validation(
            "lowBalanceThreshold is required with the credits.low event",
        ));
    }
    resolve_target(&url, state.webhooks_allow_private)
        .await
        .map_err(|e| ApiError::validation(format!("url: {e}")))?;
    let secret = new_secret();
    let new = NewWebhook {
        account_id: principal.account_id.clone(),
        url,
        events,
        secret: secret.clone(),
        low_balance_threshold: threshold,
    };
    let endpoint = match state.store.integrations().create_webhook(&new).await {
        Err(StoreError::Invalid(message)) => return Err(ApiError::validation(message)),
        other => other?,
    };
    let now = state.clock.now_ms();
    Ok((
        StatusCode::CREATED,
        Json(endpoint_body(endpoint, Some(secret), now)),
    ))
}

#[utoipa::path(
    get, path = "/external/webhooks", tag = "Webhooks",
    responses(
        (status = 200, description = "The account's endpoints, oldest first (no secrets)", body = WebhookEndpointList),
        (status = 401, description = "INVALID_API_KEY", body = unlockd_api::ApiError),
        (status = 403, description = "ACCOUNT_DISABLED: the key's account is disabled by the operator", body = unlockd_api::ApiError),
        (status = 429, description = "RATE_LIMIT_EXCEEDED", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE (the database is unavailable; retry after Retry-After seconds) or REQUEST_TIMEOUT", body = unlockd_api::ApiError),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Json<WebhookEndpointList>> {
    let now = state.clock.now_ms();
    let endpoints = state
        .store
        .integrations()
        .list_webhooks(&principal.account_id)
        .await?;
    Ok(Json(WebhookEndpointList {
        items: endpoints
            .into_iter()
            .map(|e| endpoint_body(e, None, now))
            .collect(),
    }))
}

#[utoipa::path(
    delete, path = "/external/webhooks/{id}", tag = "Webhooks",
    params(("id" = String, Path, description = "The endpoint id")),
    responses(
        (status = 204, description = "Deleted; its pending deliveries are dropped (marked failed)"),
        (status = 401, description = "INVALID_API_KEY", body = unlockd_api::ApiError),
        (status = 403, description = "ACCOUNT_DISABLED: the key's account is disabled by the operator", body = unlockd_api::ApiError),
        (status = 404, description = "WEBHOOK_NOT_FOUND (also for another account's endpoint)", body = unlockd_api::ApiError),
        (status = 429, description = "RATE_LIMIT_EXCEEDED", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE (the database is unavailable; nothing changed; retry after Retry-After seconds) or REQUEST_TIMEOUT", body = unlockd_api::ApiError),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn remove(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<StatusCode> {
    let id = path_id(path)?;
    if state
        .store
        .integrations()
        .delete_webhook(&principal.account_id, &id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(endpoint_not_found(&id))
    }
}

#[utoipa::path(
    get, path = "/external/webhooks/{id}/deliveries", tag = "Webhooks",
    params(
        ("id" = String, Path, description = "The endpoint id"),
        ("limit" = Option<u32>, Query, description = "Most deliveries shown, newest first (1-200, default 50)"),
    ),
    responses(
        (status = 200, description = "The endpoint's deliveries, newest first", body = WebhookDeliveryList),
        (status = 400, description = "VALIDATION_ERROR: limit", body = unlockd_api::ApiError),
        (status = 401, description = "INVALID_API_KEY", body = unlockd_api::ApiError),
        (status = 403, description = "ACCOUNT_DISABLED: the key's account is disabled by the operator", body = unlockd_api::ApiError),
        (status = 404, description = "WEBHOOK_NOT_FOUND (also for another account's endpoint)", body = unlockd_api::ApiError),
        (status = 429, description = "RATE_LIMIT_EXCEEDED", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE (the database is unavailable; retry after Retry-After seconds) or REQUEST_TIMEOUT", body = unlockd_api::ApiError),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn deliveries(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<WebhookDeliveryList>> {
    let id = path_id(path)?;
    let limit = match QueryParams::parse(query.as_deref()).raw("limit") {
        None => 50,
        Some(raw) => super::body::parse_whole(raw)
            .filter(|l| (1..=MAX_DELIVERIES).contains(l))
            .ok_or_else(|| {
                ApiError::validation(format!(
                    "limit must be a whole number from 1 to {MAX_DELIVERIES}"
                ))
            })?,
    };
    let rows = state
        .store
        .integrations()
        .webhook_deliveries(&principal.account_id, &id, i64::from(limit))
        .await?
        .ok_or_else(|| endpoint_not_found(&id))?;
    Ok(Json(WebhookDeliveryList {
        items: rows.into_iter().map(delivery_body).collect(),
    }))
}

#[utoipa::path(
    post, path = "/external/webhooks/{id}/deliveries/{deliveryId}/redeliver", tag = "Webhooks",
    params(
        ("id" = String, Path, description = "The endpoint id"),
        ("deliveryId" = String, Path, description = "The delivery id (its webhook-id)"),
    ),
    responses(
        (status = 202, description = "Queued again, due now, with another day of retries", body = WebhookDeliveryList),
        (status = 401, description = "INVALID_API_KEY", body = unlockd_api::ApiError),
        (status = 403, description = "ACCOUNT_DISABLED: the key's account is disabled by the operator", body = unlockd_api::ApiError),
        (status = 404, description = "DELIVERY_NOT_FOUND (also: another account's, or being sent right now)", body = unlockd_api::ApiError),
        (status = 429, description = "RATE_LIMIT_EXCEEDED", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE (the database is unavailable; nothing changed; retry after Retry-After seconds) or REQUEST_TIMEOUT", body = unlockd_api::ApiError),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn redeliver(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<(StatusCode, Json<WebhookDeliveryList>)> {
    let Path((id, delivery_id)) =
        path.map_err(|e| ApiError::validation(format!("path: {}", e.body_text())))?;
    let not_found = || {
        ApiError::not_found(
            "DELIVERY_NOT_FOUND",
            format!(
                "delivery {:?} not found (or being sent right now)",
                super::truncate(&delivery_id, 200)
            ),
        )
    };
    if id.chars().count() > 64 || delivery_id.chars().count() > 300 {
        return Err(not_found());
    }
    let queued = state
        .store
        .integrations()
        .redeliver_webhook(&principal.account_id, &id, &delivery_id)
        .await?;
    if !queued {
        return Err(not_found());
    }
    let rows = state
        .store
        .integrations()
        .webhook_deliveries(&principal.account_id, &id, i64::from(MAX_DELIVERIES))
        .await?
        .unwrap_or_default();
    Ok((
        StatusCode::ACCEPTED,
        Json(WebhookDeliveryList {
            items: rows
                .into_iter()
                .filter(|d| d.id == delivery_id)
                .map(delivery_body)
                .collect(),
        }),
    ))
}

#[utoipa::path(
    post, path = "/external/webhooks/{id}/rotate-secret", tag = "Webhooks",
    params(("id" = String, Path, description = "The endpoint id")),
    request_body(content = Option<RotateSecretRequest>, description = "Optional"),
    responses(
        (status = 200, description = "The new secret (shown once); the old one keeps signing until previousSecretExpiresAt", body = WebhookEndpointBody),
        (status = 400, description = "VALIDATION_ERROR: overlapSeconds", body = unlockd_api::ApiError),
        (status = 401, description = "INVALID_API_KEY", body = unlockd_api::ApiError),
        (status = 403, description = "ACCOUNT_DISABLED: the key's account is disabled by the operator", body = unlockd_api::ApiError),
        (status = 404, description = "WEBHOOK_NOT_FOUND (also for another account's endpoint)", body = unlockd_api::ApiError),
        (status = 429, description = "RATE_LIMIT_EXCEEDED", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE (the database is unavailable; nothing changed; retry after Retry-After seconds) or REQUEST_TIMEOUT", body = unlockd_api::ApiError),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn rotate_secret(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> ApiResult<Json<WebhookEndpointBody>> {
    let id = path_id(path)?;
    // No body, or a JSON `null`, asks for the defaults.
    let text = std::str::from_utf8(&body).map(str::trim).unwrap_or("-");
    let body = if text.is_empty() || text == "null" {
        Map::new()
    } else {
        decode_object(&body)?
    };
    let overlap = match body.get("overlapSeconds") {
        None | Some(Value::Null) => DEFAULT_OVERLAP_SECONDS,
        Some(v) => v
            .as_u64()
            // A whole number written as 5.0 is still a whole number.
            .or_else(|| {
                v.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= MAX_OVERLAP_SECONDS as f64)
                    .map(|f| f as u64)
            })
            .filter(|s| *s <= MAX_OVERLAP_SECONDS)
            .ok_or_else(|| {
                ApiError::validation(format!(
                    "overlapSeconds must be a whole number from 0 to {MAX_OVERLAP_SECONDS}"
                ))
            })?,
    };
    let now = state.clock.now_ms();
    let secret = new_secret();
    let endpoint = state
        .store
        .integrations()
        .rotate_webhook_secret(
            &principal.account_id,
            &id,
            &secret,
            now + (overlap as i64) * 1000,
        )
        .await?
        .ok_or_else(|| endpoint_not_found(&id))?;
    Ok(Json(endpoint_body(endpoint, Some(secret), now)))
}
