//! Every way a request to service one can fail, its status and stable code, and its RFC 9457
//! problem body. Turning an error into a response has no side effects: what to log travels in a
//! [`Failure`] response extension, and [`observe`](super::observe) logs it once.

use crate::domain::ValidationError;
use crate::intake::IntakeError;
use crate::repo::RepoError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cruncan_http::{InvalidIdempotencyKey, json_error};
use std::sync::Arc;

// ANCHOR: api_error
/// Every way a request can fail, each with its status and a message fit for the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON at all.
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    /// JSON of the wrong shape or values out of bounds.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// Body over the limit.
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    /// Not `Content-Type: application/json`.
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    /// No such request.
    #[error("no request with id {0}")]
    NotFound(String),
    /// A path id that is not a Snowflake id.
    #[error("{0} is not a request id (20 decimal digits)")]
    InvalidId(String),
    /// A bad `Idempotency-Key` header.
    #[error(transparent)]
    InvalidIdempotencyKey(#[from] InvalidIdempotencyKey),
    /// The key was used before with another body.
    #[error("Idempotency-Key was already used with a different request body")]
    KeyReused,
    /// The database cannot be reached; retry later.
    #[error("the service is temporarily unavailable; retry later")]
    Unavailable(#[source] anyhow::Error),
    /// A bug or an unexpected failure; details are logged, never sent.
    #[error("internal error")]
    Unexpected(#[source] anyhow::Error),
}

impl ApiError {
    /// The status and the stable code clients branch on.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            Self::Validation(_) => (StatusCode::BAD_REQUEST, "validation_failed"),
            Self::InvalidId(_) => (StatusCode::BAD_REQUEST, "invalid_id"),
            Self::InvalidIdempotencyKey(_) => (StatusCode::BAD_REQUEST, "invalid_idempotency_key"),
            Self::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::KeyReused => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Unexpected(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// What [`observe`](super::observe) logs about a failed request: the client never sees `cause`.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The stable code.
    pub code: &'static str,
    /// The full cause chain (`{:#}`), for the log only.
    pub cause: Arc<str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let cause: Arc<str> = match &self {
            Self::Unavailable(cause) | Self::Unexpected(cause) => format!("{cause:#}").into(),
            other => other.to_string().into(),
        };
        let mut response = json_error(status, code, self.to_string());
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response.extensions_mut().insert(Failure { code, cause });
        response
    }
}

impl From<IntakeError> for ApiError {
    fn from(e: IntakeError) -> Self {
        match e {
            IntakeError::KeyReused => Self::KeyReused,
            IntakeError::Unavailable(cause) => Self::Unavailable(cause),
            IntakeError::Unexpected(cause) => Self::Unexpected(cause),
        }
    }
}

impl From<RepoError> for ApiError {
    fn from(e: RepoError) -> Self {
        IntakeError::from(e).into()
    }
}
// ANCHOR_END: api_error
