//! `ValidJson<T>`: the body as `T`, or a 400 that names the field at fault (never axum's
//! plain-text rejection, never a 500).

use crate::error::ApiError;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

/// A JSON body deserialised into `T`; its rejection is [`ApiError`].
#[derive(Debug)]
pub struct ValidJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ValidJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if !ct.trim_start().to_ascii_lowercase().starts_with("application/json") {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::MalformedJson(e.body_text()))?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(&mut de).map(ValidJson).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                ApiError::MalformedJson(inner.to_string())
            } else {
                ApiError::invalid(if field == "." { "body".into() } else { field }, inner.to_string())
            }
        })
    }
}
