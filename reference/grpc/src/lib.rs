//! A tonic gRPC service, `PaymentsService`, with what a production one needs: TLS, the standard
//! health service, server reflection, an interceptor that carries trace context and a request
//! id, bounded streams (backpressure) that stop when the client goes away, deadlines, client
//! retries of `UNAVAILABLE`, explicit message size limits (an oversize message is
//! `RESOURCE_EXHAUSTED`), and a graceful stop whose drain is bounded.

pub mod drain;
pub mod limits;
pub mod tls;

/// The generated protobuf types and service stubs.
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::unwrap_used, clippy::expect_used)]
pub mod pb {
    tonic::include_proto!("cruncan.payments.v1");
    /// The encoded file descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("payments_descriptor");
}

use backon::{ExponentialBuilder, Retryable as _};
use cruncan_shutdown::Shutdown;
use pb::payments_service_server::{PaymentsService, PaymentsServiceServer};
use pb::{Balance, BatchSummary, LedgerEntry, LedgerRequest, TransactionRequest, TransactionResponse};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Metadata key of the request id.
pub const REQUEST_ID: &str = "x-request-id";

// ANCHOR: validate
/// Checks a transfer; the message names the field, the code is `INVALID_ARGUMENT`.
pub fn validate(tx: &TransactionRequest) -> Result<i64, Status> {
    let bad = |m: &str| Err(Status::invalid_argument(m.to_owned()));
    if tx.id.trim().is_empty() {
        return bad("id must not be empty");
    }
    if tx.source_account_id.trim().is_empty() || tx.target_account_id.trim().is_empty() {
        return bad("source_account_id and target_account_id must not be empty");
    }
    if tx.source_account_id == tx.target_account_id {
        return bad("source and target account must differ");
    }
    if tx.amount <= 0 {
        return bad("amount must be positive (minor units)");
    }
    if tx.interest < 0 {
        return bad("interest must not be negative");
    }
    tx.amount.checked_add(tx.interest).map_or_else(|| bad("amount + interest overflows"), Ok)
}
// ANCHOR_END: validate

// ANCHOR: config
/// Server knobs.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// Simulated processing time of a unary transfer (demonstrates deadlines).
    pub processing_delay: Duration,
    /// Largest encoded message the server accepts; a larger one is `RESOURCE_EXHAUSTED`.
    pub max_decoding_message_size: usize,
    /// Largest encoded message the server sends; a larger one ends its call `RESOURCE_EXHAUSTED`.
    pub max_encoding_message_size: usize,
    /// How long a stop waits for open calls before ending them with `UNAVAILABLE`; keep it
    /// under the orchestrator's grace period (Kubernetes: 30 s by default).
    pub drain_timeout: Duration,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            processing_delay: Duration::ZERO,
            max_decoding_message_size: limits::DEFAULT_MAX_MESSAGE_SIZE,
            max_encoding_message_size: limits::DEFAULT_MAX_MESSAGE_SIZE,
            drain_timeout: Duration::from_secs(20),
        }
    }
}
// ANCHOR_END: config

/// The service.
#[derive(Debug, Default)]
pub struct Payments {
    cfg: ServiceSettings,
    /// Server streams that ended because the client went away.
    pub cancelled_streams: Arc<AtomicU64>,
}

impl Payments {
    /// A service with `cfg`.
    pub fn new(cfg: ServiceSettings) -> Self {
        Self { cfg, cancelled_streams: Arc::default() }
    }
}

/// What the interceptor put in the request's extensions.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The caller's request id, or a new one.
    pub request_id: String,
    /// The caller's trace context.
    pub parent: opentelemetry::Context,
}

// ANCHOR: interceptor
/// Server interceptor: takes the caller's `traceparent` and `x-request-id` (making one when
/// missing) and hands them to the handler through the request's extensions.
#[allow(clippy::result_large_err)] // tonic's interceptor signature
pub fn server_interceptor(mut req: Request<()>) -> Result<Request<()>, Status> {
    let headers = req.metadata().clone().into_headers();
    let parent = cruncan_telemetry::context_from_http_headers(&headers);
    let request_id = req
        .metadata()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    req.extensions_mut().insert(CallContext { request_id, parent });
    Ok(req)
}

