//! Bearer auth and rate limits for `/external/*`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::rate_limit::Decision;
use super::{AppState, KeyId, Unauthenticated};
use crate::domain::keys;

/// The bearer token of the one `Authorization` header; none when the header is missing,
/// repeated (which one would count is ambiguous) or not a bearer token.
fn bearer_token(request: &Request) -> Option<&str> {
    let mut headers = request.headers().get_all("authorization").iter();
    let value = headers.next()?.to_str().ok()?;
    if headers.next().is_some() {
        return None;
    }
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

/// Marks a refusal made before any key was accepted, for the sampled log.
fn unauthenticated(mut response: Response) -> Response {
    response.extensions_mut().insert(Unauthenticated);
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
            return unauthenticated(too_many(&decision));
        }
    }
    let Some(token) = bearer_token(&request).filter(|t| keys::is_well_formed(t)) else {
        return unauthenticated(ApiError::unauthorized().into_response());
    };
    let principal = match state.store.authenticate(&keys::digest(token)).await {
        Ok(Some(principal)) => principal,
        Ok(None) => return unauthenticated(ApiError::unauthorized().into_response()),
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
    let key_id = KeyId(principal.key_id.clone());
    if let Some(decision) = decision.filter(|d| !d.allowed) {
        let mut response = too_many(&decision);
        response.extensions_mut().insert(key_id);
        return response;
    }
    tracing::Span::current().record("account_id", principal.account_id.as_str());
    request.extensions_mut().insert(principal);
    let mut response = next.run(request).await;
    response.extensions_mut().insert(key_id);
    if let Some(decision) = decision {
        decision.write_headers(response.headers_mut());
    }
    response
}
