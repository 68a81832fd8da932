//! Catalog reads of people: an event's personnel, a profile, and contact search. Emails and
//! phones appear only for the account that unlocked them.

use axum::extract::{RawQuery, State};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::json;
use unlockd_api::{
    AccessSemantics, ContactItem, ContactPage, ContactUnlockStatus, PhoneUnlockStatus,
};

use super::body::{page_meta, QueryParams};
use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::catalog::import::SOURCE_TYPES;
use crate::domain::unlock::{is_valid_personnel_id, MAX_EVENT_ID_CHARS, MAX_PERSONNEL_ID_CHARS};
use crate::store::{
    ContactSearch, ContactView, Page, PageRequest, PersonnelFilter, Principal, UnlockState,
};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/external/personnel/list", get(list))
        .route("/external/personnel/profile", get(profile))
        .route("/external/contacts/search", get(search))
}

pub(super) fn contact_item(view: ContactView) -> ContactItem {
    ContactItem {
        contact_unlock_status: match view.email_state {
            UnlockState::Locked => ContactUnlockStatus::Locked,
            UnlockState::Unlocking => ContactUnlockStatus::Unlocking,
            UnlockState::Unlocked => ContactUnlockStatus::Unlocked,
            UnlockState::Failed => ContactUnlockStatus::Failed,
        },
        phone_unlock_status: match view.phone_state {
            UnlockState::Locked => None,
            UnlockState::Unlocking => Some(PhoneUnlockStatus::Processing),
            UnlockState::Unlocked => Some(PhoneUnlockStatus::Ready),
            UnlockState::Failed => Some(PhoneUnlockStatus::Failed),
        },
        id: view.id,
        full_name: view.full_name,
        title: view.title,
        department: view.department,
        seniority_level: view.seniority_level,
        linkedin_url: view.linkedin_url,
        company_name: view.company_name,
        source_type: view.source_type,
        email: view.email,
        phone: view.phone,
        linkedin_activity: None,
        linkedin_activity_status: None,
        event_count: Some(view.event_count),
        outreach_message_status: None,
        outreach_message_channels: Vec::new(),
    }
}

fn contact_page(page: Page<ContactView>, request: PageRequest) -> ContactPage {
    let (total_pages, has_more) = page_meta(page.total, request);
    ContactPage {
        items: page.items.into_iter().map(contact_item).collect(),
        total: page.total,
        page: request.page,
        page_size: request.page_size,
        total_pages,
        has_more,
        semantics: None,
    }
}

#[utoipa::path(
    get, path = "/external/personnel/list", tag = "Personnel",
    params(
        ("event_id" = String, Query, description = "The event's id or eventId (1-100 characters)"),
        ("page" = Option<u32>, Query, description = "From 1; default 1"),
        ("pageSize" = Option<u32>, Query, description = "1-50; default 50"),
        ("exhibitor_id" = Option<String>, Query, description = "Only this exhibitor's people"),
        ("department" = Option<String>, Query, description = "Case-insensitive (at most 100 characters)"),
        ("level" = Option<String>, Query, description = "Seniority level, case-insensitive (at most 50 characters)"),
        ("search_query" = Option<String>, Query, description = "Words to find (at most 200 characters; up to 8 words; case and accents ignored). Ranked: every word whole in the name or title first, then as word beginnings there, then anywhere in name, title or company; within a rank by id. Only when nothing matches, words within one typing mistake (4-7 letters) or two (8 or more; none in shorter words or words with digits) of a known word. Text with no letter or digit matches nobody (an empty page)"),
        ("sourceType" = Option<String>, Query, description = "exhibitor, social or visitors"),
    ),
    responses(
        (status = 200, description = "A page of the event's people, by id (ranked first when search_query is given)", body = ContactPage),
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
) -> ApiResult<Json<ContactPage>> {
    let q = QueryParams::parse(query.as_deref());
    let event_ref = q.required_text("event_id", MAX_EVENT_ID_CHARS)?;
    let request = q.page(50, 50)?;
    // Compared as sent (only an empty value is absent), as the document's enum reads.
    let source_type = q
        .raw("sourceType")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    if let Some(s) = &source_type {
        if !SOURCE_TYPES.contains(&s.as_str()) {
            return Err(ApiError::validation(format!(
                "sourceType must be one of {}",
                SOURCE_TYPES.join(", ")
            )));
        }
    }
    let filter = PersonnelFilter {
        exhibitor_id: q.text("exhibitor_id", MAX_PERSONNEL_ID_CHARS)?,
        department: q.text("department", 100)?,
        level: q.text("level", 50)?,
        search_query: q.text("search_query", 200)?,
        source_type,
    };
    let event = state.store.find_event(&event_ref).await?.ok_or_else(|| {
        ApiError::not_found("EVENT_NOT_FOUND", format!("event {event_ref:?} not found"))
    })?;
    let page = state
        .store
        .list_personnel(&principal.account_id, &event.event.id, &filter, request)
        .await?;
    let total = page.total;
    let mut body = contact_page(page, request);
    let (total_pages, _) = page_meta(total, request);
    body.semantics = Some(AccessSemantics {
        access_mode: "full".into(),
        preview_limit: None,
        counts: json!({"actualTotal": total, "visibleTotal": total, "remainingLockedCount": 0}),
        page_state: json!({
            "requestedPage": request.page,
            "accessible": true,
            "maxAccessiblePage": total_pages,
        }),
    });
    Ok(Json(body))
}

