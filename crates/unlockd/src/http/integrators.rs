//! Extensions for integrators: the account's task list (`GET
//! /external/contacts/unlock-tasks` and the phone twin) and its usage from the ledger
//! (`GET /external/usage`).

use axum::extract::{RawQuery, State};
use axum::routing::get;
use axum::{Extension, Json, Router};
use unlockd_api::{TaskStatus, UnlockTaskListEntry, UnlockTaskPage, UsageGroupRow, UsageReport};

use super::body::{page_meta, QueryParams};
use super::contacts::task_body;
use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::clock::rfc3339;
use crate::domain::ContactKind;
use crate::store::integrators::{TaskFilter, UsageGroup, UsageQuery, UsageRow};
use crate::store::Principal;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/external/contacts/unlock-tasks", get(list_email_tasks))
        .route(
            "/external/contacts/unlock-phone-tasks",
            get(list_phone_tasks),
        )
        .route("/external/usage", get(usage))
}

const DAY_MS: i64 = 86_400_000;
/// Longest usage range.
pub const MAX_USAGE_DAYS: i64 = 366;
/// Usage range when `from` is not given.
pub const DEFAULT_USAGE_DAYS: i64 = 30;

#[utoipa::path(
    get, path = "/external/contacts/unlock-tasks", tag = "Contacts",
    description = "*extension*: the account's email tasks, newest first (ties by task id). Each entry is the task body of GET /external/contacts/unlock-tasks/{taskId} without its items.",
    params(
        ("status" = Option<String>, Query, description = "pending, processing, completed or failed"),
        ("created_after" = Option<String>, Query, description = "RFC 3339 or YYYY-MM-DD (UTC midnight), inclusive"),
        ("created_before" = Option<String>, Query, description = "RFC 3339 or YYYY-MM-DD (UTC midnight), exclusive"),
        ("call_source" = Option<String>, Query, description = "api or agent"),
        ("page" = Option<u32>, Query, description = "From 1; default 1"),
        ("pageSize" = Option<u32>, Query, description = "1-100; default 20"),
    ),
    responses(
        (status = 200, description = "A page of tasks, newest first, without items", body = UnlockTaskPage),
        (status = 400, description = "VALIDATION_ERROR naming the parameter", body = unlockd_api::ApiError),
        (status = 401, description = "INVALID_API_KEY", body = unlockd_api::ApiError),
        (status = 403, description = "ACCOUNT_DISABLED: the key's account is disabled by the operator", body = unlockd_api::ApiError),
        (status = 429, description = "RATE_LIMIT_EXCEEDED", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE (the database is unavailable; nothing changed; retry after Retry-After seconds) or REQUEST_TIMEOUT", body = unlockd_api::ApiError),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn list_email_tasks(
    state: State<AppState>,
    principal: Extension<Principal>,
    query: RawQuery,
) -> ApiResult<Json<UnlockTaskPage>> {
    list_tasks(state, principal, query, ContactKind::Email).await
}

#[utoipa::path(
    get, path = "/external/contacts/unlock-phone-tasks", tag = "Contacts",
    description = "*extension*: the account's phone tasks, newest first (ties by task id). Each entry is the task body of GET /external/contacts/unlock-phone-tasks/{taskId} without its items.",
    params(
        ("status" = Option<String>, Query, description = "pending, processing, completed or failed"),
        ("created_after" = Option<String>, Query, description = "RFC 3339 or YYYY-MM-DD (UTC midnight), inclusive"),
        ("created_before" = Option<String>, Query, description = "RFC 3339 or YYYY-MM-DD (UTC midnight), exclusive"),
        ("call_source" = Option<String>, Query, description = "api or agent"),
        ("page" = Option<u32>, Query, description = "From 1; default 1"),
        ("pageSize" = Option<u32>, Query, description = "1-100; default 20"),
    ),
    responses(
        (status = 200, description = "A page of tasks, newest first, without items", body = UnlockTaskPage),
        (status = 400, description = "VALIDATION_ERROR naming the parameter", body = unlockd_api::ApiError),
        (status = 401, description = "INVALID_API_KEY", body = unlockd_api::ApiError),
        (status = 403, description = "ACCOUNT_DISABLED: the key's account is disabled by the operator", body = unlockd_api::ApiError),
        (status = 429, description = "RATE_LIMIT_EXCEEDED", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE (the database is unavailable; nothing changed; retry after Retry-After seconds) or REQUEST_TIMEOUT", body = unlockd_api::ApiError),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn list_phone_tasks(
    state: State<AppState>,
    principal: Extension<Principal>,
    query: RawQuery,
) -> ApiResult<Json<UnlockTaskPage>> {
    list_tasks(state, principal, query, ContactKind::Phone).await
}

/// The status values a listing accepts.
pub const TASK_STATUSES: [&str; 4] = ["pending", "processing", "completed", "failed"];
/// The call sources a listing accepts.
pub const CALL_SOURCES: [&str; 2] = ["api", "agent"];

async fn list_tasks(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
    kind: ContactKind,
) -> ApiResult<Json<UnlockTaskPage>> {
    let q = QueryParams::parse(query.as_deref());
    let status = match q.raw("status").filter(|v| !v.is_empty()) {
        None => None,
        Some("pending") => Some(TaskStatus::Pending),
        Some("processing") => Some(TaskStatus::Processing),
        Some("completed") => Some(TaskStatus::Completed),
        Some("failed") => Some(TaskStatus::Failed),
        Some(_) => {
            return Err(ApiError::validation(
                "status must be one of pending, processing, completed, failed",
            ))
        }
    };
    let call_source = match q.raw("call_source").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) if CALL_SOURCES.contains(&v) => Some(v.to_string()),
        Some(_) => return Err(ApiError::validation("call_source must be api or agent")),
    };
    let filter = TaskFilter {
        status,
        created_after: instant(&q, "created_after")?.map(|(ms, _)| ms),
        created_before: instant(&q, "created_before")?.map(|(ms, _)| ms),
        call_source,
    };
    let request = q.page(20, 100)?;
    let page = state
        .store
        .list_tasks(&principal.account_id, kind, &filter, request)
        .await?;
    let (total_pages, has_more) = page_meta(page.total, request);
    Ok(Json(UnlockTaskPage {
        items: page
            .items
            .into_iter()
            .map(|view| {
                let task = task_body(view);
                UnlockTaskListEntry {
                    task_id: task.task_id,
                    task_status: task.task_status,
                    event_id: task.event_id,
                    call_source: task.call_source,
                    created_at: task.created_at,
                    updated_at: task.updated_at,
                    completed_at: task.completed_at,
                    summary: task.summary,
                    credits: task.credits,
                }
            })
            .collect(),
        total: page.total,
        page: request.page,
        page_size: request.page_size,
        total_pages,
        has_more,
    }))
}

