//! `GET /external/contacts/unlock-tasks/{taskId}/events` (and the phone twin): a task's
//! progress as Server-Sent Events. One `item` event per settled item, in settlement order,
//! with ids 1, 2, ...; then one `task` event (the task as `GET` shows it) and the end.
//! `Last-Event-ID: n` resumes after event n. Changes made by workers in other processes are
//! seen through the change relay or, without one, the periodic re-read.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use tokio::sync::mpsc;
use unlockd_api::ItemStatus;

use super::contacts::{task_body, MAX_TASK_ID_CHARS};
use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::domain::ContactKind;
use crate::store::Principal;

/// A comment is sent this often while nothing happens, so proxies keep the stream open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A stream ends after this even if its task has not; the client resumes with
/// `Last-Event-ID`. Bounds how long one request can hold a slot and delay a shutdown.
pub const MAX_STREAM: Duration = Duration::from_secs(300);

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/external/contacts/unlock-tasks/{task_id}/events",
            get(email_events),
        )
        .route(
            "/external/contacts/unlock-phone-tasks/{task_id}/events",
            get(phone_events),
        )
}

#[utoipa::path(
    get, path = "/external/contacts/unlock-tasks/{taskId}/events", tag = "Contacts",
    params(
        ("taskId" = String, Path, description = "The task_id of the create call"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event"),
    ),
    responses(
        (status = 200, description = "text/event-stream: `item` events (id 1, 2, ...; data: the item as GET shows it) in settlement order, then one `task` event (data: the task as GET shows it); keep-alive comments every 15 s", content_type = "text/event-stream", body = String),
        (status = 400, description = "VALIDATION_ERROR: Last-Event-ID is not a whole number", body = unlockd_api::ApiError),
        (status = 401, description = "INVALID_API_KEY", body = unlockd_api::ApiError),
        (status = 403, description = "ACCOUNT_DISABLED: the key's account is disabled by the operator", body = unlockd_api::ApiError),
        (status = 404, description = "TASK_NOT_FOUND (also for another account's task)", body = unlockd_api::ApiError),
        (status = 429, description = "RATE_LIMIT_EXCEEDED (also: too many open streams and long polls for this key)", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE (the database is unavailable; retry after Retry-After seconds)", body = unlockd_api::ApiError),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn email_events(
    state: State<AppState>,
    principal: Extension<Principal>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    events(state, principal, path, headers, ContactKind::Email).await
}

#[utoipa::path(
    get, path = "/external/contacts/unlock-phone-tasks/{taskId}/events", tag = "Contacts",
    params(
        ("taskId" = String, Path, description = "The task_id of the create call"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event"),
    ),
    responses(
        (status = 200, description = "text/event-stream: `item` events (id 1, 2, ...; data: the item as GET shows it) in settlement order, then one `task` event (data: the task as GET shows it); keep-alive comments every 15 s", content_type = "text/event-stream", body = String),
        (status = 400, description = "VALIDATION_ERROR: Last-Event-ID is not a whole number", body = unlockd_api::ApiError),
        (status = 401, description = "INVALID_API_KEY", body = unlockd_api::ApiError),
        (status = 403, description = "ACCOUNT_DISABLED: the key's account is disabled by the operator", body = unlockd_api::ApiError),
        (status = 404, description = "TASK_NOT_FOUND (also for another account's task)", body = unlockd_api::ApiError),
        (status = 429, description = "RATE_LIMIT_EXCEEDED (also: too many open streams and long polls for this key)", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE (the database is unavailable; retry after Retry-After seconds)", body = unlockd_api::ApiError),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn phone_events(
    state: State<AppState>,
    principal: Extension<Principal>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    events(state, principal, path, headers, ContactKind::Phone).await
}

/// Whether a request is a progress stream (not cut by the request time limit).
pub(super) fn is_event_stream(path: &str) -> bool {
    path.starts_with("/external/contacts/") && path.ends_with("/events")
}

async fn events(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    kind: ContactKind,
) -> ApiResult<Response> {
    let Path(task_id) =
        path.map_err(|e| ApiError::validation(format!("taskId: {}", e.body_text())))?;
    let after = match headers.get("last-event-id") {
        None => 0,
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .ok_or_else(|| ApiError::validation("Last-Event-ID: must be a whole number"))?,
    };
    let not_found = || {
        ApiError::not_found(
            "TASK_NOT_FOUND",
            format!(
                "task {:?} not found",
                super::truncate(&task_id, MAX_TASK_ID_CHARS)
            ),
        )
    };
    if task_id.is_empty() || task_id.chars().count() > MAX_TASK_ID_CHARS {
        return Err(not_found());
    }
    state
        .store
        .task_view(&principal.account_id, kind, &task_id)
        .await?
        .ok_or_else(not_found)?;
    let Some(slot) = state
        .long_polls
        .try_open(&principal.key_id, state.limits.long_polls_per_key)
    else {
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMIT_EXCEEDED",
            format!(
                "at most {} long polls and event streams may be open at once per API key",
                state.limits.long_polls_per_key
            ),
        );
        error.retry_after = Some(1);
        return Err(error);
    };
    let (tx, rx) = mpsc::channel::<Event>(16);
    tokio::spawn(async move {
        let _slot = slot;
        let streaming = relay(&state, &principal.account_id, kind, &task_id, after, &tx);
        if tokio::time::timeout(MAX_STREAM, streaming).await.is_err() {
            tracing::debug!(task_id, "event stream reached its time limit");
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|event| (Ok::<_, Infallible>(event), rx))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

/// Sends the events after `after` until the task's `task` event or the client leaves.
async fn relay(
    state: &AppState,
    account_id: &str,
    kind: ContactKind,
    task_id: &str,
    after: usize,
    tx: &mpsc::Sender<Event>,
) {
    let mut sent = after;
    let watch = state.signals.watch(task_id);
    loop {
        // Registered before the reads, so a change between them still wakes the loop.
        let notified = watch.notify().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let Ok(Some(view)) = state.store.task_view(account_id, kind, task_id).await else {
            return;
        };
        // Read after the view: it may name items settled since, which wait for the next
        // round so the ids stay in settlement order.
        let Ok(order) = state.store.integrations().settled_order(task_id).await else {
            return;
        };
        let terminal = view.status.is_terminal();
        let item_ids: Vec<i64> = view.items.iter().map(|i| i.item_id).collect();
        let body = task_body(view);
        while sent < order.len() {
            let Some(index) = item_ids.iter().position(|id| *id == order[sent]) else {
                break;
            };
            let item = &body.items[index];
            if !matches!(item.status, ItemStatus::Unlocked | ItemStatus::Failed) {
                break;
            }
            let Ok(event) = Event::default()
                .event("item")
                .id((sent + 1).to_string())
                .json_data(item)
            else {
                return;
            };
            if tx.send(event).await.is_err() {
                return;
            }
            sent += 1;
        }
        if terminal {
            if sent == order.len() {
                if let Ok(event) = Event::default()
                    .event("task")
                    .id((sent + 1).to_string())
                    .json_data(&body)
                {
                    let _ = tx.send(event).await;
                }
            }
            return;
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(state.long_poll_recheck) => {}
            _ = tx.closed() => return,
            _ = state.shutdown.cancelled() => return,
        }
    }
}
