//! `POST /external/actions/precheck`: what an unlock create would do, without doing it.
//! The store runs the create path's own decision code on a read transaction.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde_json::{json, Map, Value};
use unlockd_api::{CallSource, PrecheckResponse, ReasonCode, SkippedDetail};

use super::body::JsonObject;
use super::contacts::{parse_unlock, UnlockParseError};
use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::domain::ledger::summarize;
use crate::domain::unlock::{UnlockDecision, MAX_PERSONNEL_IDS};
use crate::domain::ContactKind;
use crate::store::{CreateResult, NewUnlock, Principal};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/external/actions/precheck", post(precheck))
}

/// Upstream's action types; only the two unlock actions are evaluated here.
pub(super) const ACTION_TYPES: [&str; 8] = [
    "query_event_personnel",
    "unlock_event_contacts",
    "unlock_event_visitors",
    "unlock_event_full_access",
    "unlock_contact_emails",
    "unlock_contact_phones",
    "search_exhibitor_events",
    "others",
];
const ALLOWED_FIELDS: [&str; 7] = [
    "action_type",
    "params",
    "call_source",
    "locale",
    "trace_id",
    "conversation_id",
    "channel_message_id",
];

fn biz_code(kind: ContactKind, source: CallSource) -> String {
    let what = match kind {
        ContactKind::Email => "Contact Email Unlock",
        ContactKind::Phone => "Contact Phone Unlock",
    };
    let channel = match source {
        CallSource::Api => "API",
        CallSource::Agent => "Agent",
    };
    format!("{what} - {channel}")
}

fn skipped_detail(skipped: &SkippedDetail) -> Map<String, Value> {
    let mut detail = Map::new();
    let classes = [
        ("invalid", &skipped.invalid_personnel_ids),
        ("missing", &skipped.missing_personnel_ids),
        ("unlinked", &skipped.unlinked_personnel_ids),
        ("already_unlocked", &skipped.already_unlocked_personnel_ids),
        ("unlocking", &skipped.unlocking_personnel_ids),
    ];
    let mut counts = Map::new();
    for (class, ids) in classes {
        detail.insert(format!("{class}_personnel_ids"), json!(ids));
        counts.insert(class.to_string(), json!(ids.len()));
    }
    detail.insert("counts".into(), Value::Object(counts));
    detail
}

/// The decision, as precheck fields: (allowed, should_charge, credits, reason, detail).
fn describe(decision: &UnlockDecision) -> (bool, bool, i64, ReasonCode, Map<String, Value>) {
    match decision {
        UnlockDecision::Create {
            chargeable,
            cost,
            skipped,
            ..
        } => {
            let mut d = skipped_detail(skipped);
            d.insert("chargeable_personnel_ids".into(), json!(chargeable));
            (true, true, *cost, ReasonCode::Ok, d)
        }
        UnlockDecision::NothingToCharge { skipped } => {
            let reason = if skipped.already_unlocked_personnel_ids.is_empty() {
                ReasonCode::NoContactsAvailable
            } else {
                ReasonCode::AlreadyUnlocked
            };
            (true, false, 0, reason, skipped_detail(skipped))
        }
        UnlockDecision::InProgress { task_ids, skipped } => {
            let mut d = skipped_detail(skipped);
            d.insert("task_ids".into(), json!(task_ids));
            (false, false, 0, ReasonCode::UnlockInProgress, d)
        }
        UnlockDecision::PersonnelNotFound { skipped } => (
            false,
            false,
            0,
            ReasonCode::NotFound,
            skipped_detail(skipped),
        ),
        UnlockDecision::InsufficientCredits {
            required,
            chargeable,
            skipped,
            ..
        } => {
            let mut d = skipped_detail(skipped);
            d.insert("chargeable_personnel_ids".into(), json!(chargeable));
            (false, false, *required, ReasonCode::InsufficientBalance, d)
        }
    }
}

