//! The gRPC edge: `EmailService` over TLS with keepalive and a maximum connection age, the
//! standard health service and server reflection. The same use cases as REST; statuses map from
//! the same [`ServiceError`].

use cruncan_shutdown::Shutdown;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::config::GrpcSettings;
use crate::domain::{CreateEmail, Email, EmailId};
use crate::metrics::Metrics;
use crate::search::SearchQuery;
use crate::service::{Emails, ServiceError};

/// The generated protobuf types and service stubs.
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::unwrap_used, clippy::expect_used)]
pub mod pb {
    tonic::include_proto!("cruncan.email.v1");
    /// The encoded file descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("email_descriptor");
}

use pb::email_service_server::{EmailService, EmailServiceServer};

// ANCHOR: status_mapping
impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Validation(v) => Status::invalid_argument(v.to_string()),
            ServiceError::KeyReused => Status::already_exists(e.to_string()),
            ServiceError::Unavailable(cause) => {
                tracing::warn!(error = %format!("{cause:#}"), "call failed: unavailable");
                Status::unavailable("the service is temporarily unavailable; retry later")
            }
            ServiceError::Unexpected(cause) => {
                tracing::error!(error = %format!("{cause:#}"), "call failed: internal error");
                Status::internal("internal error")
            }
        }
    }
}
// ANCHOR_END: status_mapping

fn to_pb(e: Email) -> pb::Email {
    pb::Email {
        email_id: e.email_id.to_string(),
        from: e.from,
        to: e.to,
        subject: e.subject,
        message: e.message,
        status: e.status.as_str().to_owned(),
        attempts: e.attempts,
        created_at: e.created_at.to_rfc3339(),
        sent_at: e.sent_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
    }
}

/// The service implementation.
#[derive(Debug, Clone)]
pub struct GrpcEmails {
    emails: Emails,
    metrics: Metrics,
}

impl GrpcEmails {
    /// Over the shared use cases.
    pub fn new(emails: Emails, metrics: Metrics) -> Self {
        Self { emails, metrics }
    }
}

/// A server span that continues the caller's trace (`traceparent` in the metadata).
fn call_span<T>(req: &Request<T>, method: &str) -> tracing::Span {
    let span = tracing::info_span!("grpc", otel.name = %format!("EmailService/{method}"), otel.kind = "server",
        rpc.system = "grpc", rpc.method = method);
    let headers = req.metadata().clone().into_headers();
    let _ = span.set_parent(cruncan_telemetry::context_from_http_headers(&headers));
    span
}

#[tonic::async_trait]
impl EmailService for GrpcEmails {
    async fn create(&self, req: Request<pb::CreateRequest>) -> Result<Response<pb::CreateResponse>, Status> {
        let span = call_span(&req, "Create");
        let key = req.metadata().get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
        if key.as_ref().is_some_and(|k| k.is_empty() || k.len() > 255) {
            return Err(Status::invalid_argument("idempotency-key must be 1 to 255 characters"));
        }
        let r = req.into_inner();
        let raw = CreateEmail { from: r.from, to: r.to, subject: r.subject, message: r.message };
        let result = async {
            let email = raw.validate().map_err(ServiceError::from)?;
            self.emails.accept(email, key).await
        }
        .instrument(span)
        .await;
        let outcome = match &result {
            Ok(a) if a.replayed => "replayed",
            Ok(_) => "accepted",
            Err(ServiceError::Validation(_) | ServiceError::KeyReused) => "rejected",
            Err(_) => "failed",
        };
        self.metrics.created("grpc", outcome);
        let accepted = result?;
        Ok(Response::new(pb::CreateResponse { email_id: accepted.email_id.to_string() }))
    }

    async fn get_by_id(
        &self,
        req: Request<pb::GetByIdRequest>,
    ) -> Result<Response<pb::GetByIdResponse>, Status> {
        let span = call_span(&req, "GetByID");
        let id: EmailId = req
            .get_ref()
            .email_id
            .parse()
            .map_err(|e: crate::domain::ValidationError| Status::invalid_argument(e.to_string()))?;
        let email = self.emails.get(id).instrument(span).await?;
        let email = email.ok_or_else(|| Status::not_found(format!("no email with id {id}")))?;
        Ok(Response::new(pb::GetByIdResponse { email: Some(to_pb(email)) }))
    }

    async fn search(&self, req: Request<pb::SearchRequest>) -> Result<Response<pb::SearchResponse>, Status> {
        let span = call_span(&req, "Search");
        let r = req.into_inner();
        // Proto3 has no "absent": 0 takes the default.
        let or_default = |v: i64| (v != 0).then_some(v);
        let query = SearchQuery::new(Some(r.search), or_default(r.page), or_default(r.size))
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let page = self.emails.search(&query).instrument(span).await?;
        Ok(Response::new(pb::SearchResponse {
            total_count: page.total_count,
            total_pages: page.total_pages,
            page: page.page,
            size: page.size,
            has_more: page.has_more,
            emails: page.emails.into_iter().map(to_pb).collect(),
        }))
    }
}

// ANCHOR: serve
/// Serves the gRPC edge on `listener` until `shutdown`: TLS, keepalive pings, connections
/// recycled after `max_connection_age`, health (NOT_SERVING first on shutdown) and reflection.
pub async fn serve(
    listener: tokio::net::TcpListener,
    identity: tonic::transport::Identity,
    settings: &GrpcSettings,
    service: GrpcEmails,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<EmailServiceServer<GrpcEmails>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tonic::transport::Server::builder()
        .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?
        .http2_keepalive_interval(Some(settings.keepalive_interval))
        .http2_keepalive_timeout(Some(settings.keepalive_timeout))
        .max_connection_age(settings.max_connection_age)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(EmailServiceServer::new(service))
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.wait().await;
            health.set_not_serving::<EmailServiceServer<GrpcEmails>>().await;
        })
        .await?;
    Ok(())
}
// ANCHOR_END: serve
