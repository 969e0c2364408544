//! The error every service answers with: one variant per case the client can act on, each with
//! its status; causes are logged once, here, and never sent.

use crate::resilience::DependencyError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cruncan_http::json_error;

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A field is missing or out of bounds; the message names it.
    #[error("{field}: {message}")]
    Validation {
        /// The field, as a JSON path (`items[1].quantity`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// No such resource.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (duplicate e-mail, not enough stock).
    #[error("{message}")]
    Conflict {
        /// Stable code, e.g. `insufficient_stock`.
        code: &'static str,
        /// What conflicts.
        message: String,
    },
    /// Well-formed but refers to something that cannot be used (unknown or inactive user).
    #[error("{message}")]
    Unprocessable {
        /// Stable code, e.g. `unknown_user`.
        code: &'static str,
        /// Why.
        message: String,
    },
    /// Our own database is unreachable; retry later.
    #[error("the service is temporarily unavailable; retry later")]
    Unavailable(#[source] anyhow::Error),
    /// A service we call is down, slow, saturated or behind an open breaker; retry later.
    #[error(transparent)]
    Dependency(#[from] DependencyError),
    /// The caller's deadline passed before the work was done.
    #[error("the request's deadline passed")]
    DeadlineExceeded,
    /// A bug; details are logged, never sent.
    #[error("internal error")]
    Unexpected(#[source] anyhow::Error),
}

impl ApiError {
    /// A validation error naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation { field: field.into(), message: message.into() }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Validation { .. } => (StatusCode::BAD_REQUEST, "validation_failed"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            Self::Unprocessable { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Dependency(_) => (StatusCode::SERVICE_UNAVAILABLE, "dependency_unavailable"),
            Self::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded"),
            Self::Unexpected(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            Self::Unavailable(cause) => tracing::warn!(error = %format!("{cause:#}"), "unavailable"),
            Self::Unexpected(cause) => tracing::error!(error = %format!("{cause:#}"), "internal error"),
            other => tracing::info!(error = %other, code, "request refused"),
        }
        let mut response = json_error(status, code, self.to_string());
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// A database error: unreachable or exhausted is 503, anything else is a bug.
pub fn db(e: sqlx::Error) -> ApiError {
    if cruncan_db::is_unavailable(&e) {
        ApiError::Unavailable(e.into())
    } else {
        ApiError::Unexpected(e.into())
    }
}
