//! `POST /external/contacts/unlock` and `GET /external/contacts/unlock-tasks/{taskId}`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{Map, Value};
use unlockd_api::{
    CallSource, ItemStatus, SkippedDetail, SubmissionStatus, TaskCredits, TaskSummary,
    UnlockSubmission, UnlockTask, UnlockTaskItem,
};

use super::body::{query_pairs, required_string, JsonObject};
use super::error::{current_request_id, ApiError, ApiResult};
use super::AppState;
use crate::clock::rfc3339;
use crate::domain::unlock::{dedupe, UnlockDecision, MAX_EVENT_ID_CHARS, MAX_PERSONNEL_IDS};
use crate::domain::ContactKind;
use crate::store::integrators::{
    request_hash, IdempotencyKey, KeyReservation, KeyedCreate, ResponseRenderer, StoredResponse,
};
use crate::store::{CreateResult, NewUnlock, Principal, TaskView};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/external/contacts/unlock", post(create_email))
        .route(
            "/external/contacts/unlock-tasks/{task_id}",
            get(get_email_task),
        )
        .route("/external/contacts/unlock-phone", post(create_phone))
        .route(
            "/external/contacts/unlock-phone-tasks/{task_id}",
            get(get_phone_task),
        )
}

#[utoipa::path(
    post, path = "/external/contacts/unlock", tag = "Contacts",
    params(
        ("x-call-source" = Option<String>, Header, description = "api (default) or agent"),
        ("Idempotency-Key" = Option<String>, Header, description = "*extension*: 1-255 printable ASCII characters, scoped to the account. A retry with the same key and body within 24 hours replays the first answer (status and body, errors included) with `Idempotent-Replayed: true` and charges nothing more."),
    ),
    request_body = unlockd_api::UnlockRequest,
    responses(
        (status = 201, description = "accepted: a task was created (credits held); success: nothing chargeable, no task. A replayed answer (Idempotency-Key) carries `Idempotent-Replayed: true`", body = UnlockSubmission,
            headers(("Idempotent-Replayed" = String, description = "*extension*: `true` on an answer replayed for a repeated Idempotency-Key"))),
        (status = 400, description = "VALIDATION_ERROR or TOO_MANY_PERSONNEL_IDS", body = unlockd_api::ApiError),
        (status = 401, description = "INVALID_API_KEY", body = unlockd_api::ApiError),
        (status = 403, description = "ACCOUNT_DISABLED: the key's account is disabled by the operator", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE (the database is unavailable; nothing changed; retry after Retry-After seconds) or REQUEST_TIMEOUT", body = unlockd_api::ApiError),
        (status = 402, description = "INSUFFICIENT_CREDITS, with requiredCredits and availableCredits", body = unlockd_api::ApiError),
        (status = 404, description = "EVENT_NOT_FOUND or PERSONNEL_NOT_FOUND", body = unlockd_api::ApiError),
        (status = 409, description = "UNLOCK_IN_PROGRESS, with taskIds; *extension*: IDEMPOTENCY_KEY_IN_USE while the first request with this Idempotency-Key is still being processed", body = unlockd_api::ApiError),
        (status = 422, description = "*extension*: IDEMPOTENCY_KEY_REUSED: the Idempotency-Key was used with a different request", body = unlockd_api::ApiError),
        (status = 413, description = "PAYLOAD_TOO_LARGE", body = unlockd_api::ApiError),
        (status = 415, description = "UNSUPPORTED_MEDIA_TYPE: the body must be sent as application/json", body = unlockd_api::ApiError),
        (status = 429, description = "RATE_LIMIT_EXCEEDED", body = unlockd_api::ApiError),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn create_email(
    state: State<AppState>,
    principal: Extension<Principal>,
    headers: HeaderMap,
    body: JsonObject,
) -> ApiResult<Response> {
    create(state, principal, headers, body, ContactKind::Email).await
}

#[utoipa::path(
    post, path = "/external/contacts/unlock-phone", tag = "Contacts",
    params(
        ("x-call-source" = Option<String>, Header, description = "api (default) or agent"),
        ("Idempotency-Key" = Option<String>, Header, description = "*extension*: 1-255 printable ASCII characters, scoped to the account. A retry with the same key and body within 24 hours replays the first answer (status and body, errors included) with `Idempotent-Replayed: true` and charges nothing more."),
    ),
    request_body = unlockd_api::UnlockRequest,
    responses(
        (status = 201, description = "accepted: a task was created (credits held); success: nothing chargeable, no task. A replayed answer (Idempotency-Key) carries `Idempotent-Replayed: true`", body = UnlockSubmission,
            headers(("Idempotent-Replayed" = String, description = "*extension*: `true` on an answer replayed for a repeated Idempotency-Key"))),
        (status = 400, description = "VALIDATION_ERROR or TOO_MANY_PERSONNEL_IDS", body = unlockd_api::ApiError),
        (status = 401, description = "INVALID_API_KEY", body = unlockd_api::ApiError),
        (status = 403, description = "ACCOUNT_DISABLED: the key's account is disabled by the operator", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE (the database is unavailable; nothing changed; retry after Retry-After seconds) or REQUEST_TIMEOUT", body = unlockd_api::ApiError),
        (status = 402, description = "INSUFFICIENT_CREDITS, with requiredCredits and availableCredits", body = unlockd_api::ApiError),
        (status = 404, description = "EVENT_NOT_FOUND or PERSONNEL_NOT_FOUND", body = unlockd_api::ApiError),
        (status = 409, description = "UNLOCK_IN_PROGRESS, with taskIds; *extension*: IDEMPOTENCY_KEY_IN_USE while the first request with this Idempotency-Key is still being processed", body = unlockd_api::ApiError),
        (status = 422, description = "*extension*: IDEMPOTENCY_KEY_REUSED: the Idempotency-Key was used with a different request", body = unlockd_api::ApiError),
        (status = 413, description = "PAYLOAD_TOO_LARGE", body = unlockd_api::ApiError),
        (status = 415, description = "UNSUPPORTED_MEDIA_TYPE: the body must be sent as application/json", body = unlockd_api::ApiError),
        (status = 429, description = "RATE_LIMIT_EXCEEDED", body = unlockd_api::ApiError),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn create_phone(
    state: State<AppState>,
    principal: Extension<Principal>,
    headers: HeaderMap,
    body: JsonObject,
) -> ApiResult<Response> {
    create(state, principal, headers, body, ContactKind::Phone).await
}

#[utoipa::path(
    get, path = "/external/contacts/unlock-tasks/{taskId}", tag = "Contacts",
    params(
        ("taskId" = String, Path, description = "The task_id of the create call"),
        ("wait" = Option<u32>, Query, description = "Long poll: answer when the task is terminal or after this many seconds (0-30)"),
    ),
    responses(
        (status = 200, description = "The task, its items and (on unlocked items) emails", body = UnlockTask),
        (status = 400, description = "Invalid wait", body = unlockd_api::ApiError),
        (status = 401, description = "INVALID_API_KEY", body = unlockd_api::ApiError),
        (status = 403, description = "ACCOUNT_DISABLED: the key's account is disabled by the operator", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE (the database is unavailable; nothing changed; retry after Retry-After seconds) or REQUEST_TIMEOUT", body = unlockd_api::ApiError),
        (status = 404, description = "TASK_NOT_FOUND (also for another account's task)", body = unlockd_api::ApiError),
        (status = 429, description = "RATE_LIMIT_EXCEEDED", body = unlockd_api::ApiError),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn get_email_task(
    state: State<AppState>,
    principal: Extension<Principal>,
    path: Result<Path<String>, PathRejection>,
    query: RawQuery,
) -> ApiResult<Json<UnlockTask>> {
    get_task(state, principal, path, query, ContactKind::Email).await
}

#[utoipa::path(
    get, path = "/external/contacts/unlock-phone-tasks/{taskId}", tag = "Contacts",
    params(
        ("taskId" = String, Path, description = "The task_id of the create call"),
        ("wait" = Option<u32>, Query, description = "Long poll: answer when the task is terminal or after this many seconds (0-30)"),
    ),
    responses(
        (status = 200, description = "The task, its items and (on unlocked items) phones", body = UnlockTask),
        (status = 400, description = "Invalid wait", body = unlockd_api::ApiError),
        (status = 401, description = "INVALID_API_KEY", body = unlockd_api::ApiError),
        (status = 403, description = "ACCOUNT_DISABLED: the key's account is disabled by the operator", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE (the database is unavailable; nothing changed; retry after Retry-After seconds) or REQUEST_TIMEOUT", body = unlockd_api::ApiError),
        (status = 404, description = "TASK_NOT_FOUND (also for another account's task)", body = unlockd_api::ApiError),
        (status = 429, description = "RATE_LIMIT_EXCEEDED", body = unlockd_api::ApiError),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn get_phone_task(
    state: State<AppState>,
    principal: Extension<Principal>,
    path: Result<Path<String>, PathRejection>,
    query: RawQuery,
) -> ApiResult<Json<UnlockTask>> {
    get_task(state, principal, path, query, ContactKind::Phone).await
}

/// Longest task id; longer ones are 404 without a look-up.
pub const MAX_TASK_ID_CHARS: usize = 64;

/// Longest `?wait=` a long poll may ask for, in seconds.
pub const MAX_WAIT_SECONDS: u64 = 30;

/// Why an unlock body was refused; precheck answers "too many" as a reason, not an error.
#[derive(Debug)]
pub(super) enum UnlockParseError {
    TooMany(usize),
    Invalid(ApiError),
}

impl From<ApiError> for UnlockParseError {
    fn from(e: ApiError) -> Self {
        UnlockParseError::Invalid(e)
    }
}

impl From<UnlockParseError> for ApiError {
    fn from(e: UnlockParseError) -> Self {
        match e {
            UnlockParseError::Invalid(e) => e,
            UnlockParseError::TooMany(n) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "TOO_MANY_PERSONNEL_IDS",
                format!(
                    "personnel_ids has {n} entries; at most {MAX_PERSONNEL_IDS} are allowed per request"
                ),
            ),
        }
    }
}

/// The create body, parsed: `event_id` and deduplicated `personnel_ids`.
pub(super) fn parse_unlock(
    body: &Map<String, Value>,
) -> Result<(String, Vec<String>), UnlockParseError> {
    let event_ref = required_string(body, "event_id", MAX_EVENT_ID_CHARS)?;
    let ids = match body.get("personnel_ids") {
        None | Some(Value::Null) => {
            return Err(ApiError::validation("personnel_ids is required").into())
        }
        Some(Value::Array(ids)) => ids,
        Some(_) => {
            return Err(ApiError::validation("personnel_ids must be an array of strings").into())
        }
    };
    if ids.len() > MAX_PERSONNEL_IDS {
        return Err(UnlockParseError::TooMany(ids.len()));
    }
    if ids.is_empty() {
        return Err(ApiError::validation("personnel_ids must not be empty").into());
    }
    let ids = ids
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) => Ok(s.clone()),
            _ => Err(ApiError::validation(format!(
                "personnel_ids[{i}] must be a string"
            ))),
        })
        .collect::<ApiResult<Vec<String>>>()?;
    Ok((event_ref, dedupe(ids)))
}

/// Skipped ids in request order, with their classes.
fn skipped_fields(
    requested: &[String],
    skipped: SkippedDetail,
) -> (Option<Vec<String>>, Option<SkippedDetail>) {
    if skipped.is_empty() {
        return (None, None);
    }
    let all: std::collections::HashSet<&String> = skipped.all_ids().collect();
    let ids = requested
        .iter()
        .filter(|id| all.contains(id))
        .cloned()
        .collect();
    (Some(ids), Some(skipped))
}

async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
    kind: ContactKind,
) -> ApiResult<Response> {
    let idempotency_key = idempotency_key(&headers)?;
    let (event_ref, personnel_ids) = parse_unlock(&body).map_err(ApiError::from)?;
    let call_source =
        CallSource::from_header(headers.get("x-call-source").and_then(|v| v.to_str().ok()));
    let request = NewUnlock {
        account_id: principal.account_id,
        kind,
        event_ref,
        personnel_ids,
        call_source,
        price: state.pricing.price(kind),
    };
    let Some(key) = idempotency_key else {
        let result = state.store.create_unlock_task(&request).await?;
        note_created(&state, &request, &result);
        let (status, submission) = respond(&request, result)?;
        return Ok((status, Json(submission)).into_response());
    };
    let key = IdempotencyKey {
        account_id: request.account_id.clone(),
        request_hash: request_hash(kind, &request.event_ref, &request.personnel_ids),
        key,
    };
    let lock_ms = state.limits.idempotency_lock.as_millis() as i64;
    let token = match state.store.reserve_idempotency_key(&key, lock_ms).await? {
        KeyReservation::Reserved { token } => token,
        KeyReservation::Replay(stored) => return Ok(stored_response(stored, true)),
        KeyReservation::Mismatch => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "IDEMPOTENCY_KEY_REUSED",
                "this Idempotency-Key was used with a different request body",
            ))
        }
        KeyReservation::InFlight => return Err(key_in_use()),
    };
    let trace_id = current_request_id();
    let rendered = request.clone();
    let render: ResponseRenderer =
        Arc::new(
            move |result: &CreateResult| match respond(&rendered, result.clone()) {
                Ok((status, submission)) => StoredResponse {
                    status: status.as_u16(),
                    body: serde_json::to_string(&submission).unwrap_or_default(),
                },
                Err(error) => StoredResponse {
                    status: error.status.as_u16(),
                    body: error.envelope(trace_id.clone()).to_string(),
                },
            },
        );
    match state
        .store
        .create_unlock_task_keyed(&request, &key, &token, render)
        .await
    {
        Ok(KeyedCreate::Done(result, stored)) => {
            note_created(&state, &request, &result);
            Ok(stored_response(stored, false))
        }
        Ok(KeyedCreate::ReservationLost) => Err(key_in_use()),
        Err(e) => {
            // Nothing was created: free the key so the retry runs afresh (if this fails
            // too, the reservation runs out after the lock time).
            if let Err(release) = state.store.release_idempotency_key(&key, &token).await {
                tracing::warn!(error = %release, "idempotency key not released");
            }
            Err(e.into())
        }
    }
}

