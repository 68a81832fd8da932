//! The operator API under `/admin/api/`: accounts, keys, credit grants, ledger verification
//! and queue state, behind the operator token (`--admin-token` / `UNLOCKD_ADMIN_TOKEN`).
//! Every change goes through the store's audited `admin_*` actions, as actor `admin-http`.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use super::body::JsonObject;
use super::error::{ApiError, ApiResult};
use super::{AppState, Unauthenticated};
use crate::domain::keys::{self, KeyPrefix};
use crate::domain::ledger::{summarize, BucketKind};
use crate::store::Grant;

/// The actor the audit log records for actions taken through this API.
pub const ACTOR: &str = "admin-http";

/// The shortest operator token `serve` accepts.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Longest account name accepted.
const MAX_NAME_CHARS: usize = 200;

/// Largest single grant (as the CLI).
const MAX_GRANT: i64 = 1_000_000_000_000;

/// Longest id accepted in a path before any lookup.
const MAX_ID_CHARS: usize = 64;

pub(super) fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/admin/api/status", get(status))
        .route(
            "/admin/api/accounts",
            get(list_accounts).post(create_account),
        )
        .route(
            "/admin/api/accounts/{accountId}/keys",
            get(list_keys).post(create_key),
        )
        .route("/admin/api/accounts/{accountId}/grants", post(grant))
        .route("/admin/api/keys/{keyId}", delete(revoke_key))
        .route("/admin/api/ledger/verify", get(verify_ledger))
        .route("/admin/api/queue", get(queue))
        .route_layer(middleware::from_fn_with_state(state, authenticate_operator))
}

fn disabled() -> ApiError {
    ApiError::not_found(
        "ADMIN_API_DISABLED",
        "The operator API is off. Start unlockd with --admin-token TOKEN (or set UNLOCKD_ADMIN_TOKEN) to enable it.",
    )
}

fn bearer(request: &Request) -> Option<&str> {
    let mut headers = request.headers().get_all("authorization").iter();
    let value = headers.next()?.to_str().ok()?;
    if headers.next().is_some() {
        return None;
    }
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether `presented` is the operator token. Both sides are hashed first so the
/// comparison takes the same time whatever the length or content of either.
pub fn token_matches(expected: &str, presented: &str) -> bool {
    let expected = Sha256::digest(expected.as_bytes());
    let presented = Sha256::digest(presented.as_bytes());
    expected.ct_eq(&presented).into()
}

/// Off (404) without a configured token; otherwise the per-IP limit, then the token.
/// A customer API key is refused with 403 saying so; anything else that is not the token
/// with 401.
async fn authenticate_operator(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = state.admin_token.clone() else {
        return disabled().into_response();
    };
    if state.ip_limiter.enabled() {
        let ip = request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_default();
        let decision = state.ip_limiter.check(&ip).await;
        if !decision.allowed {
            let mut error = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMIT_EXCEEDED",
                "Rate limit exceeded",
            );
            error.retry_after = Some(decision.retry_after);
            return error.into_response();
        }
    }
    let presented = bearer(&request).unwrap_or("");
    if token_matches(&expected, presented) {
        return next.run(request).await;
    }
    let mut response = if keys::is_well_formed(presented) {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "ADMIN_TOKEN_REQUIRED",
            "This is a customer API key; the operator API needs the operator token (--admin-token / UNLOCKD_ADMIN_TOKEN)",
        )
        .into_response()
    } else {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_ADMIN_TOKEN",
            "Missing or wrong operator token (Authorization: Bearer <the --admin-token value>)",
        )
        .into_response()
    };
    response.extensions_mut().insert(Unauthenticated);
    response
}

/// A path id: 1 to 64 printable characters; otherwise 400 naming the parameter.
fn path_id(name: &str, value: &str) -> ApiResult<()> {
    let ok = !value.is_empty()
        && value.chars().count() <= MAX_ID_CHARS
        && value.chars().all(|c| !c.is_whitespace() && !c.is_control());
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation(format!(
            "{name}: must be 1-{MAX_ID_CHARS} characters without white space"
        )))
    }
}

