//! Bearer auth and rate limits for `/external/*`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::rate_limit::Decision;
use super::AppState;
use crate::domain::keys;

fn bearer_token(request: &Request) -> Option<&str> {
    let value = request.headers().get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The client's address: the peer, or behind a trusted proxy the first address of
/// `X-Forwarded-For` (the proxy must overwrite, not append to, what clients send).
fn client_ip(request: &Request, trust_forwarded_for: bool) -> String {
    let forwarded = trust_forwarded_for
        .then(|| request.headers().get("x-forwarded-for")?.to_str().ok())
        .flatten()
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| v.parse::<std::net::IpAddr>().is_ok());
    match forwarded {
        Some(ip) => ip.to_string(),
        None => request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_default(),
    }
}

fn too_many(decision: &Decision) -> Response {
    let mut error = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMIT_EXCEEDED",
        "Rate limit exceeded",
    );
    error.retry_after = Some(decision.retry_after);
    let mut response = error.into_response();
    decision.write_headers(response.headers_mut());
    response
}

/// Per-IP limit first (it also covers floods of bad keys), then the key, then the per-key
/// limit. The principal goes into the request's extensions for the handlers.
pub(super) async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    if state.ip_limiter.enabled() {
        let ip = client_ip(&request, state.trust_forwarded_for);
        let decision = state.ip_limiter.check(&ip).await;
        if !decision.allowed {
            return too_many(&decision);
        }
    }
    let Some(token) = bearer_token(&request).filter(|t| keys::is_well_formed(t)) else {
        return ApiError::unauthorized().into_response();
    };
    let principal = match state.store.authenticate(&keys::digest(token)).await {
        Ok(Some(principal)) => principal,
        Ok(None) => return ApiError::unauthorized().into_response(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    if principal.account_disabled {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "ACCOUNT_DISABLED",
            "This account is disabled; contact the operator",
        )
        .into_response();
    }
    let decision = if state.key_limiter.enabled() {
        Some(state.key_limiter.check(&principal.key_id).await)
    } else {
        None
    };
    if let Some(decision) = decision.filter(|d| !d.allowed) {
        return too_many(&decision);
    }
    tracing::Span::current().record("account_id", principal.account_id.as_str());
    request.extensions_mut().insert(principal);
    let mut response = next.run(request).await;
    if let Some(decision) = decision {
        decision.write_headers(response.headers_mut());
    }
    response
}
