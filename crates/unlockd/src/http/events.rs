//! Event catalog reads.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use unlockd_api::{EventDetailResponse, EventItem, EventPage};

use super::body::{page_meta, QueryParams};
use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::domain::unlock::MAX_EVENT_ID_CHARS;
use crate::store::{EventFilter, EventView};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/external/events/list", get(list))
        .route("/external/events/{id}", get(detail))
}

pub(super) fn event_item(view: EventView) -> EventItem {
    let e = view.event;
    EventItem {
        id: e.id,
        event_id: e.event_id,
        name: e.name,
        nickname: None,
        description: e.description,
        url: e.url,
        date_start: e.date_start,
        date_end: e.date_end,
        venue: e.venue,
        city: e.city,
        region: e.region,
        country: e.country,
        exhibitor_count: Some(view.exhibitor_count),
        personnel_count: Some(view.personnel_count),
        has_visitors: view.has_visitors,
    }
}

#[utoipa::path(
    get, path = "/external/events/list", tag = "Events",
    params(
        ("keyword" = Option<String>, Query, description = "Part of the name or description (at most 200 characters)"),
        ("country" = Option<String>, Query, description = "Case-insensitive (at most 100 characters)"),
        ("city" = Option<String>, Query, description = "Case-insensitive (at most 100 characters)"),
        ("date_start_from" = Option<String>, Query, description = "YYYY-MM-DD, inclusive"),
        ("date_start_to" = Option<String>, Query, description = "YYYY-MM-DD, inclusive"),
        ("page" = Option<u32>, Query, description = "From 1; default 1"),
        ("pageSize" = Option<u32>, Query, description = "1-100; default 20"),
    ),
    responses(
        (status = 200, description = "A page of events, by start date", body = EventPage),
        (status = 400, description = "Invalid parameter", body = unlockd_api::ApiError),
        (status = 401, description = "Missing or invalid API key", body = unlockd_api::ApiError),
        (status = 403, description = "ACCOUNT_DISABLED: the key's account is disabled by the operator", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE (the database is unavailable; nothing changed; retry after Retry-After seconds) or REQUEST_TIMEOUT", body = unlockd_api::ApiError),
        (status = 429, description = "Rate limit exceeded", body = unlockd_api::ApiError),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn list(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<EventPage>> {
    let q = QueryParams::parse(query.as_deref());
    let filter = EventFilter {
        keyword: q.text("keyword", 200)?,
        country: q.text("country", 100)?,
        city: q.text("city", 100)?,
        date_start_from: q.date("date_start_from")?,
        date_start_to: q.date("date_start_to")?,
    };
    let request = q.page(20, 100)?;
    let page = state.store.list_events(&filter, request).await?;
    let (total_pages, has_more) = page_meta(page.total, request);
    Ok(Json(EventPage {
        items: page.items.into_iter().map(event_item).collect(),
        total: page.total,
        page: request.page,
        page_size: request.page_size,
        total_pages,
        has_more,
    }))
}

#[utoipa::path(
    get, path = "/external/events/{id}", tag = "Events",
    params(("id" = String, Path, description = "The event's id or eventId (1-100 characters)")),
    responses(
        (status = 200, description = "The event", body = EventDetailResponse),
        (status = 400, description = "id longer than 100 characters", body = unlockd_api::ApiError),
        (status = 401, description = "Missing or invalid API key", body = unlockd_api::ApiError),
        (status = 403, description = "ACCOUNT_DISABLED: the key's account is disabled by the operator", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE (the database is unavailable; nothing changed; retry after Retry-After seconds) or REQUEST_TIMEOUT", body = unlockd_api::ApiError),
        (status = 404, description = "EVENT_NOT_FOUND", body = unlockd_api::ApiError),
        (status = 429, description = "Rate limit exceeded", body = unlockd_api::ApiError),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn detail(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<EventDetailResponse>> {
    let Path(id) = path.map_err(|e| ApiError::validation(format!("id: {}", e.body_text())))?;
    if id.is_empty() || id.chars().count() > MAX_EVENT_ID_CHARS {
        return Err(ApiError::validation(format!(
            "id must be 1 to {MAX_EVENT_ID_CHARS} characters"
        )));
    }
    let event =
        state.store.find_event(&id).await?.ok_or_else(|| {
            ApiError::not_found("EVENT_NOT_FOUND", format!("event {id:?} not found"))
        })?;
    Ok(Json(EventDetailResponse {
        event: event_item(event),
    }))
}