/// Client interceptor: sends the current span's trace context and a request id.
#[allow(clippy::result_large_err)]
pub fn client_interceptor(mut req: Request<()>) -> Result<Request<()>, Status> {
    let mut headers = tonic::codegen::http::HeaderMap::new();
    cruncan_telemetry::inject_current_into_http_headers(&mut headers);
    for (k, v) in &headers {
        if let (Ok(key), Ok(val)) = (
            tonic::metadata::MetadataKey::from_bytes(k.as_str().as_bytes()),
            MetadataValue::try_from(v.as_bytes()),
        ) {
            req.metadata_mut().insert(key, val);
        }
    }
    if !req.metadata().contains_key(REQUEST_ID)
        && let Ok(id) = MetadataValue::try_from(uuid::Uuid::new_v4().to_string())
    {
        req.metadata_mut().insert(REQUEST_ID, id);
    }
    Ok(req)
}
// ANCHOR_END: interceptor

fn span_for<T>(req: &Request<T>, method: &'static str) -> (tracing::Span, String) {
    let ctx = req.extensions().get::<CallContext>().cloned();
    let request_id = ctx.as_ref().map(|c| c.request_id.clone()).unwrap_or_default();
    let span = tracing::info_span!(
        "grpc",
        otel.name = format!("cruncan.payments.v1.PaymentsService/{method}"),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = "cruncan.payments.v1.PaymentsService",
        rpc.method = method,
        request_id = %request_id,
    );
    if let Some(c) = ctx {
        let _ = span.set_parent(c.parent);
    }
    (span, request_id)
}

fn with_request_id<T>(mut resp: Response<T>, request_id: &str) -> Response<T> {
    if let Ok(v) = MetadataValue::try_from(request_id) {
        resp.metadata_mut().insert(REQUEST_ID, v);
    }
    resp
}

type Stream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl PaymentsService for Payments {
    async fn do_transaction(
        &self,
        req: Request<TransactionRequest>,
    ) -> Result<Response<TransactionResponse>, Status> {
        let (span, request_id) = span_for(&req, "DoTransaction");
        async move {
            let transferred = validate(req.get_ref())?;
            if !self.cfg.processing_delay.is_zero() {
                tokio::time::sleep(self.cfg.processing_delay).await;
            }
            tracing::info!(id = %req.get_ref().id, transferred, "transaction done");
            let resp = TransactionResponse { success: true, transferred, error_message: String::new() };
            Ok(with_request_id(Response::new(resp), &request_id))
        }
        .instrument(span)
        .await
    }

    type LedgerStream = Stream<LedgerEntry>;

    // ANCHOR: server_stream
    /// Entries go through a bounded channel: the producer waits when the client reads slowly
    /// (backpressure) and stops when the client has gone (the send fails).
    async fn ledger(&self, req: Request<LedgerRequest>) -> Result<Response<Self::LedgerStream>, Status> {
        let (_span, request_id) = span_for(&req, "Ledger");
        let LedgerRequest { account_id, count } = req.into_inner();
        if account_id.is_empty() {
            return Err(Status::invalid_argument("account_id must not be empty"));
        }
        let (tx, rx) = mpsc::channel(4);
        let cancelled = Arc::clone(&self.cancelled_streams);
        tokio::spawn(async move {
            for sequence in 1..=u64::from(count) {
                let entry = LedgerEntry {
                    sequence,
                    transaction_id: format!("{account_id}-{sequence}"),
                    amount: i64::try_from(sequence).unwrap_or(i64::MAX) * 100,
                };
                if tx.send(Ok(entry)).await.is_err() {
                    cancelled.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(sequence, "ledger stream cancelled by the client");
                    return;
                }
            }
        });
        Ok(with_request_id(
            Response::new(Box::pin(ReceiverStream::new(rx)) as Self::LedgerStream),
            &request_id,
        ))
    }
    // ANCHOR_END: server_stream

    async fn upload_batch(
        &self,
        req: Request<Streaming<TransactionRequest>>,
    ) -> Result<Response<BatchSummary>, Status> {
        let (span, request_id) = span_for(&req, "UploadBatch");
        let mut stream = req.into_inner();
        let mut summary = BatchSummary::default();
        async {
            // One message at a time: HTTP/2 flow control slows a client that sends faster.
            while let Some(tx) = stream.message().await? {
                match validate(&tx) {
                    Ok(t) => {
                        summary.accepted += 1;
                        summary.total_transferred = summary.total_transferred.saturating_add(t);
                    }
                    Err(s) => {
                        summary.rejected += 1;
                        summary.errors.push(format!("{}: {}", tx.id, s.message()));
                    }
                }
            }
            Ok::<_, Status>(())
        }
        .instrument(span)
        .await?;
        Ok(with_request_id(Response::new(summary), &request_id))
    }

    type RunningBalanceStream = Stream<Balance>;

    async fn running_balance(
        &self,
        req: Request<Streaming<TransactionRequest>>,
    ) -> Result<Response<Self::RunningBalanceStream>, Status> {
        let (_span, request_id) = span_for(&req, "RunningBalance");
        let mut incoming = req.into_inner();
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            let mut balance: i64 = 0;
            loop {
                let next = match incoming.message().await {
                    Ok(Some(t)) => t,
                    Ok(None) => return,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                let reply = validate(&next).map(|t| {
                    balance = balance.saturating_add(t);
                    Balance { transaction_id: next.id.clone(), balance }
                });
                if tx.send(reply).await.is_err() {
                    return; // the client went away
                }
            }
        });
        Ok(with_request_id(
            Response::new(Box::pin(ReceiverStream::new(rx)) as Self::RunningBalanceStream),
            &request_id,
        ))
    }
}

