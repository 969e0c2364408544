//! The `Idempotency-Key` request header as an extractor: a client that retries a `POST` after a
//! lost answer sends the same key, and the service answers the first outcome instead of doing the
//! work twice. Where the key and the first answer are stored is the service's business (with the
//! effect, in the same transaction); this is only the edge.

use crate::json_error;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

// ANCHOR: idempotency_key
/// The optional `Idempotency-Key` header: 1 to 255 visible ASCII characters, or a 400.
///
/// Take it as `Result<IdempotencyKeyHeader, InvalidIdempotencyKey>` to turn the rejection into
/// the service's own error type with `?` (so it is logged like any other 4xx), or bare to let
/// [`InvalidIdempotencyKey`] answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKeyHeader(pub Option<String>);

/// A present but unusable `Idempotency-Key` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Idempotency-Key must be 1 to 255 visible ASCII characters")]
pub struct InvalidIdempotencyKey;

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKeyHeader {
    type Rejection = InvalidIdempotencyKey;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, InvalidIdempotencyKey> {
        let Some(raw) = parts.headers.get("idempotency-key") else { return Ok(Self(None)) };
        let key = raw.to_str().map_err(|_| InvalidIdempotencyKey)?;
        if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidIdempotencyKey);
        }
        Ok(Self(Some(key.to_owned())))
    }
}
// ANCHOR_END: idempotency_key

impl IntoResponse for InvalidIdempotencyKey {
    fn into_response(self) -> Response {
        json_error(StatusCode::BAD_REQUEST, "invalid_idempotency_key", self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    async fn extract(value: Option<&[u8]>) -> Result<IdempotencyKeyHeader, InvalidIdempotencyKey> {
        let mut request = Request::builder();
        if let Some(v) = value {
            request = request.header("idempotency-key", v);
        }
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        IdempotencyKeyHeader::from_request_parts(&mut parts, &()).await
    }

    #[tokio::test]
    async fn absent_is_none_and_a_visible_key_is_kept() {
        assert_eq!(extract(None).await, Ok(IdempotencyKeyHeader(None)));
        assert_eq!(extract(Some(b"order-42")).await, Ok(IdempotencyKeyHeader(Some("order-42".into()))));
        assert_eq!(
            extract(Some("k".repeat(255).as_bytes())).await.map(|k| k.0.map(|k| k.len())),
            Ok(Some(255))
        );
    }

    #[tokio::test]
    async fn empty_long_spaced_or_non_ascii_keys_are_refused() {
        for bad in [&b""[..], "k".repeat(256).as_bytes(), b"two words", b"caf\xc3\xa9"] {
            assert_eq!(extract(Some(bad)).await, Err(InvalidIdempotencyKey), "{bad:?}");
        }
    }
}