/// An instant as RFC 3339 or `YYYY-MM-DD` (UTC midnight); the flag says it was a date.
fn instant(q: &QueryParams, name: &str) -> ApiResult<Option<(i64, bool)>> {
    let Some(value) = q.raw(name).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    parse_instant(value).map(Some).ok_or_else(|| {
        ApiError::validation(format!(
            "{name} must be an RFC 3339 time or a date as YYYY-MM-DD"
        ))
    })
}

/// RFC 3339 or `YYYY-MM-DD` (UTC midnight) as Unix milliseconds, with whether it was a date.
pub fn parse_instant(value: &str) -> Option<(i64, bool)> {
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(value) {
        return Some((time.timestamp_millis(), false));
    }
    let date = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").ok()?;
    (value.len() == 10).then(|| {
        (
            date.and_hms_opt(0, 0, 0)
                .unwrap_or_default()
                .and_utc()
                .timestamp_millis(),
            true,
        )
    })
}

/// The usage window: `from` inclusive, `to` exclusive (a `to` date counts its whole day),
/// by default the 30 days up to now; at most 366 days. Errors name the parameter.
pub fn usage_window(
    from: Option<&str>,
    to: Option<&str>,
    now_ms: i64,
) -> Result<(i64, i64), String> {
    let parse = |name: &str, value: Option<&str>| -> Result<Option<(i64, bool)>, String> {
        match value.filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => parse_instant(v)
                .map(Some)
                .ok_or_else(|| format!("{name} must be an RFC 3339 time or a date as YYYY-MM-DD")),
        }
    };
    let to_ms = match parse("to", to)? {
        // Up to and including now.
        None => now_ms + 1,
        Some((ms, true)) => ms + DAY_MS,
        Some((ms, false)) => ms,
    };
    let from_ms = match parse("from", from)? {
        None => to_ms - DEFAULT_USAGE_DAYS * DAY_MS,
        Some((ms, _)) => ms,
    };
    if from_ms >= to_ms {
        return Err("from must be before to".into());
    }
    if to_ms - from_ms > MAX_USAGE_DAYS * DAY_MS {
        return Err(format!(
            "from and to must be at most {MAX_USAGE_DAYS} days apart"
        ));
    }
    Ok((from_ms, to_ms))
}

