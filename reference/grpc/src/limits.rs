//! Message size limits: set explicitly in the config, and a message over a limit answered with
//! the code gRPC specifies for it, `RESOURCE_EXHAUSTED`.
//!
//! tonic 0.14 enforces the limits in its codec (by default 4 MiB received, unlimited sent) and
//! reports a message over them as `OUT_OF_RANGE` — "decoded message length too large" when
//! receiving, "encoded message length too large" when sending — on the server and on the client
//! alike. The gRPC status-code table says `RESOURCE_EXHAUSTED` (the code other gRPC
//! implementations send and clients alert on). The codec answers before any handler runs, so the
//! server maps the code in a layer, in the response headers (a request over the limit: a
//! trailers-only answer) and in the trailers (a stream message or a response over the limit).
//!
//! On the client, a reply over the client's receive limit is `OUT_OF_RANGE` as well (map it with
//! [`resource_exhausted_if_too_large`]), but a request over the client's own *send* limit fails
//! as `INTERNAL` "h2 protocol error" — nothing says it was the size — so a client checks the size
//! before sending, with [`ensure_fits`].

use http_body::Frame;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tonic::codegen::http::{self, HeaderMap};
use tonic::{Code, Status};

/// One encoded message at most this big is accepted by default (tonic's own receive default).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

// ANCHOR: map
/// Whether `status` is tonic's report of a message over a size limit (either direction).
pub fn is_message_too_large(status: &Status) -> bool {
    status.code() == Code::OutOfRange
        && (status.message().starts_with("Error, decoded message length too large")
            || status.message().starts_with("Error, encoded message length too large"))
}

/// A message over a size limit as `RESOURCE_EXHAUSTED` (keeping tonic's message, which names the
/// size and the limit); every other status unchanged.
pub fn resource_exhausted_if_too_large(status: Status) -> Status {
    if is_message_too_large(&status) { Status::resource_exhausted(status.message()) } else { status }
}

/// The client's check before sending: `RESOURCE_EXHAUSTED` naming both sizes when `message`
/// encodes to more than `limit` bytes.
#[allow(clippy::result_large_err)] // tonic's Status is the error type of every call
pub fn ensure_fits<M: prost::Message>(message: &M, limit: usize) -> Result<(), Status> {
    let len = message.encoded_len();
    if len > limit {
        return Err(Status::resource_exhausted(format!(
            "message of {len} bytes is over the limit of {limit} bytes"
        )));
    }
    Ok(())
}

/// Rewrites a `grpc-status` in `headers` (response headers or trailers) the same way.
fn remap(headers: &mut HeaderMap) {
    // Cheap test first: only OUT_OF_RANGE (11) can need it.
    if headers.get(Status::GRPC_STATUS).is_none_or(|v| v.as_bytes() != b"11") {
        return;
    }
    if let Some(status) = Status::from_header_map(headers)
        && is_message_too_large(&status)
    {
        // Only fails for a status message that cannot be a header value, and it just came from one.
        let _ = resource_exhausted_if_too_large(status).add_header(headers);
    }
}
// ANCHOR_END: map

/// The layer: `Server::builder().layer(SizeLimitStatusLayer)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SizeLimitStatusLayer;

impl<S> tower::Layer<S> for SizeLimitStatusLayer {
    type Service = SizeLimitStatus<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SizeLimitStatus { inner }
    }
}

/// The service [`SizeLimitStatusLayer`] makes.
#[derive(Debug, Clone)]
pub struct SizeLimitStatus<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for SizeLimitStatus<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<RemapTrailers<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let response = self.inner.call(req);
        Box::pin(async move {
            let mut response = response.await?;
            remap(response.headers_mut());
            Ok(response.map(|inner| RemapTrailers { inner }))
        })
    }
}

/// A response body whose trailers go through the same mapping.
#[derive(Debug)]
pub struct RemapTrailers<B> {
    inner: B,
}

impl<B> http_body::Body for RemapTrailers<B>
where
    B: http_body::Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let mut frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(Ok(f)) = frame.as_mut()
            && let Some(trailers) = f.trailers_mut()
        {
            remap(trailers);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tonics_size_errors_become_resource_exhausted() {
        let decoded = Status::out_of_range(
            "Error, decoded message length too large: found 10485776 bytes, the limit is: 4194304 bytes",
        );
        let mapped = resource_exhausted_if_too_large(decoded);
        assert_eq!(mapped.code(), Code::ResourceExhausted);
        assert!(mapped.message().contains("the limit is: 4194304 bytes"));
        let encoded = Status::out_of_range(
            "Error, encoded message length too large: found 9 bytes, the limit is: 8 bytes",
        );
        assert_eq!(resource_exhausted_if_too_large(encoded).code(), Code::ResourceExhausted);
        // A handler's own OUT_OF_RANGE ("page 9 of 3") means what it says.
        let own = Status::out_of_range("page 9 of 3");
        assert_eq!(resource_exhausted_if_too_large(own).code(), Code::OutOfRange);
        assert_eq!(resource_exhausted_if_too_large(Status::internal("x")).code(), Code::Internal);
    }

    #[test]
    fn ensure_fits_measures_the_encoded_message() {
        // 1 tag byte + 1 length byte + 10 bytes of account id, then 2 bytes for the count.
        let request = crate::pb::LedgerRequest { account_id: "0123456789".into(), count: 1 };
        assert!(ensure_fits(&request, 14).is_ok());
        let refused = ensure_fits(&request, 13).unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted);
        assert_eq!(refused.message(), "message of 14 bytes is over the limit of 13 bytes");
    }

    #[test]
    fn headers_and_trailers_are_rewritten_in_place() {
        let mut headers = HeaderMap::new();
        Status::out_of_range("Error, decoded message length too large: found 5 bytes, the limit is: 4 bytes")
            .add_header(&mut headers)
            .unwrap();
        remap(&mut headers);
        let status = Status::from_header_map(&headers).unwrap();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(
            status.message(),
            "Error, decoded message length too large: found 5 bytes, the limit is: 4 bytes"
        );

        let mut ok = HeaderMap::new();
        Status::ok("").add_header(&mut ok).unwrap();
        let before = ok.clone();
        remap(&mut ok);
        assert_eq!(ok, before);
    }
}
