//! The error every endpoint of the user and notes services answers with: one variant per case the
//! client can act on, each with its status; causes are logged once, here, and never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cruncan_http::json_error;

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A field is missing or out of bounds; the message names it.
    #[error("{field}: {message}")]
    Validation {
        /// The field, as a JSON path.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// No or a bad bearer token.
    #[error(transparent)]
    Auth(#[from] jwt::AuthError),
    /// The signed-in user may not do this to this note (sharing or deleting someone else's).
    #[error("{0}")]
    Forbidden(String),
    /// No such resource (or one the signed-in user cannot see).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state: a taken name, a stale version.
    #[error("{message}")]
    Conflict {
        /// Stable code, e.g. `stale_version`.
        code: &'static str,
        /// What conflicts.
        message: String,
        /// The version the note has now, for a stale edit: the client reloads and retries.
        current_version: Option<i64>,
    },
    /// Well-formed but refers to something unusable (sharing with a user the notes service does
    /// not know).
    #[error("{field}: {message}")]
    Unprocessable {
        /// The field.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// Our own database is unreachable; retry later.
    #[error("the service is temporarily unavailable; retry later")]
    Unavailable(#[source] anyhow::Error),
    /// A bug; details are logged, never sent.
    #[error("internal error")]
    Unexpected(#[source] anyhow::Error),
}

impl ApiError {
    /// A validation error naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation { field: field.into(), message: message.into() }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if cruncan_db::is_unavailable(&e) { Self::Unavailable(e.into()) } else { Self::Unexpected(e.into()) }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        match e.downcast::<sqlx::Error>() {
            Ok(db) => db.into(),
            Err(other) => Self::Unexpected(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The token errors keep reference/jwt's answer: 401 with `WWW-Authenticate`.
        let this = match self {
            Self::Auth(e) => return e.into_response(),
            other => other,
        };
        let (status, code) = match &this {
            Self::Validation { .. } => (StatusCode::BAD_REQUEST, "validation_failed"),
            Self::Auth(_) => (StatusCode::UNAUTHORIZED, "invalid_token"), // answered above
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict { code, current_version, .. } => {
                // The problem body, with the version the client must re-read as one more member.
                let problem = cruncan_http::ErrorBody::new(StatusCode::CONFLICT, code, this.to_string());
                let mut body = serde_json::to_value(problem).unwrap_or_default();
                if let Some(v) = current_version {
                    body["current_version"] = (*v).into();
                }
                return cruncan_http::problem_response(StatusCode::CONFLICT, body);
            }
            Self::Unprocessable { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "unknown_reference"),
            Self::Unavailable(e) => {
                tracing::warn!(error = %format!("{e:#}"), "database unavailable");
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            Self::Unexpected(e) => {
                tracing::error!(error = %format!("{e:#}"), "unexpected error");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        json_error(status, code, this.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(e: ApiError) -> (StatusCode, serde_json::Value) {
        let r = e.into_response();
        let status = r.status();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap_or_default();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    #[tokio::test]
    async fn each_error_has_its_status_and_no_internals_leak() {
        let stale = ApiError::Conflict {
            code: "stale_version",
            message: "version: stale".into(),
            current_version: Some(7),
        };
        let (status, b) = body(stale).await;
        assert_eq!(
            (status, b["code"].as_str(), b["current_version"].as_i64()),
            (StatusCode::CONFLICT, Some("stale_version"), Some(7))
        );
        let (status, b) =
            body(ApiError::Unexpected(anyhow::anyhow!("connection to 10.0.0.7:5432 refused"))).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!b.to_string().contains("10.0.0.7"), "{b}");
        let (status, _) = body(ApiError::Auth(jwt::AuthError::Missing)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, b) =
            body(ApiError::Unprocessable { field: "user_id", message: "no user x".into() }).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(b["detail"].as_str().is_some_and(|m| m.starts_with("user_id")));
    }
}
