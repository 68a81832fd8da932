//! The web console: static pages and modules embedded in the binary at compile time,
//! served with a strict Content-Security-Policy. The pages call only the public API
//! (`/external/...`) and the operator API (`/admin/api/...`), like any other client.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::error::ApiError;
use super::AppState;

/// Same-origin everything, no inline script or style, no framing.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// (name under `/console/`, content type, body).
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("../../console/console.css"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/api.js"),
    ),
    (
        "customer.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/customer.js"),
    ),
    (
        "operator.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/operator.js"),
    ),
];

const CUSTOMER_PAGE: &str = include_str!("../../console/index.html");
const OPERATOR_PAGE: &str = include_str!("../../console/admin.html");

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { page(CUSTOMER_PAGE) }))
        .route("/console", get(|| async { page(CUSTOMER_PAGE) }))
        .route("/console/", get(|| async { page(CUSTOMER_PAGE) }))
        .route("/admin", get(|| async { page(OPERATOR_PAGE) }))
        .route("/admin/", get(|| async { page(OPERATOR_PAGE) }))
        .route("/console/{asset}", get(asset))
}

fn with_headers(content_type: &str, body: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    let mut set = |name: header::HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set(header::CONTENT_TYPE, content_type);
    set(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::REFERRER_POLICY, "no-referrer");
    set(header::X_FRAME_OPTIONS, "DENY");
    // The assets change with the binary; revalidate rather than serve a stale console.
    set(header::CACHE_CONTROL, "no-cache");
    response
}

fn page(body: &'static str) -> Response {
    with_headers("text/html; charset=utf-8", body)
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(asset, _, _)| *asset == name) {
        Some((_, content_type, body)) => with_headers(content_type, body),
        None => ApiError::not_found(
            "NOT_FOUND",
            format!("no console asset {}", super::truncate(&name, 100)),
        )
        .into_response(),
    }
}