async fn require_account(state: &AppState, account_id: &str) -> ApiResult<()> {
    path_id("accountId", account_id)?;
    match state.store.find_account(account_id).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found(
            "ACCOUNT_NOT_FOUND",
            format!("no account {account_id}"),
        )),
    }
}

/// Refuses fields the endpoint does not know, naming the first.
fn only_fields(body: &Map<String, Value>, known: &[&str]) -> ApiResult<()> {
    match body.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(ApiError::validation(format!(
            "{unknown}: unknown field (expected one of {})",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminStatus {
    /// Always true: this answer means the token was accepted.
    pub enabled: bool,
}

#[utoipa::path(
    get, path = "/admin/api/status", tag = "Operator",
    responses(
        (status = 200, description = "The operator token is accepted", body = AdminStatus),
        (status = 401, description = "INVALID_ADMIN_TOKEN", body = unlockd_api::ApiError),
        (status = 403, description = "ADMIN_TOKEN_REQUIRED: a customer API key was sent", body = unlockd_api::ApiError),
        (status = 404, description = "ADMIN_API_DISABLED: no operator token is configured", body = unlockd_api::ApiError),
        (status = 429, description = "RATE_LIMIT_EXCEEDED", body = unlockd_api::ApiError),
    ),
    security(("adminToken" = []))
)]
pub(super) async fn status() -> Json<AdminStatus> {
    Json(AdminStatus { enabled: true })
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminAccount {
    pub account_id: String,
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
    pub active_keys: i64,
    pub balance: unlockd_api::CreditBalance,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminAccountList {
    pub items: Vec<AdminAccount>,
}

#[utoipa::path(
    get, path = "/admin/api/accounts", tag = "Operator",
    responses(
        (status = 200, description = "Every account, oldest first, with its balance", body = AdminAccountList),
        (status = 401, description = "INVALID_ADMIN_TOKEN", body = unlockd_api::ApiError),
        (status = 403, description = "ADMIN_TOKEN_REQUIRED: a customer API key was sent", body = unlockd_api::ApiError),
        (status = 404, description = "ADMIN_API_DISABLED", body = unlockd_api::ApiError),
        (status = 429, description = "RATE_LIMIT_EXCEEDED", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = unlockd_api::ApiError),
    ),
    security(("adminToken" = []))
)]
pub(super) async fn list_accounts(
    State(state): State<AppState>,
) -> ApiResult<Json<AdminAccountList>> {
    let now = state.clock.now_ms();
    let mut items = Vec::new();
    for (account, active_keys) in state.store.list_accounts().await? {
        let balance = summarize(&state.store.buckets(&account.id).await?, now);
        items.push(AdminAccount {
            account_id: account.id,
            name: account.name,
            created_at: rfc3339(account.created_at),
            active_keys,
            balance,
        });
    }
    Ok(Json(AdminAccountList { items }))
}

/// `{"name": "...", "credits": N}`; `credits` (gift, default 0) is optional.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CreateAccountRequest {
    pub name: String,
    pub credits: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedAccount {
    pub account_id: String,
    pub name: String,
    pub key_id: String,
    /// The account's first API key, shown this once.
    pub api_key: String,
}

fn required_name(body: &Map<String, Value>) -> ApiResult<String> {
    let name = match body.get("name") {
        Some(Value::String(name)) => name.trim().to_string(),
        Some(_) => return Err(ApiError::validation("name: must be a string")),
        None => return Err(ApiError::validation("name: required")),
    };
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::validation(format!(
            "name: must be 1-{MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::validation(
            "name: must not contain control characters",
        ));
    }
    Ok(name)
}

fn integer(body: &Map<String, Value>, field: &str, min: i64, max: i64) -> ApiResult<Option<i64>> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        // JSON has one number type: 5.0 is the integer 5 (as JSON Schema counts it).
        Some(value) => match value.as_i64().or_else(|| {
            value
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() <= MAX_GRANT as f64)
                .map(|f| f as i64)
        }) {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::validation(format!(
                "{field}: must be an integer from {min} to {max}"
            ))),
        },
    }
}

