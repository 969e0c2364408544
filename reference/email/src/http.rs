//! The REST edge: routes, the error mapping, the OpenAPI document. Handlers turn the request into
//! validated types and call one use case.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cruncan_http::{ErrorBody, json_error};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::OpenApi as _;

use crate::domain::{CreateEmail, Email, EmailId, ValidationError};
use crate::metrics::Metrics;
use crate::search::{SearchPage, SearchQuery};
use crate::service::{Emails, ServiceError};

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// The use cases.
    pub emails: Emails,
    /// Largest accepted body.
    pub body_limit: usize,
    /// Instruments.
    pub metrics: Metrics,
}

/// Every way a request can fail, each with its status; the message is fit for the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON.
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    /// Over the body limit.
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    /// Not `application/json`.
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    /// A bad `Idempotency-Key` header.
    #[error("Idempotency-Key must be 1 to 255 visible ASCII characters")]
    InvalidIdempotencyKey,
    /// No email with this id.
    #[error("no email with id {0}")]
    NotFound(EmailId),
    /// What the use case said.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self::Service(ServiceError::Validation(e))
    }
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            Self::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            Self::InvalidIdempotencyKey => (StatusCode::BAD_REQUEST, "invalid_idempotency_key"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Service(ServiceError::Validation(_)) => (StatusCode::BAD_REQUEST, "validation_failed"),
            Self::Service(ServiceError::KeyReused) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
            }
            Self::Service(ServiceError::Unavailable(_)) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Service(ServiceError::Unexpected(_)) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            Self::Service(ServiceError::Unavailable(cause)) => {
                tracing::warn!(error = %format!("{cause:#}"), "request failed: unavailable");
            }
            Self::Service(ServiceError::Unexpected(cause)) => {
                tracing::error!(error = %format!("{cause:#}"), "request failed: internal error");
            }
            other => tracing::info!(error = %other, code, "request rejected"),
        }
        let mut response = json_error(status, code, self.to_string());
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// `202` body.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AcceptedBody {
    /// The email's id (UUID v7).
    pub email_id: String,
}

// ANCHOR: router
/// The REST routes (the seed's paths), Swagger UI at `/docs`.
pub fn router(state: HttpState) -> Router {
    let limit = state.body_limit;
    Router::new()
        .route("/api/v1/email", axum::routing::post(create_email).get(search_emails))
        .route("/api/v1/email/{id}", get(get_email))
        .with_state(state)
        .merge(utoipa_swagger_ui::SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
        .fallback(cruncan_http::not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(cruncan_http::json_method_not_allowed))
        .layer(axum::middleware::from_fn(cruncan_http::telemetry_middleware))
}
// ANCHOR_END: router

/// Accepts an email for sending.
#[utoipa::path(
    post,
    path = "/api/v1/email",
    request_body(content = CreateEmail, content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key and body: the same email id")),
    responses(
        (status = 202, description = "Accepted for sending", body = AcceptedBody, headers(("Location" = String))),
        (status = 400, description = "Malformed JSON or a field failed validation", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Idempotency-Key reused with another body", body = ErrorBody),
        (status = 503, description = "Database unreachable", body = ErrorBody),
    )
)]
pub async fn create_email(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let result = create(&state, &headers, body).await;
    let outcome = match &result {
        Ok((_, true)) => "replayed",
        Ok(_) => "accepted",
        Err(e) if e.status_and_code().0.is_client_error() => "rejected",
        Err(_) => "failed",
    };
    state.metrics.created("rest", outcome);
    result.map(|(r, _)| r)
}

async fn create(
    state: &HttpState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Response, bool), ApiError> {
    require_json(headers)?;
    let body = body.map_err(|r| match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(state.body_limit),
        _ => ApiError::MalformedJson(r.body_text()),
    })?;
    let key = idempotency_key(headers)?;
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    let raw: CreateEmail = serde_path_to_error::deserialize(&value).map_err(|e| {
        let field = e.path().to_string();
        ValidationError::new(if field == "." { "body".into() } else { field }, e.inner().to_string())
    })?;
    let accepted = state.emails.accept(raw.validate()?, key).await?;
    let id = accepted.email_id.to_string();
    let mut response =
        (StatusCode::ACCEPTED, axum::Json(AcceptedBody { email_id: id.clone() })).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/email/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if accepted.replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok((response, accepted.replayed))
}

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let mime = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let json = mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"));
    if json { Ok(()) } else { Err(ApiError::UnsupportedMediaType) }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(raw) = headers.get("idempotency-key") else { return Ok(None) };
    let key = raw.to_str().map_err(|_| ApiError::InvalidIdempotencyKey)?;
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::InvalidIdempotencyKey);
    }
    Ok(Some(key.to_owned()))
}