/// Longest `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

/// The `Idempotency-Key` header: 1-255 printable ASCII characters, or absent.
fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    if bytes.is_empty()
        || bytes.len() > MAX_IDEMPOTENCY_KEY_CHARS
        || !bytes.iter().all(|b| (0x20..=0x7e).contains(b))
    {
        return Err(ApiError::validation(format!(
            "Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII characters"
        )));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

fn key_in_use() -> ApiError {
    let mut error = ApiError::new(
        StatusCode::CONFLICT,
        "IDEMPOTENCY_KEY_IN_USE",
        "a request with this Idempotency-Key is still being processed; retry shortly",
    );
    error.retry_after = Some(1);
    error
}

/// A recorded answer, as sent first and as replayed.
fn stored_response(stored: StoredResponse, replayed: bool) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        stored.body,
    )
        .into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Logs and counts a task this request created.
fn note_created(state: &AppState, request: &NewUnlock, result: &CreateResult) {
    if let CreateResult::Decided {
        decision: UnlockDecision::Create {
            chargeable, cost, ..
        },
        task_id: Some(task_id),
    } = result
    {
        tracing::info!(%task_id, kind = %request.kind, items = chargeable.len(), cost, call_source = request.call_source.as_str(), "unlock task created");
        state.signals.work_available();
        state.metrics.task_created(request.kind);
    }
}

