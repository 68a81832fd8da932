//! The error envelope: `{code, message, errorKey, traceId}` on every error response.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use crate::store::StoreError;

tokio::task_local! {
    /// The current request's id, set by the request-id middleware for the whole request.
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| uuid::Uuid::new_v4().to_string())
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub key: &'static str,
    pub message: String,
    pub extra: Map<String, Value>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, key: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            key,
            message: message.into(),
            extra: Map::new(),
            retry_after: None,
        }
    }

    /// 400 `VALIDATION_ERROR`; the message names the field.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
    }

    pub fn not_found(key: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, key, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_API_KEY",
            "Invalid API key",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "Internal server error",
        )
    }

    pub fn with(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(field.to_string(), value.into());
        self
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            // Nothing was written; the client may retry shortly.
            tracing::warn!(error = %e, "database unavailable");
            let mut error = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "SERVICE_UNAVAILABLE",
                "The database is unavailable; nothing was changed. Retry shortly.",
            );
            error.retry_after = Some(2);
            return error;
        }
        // Opaque to the client, whole to the operator.
        tracing::error!(error = %e, source = ?std::error::Error::source(&e), "store error");
        ApiError::internal()
    }
}

impl ApiError {
    /// The envelope as the body of an answer to the request `trace_id`.
    pub fn envelope(&self, trace_id: String) -> Value {
        let mut body = Map::new();
        body.insert("code".into(), self.status.as_u16().into());
        body.insert("message".into(), self.message.clone().into());
        body.insert("errorKey".into(), self.key.into());
        body.insert("traceId".into(), trace_id.into());
        body.extend(self.extra.clone());
        Value::Object(body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.envelope(current_request_id());
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(seconds));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
