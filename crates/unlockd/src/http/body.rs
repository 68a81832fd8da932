//! Request parsing at the edge: JSON bodies with field-naming errors, query strings.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde_json::{Map, Value};

use super::error::ApiError;
use super::AppState;
use crate::store::PageRequest;

/// 413 `PAYLOAD_TOO_LARGE`, for a body over the limit (declared or found while reading).
pub fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        format!(
            "request body is larger than {} bytes",
            super::MAX_BODY_BYTES
        ),
    )
}

/// Whether a `Content-Type` value is JSON: `application/json`, parameters (such as
/// `charset`) allowed, case-insensitive.
pub fn is_json_content_type(value: &[u8]) -> bool {
    let Ok(value) = std::str::from_utf8(value) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// A JSON object body, sent as `application/json`. Another content type gets 415, an
/// oversized body 413, one that does not arrive within the body timeout 408, anything that
/// is not a JSON object 400.
pub struct JsonObject(pub Map<String, Value>);

impl FromRequest<AppState> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| is_json_content_type(v.as_bytes()));
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "Content-Type must be application/json",
            ));
        }
        let read = Bytes::from_request(request, state);
        let bytes = match tokio::time::timeout(state.limits.body_read_timeout, read).await {
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "REQUEST_TIMEOUT",
                    format!(
                        "body: not received within {} ms",
                        state.limits.body_read_timeout.as_millis()
                    ),
                ))
            }
            Ok(Err(rejection)) => {
                let rejection: BytesRejection = rejection;
                return Err(if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large()
                } else {
                    ApiError::validation(format!("body: {}", rejection.body_text()))
                });
            }
            Ok(Ok(bytes)) => bytes,
        };
        decode_object(&bytes).map(JsonObject)
    }
}

/// Decodes a request body that must be one JSON object.
pub fn decode_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::validation("body: a JSON object is required"));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::validation("body: must be a JSON object")),
        Err(e) => Err(ApiError::validation(format!("body: invalid JSON ({e})"))),
    }
}

/// A required string field of 1..=`max` characters.
pub fn required_string(
    body: &Map<String, Value>,
    field: &str,
    max: usize,
) -> Result<String, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Err(ApiError::validation(format!("{field} is required"))),
        Some(Value::String(s)) if s.is_empty() || s.chars().count() > max => Err(
            ApiError::validation(format!("{field} must be 1 to {max} characters")),
        ),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ApiError::validation(format!("{field} must be a string"))),
    }
}

/// Query-string pairs, decoded.
pub fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// A parsed query string with typed, field-naming getters. Unknown parameters are ignored.
pub struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    pub fn parse(raw: Option<&str>) -> Self {
        QueryParams(query_pairs(raw))
    }

    /// The value as sent (decoded, untrimmed).
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.get(name)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Text of at most `max` characters (counted as sent), trimmed; blank is absent.
    pub fn text(&self, name: &str, max: usize) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.chars().count() > max => Err(ApiError::validation(format!(
                "{name} must be at most {max} characters"
            ))),
            Some(v) => Ok(Some(v.trim().to_string()).filter(|v| !v.is_empty())),
        }
    }

    pub fn required_text(&self, name: &str, max: usize) -> Result<String, ApiError> {
        self.text(name, max)?
            .ok_or_else(|| ApiError::validation(format!("{name} is required")))
    }

    /// A `YYYY-MM-DD` date (exactly that shape, and a real day).
    pub fn date(&self, name: &str) -> Result<Option<String>, ApiError> {
        let Some(value) = self.get(name).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let shaped = value.len() == 10
            && value.bytes().enumerate().all(|(i, b)| match i {
                4 | 7 => b == b'-',
                _ => b.is_ascii_digit(),
            });
        match chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
            Ok(_) if shaped => Ok(Some(value.to_string())),
            _ => Err(ApiError::validation(format!(
                "{name} must be a date as YYYY-MM-DD"
            ))),
        }
    }

    /// A whole number in `min..=max`, `default` when the parameter is absent. An empty
    /// value (`pageSize=`) is not a number and is refused, as the document says.
    fn whole_number(&self, name: &str, min: u32, max: u32, default: u32) -> Result<u32, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => match parse_whole(v) {
                Some(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::validation(format!(
                    "{name} must be a whole number from {min} to {max}"
                ))),
            },
        }
    }

    /// `page` (from 1) and `pageSize` (1 to `max_size`, default `default_size`).
    pub fn page(&self, default_size: u32, max_size: u32) -> Result<PageRequest, ApiError> {
        Ok(PageRequest {
            page: self.whole_number("page", 1, 1_000_000, 1)?,
            page_size: self.whole_number("pageSize", 1, max_size, default_size)?,
        })
    }
}

/// Decimal digits only (no sign, no spaces), as a JSON-Schema integer reads in a query.
pub fn parse_whole(value: &str) -> Option<u32> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// `totalPages` and `hasMore` of the pagination envelope.
pub fn page_meta(total: i64, page: PageRequest) -> (i64, bool) {
    let size = i64::from(page.page_size.max(1));
    let pages = (total + size - 1) / size;
    (pages, i64::from(page.page) < pages)
}