/// The answer to a create's result.
fn respond(request: &NewUnlock, result: CreateResult) -> ApiResult<(StatusCode, UnlockSubmission)> {
    let (decision, task_id) = match result {
        CreateResult::EventNotFound => {
            return Err(ApiError::not_found(
                "EVENT_NOT_FOUND",
                format!("event {:?} not found", request.event_ref),
            ))
        }
        CreateResult::Decided { decision, task_id } => (decision, task_id),
    };
    let submission = |status, task_id: Option<String>, skipped| {
        let (skipped_personnel_ids, skipped_detail) =
            skipped_fields(&request.personnel_ids, skipped);
        UnlockSubmission {
            status,
            job_id: task_id.clone(),
            task_id,
            skipped_personnel_ids,
            skipped_detail,
        }
    };
    match decision {
        UnlockDecision::Create { skipped, .. } => {
            let task_id = task_id.ok_or_else(ApiError::internal)?;
            Ok((
                StatusCode::CREATED,
                submission(SubmissionStatus::Accepted, Some(task_id), skipped),
            ))
        }
        UnlockDecision::NothingToCharge { skipped } => Ok((
            StatusCode::CREATED,
            submission(SubmissionStatus::Success, None, skipped),
        )),
        UnlockDecision::InProgress { task_ids, .. } => Err(ApiError::new(
            StatusCode::CONFLICT,
            "UNLOCK_IN_PROGRESS",
            format!(
                "every chargeable person is already being unlocked by task(s) {}",
                task_ids.join(", ")
            ),
        )
        .with("taskIds", task_ids)),
        UnlockDecision::PersonnelNotFound { .. } => Err(ApiError::not_found(
            "PERSONNEL_NOT_FOUND",
            "none of personnel_ids names a known person",
        )),
        UnlockDecision::InsufficientCredits {
            required,
            available,
            ..
        } => Err(ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            "INSUFFICIENT_CREDITS",
            format!("this unlock needs {required} credits; {available} are available"),
        )
        .with("requiredCredits", required)
        .with("availableCredits", available)),
    }
}

