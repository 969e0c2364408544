//! `ValidJson<T>`: a JSON request body as `T`, or an RFC 9457 problem the client can act on —
//! `415` without `Content-Type: application/json`, `413` over the body limit, `400
//! malformed_json` for bytes that are not JSON, `400 validation_failed` naming the field (as a
//! JSON path, `items[1].quantity`) for JSON of the wrong shape. Never axum's plain-text rejection,
//! never a 500.

use crate::json_error;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

// ANCHOR: valid_json
/// A JSON body deserialised into `T`; its rejection is a [`JsonRejection`].
#[derive(Debug)]
pub struct ValidJson<T>(pub T);

/// Why a body was not a `T`.
#[derive(Debug, thiserror::Error)]
pub enum JsonRejection {
    /// Not `Content-Type: application/json`.
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    /// Over the body limit (axum's `DefaultBodyLimit`).
    #[error("request body is too large")]
    TooLarge,
    /// Not JSON at all.
    #[error("request body is not valid JSON: {0}")]
    Malformed(String),
    /// JSON of the wrong shape: the field and what is wrong with it.
    #[error("{field}: {message}")]
    Invalid {
        /// JSON path of the field; `body` for the document itself.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ValidJson<T> {
    type Rejection = JsonRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, JsonRejection> {
        if !is_json(req.headers()) {
            return Err(JsonRejection::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => JsonRejection::TooLarge,
            _ => JsonRejection::Malformed(e.body_text()),
        })?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(&mut de).map(ValidJson).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                JsonRejection::Malformed(inner.to_string())
            } else {
                let field = if field == "." { "body".into() } else { field };
                JsonRejection::Invalid { field, message: inner.to_string() }
            }
        })
    }
}
// ANCHOR_END: valid_json

/// Whether `Content-Type` says JSON: `application/json` or an `application/*+json` type, any
/// parameters (`; charset=utf-8`) ignored.
pub fn is_json(headers: &HeaderMap) -> bool {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let mime = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

impl JsonRejection {
    /// The status and the stable code clients branch on.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            Self::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            Self::Invalid { .. } => (StatusCode::BAD_REQUEST, "validation_failed"),
        }
    }
}

impl IntoResponse for JsonRejection {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        json_error(status, code, self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)] // read through Debug only
    struct Order {
        items: Vec<Item>,
    }
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Item {
        quantity: u32,
    }

    async fn extract(ct: Option<&str>, body: &str) -> Result<Order, JsonRejection> {
        let mut req = Request::builder();
        if let Some(ct) = ct {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        ValidJson::<Order>::from_request(req.body(Body::from(body.to_owned())).unwrap(), &())
            .await
            .map(|j| j.0)
    }

    #[tokio::test]
    async fn each_kind_of_bad_body_gets_its_own_answer() {
        let json = Some("application/json; charset=utf-8");
        assert!(extract(json, r#"{"items":[{"quantity":1}]}"#).await.is_ok());
        assert!(matches!(extract(None, "{}").await, Err(JsonRejection::UnsupportedMediaType)));
        assert!(matches!(extract(Some("text/plain"), "{}").await, Err(JsonRejection::UnsupportedMediaType)));
        assert!(matches!(extract(json, "{nope").await, Err(JsonRejection::Malformed(_))));
        match extract(json, r#"{"items":[{"quantity":1},{"quantity":-1}]}"#).await {
            Err(JsonRejection::Invalid { field, .. }) => assert_eq!(field, "items[1].quantity"),
            other => panic!("{other:?}"),
        }
        match extract(json, "[]").await {
            Err(JsonRejection::Invalid { field, .. }) => assert_eq!(field, "body"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn the_rejection_is_a_problem_naming_the_field() {
        let response = JsonRejection::Invalid { field: "items[1].quantity".into(), message: "bad".into() }
            .into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let problem: crate::ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (problem.code.as_str(), problem.detail.as_str()),
            ("validation_failed", "items[1].quantity: bad")
        );
    }
}