#[utoipa::path(
    post, path = "/admin/api/accounts", tag = "Operator",
    request_body(content = CreateAccountRequest, description = "name (1-200 characters) and optional gift credits"),
    responses(
        (status = 201, description = "The account and its first API key (shown once)", body = CreatedAccount),
        (status = 400, description = "VALIDATION_ERROR naming the field", body = unlockd_api::ApiError),
        (status = 401, description = "INVALID_ADMIN_TOKEN", body = unlockd_api::ApiError),
        (status = 403, description = "ADMIN_TOKEN_REQUIRED: a customer API key was sent", body = unlockd_api::ApiError),
        (status = 404, description = "ADMIN_API_DISABLED", body = unlockd_api::ApiError),
        (status = 413, description = "PAYLOAD_TOO_LARGE", body = unlockd_api::ApiError),
        (status = 415, description = "UNSUPPORTED_MEDIA_TYPE", body = unlockd_api::ApiError),
        (status = 429, description = "RATE_LIMIT_EXCEEDED", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = unlockd_api::ApiError),
    ),
    security(("adminToken" = []))
)]
pub(super) async fn create_account(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<CreatedAccount>)> {
    only_fields(&body, &["name", "credits"])?;
    let name = required_name(&body)?;
    let credits = integer(&body, "credits", 0, MAX_GRANT)?.unwrap_or(0);
    let key = keys::generate(KeyPrefix::Sk);
    let account = state
        .store
        .admin_create_account(ACTOR, &name, credits, &key, KeyPrefix::Sk)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedAccount {
            account_id: account.id,
            name: account.name,
            key_id: key.key_id.clone(),
            api_key: key.secret.clone(),
        }),
    ))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminKey {
    pub key_id: String,
    pub prefix: String,
    /// RFC 3339.
    pub created_at: String,
    pub revoked_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminKeyList {
    pub items: Vec<AdminKey>,
}

#[utoipa::path(
    get, path = "/admin/api/accounts/{accountId}/keys", tag = "Operator",
    params(("accountId" = String, Path, description = "The account's id")),
    responses(
        (status = 200, description = "The account's keys (ids only; secrets are never stored)", body = AdminKeyList),
        (status = 400, description = "VALIDATION_ERROR", body = unlockd_api::ApiError),
        (status = 401, description = "INVALID_ADMIN_TOKEN", body = unlockd_api::ApiError),
        (status = 403, description = "ADMIN_TOKEN_REQUIRED: a customer API key was sent", body = unlockd_api::ApiError),
        (status = 404, description = "ACCOUNT_NOT_FOUND or ADMIN_API_DISABLED", body = unlockd_api::ApiError),
        (status = 429, description = "RATE_LIMIT_EXCEEDED", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = unlockd_api::ApiError),
    ),
    security(("adminToken" = []))
)]
pub(super) async fn list_keys(
    State(state): State<AppState>,
    Path(account_id): Path<String>,
) -> ApiResult<Json<AdminKeyList>> {
    require_account(&state, &account_id).await?;
    let items = state
        .store
        .list_api_keys(&account_id)
        .await?
        .into_iter()
        .map(|k| AdminKey {
            key_id: k.key_id,
            prefix: k.prefix,
            created_at: rfc3339(k.created_at),
            revoked_at: k.revoked_at.map(rfc3339),
        })
        .collect();
    Ok(Json(AdminKeyList { items }))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedKey {
    pub account_id: String,
    pub key_id: String,
    /// The key, shown this once.
    pub api_key: String,
}

#[utoipa::path(
    post, path = "/admin/api/accounts/{accountId}/keys", tag = "Operator",
    params(("accountId" = String, Path, description = "The account's id")),
    responses(
        (status = 201, description = "A new API key (shown once)", body = CreatedKey),
        (status = 400, description = "VALIDATION_ERROR", body = unlockd_api::ApiError),
        (status = 401, description = "INVALID_ADMIN_TOKEN", body = unlockd_api::ApiError),
        (status = 403, description = "ADMIN_TOKEN_REQUIRED: a customer API key was sent", body = unlockd_api::ApiError),
        (status = 404, description = "ACCOUNT_NOT_FOUND or ADMIN_API_DISABLED", body = unlockd_api::ApiError),
        (status = 429, description = "RATE_LIMIT_EXCEEDED", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = unlockd_api::ApiError),
    ),
    security(("adminToken" = []))
)]
pub(super) async fn create_key(
    State(state): State<AppState>,
    Path(account_id): Path<String>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    require_account(&state, &account_id).await?;
    let key = keys::generate(KeyPrefix::Sk);
    state
        .store
        .admin_add_api_key(ACTOR, &account_id, &key, KeyPrefix::Sk)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            account_id,
            key_id: key.key_id.clone(),
            api_key: key.secret.clone(),
        }),
    ))
}