/// The report's rows and their totals, as the API and the admin CLI show them.
pub fn usage_report(query: UsageQuery, rows: Vec<UsageRow>) -> UsageReport {
    let row = |r: UsageRow| UsageGroupRow {
        group: r.group,
        credits_charged: r.credits_charged,
        credits_released: r.credits_released,
        contacts_unlocked: r.contacts_unlocked,
        tasks_created: r.tasks_created,
    };
    let rows: Vec<UsageGroupRow> = rows.into_iter().map(row).collect();
    let mut totals = UsageGroupRow {
        group: "total".into(),
        credits_charged: 0,
        credits_released: 0,
        contacts_unlocked: 0,
        tasks_created: 0,
    };
    // Groups are disjoint: a task's holds, and an item's captures, share one instant.
    for r in &rows {
        totals.credits_charged += r.credits_charged;
        totals.credits_released += r.credits_released;
        totals.contacts_unlocked += r.contacts_unlocked;
        totals.tasks_created += r.tasks_created;
    }
    UsageReport {
        from: rfc3339(query.from_ms),
        to: rfc3339(query.to_ms),
        group_by: query.group_by.as_str().into(),
        rows,
        totals,
    }
}

#[utoipa::path(
    get, path = "/external/usage", tag = "Credits",
    description = "*extension*: the account's usage from the ledger: credits charged (captured) and released, contacts unlocked, tasks created, grouped by UTC day, kind or call source.",
    params(
        ("from" = Option<String>, Query, description = "RFC 3339 or YYYY-MM-DD (UTC midnight), inclusive; default 30 days before `to`"),
        ("to" = Option<String>, Query, description = "RFC 3339 (exclusive) or YYYY-MM-DD (through the end of that day); default now. At most 366 days after `from`"),
        ("group_by" = Option<String>, Query, description = "day (default), kind or call_source"),
    ),
    responses(
        (status = 200, description = "Usage rows and their totals", body = UsageReport),
        (status = 400, description = "VALIDATION_ERROR naming the parameter", body = unlockd_api::ApiError),
        (status = 401, description = "INVALID_API_KEY", body = unlockd_api::ApiError),
        (status = 403, description = "ACCOUNT_DISABLED: the key's account is disabled by the operator", body = unlockd_api::ApiError),
        (status = 429, description = "RATE_LIMIT_EXCEEDED", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE (the database is unavailable; nothing changed; retry after Retry-After seconds) or REQUEST_TIMEOUT", body = unlockd_api::ApiError),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn usage(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<UsageReport>> {
    let q = QueryParams::parse(query.as_deref());
    let group_by = match q.raw("group_by").filter(|v| !v.is_empty()) {
        None => UsageGroup::Day,
        Some(v) => UsageGroup::parse(v).ok_or_else(|| {
            ApiError::validation("group_by must be one of day, kind, call_source")
        })?,
    };
    let (from_ms, to_ms) = usage_window(q.raw("from"), q.raw("to"), state.clock.now_ms())
        .map_err(ApiError::validation)?;
    let query = UsageQuery {
        from_ms,
        to_ms,
        group_by,
    };
    let rows = state.store.usage(&principal.account_id, query).await?;
    Ok(Json(usage_report(query, rows)))
}
