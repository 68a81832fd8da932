//! `GET /external/credits/balance`.

use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Json, Router};
use unlockd_api::CreditBalance;

use super::error::ApiResult;
use super::AppState;
use crate::domain::ledger::summarize;
use crate::store::Principal;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/external/credits/balance", get(balance))
}

#[utoipa::path(
    get, path = "/external/credits/balance", tag = "Credits",
    responses(
        (status = 200, description = "Spendable credits by bucket kind (holds already deducted), plus heldCredits and availableCredits", body = CreditBalance),
        (status = 401, description = "INVALID_API_KEY", body = unlockd_api::ApiError),
        (status = 403, description = "ACCOUNT_DISABLED: the key's account is disabled by the operator", body = unlockd_api::ApiError),
        (status = 503, description = "SERVICE_UNAVAILABLE (the database is unavailable; nothing changed; retry after Retry-After seconds) or REQUEST_TIMEOUT", body = unlockd_api::ApiError),
        (status = 429, description = "RATE_LIMIT_EXCEEDED", body = unlockd_api::ApiError),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn balance(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Json<CreditBalance>> {
    let buckets = state.store.buckets(&principal.account_id).await?;
    Ok(Json(summarize(&buckets, state.clock.now_ms())))
}