// ANCHOR: serve
/// Serves the payments service, health and reflection on `listener` until `shutdown`, then
/// stops accepting and lets in-flight calls finish — for at most `drain_timeout`, after which
/// the calls still open end with `UNAVAILABLE`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<tls::ServerTls>,
    service: Payments,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<PaymentsServiceServer<Payments>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let cfg = service.cfg.clone();
    let payments = PaymentsServiceServer::new(service)
        .max_decoding_message_size(cfg.max_decoding_message_size)
        .max_encoding_message_size(cfg.max_encoding_message_size);
    let expired = drain::drain_deadline(&shutdown, cfg.drain_timeout);
    let mut builder = tonic::transport::Server::builder();
    if let Some(t) = tls {
        builder = builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(t.identity()))?;
    }
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let server = builder
        .layer(drain::DrainLayer::new(expired.clone()))
        .layer(limits::SizeLimitStatusLayer)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(tonic::service::interceptor::InterceptedService::new(payments, server_interceptor))
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.wait().await;
            // Report NOT_SERVING first, so load balancers drain this instance.
            health.set_not_serving::<PaymentsServiceServer<Payments>>().await;
        });
    tokio::select! {
        served = server => served?,
        // The layer has ended every call; a connection that still cannot close (a peer that
        // reads nothing) is abandoned rather than holding the process.
        () = async { expired.wait().await; tokio::time::sleep(Duration::from_secs(1)).await } => {
            tracing::warn!("connections still open a second after the drain timeout; closing anyway");
        }
    }
    Ok(())
}
// ANCHOR_END: serve

// ANCHOR: retry
/// Calls `f` until it succeeds or fails with something other than `UNAVAILABLE`, at most
/// `attempts` times, with exponential backoff from `first_delay` up to 5 s (backon). Only
/// `UNAVAILABLE` is retried: it means the request did not reach a server, so repeating it cannot
/// apply it twice.
pub async fn retry_unavailable<T, F, Fut>(attempts: u32, first_delay: Duration, f: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let backoff = ExponentialBuilder::new()
        .with_min_delay(first_delay)
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(attempts.saturating_sub(1) as usize);
    f.retry(backoff)
        .when(|s: &Status| s.code() == tonic::Code::Unavailable)
        .notify(|_, delay| tracing::info!(?delay, "UNAVAILABLE; retrying"))
        .await
}
// ANCHOR_END: retry

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unavailable_is_retried_at_most_attempts_times_in_all() {
        let mut calls = 0;
        let status = retry_unavailable(3, Duration::from_millis(1), || {
            calls += 1;
            async { Err::<(), _>(Status::unavailable("no server")) }
        })
        .await
        .unwrap_err();
        assert_eq!((status.code(), calls), (tonic::Code::Unavailable, 3));
    }
    use opentelemetry::trace::TraceContextExt as _;

    #[test]
    fn the_server_interceptor_carries_trace_context_and_request_id() {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let mut req = Request::new(());
        req.metadata_mut().insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap(),
        );
        req.metadata_mut().insert(REQUEST_ID, "abc-1".parse().unwrap());
        let req = server_interceptor(req).unwrap();
        let ctx = req.extensions().get::<CallContext>().unwrap();
        assert_eq!(ctx.request_id, "abc-1");
        assert_eq!(
            ctx.parent.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );

        // No request id: one is made.
        let made = server_interceptor(Request::new(())).unwrap();
        assert_eq!(made.extensions().get::<CallContext>().unwrap().request_id.len(), 36);
    }

    #[test]
    fn the_client_interceptor_sends_a_request_id() {
        let req = client_interceptor(Request::new(())).unwrap();
        assert!(req.metadata().get(REQUEST_ID).is_some());
    }
}