#[utoipa::path(
    delete, path = "/admin/api/keys/{keyId}", tag = "Operator",
    params(("keyId" = String, Path, description = "The key's id (the 16 hex digits after sk_)")),
    responses(
        (status = 204, description = "Revoked; the key is refused from now on"),
        (status = 400, description = "VALIDATION_ERROR", body = unlockd_api::ApiError),
        (status = 401, description = "INVALID_ADMIN_TOKEN", body = unlockd_api::ApiError),
        (status = 403, description = "ADMIN_TOKEN_REQUIRED: a customer API key was sent", body = unlockd_api::ApiError),
        (status = 404, description = "KEY_NOT_FOUND (unknown or already revoked) or ADMIN_API_DISABLED", body = unlockd_api::ApiError),
        (status = 429, description = "RATE_LIMIT_EXCEEDED", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = unlockd_api::ApiError),
    ),
    security(("adminToken" = []))
)]
pub(super) async fn revoke_key(
    State(state): State<AppState>,
    Path(key_id): Path<String>,
) -> ApiResult<StatusCode> {
    path_id("keyId", &key_id)?;
    if state.store.admin_revoke_api_key(ACTOR, &key_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(
            "KEY_NOT_FOUND",
            format!("no active key {key_id}"),
        ))
    }
}

/// `{"amount": N, "bucket": "gift"|"addon"|"subscription", "expires_at": RFC 3339}`;
/// `expires_at` is required for subscription and add-on credits and refused for gift.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct GrantRequest {
    pub amount: i64,
    pub bucket: Option<String>,
    pub expires_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantResult {
    pub bucket_id: String,
    pub balance: unlockd_api::CreditBalance,
}

fn parse_grant(body: &Map<String, Value>, account_id: &str, now_ms: i64) -> ApiResult<Grant> {
    only_fields(body, &["amount", "bucket", "expires_at"])?;
    let amount = integer(body, "amount", 1, MAX_GRANT)?
        .ok_or_else(|| ApiError::validation("amount: required"))?;
    let kind = match body.get("bucket") {
        None | Some(Value::Null) => BucketKind::Gift,
        Some(Value::String(text)) => BucketKind::parse(text).ok_or_else(|| {
            ApiError::validation("bucket: must be one of subscription, addon, gift")
        })?,
        Some(_) => return Err(ApiError::validation("bucket: must be a string")),
    };
    let expires_at = match body.get("expires_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.trim().is_empty() => None,
        Some(Value::String(text)) => Some(
            chrono::DateTime::parse_from_rfc3339(text.trim())
                .map_err(|_| {
                    ApiError::validation(
                        "expires_at: must be an RFC 3339 time, such as 2027-01-31T00:00:00Z",
                    )
                })?
                .timestamp_millis(),
        ),
        Some(_) => return Err(ApiError::validation("expires_at: must be a string")),
    };
    match (kind, expires_at) {
        (BucketKind::Gift, Some(_)) => {
            return Err(ApiError::validation(
                "expires_at: gift credits never expire; leave it out",
            ))
        }
        (BucketKind::Subscription | BucketKind::Addon, None) => {
            return Err(ApiError::validation(format!(
                "expires_at: required for {} credits",
                kind.as_str()
            )))
        }
        // Well-formed but already over: the clock, not the request's shape, refuses it.
        (_, Some(at)) if at <= now_ms => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "EXPIRY_IN_PAST",
                "expires_at: is in the past; credits would expire at once",
            ))
        }
        _ => {}
    }
    Ok(Grant {
        account_id: account_id.to_string(),
        kind,
        amount,
        expires_at,
    })
}

