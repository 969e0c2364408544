//! A bounded drain. tonic's graceful stop waits for every open call to end; a server stream
//! (or a client that keeps its stream open) would hold a SIGTERM until the client's deadline, or
//! for ever, and Kubernetes then kills the pod mid-write. This layer ends whatever is still
//! running when the drain deadline passes: a call not answered yet gets `UNAVAILABLE`, an open
//! response stream gets `UNAVAILABLE` trailers (its producer sees the receiver gone and stops).
//! `UNAVAILABLE` tells the client to retry — on another instance.

use cruncan_shutdown::Shutdown;
use http_body::Frame;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::Status;
use tonic::codegen::http::{self, HeaderMap};

/// The message of the `UNAVAILABLE` a call cut by the drain gets.
pub const DRAIN_MESSAGE: &str = "server shutting down: drain timeout reached, retry on another instance";

// ANCHOR: deadline
/// A signal that fires `drain_timeout` after `shutdown` does.
pub fn drain_deadline(shutdown: &Shutdown, drain_timeout: Duration) -> Shutdown {
    let expired = Shutdown::new();
    let fire = expired.clone();
    let started = shutdown.wait();
    tokio::spawn(async move {
        started.await;
        tokio::time::sleep(drain_timeout).await;
        fire.trigger();
    });
    expired
}
// ANCHOR_END: deadline

/// The layer: `Server::builder().layer(DrainLayer::new(deadline))`.
#[derive(Debug, Clone)]
pub struct DrainLayer {
    expired: Shutdown,
}

impl DrainLayer {
    /// Cuts open calls when `expired` fires (see [`drain_deadline`]).
    pub fn new(expired: Shutdown) -> Self {
        Self { expired }
    }
}

impl<S> tower::Layer<S> for DrainLayer {
    type Service = Drain<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Drain { inner, expired: self.expired.clone() }
    }
}

/// The service [`DrainLayer`] makes.
#[derive(Debug, Clone)]
pub struct Drain<S> {
    inner: S,
    expired: Shutdown,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Drain<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<DrainBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    // ANCHOR: cut
    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let response = self.inner.call(req);
        let expired = self.expired.clone();
        Box::pin(async move {
            tokio::select! {
                response = response => Ok(response?.map(|body| DrainBody::new(body, &expired))),
                // Dropping the handler's future cancels it.
                () = expired.wait() => Ok(Status::unavailable(DRAIN_MESSAGE).into_http()),
            }
        })
    }
    // ANCHOR_END: cut
}

/// A response body that ends with `UNAVAILABLE` trailers when the drain deadline passes.
pub struct DrainBody<B> {
    /// `None` once ended (or for a trailers-only answer).
    inner: Option<B>,
    expired: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl<B> DrainBody<B> {
    fn new(inner: B, expired: &Shutdown) -> Self {
        Self { inner: Some(inner), expired: Some(Box::pin(expired.wait())) }
    }
}

impl<B> Default for DrainBody<B> {
    fn default() -> Self {
        Self { inner: None, expired: None }
    }
}

impl<B> std::fmt::Debug for DrainBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrainBody").field("open", &self.inner.is_some()).finish()
    }
}

impl<B> http_body::Body for DrainBody<B>
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
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        if let Some(expired) = this.expired.as_mut()
            && expired.as_mut().poll(cx).is_ready()
        {
            // Dropping the stream is what tells its producer the receiver has gone.
            this.inner = None;
            let mut trailers = HeaderMap::new();
            if Status::unavailable(DRAIN_MESSAGE).add_header(&mut trailers).is_ok() {
                tracing::warn!("drain timeout: open response stream ended with UNAVAILABLE");
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
            return Poll::Ready(None);
        }
        let frame = Pin::new(inner).poll_frame(cx);
        match &frame {
            // The stream has ended by itself: nothing left to cut.
            Poll::Ready(None) => this.inner = None,
            Poll::Ready(Some(Ok(f))) if f.is_trailers() => this.expired = None,
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        // Unknown once it may be cut short.
        http_body::SizeHint::default()
    }
}