pub(super) fn parse_wait(raw: Option<&str>) -> ApiResult<Option<Duration>> {
    let Some((_, value)) = query_pairs(raw).into_iter().find(|(k, _)| k == "wait") else {
        return Ok(None);
    };
    match super::body::parse_whole(&value).map(u64::from) {
        Some(seconds) if seconds <= MAX_WAIT_SECONDS => Ok(Some(Duration::from_secs(seconds))),
        _ => Err(ApiError::validation(format!(
            "wait must be a whole number of seconds from 0 to {MAX_WAIT_SECONDS}"
        ))),
    }
}

pub(super) fn task_body(view: TaskView) -> UnlockTask {
    let mut summary = TaskSummary {
        total: view.items.len() as u32,
        ..TaskSummary::default()
    };
    let items = view
        .items
        .into_iter()
        .map(|item| {
            match item.status {
                ItemStatus::Pending => summary.pending += 1,
                ItemStatus::Processing => summary.processing += 1,
                ItemStatus::Unlocked => summary.unlocked += 1,
                ItemStatus::Failed => summary.failed += 1,
            }
            let value = item.value.filter(|_| item.status == ItemStatus::Unlocked);
            let (email, phone) = match view.kind {
                ContactKind::Email => (value, None),
                ContactKind::Phone => (None, value),
            };
            UnlockTaskItem {
                personnel_id: item.personnel_id,
                status: item.status,
                email,
                phone,
                error_code: item.error_code,
                charged: item.charged,
            }
        })
        .collect();
    UnlockTask {
        task_id: view.id,
        task_status: view.status,
        items,
        event_id: Some(view.event_ref),
        call_source: Some(view.call_source),
        created_at: Some(rfc3339(view.created_at)),
        updated_at: Some(rfc3339(view.updated_at)),
        completed_at: view.completed_at.map(rfc3339),
        summary: Some(summary),
        credits: Some(TaskCredits {
            held: view.held,
            charged: view.charged,
            released: view.released,
        }),
    }
}

