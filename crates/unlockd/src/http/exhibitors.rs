//! Catalog navigation: an event's exhibitors (with a preview of their people, emails and
//! phones only where the calling account unlocked them), an exhibitor's profile and
//! events, and a person's events.

use axum::extract::{RawQuery, State};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::json;
use unlockd_api::{
    AccessSemantics, EventPage, ExhibitorEventRef, ExhibitorItem, ExhibitorPage, ExhibitorProfile,
};

use super::body::{page_meta, query_pairs, QueryParams};
use super::error::{ApiError, ApiResult};
use super::events::event_item;
use super::personnel::contact_item;
use super::AppState;
use crate::domain::unlock::{is_valid_personnel_id, MAX_EVENT_ID_CHARS, MAX_PERSONNEL_ID_CHARS};
use crate::store::{EventView, ExhibitorFilter, ExhibitorView, Page, PageRequest, Principal};

/// Values a list parameter may repeat, and the length of each.
const MAX_LIST_VALUES: usize = 20;
const MAX_LIST_VALUE_CHARS: usize = 100;
pub const MAX_PERSONNEL_LIMIT: u32 = 20;
const DEFAULT_PERSONNEL_LIMIT: u32 = 3;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/external/exhibitors/list", get(list))
        .route("/external/exhibitors/profile", get(profile))
        .route("/external/exhibitors/events", get(exhibitor_events))
        .route("/external/personnel/events", get(personnel_events))
}

/// A list parameter: repeated (`department=a&department=b`, also `department[]=`), each
/// value trimmed; blanks are dropped.
fn list_param(raw: Option<&str>, name: &str) -> Result<Vec<String>, ApiError> {
    let bracketed = format!("{name}[]");
    let values: Vec<String> = query_pairs(raw)
        .into_iter()
        .filter(|(k, _)| k == name || *k == bracketed)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    if values.len() > MAX_LIST_VALUES {
        return Err(ApiError::validation(format!(
            "{name} takes at most {MAX_LIST_VALUES} values"
        )));
    }
    if values
        .iter()
        .any(|v| v.chars().count() > MAX_LIST_VALUE_CHARS)
    {
        return Err(ApiError::validation(format!(
            "each {name} must be at most {MAX_LIST_VALUE_CHARS} characters"
        )));
    }
    Ok(values)
}

fn personnel_limit(raw: Option<&str>) -> Result<u32, ApiError> {
    let value = query_pairs(raw)
        .into_iter()
        .find(|(k, _)| k == "personnelLimit")
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty());
    match value {
        None => Ok(DEFAULT_PERSONNEL_LIMIT),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if n <= MAX_PERSONNEL_LIMIT => Ok(n),
            _ => Err(ApiError::validation(format!(
                "personnelLimit must be a whole number from 0 to {MAX_PERSONNEL_LIMIT}"
            ))),
        },
    }
}