#[utoipa::path(
    get, path = "/external/personnel/profile", tag = "Personnel",
    params(("personnel_id" = String, Query, description = "The person's id (1-64 characters, no spaces)")),
    responses(
        (status = 200, description = "The person", body = ContactItem),
        (status = 400, description = "Invalid personnel_id", body = unlockd_api::ApiError),
        (status = 401, description = "Missing or invalid API key", body = unlockd_api::ApiError),
        (status = 403, description = "ACCOUNT_DISABLED: the key's account is disabled by the operator", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE (the database is unavailable; nothing changed; retry after Retry-After seconds) or REQUEST_TIMEOUT", body = unlockd_api::ApiError),
        (status = 404, description = "PERSONNEL_NOT_FOUND", body = unlockd_api::ApiError),
        (status = 429, description = "Rate limit exceeded", body = unlockd_api::ApiError),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn profile(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<ContactItem>> {
    let q = QueryParams::parse(query.as_deref());
    let id = q.required_text("personnel_id", MAX_PERSONNEL_ID_CHARS)?;
    // Judged as sent: padding is not trimmed away.
    let id = q.raw("personnel_id").map(str::to_string).unwrap_or(id);
    if !is_valid_personnel_id(&id) {
        return Err(ApiError::validation(
            "personnel_id must not contain spaces or control characters",
        ));
    }
    let person = state
        .store
        .personnel_profile(&principal.account_id, &id)
        .await?
        .ok_or_else(|| {
            ApiError::not_found("PERSONNEL_NOT_FOUND", format!("personnel {id:?} not found"))
        })?;
    Ok(Json(contact_item(person)))
}

#[utoipa::path(
    get, path = "/external/contacts/search", tag = "Contacts",
    params(
        ("company_name" = String, Query, description = "The company (1-200 characters). Case, accents, spacing, punctuation and a trailing legal form (GmbH, Inc, Ltd, AB, ...) are ignored. Ranked: the exact name first, then names holding every word whole, then names where every word begins a word; within a rank by company, then person id. Only when none of these match, names with words within one typing mistake (4-7 letters) or two (8 or more letters; none in shorter words or words with digits). Text with no letter or digit matches nobody (an empty page)"),
        ("role" = Option<String>, Query, description = "Only people whose title has words beginning with each of these (at most 200 characters)"),
        ("person_name" = Option<String>, Query, description = "Only people whose name has words beginning with each of these (at most 200 characters)"),
        ("page" = Option<u32>, Query, description = "From 1; default 1"),
        ("pageSize" = Option<u32>, Query, description = "1-100; default 20"),
    ),
    responses(
        (status = 200, description = "A page of matching people, best match first (empty when none match)", body = ContactPage),
        (status = 400, description = "Missing or invalid company_name", body = unlockd_api::ApiError),
        (status = 401, description = "Missing or invalid API key", body = unlockd_api::ApiError),
        (status = 403, description = "ACCOUNT_DISABLED: the key's account is disabled by the operator", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE (the database is unavailable; nothing changed; retry after Retry-After seconds) or REQUEST_TIMEOUT", body = unlockd_api::ApiError),
        (status = 429, description = "Rate limit exceeded", body = unlockd_api::ApiError),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn search(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<ContactPage>> {
    let q = QueryParams::parse(query.as_deref());
    let search = ContactSearch {
        company_name: q.required_text("company_name", 200)?,
        role: q.text("role", 200)?,
        person_name: q.text("person_name", 200)?,
    };
    let request = q.page(20, 100)?;
    let page = state
        .store
        .search_contacts(&principal.account_id, &search, request)
        .await?;
    Ok(Json(contact_page(page, request)))
}