async fn get_task(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    kind: ContactKind,
) -> ApiResult<Json<UnlockTask>> {
    let Path(task_id) =
        path.map_err(|e| ApiError::validation(format!("taskId: {}", e.body_text())))?;
    let wait = parse_wait(query.as_deref())?;
    // Task ids are 1-64 characters like other ids; a longer one names no task, is not
    // echoed whole and never reaches the store or the watcher map.
    if task_id.is_empty() || task_id.chars().count() > MAX_TASK_ID_CHARS {
        return Err(ApiError::not_found(
            "TASK_NOT_FOUND",
            format!(
                "task {:?} not found",
                super::truncate(&task_id, MAX_TASK_ID_CHARS)
            ),
        ));
    }
    let not_found = || ApiError::not_found("TASK_NOT_FOUND", format!("task {task_id:?} not found"));
    let read = || state.store.task_view(&principal.account_id, kind, &task_id);
    let Some(wait) = wait.filter(|w| !w.is_zero()) else {
        return Ok(Json(task_body(read().await?.ok_or_else(not_found)?)));
    };
    // Long poll: register for the task's signal before each read so no change is missed
    // between the read and the wait.
    let Some(_slot) = state
        .long_polls
        .try_open(&principal.key_id, state.limits.long_polls_per_key)
    else {
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMIT_EXCEEDED",
            format!(
                "at most {} long polls may be open at once per API key",
                state.limits.long_polls_per_key
            ),
        );
        error.retry_after = Some(1);
        return Err(error);
    };
    let deadline = tokio::time::Instant::now() + wait;
    let watch = state.signals.watch(&task_id);
    loop {
        let notified = watch.notify().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let view = read().await?.ok_or_else(not_found)?;
        let now = tokio::time::Instant::now();
        if view.status.is_terminal() || now >= deadline {
            return Ok(Json(task_body(view)));
        }
        let nap = (deadline - now).min(state.long_poll_recheck);
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(nap) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn parse_names_the_field() {
        let err = |v: Value| ApiError::from(parse_unlock(&body(v)).unwrap_err());
        assert!(err(json!({"personnel_ids": ["1"]}))
            .message
            .contains("event_id"));
        assert!(err(json!({"event_id": 5, "personnel_ids": ["1"]}))
            .message
            .contains("event_id"));
        assert!(err(json!({"event_id": "", "personnel_ids": ["1"]}))
            .message
            .contains("event_id"));
        assert!(
            err(json!({"event_id": "x".repeat(101), "personnel_ids": ["1"]}))
                .message
                .contains("event_id")
        );
        assert!(err(json!({"event_id": "e"}))
            .message
            .contains("personnel_ids"));
        assert!(err(json!({"event_id": "e", "personnel_ids": "1"}))
            .message
            .contains("personnel_ids"));
        assert!(err(json!({"event_id": "e", "personnel_ids": []}))
            .message
            .contains("personnel_ids"));
        let e = err(json!({"event_id": "e", "personnel_ids": ["1", 2]}));
        assert_eq!(
            (e.key, e.message.contains("personnel_ids[1]")),
            ("VALIDATION_ERROR", true)
        );
        let ids: Vec<String> = (0..101).map(|i| i.to_string()).collect();
        assert_eq!(
            err(json!({"event_id": "e", "personnel_ids": ids})).key,
            "TOO_MANY_PERSONNEL_IDS"
        );
    }

    #[test]
    fn parse_dedupes_and_accepts_100() {
        let mut ids: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        ids[99] = "0".into();
        let (event, parsed) = parse_unlock(&body(
            json!({"event_id": "139574", "personnel_ids": ids, "extra": 1}),
        ))
        .unwrap();
        assert_eq!(event, "139574");
        assert_eq!(parsed.len(), 99);
    }

    #[test]
    fn wait_bounds() {
        assert_eq!(parse_wait(None).unwrap(), None);
        assert_eq!(
            parse_wait(Some("wait=30")).unwrap(),
            Some(Duration::from_secs(30))
        );
        assert!(parse_wait(Some("wait=31")).is_err());
        assert!(parse_wait(Some("wait=-1")).is_err());
        assert!(parse_wait(Some("wait=abc")).is_err());
    }
}