#[utoipa::path(
    post, path = "/admin/api/accounts/{accountId}/grants", tag = "Operator",
    params(("accountId" = String, Path, description = "The account's id")),
    request_body(content = GrantRequest, description = "amount (1 to 10^12), bucket (default gift), expires_at (RFC 3339; subscription and addon only)"),
    responses(
        (status = 201, description = "The new bucket and the account's balance after it", body = GrantResult),
        (status = 400, description = "VALIDATION_ERROR naming the field", body = unlockd_api::ApiError),
        (status = 401, description = "INVALID_ADMIN_TOKEN", body = unlockd_api::ApiError),
        (status = 403, description = "ADMIN_TOKEN_REQUIRED: a customer API key was sent", body = unlockd_api::ApiError),
        (status = 404, description = "ACCOUNT_NOT_FOUND or ADMIN_API_DISABLED", body = unlockd_api::ApiError),
        (status = 413, description = "PAYLOAD_TOO_LARGE", body = unlockd_api::ApiError),
        (status = 415, description = "UNSUPPORTED_MEDIA_TYPE", body = unlockd_api::ApiError),
        (status = 422, description = "EXPIRY_IN_PAST: expires_at is already over", body = unlockd_api::ApiError),
        (status = 429, description = "RATE_LIMIT_EXCEEDED", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = unlockd_api::ApiError),
    ),
    security(("adminToken" = []))
)]
pub(super) async fn grant(
    State(state): State<AppState>,
    Path(account_id): Path<String>,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<GrantResult>)> {
    path_id("accountId", &account_id)?;
    let grant = parse_grant(&body, &account_id, state.clock.now_ms())?;
    require_account(&state, &account_id).await?;
    let bucket_id = state.store.admin_grant_credits(ACTOR, &grant).await?;
    let balance = summarize(
        &state.store.buckets(&account_id).await?,
        state.clock.now_ms(),
    );
    Ok((
        StatusCode::CREATED,
        Json(GrantResult { bucket_id, balance }),
    ))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LedgerVerification {
    /// True when every billing invariant holds.
    pub ok: bool,
    pub violations: Vec<String>,
}

#[utoipa::path(
    get, path = "/admin/api/ledger/verify", tag = "Operator",
    responses(
        (status = 200, description = "Every billing invariant checked (as `unlockd admin ledger verify`)", body = LedgerVerification),
        (status = 401, description = "INVALID_ADMIN_TOKEN", body = unlockd_api::ApiError),
        (status = 403, description = "ADMIN_TOKEN_REQUIRED: a customer API key was sent", body = unlockd_api::ApiError),
        (status = 404, description = "ADMIN_API_DISABLED", body = unlockd_api::ApiError),
        (status = 429, description = "RATE_LIMIT_EXCEEDED", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = unlockd_api::ApiError),
    ),
    security(("adminToken" = []))
)]
pub(super) async fn verify_ledger(
    State(state): State<AppState>,
) -> ApiResult<Json<LedgerVerification>> {
    let violations = state.store.verify_ledger().await?;
    Ok(Json(LedgerVerification {
        ok: violations.is_empty(),
        violations,
    }))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueState {
    /// Tasks pending or processing.
    pub live_tasks: i64,
    /// Items not yet settled.
    pub unsettled_items: i64,
    /// Credits held by open tasks.
    pub credits_held: i64,
    /// Kept tasks by status (email and phone together; finished tasks until pruned).
    pub tasks: TaskCounts,
}

#[derive(Serialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct TaskCounts {
    pub pending: i64,
    pub processing: i64,
    pub completed: i64,
    pub failed: i64,
}

