//! Extractors: the edge where raw HTTP becomes typed input or a named 4xx. A handler that takes
//! a [`ValidRequest`] cannot be reached with a body that is not a valid request.

use super::{ApiError, AppState};
use crate::domain::{NewRequest, ValidationError};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode};
use cruncan_model::OneRequest;

// ANCHOR: valid_request
/// A `POST /one` body that is JSON (by `Content-Type` and by syntax), an object of the request's
/// shape and within the configured limits.
#[derive(Debug)]
pub struct ValidRequest(pub NewRequest);

impl FromRequest<AppState> for ValidRequest {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        require_json(req.headers())?;
        let body = Bytes::from_request(req, state).await.map_err(|rejection| match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(state.body_limit),
            _ => ApiError::MalformedJson(rejection.body_text()),
        })?;
        Ok(Self(parse(&body, state)?))
    }
}

fn parse(body: &[u8], state: &AppState) -> Result<NewRequest, ApiError> {
    // Syntax first (no allocation), so a body that is not JSON at all is reported as such even
    // when a field before the syntax error has the wrong type; then straight into the typed body.
    serde_json::from_slice::<serde::de::IgnoredAny>(body)
        .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    // serde accepts a JSON array for a struct (its fields in order); the API's body is an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ValidationError { field: "body".into(), message: "must be a JSON object".into() }.into());
    }
    let mut json = serde_json::Deserializer::from_slice(body);
    let parsed: OneRequest = serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let field = e.path().to_string();
        ValidationError {
            field: if field == "." { "body".into() } else { field },
            message: e.inner().to_string(),
        }
    })?;
    Ok(NewRequest::parse(parsed, &state.limits)?)
}
// ANCHOR_END: valid_request

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    if cruncan_http::is_json(headers) { Ok(()) } else { Err(ApiError::UnsupportedMediaType) }
}
