//! Request parsing at the edge: JSON bodies with field-naming errors, query strings.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::error::ApiError;

/// A JSON object body. Oversized bodies get 413, anything that is not a JSON object 400.
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection: BytesRejection| {
                    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        ApiError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "PAYLOAD_TOO_LARGE",
                            format!(
                                "request body is larger than {} bytes",
                                super::MAX_BODY_BYTES
                            ),
                        )
                    } else {
                        ApiError::validation(format!("body: {}", rejection.body_text()))
                    }
                })?;
        if bytes.is_empty() {
            return Err(ApiError::validation("body: a JSON object is required"));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(JsonObject(map)),
            Ok(_) => Err(ApiError::validation("body: must be a JSON object")),
            Err(e) => Err(ApiError::validation(format!("body: invalid JSON ({e})"))),
        }
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