#[utoipa::path(
    get, path = "/admin/api/queue", tag = "Operator",
    responses(
        (status = 200, description = "The shared task queue", body = QueueState),
        (status = 401, description = "INVALID_ADMIN_TOKEN", body = unlockd_api::ApiError),
        (status = 403, description = "ADMIN_TOKEN_REQUIRED: a customer API key was sent", body = unlockd_api::ApiError),
        (status = 404, description = "ADMIN_API_DISABLED", body = unlockd_api::ApiError),
        (status = 429, description = "RATE_LIMIT_EXCEEDED", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = unlockd_api::ApiError),
    ),
    security(("adminToken" = []))
)]
pub(super) async fn queue(State(state): State<AppState>) -> ApiResult<Json<QueueState>> {
    let gauges = state.store.queue_gauges().await?;
    let mut tasks = TaskCounts::default();
    for (_kind, status, count) in state.store.task_counts().await? {
        let slot = match status.as_str() {
            "pending" => &mut tasks.pending,
            "processing" => &mut tasks.processing,
            "completed" => &mut tasks.completed,
            "failed" => &mut tasks.failed,
            _ => continue,
        };
        *slot += count;
    }
    Ok(Json(QueueState {
        live_tasks: gauges.live_tasks,
        unsettled_items: gauges.unsettled_items,
        credits_held: gauges.credits_held,
        tasks,
    }))
}

/// The request bodies' exact rules, which the generated schemas cannot express: lengths,
/// ranges, which buckets take an expiry, no unknown fields. Written into `doc` in place of
/// the generated `CreateAccountRequest` and `GrantRequest`.
pub fn declare_body_schemas(doc: &mut Value) {
    use serde_json::json;
    let Some(schemas) = doc
        .get_mut("components")
        .and_then(|c| c.get_mut("schemas"))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let printable = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$";
    schemas.insert(
        "CreateAccountRequest".into(),
        json!({
            "description": "A new account: its name and, optionally, gift credits (default 0).",
            "type": "object",
            "required": ["name"],
            "additionalProperties": false,
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS, "pattern": printable},
                "credits": {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_GRANT},
            },
        }),
    );
    let amount = json!({"type": "integer", "minimum": 1, "maximum": MAX_GRANT});
    schemas.insert(
        "GrantRequest".into(),
        json!({
            "description": "Credits into a new bucket: gift credits never expire; add-on and subscription credits need expires_at (RFC 3339, in the future, else 422).",
            "oneOf": [
                {
                    "type": "object",
                    "required": ["amount"],
                    "additionalProperties": false,
                    "properties": {
                        "amount": amount,
                        "bucket": {"enum": ["gift", null]},
                        "expires_at": {"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 0}]},
                    },
                },
                {
                    "type": "object",
                    "required": ["amount", "bucket", "expires_at"],
                    "additionalProperties": false,
                    "properties": {
                        "amount": amount,
                        "bucket": {"enum": ["addon", "subscription"]},
                        "expires_at": {
                            "type": "string",
                            "format": "date-time",
                            "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$",
                        },
                    },
                },
            ],
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comparison_accepts_only_the_token() {
        assert!(token_matches(
            "a-long-operator-token",
            "a-long-operator-token"
        ));
        assert!(!token_matches(
            "a-long-operator-token",
            "a-long-operator-tokeN"
        ));
        assert!(!token_matches(
            "a-long-operator-token",
            "a-long-operator-token "
        ));
        assert!(!token_matches("a-long-operator-token", ""));
    }

    #[test]
    fn grants_name_the_wrong_field() {
        let body = |v: Value| v.as_object().unwrap().clone();
        let now = 1_800_000_000_000;
        let err = |v| parse_grant(&body(v), "a", now).unwrap_err().message;
        assert!(err(serde_json::json!({})).starts_with("amount"));
        assert!(err(serde_json::json!({"amount": 0})).starts_with("amount"));
        assert!(err(serde_json::json!({"amount": 5, "bucket": "x"})).starts_with("bucket"));
        assert!(err(serde_json::json!({"amount": 5, "bucket": "addon"})).starts_with("expires_at"));
        assert!(err(serde_json::json!({"amount": 5, "extra": 1})).starts_with("extra"));
        assert!(err(serde_json::json!({"amount": 5.5})).starts_with("amount"));
        let whole = parse_grant(&body(serde_json::json!({"amount": 5.0})), "a", now).unwrap();
        assert_eq!(whole.amount, 5);
        let ok = parse_grant(
            &body(serde_json::json!({"amount": 5, "bucket": "addon", "expires_at": "2030-01-01T00:00:00Z"})),
            "a",
            now,
        )
        .unwrap();
        assert_eq!(ok.kind, BucketKind::Addon);
        assert!(ok.expires_at.is_some());
    }
}