/// The precheck body's fields, checked: the action type (one of upstream's) and the params
/// object; the optional fields must be strings.
pub(super) fn parse_precheck(body: &Map<String, Value>) -> ApiResult<(String, Map<String, Value>)> {
    if let Some(unknown) = body.keys().find(|k| !ALLOWED_FIELDS.contains(&k.as_str())) {
        return Err(ApiError::validation(format!(
            "{unknown} is not a precheck field"
        )));
    }
    let action_type = match body.get("action_type") {
        Some(Value::String(a)) if ACTION_TYPES.contains(&a.as_str()) => a.clone(),
        None | Some(Value::Null) => return Err(ApiError::validation("action_type is required")),
        Some(_) => {
            return Err(ApiError::validation(format!(
                "action_type must be one of {}",
                ACTION_TYPES.join(", ")
            )))
        }
    };
    let params = match body.get("params") {
        Some(Value::Object(p)) => p.clone(),
        None | Some(Value::Null) => return Err(ApiError::validation("params is required")),
        Some(_) => return Err(ApiError::validation("params must be an object")),
    };
    for field in [
        "call_source",
        "locale",
        "trace_id",
        "conversation_id",
        "channel_message_id",
    ] {
        match body.get(field) {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(_) => return Err(ApiError::validation(format!("{field} must be a string"))),
        }
    }
    Ok((action_type, params))
}

#[utoipa::path(
    post, path = "/external/actions/precheck", tag = "Actions",
    request_body = unlockd_api::PrecheckRequest,
    responses(
        (status = 200, description = "The decision a create would make now; nothing is changed", body = PrecheckResponse),
        (status = 400, description = "Invalid body or params", body = unlockd_api::ApiError),
        (status = 401, description = "Missing or invalid API key", body = unlockd_api::ApiError),
        (status = 403, description = "ACCOUNT_DISABLED: the key's account is disabled by the operator", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE (the database is unavailable; nothing changed; retry after Retry-After seconds) or REQUEST_TIMEOUT", body = unlockd_api::ApiError),
        (status = 415, description = "UNSUPPORTED_MEDIA_TYPE: the body must be sent as application/json", body = unlockd_api::ApiError),
        (status = 429, description = "Rate limit exceeded", body = unlockd_api::ApiError),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn precheck(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<PrecheckResponse>> {
    let (action_type, params) = parse_precheck(&body)?;
    let call_source = CallSource::from_header(
        body.get("call_source")
            .and_then(Value::as_str)
            .or_else(|| headers.get("x-call-source").and_then(|v| v.to_str().ok())),
    );
    let kind = match action_type.as_str() {
        "unlock_contact_emails" => ContactKind::Email,
        "unlock_contact_phones" => ContactKind::Phone,
        _ => {
            return Ok(Json(PrecheckResponse {
                ok: true,
                action_type,
                allowed: false,
                should_charge: false,
                credits: 0,
                reason_code: ReasonCode::UnsupportedAction,
                biz_code: String::new(),
                detail: json!({"message": "only unlock_contact_emails and unlock_contact_phones are evaluated"}),
            }))
        }
    };
    let price = state.pricing.price(kind);
    let buckets = state.store.buckets(&principal.account_id).await?;
    let balance = summarize(&buckets, state.clock.now_ms());
    let mut detail = Map::new();
    detail.insert("unit_price".into(), json!(price));
    detail.insert(
        "balance".into(),
        json!({"available": balance.available_credits, "held": balance.held_credits}),
    );
    let answer = |allowed, should_charge, credits, reason_code, detail: Map<String, Value>| {
        Json(PrecheckResponse {
            ok: true,
            action_type: action_type.clone(),
            allowed,
            should_charge,
            credits,
            reason_code,
            biz_code: biz_code(kind, call_source),
            detail: Value::Object(detail),
        })
    };
    let (event_ref, personnel_ids) = match parse_unlock(&params) {
        Ok(parsed) => parsed,
        Err(UnlockParseError::TooMany(n)) => {
            detail.insert("requested".into(), json!(n));
            detail.insert("max_per_request".into(), json!(MAX_PERSONNEL_IDS));
            return Ok(answer(
                false,
                false,
                0,
                ReasonCode::ExceedMaxUnlockLimit,
                detail,
            ));
        }
        Err(UnlockParseError::Invalid(e)) => {
            return Err(ApiError {
                message: format!("params.{}", e.message),
                ..e
            })
        }
    };
    detail.insert("event_id".into(), json!(event_ref));
    detail.insert("requested".into(), json!(personnel_ids.len()));
    let request = NewUnlock {
        account_id: principal.account_id,
        kind,
        event_ref,
        personnel_ids,
        call_source,
        price,
    };
    let decision = match state.store.precheck_unlock(&request).await? {
        CreateResult::EventNotFound => {
            detail.insert("event_found".into(), json!(false));
            return Ok(answer(false, false, 0, ReasonCode::NotFound, detail));
        }
        CreateResult::Decided { decision, .. } => decision,
    };
    let (allowed, should_charge, credits, reason, classes) = describe(&decision);
    detail.extend(classes);
    detail.insert("cost".into(), json!(credits));
    Ok(answer(allowed, should_charge, credits, reason, detail))
}