/// The website's host without `www.`.
fn domain_of(website: Option<&str>) -> Option<String> {
    let website = website?.trim();
    let rest = website.split_once("://").map_or(website, |(_, rest)| rest);
    let host = rest.split(['/', '?', '#']).next()?;
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = host.split(':').next()?.trim_start_matches("www.");
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

fn exhibitor_item(view: ExhibitorView) -> ExhibitorItem {
    ExhibitorItem {
        domain: domain_of(view.website.as_deref()),
        id: view.id,
        company_name: view.company_name,
        website: view.website,
        country: view.country,
        matched_event_ids: vec![view.event_alias],
        personnel_count: view.personnel_count,
        personnel: view.personnel.into_iter().map(contact_item).collect(),
    }
}

fn event_page(page: Page<EventView>, request: PageRequest) -> EventPage {
    let (total_pages, has_more) = page_meta(page.total, request);
    EventPage {
        items: page.items.into_iter().map(event_item).collect(),
        total: page.total,
        page: request.page,
        page_size: request.page_size,
        total_pages,
        has_more,
    }
}

#[utoipa::path(
    get, path = "/external/exhibitors/list", tag = "Exhibitors",
    params(
        ("event_id" = String, Query, description = "The event's id or eventId (1-100 characters)"),
        ("page" = Option<u32>, Query, description = "From 1; default 1"),
        ("pageSize" = Option<u32>, Query, description = "1-100; default 20"),
        ("keyword" = Option<String>, Query, description = "Part of the company name or website, ASCII case-insensitive (at most 200 characters)"),
        ("country" = Option<String>, Query, description = "ASCII case-insensitive (at most 100 characters)"),
        ("department" = Option<Vec<String>>, Query, description = "Repeatable (at most 20 values of 100 characters): only exhibitors with someone at the event in one of these departments, case-insensitive"),
        ("managementLevel" = Option<Vec<String>>, Query, description = "Repeatable: seniority levels, case-insensitive, as `department`"),
        ("jobTitle" = Option<Vec<String>>, Query, description = "Repeatable: titles whose words begin words of a person's title, as `department`. A value with no letter or digit matches nobody"),
        ("personnelLimit" = Option<u32>, Query, description = "People previewed per exhibitor, 0-20; default 3. The preview and personnelCount follow the people filters"),
    ),
    responses(
        (status = 200, description = "A page of the event's exhibitors by company name (bytewise), then id", body = ExhibitorPage),
        (status = 400, description = "Invalid parameter", body = unlockd_api::ApiError),
        (status = 401, description = "Missing or invalid API key", body = unlockd_api::ApiError),
        (status = 403, description = "ACCOUNT_DISABLED: the key's account is disabled by the operator", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE (the database is unavailable; nothing changed; retry after Retry-After seconds) or REQUEST_TIMEOUT", body = unlockd_api::ApiError),
        (status = 404, description = "EVENT_NOT_FOUND", body = unlockd_api::ApiError),
        (status = 429, description = "Rate limit exceeded", body = unlockd_api::ApiError),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<ExhibitorPage>> {
    let raw = query.as_deref();
    let q = QueryParams::parse(raw);
    let event_ref = q.required_text("event_id", MAX_EVENT_ID_CHARS)?;
    let request = q.page(20, 100)?;
    let filter = ExhibitorFilter {
        keyword: q.text("keyword", 200)?,
        country: q.text("country", 100)?,
        departments: list_param(raw, "department")?,
        levels: list_param(raw, "managementLevel")?,
        job_titles: list_param(raw, "jobTitle")?,
        personnel_limit: personnel_limit(raw)?,
    };
    let event = state.store.find_event(&event_ref).await?.ok_or_else(|| {
        ApiError::not_found("EVENT_NOT_FOUND", format!("event {event_ref:?} not found"))
    })?;
    let page = state
        .store
        .list_exhibitors(&principal.account_id, &event.event.id, &filter, request)
        .await?;
    let total = page.total;
    let (total_pages, has_more) = page_meta(total, request);
    Ok(Json(ExhibitorPage {
        items: page.items.into_iter().map(exhibitor_item).collect(),
        total,
        page: request.page,
        page_size: request.page_size,
        total_pages,
        has_more,
        recommendation_processing: false,
        recommendation_processing_feature: Some("none".into()),
        semantics: AccessSemantics {
            access_mode: "full".into(),
            preview_limit: None,
            counts: json!({"actualTotal": total, "visibleTotal": total, "remainingLockedCount": 0}),
            page_state: json!({
                "requestedPage": request.page,
                "accessible": true,
                "maxAccessiblePage": total_pages,
            }),
        },
    }))
}

fn exhibitor_id(q: &QueryParams) -> Result<String, ApiError> {
    let id = q.required_text("exhibitor_id", MAX_PERSONNEL_ID_CHARS)?;
    if !is_valid_personnel_id(&id) {
        return Err(ApiError::validation(
            "exhibitor_id must not contain spaces or control characters",
        ));
    }
    Ok(id)
}

fn exhibitor_not_found(id: &str) -> ApiError {
    ApiError::not_found("EXHIBITOR_NOT_FOUND", format!("exhibitor {id:?} not found"))
}

#[utoipa::path(
    get, path = "/external/exhibitors/profile", tag = "Exhibitors",
    params(("exhibitor_id" = String, Query, description = "The exhibitor's id (1-64 characters, no spaces)")),
    responses(
        (status = 200, description = "The exhibitor and the events it is listed at", body = ExhibitorProfile),
        (status = 400, description = "Invalid exhibitor_id", body = unlockd_api::ApiError),
        (status = 401, description = "Missing or invalid API key", body = unlockd_api::ApiError),
        (status = 403, description = "ACCOUNT_DISABLED: the key's account is disabled by the operator", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE (the database is unavailable; nothing changed; retry after Retry-After seconds) or REQUEST_TIMEOUT", body = unlockd_api::ApiError),
        (status = 404, description = "EXHIBITOR_NOT_FOUND", body = unlockd_api::ApiError),
        (status = 429, description = "Rate limit exceeded", body = unlockd_api::ApiError),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn profile(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<ExhibitorProfile>> {
    let q = QueryParams::parse(query.as_deref());
    let id = exhibitor_id(&q)?;
    let view = state
        .store
        .exhibitor_profile(&id)
        .await?
        .ok_or_else(|| exhibitor_not_found(&id))?;
    Ok(Json(ExhibitorProfile {
        domain: domain_of(view.website.as_deref()),
        id: view.id,
        company_name: view.company_name,
        website: view.website,
        country: view.country,
        matched_event_ids: vec![view.event_alias.clone()],
        personnel_count: view.personnel_count,
        events: vec![ExhibitorEventRef {
            id: view.event_id,
            event_id: view.event_alias,
            name: view.event_name,
        }],
    }))
}

#[utoipa::path(
    get, path = "/external/exhibitors/events", tag = "Exhibitors",
    params(
        ("exhibitor_id" = String, Query, description = "The exhibitor's id (1-64 characters, no spaces)"),
        ("page" = Option<u32>, Query, description = "From 1; default 1"),
        ("pageSize" = Option<u32>, Query, description = "1-100; default 20"),
    ),
    responses(
        (status = 200, description = "The events the exhibitor is listed at, by start date", body = EventPage),
        (status = 400, description = "Invalid parameter", body = unlockd_api::ApiError),
        (status = 401, description = "Missing or invalid API key", body = unlockd_api::ApiError),
        (status = 403, description = "ACCOUNT_DISABLED: the key's account is disabled by the operator", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE (the database is unavailable; nothing changed; retry after Retry-After seconds) or REQUEST_TIMEOUT", body = unlockd_api::ApiError),
        (status = 404, description = "EXHIBITOR_NOT_FOUND", body = unlockd_api::ApiError),
        (status = 429, description = "Rate limit exceeded", body = unlockd_api::ApiError),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn exhibitor_events(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<EventPage>> {
    let q = QueryParams::parse(query.as_deref());
    let id = exhibitor_id(&q)?;
    let request = q.page(20, 100)?;
    let page = state
        .store
        .exhibitor_events(&id, request)
        .await?
        .ok_or_else(|| exhibitor_not_found(&id))?;
    Ok(Json(event_page(page, request)))
}

#[utoipa::path(
    get, path = "/external/personnel/events", tag = "Personnel",
    params(
        ("personnel_id" = String, Query, description = "The person's id (1-64 characters, no spaces)"),
        ("page" = Option<u32>, Query, description = "From 1; default 1"),
        ("pageSize" = Option<u32>, Query, description = "1-100; default 20"),
    ),
    responses(
        (status = 200, description = "The events the person is linked to, by start date (an empty page when none)", body = EventPage),
        (status = 400, description = "Invalid parameter", body = unlockd_api::ApiError),
        (status = 401, description = "Missing or invalid API key", body = unlockd_api::ApiError),
        (status = 403, description = "ACCOUNT_DISABLED: the key's account is disabled by the operator", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE (the database is unavailable; nothing changed; retry after Retry-After seconds) or REQUEST_TIMEOUT", body = unlockd_api::ApiError),
        (status = 404, description = "PERSONNEL_NOT_FOUND", body = unlockd_api::ApiError),
        (status = 429, description = "Rate limit exceeded", body = unlockd_api::ApiError),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn personnel_events(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<EventPage>> {
    let q = QueryParams::parse(query.as_deref());
    let id = q.required_text("personnel_id", MAX_PERSONNEL_ID_CHARS)?;
    if !is_valid_personnel_id(&id) {
        return Err(ApiError::validation(
            "personnel_id must not contain spaces or control characters",
        ));
    }
    let request = q.page(20, 100)?;
    let page = state
        .store
        .personnel_events(&id, request)
        .await?
        .ok_or_else(|| {
            ApiError::not_found("PERSONNEL_NOT_FOUND", format!("personnel {id:?} not found"))
        })?;
    Ok(Json(event_page(page, request)))
}

#[cfg(test)]
mod tests {
    use super::domain_of;

    #[test]
    fn domains_are_hosts_without_www() {
        assert_eq!(
            domain_of(Some("https://www.Acme.example/about")).as_deref(),
            Some("acme.example")
        );
        assert_eq!(
            domain_of(Some("acme.example:8080")).as_deref(),
            Some("acme.example")
        );
        assert_eq!(domain_of(Some("  ")), None);
        assert_eq!(domain_of(None), None);
    }
}