/// Returns one email (through the cache).
#[utoipa::path(
    get,
    path = "/api/v1/email/{id}",
    params(("id" = String, Path, description = "The email id (UUID)")),
    responses(
        (status = 200, description = "The email and its status", body = Email),
        (status = 400, description = "Not a UUID", body = ErrorBody),
        (status = 404, description = "Unknown id", body = ErrorBody),
        (status = 503, description = "Database unreachable", body = ErrorBody),
    )
)]
pub async fn get_email(
    State(state): State<HttpState>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let id: EmailId = raw.parse()?;
    let email = state.emails.get(id).await?.ok_or(ApiError::NotFound(id))?;
    Ok(axum::Json(email).into_response())
}

/// Full-text search over subject, addresses and body, best match first.
#[utoipa::path(
    get,
    path = "/api/v1/email",
    params(
        ("search" = Option<String>, Query, description = "Words, \"a phrase\", or, -not; empty lists all"),
        ("page" = Option<i64>, Query, description = "From 1 (default 1)"),
        ("size" = Option<i64>, Query, description = "1..=100 (default 10)"),
    ),
    responses(
        (status = 200, description = "One page", body = SearchPage),
        (status = 400, description = "A parameter out of bounds", body = ErrorBody),
    )
)]
pub async fn search_emails(
    State(state): State<HttpState>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let number = |name: &str| -> Result<Option<i64>, ValidationError> {
        params
            .get(name)
            .map(|v| v.parse::<i64>().map_err(|_| ValidationError::new(name, "must be an integer")))
            .transpose()
    };
    let query = SearchQuery::new(params.get("search").cloned(), number("page")?, number("size")?)?;
    Ok(axum::Json(state.emails.search(&query).await?).into_response())
}

/// The OpenAPI document served at `/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "cruncan email service",
        description = "Accepts emails, sends them over SMTP through NATS JetStream, reads and searches them."
    ),
    paths(create_email, get_email, search_emails),
    components(schemas(CreateEmail, AcceptedBody, Email, SearchPage, crate::domain::Status, ErrorBody))
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(e: ApiError) -> (StatusCode, serde_json::Value) {
        let r = e.into_response();
        let status = r.status();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn every_error_has_its_status_and_no_internals_leak() {
        let cases = [
            (
                ApiError::from(ValidationError::new("to[2]", "is not an email address")),
                400,
                "validation_failed",
            ),
            (ApiError::TooLarge(10), 413, "payload_too_large"),
            (ApiError::UnsupportedMediaType, 415, "unsupported_media_type"),
            (ApiError::NotFound(EmailId::new()), 404, "not_found"),
            (ApiError::Service(ServiceError::KeyReused), 422, "idempotency_key_reused"),
            (
                ApiError::Service(ServiceError::Unavailable(anyhow::anyhow!(
                    "connect 10.0.0.5:5432 refused"
                ))),
                503,
                "unavailable",
            ),
            (
                ApiError::Service(ServiceError::Unexpected(anyhow::anyhow!(
                    "relation \"email\" does not exist"
                ))),
                500,
                "internal",
            ),
        ];
        for (error, status, code) in cases {
            let (got, body) = body_of(error).await;
            assert_eq!((got.as_u16(), body["code"].as_str()), (status, Some(code)));
            let text = body.to_string();
            assert!(!text.contains("10.0.0.5") && !text.contains("relation"), "{text}");
        }
        let (_, body) =
            body_of(ApiError::from(ValidationError::new("to[2]", "is not an email address"))).await;
        assert_eq!(body["detail"], "to[2]: is not an email address");
    }
}
