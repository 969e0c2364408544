//! HTTP plumbing shared by every service (one, two's admin port, the stub):
//!
//! - [`telemetry_middleware`]: a server span per request that continues the caller's trace
//!   (`traceparent`), named `METHOD /route`, with semantic-convention attributes, and the
//!   `http.server.request.duration` histogram;
//! - errors as RFC 9457 problem details ([`ErrorBody`], [`json_error`]);
//! - JSON 404 and 405 (keeping `Allow`) instead of axum's empty bodies;
//! - `/healthz` and `/readyz` routes; [`serve`] with graceful shutdown;
//! - [`client::send_traced`]: outgoing requests in client spans that carry the trace;
//! - extractors that check at the edge: [`ValidJson`] (a typed JSON body or a problem naming the
//!   field) and [`IdempotencyKeyHeader`].

pub mod client;
mod idempotency;
mod json;

pub use idempotency::{IdempotencyKeyHeader, InvalidIdempotencyKey};
pub use json::{JsonRejection, ValidJson, is_json};

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cruncan_shutdown::Shutdown;
use opentelemetry::KeyValue;
use opentelemetry::metrics::Histogram;
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

// ANCHOR: error_body
/// The error body every endpoint returns: RFC 9457 problem details
/// (`Content-Type: application/problem+json`), with the stable `code` as an extension member
/// so clients can branch on it without parsing `detail`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A URI naming the problem type: `urn:cruncan:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the problem type (the status's reason phrase).
    pub title: String,
    /// The HTTP status code, repeated for clients that lost it (e.g. behind a proxy).
    pub status: u16,
    /// What went wrong in this occurrence, naming the field when there is one.
    pub detail: String,
    /// Stable machine-readable code, e.g. `validation_failed`.
    pub code: String,
}

/// The media type of [`ErrorBody`].
pub const PROBLEM_JSON: &str = "application/problem+json";

impl ErrorBody {
    /// The problem for `status` with this `code` and `detail`.
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("urn:cruncan:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_owned(),
        }
    }
}

/// An error response: `status` with an [`ErrorBody`] as `application/problem+json`.
pub fn json_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    problem_response(status, ErrorBody::new(status, code, message))
}

/// `status` with `body` as `application/problem+json`: for an [`ErrorBody`] with extension
/// members of its own (e.g. the current version of a resource a stale edit missed).
pub fn problem_response(status: StatusCode, body: impl Serialize) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(PROBLEM_JSON));
    response
}
// ANCHOR_END: error_body

fn duration_histogram() -> &'static Histogram<f64> {
    static H: OnceLock<Histogram<f64>> = OnceLock::new();
    H.get_or_init(|| {
        cruncan_telemetry::meter("cruncan-http")
            .f64_histogram("http.server.request.duration")
            .with_unit("s")
            .with_description("Duration of HTTP server requests")
            .with_boundaries(cruncan_telemetry::SECONDS_BOUNDARIES.to_vec())
            .build()
    })
}

// ANCHOR: telemetry_middleware
/// Server span and duration metric for every request; add with
/// `router.layer(axum::middleware::from_fn(telemetry_middleware))`.
pub async fn telemetry_middleware(req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_owned();
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let name = match &route {
        Some(r) => format!("{method} {r}"),
        None => method.clone(),
    };
    let span = tracing::info_span!(
        "http.server",
        otel.name = %name,
        otel.kind = "server",
        http.request.method = %method,
        http.route = route.as_deref().unwrap_or_default(),
        url.path = %req.uri().path(),
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    // Continue the caller's trace when it sent one.
    let _ = span.set_parent(cruncan_telemetry::context_from_http_headers(req.headers()));
    let started = Instant::now();
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    let mut attrs = vec![
        KeyValue::new("http.request.method", method),
        KeyValue::new("http.response.status_code", i64::from(status)),
    ];
    if let Some(r) = route {
        attrs.push(KeyValue::new("http.route", r));
    }
    duration_histogram().record(started.elapsed().as_secs_f64(), &attrs);
    response
}
// ANCHOR_END: telemetry_middleware

/// Injects the current span's trace context into outgoing headers.
fn inject_into(headers: &mut reqwest::header::HeaderMap) {
    cruncan_telemetry::inject_current_into_http_headers(headers);
}

/// Fallback for unknown routes: JSON 404.
pub async fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// Turns axum's empty 405 into a JSON error, keeping its `Allow` header.
pub async fn json_method_not_allowed(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let response = next.run(req).await;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut json = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed here"),
    );
    if let Some(allow) = allow {
        json.headers_mut().insert(header::ALLOW, allow);
    }
    json
}

/// A readiness check: resolves `Ok` when every dependency answers.
pub type ReadinessCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>> + Send + Sync>;

// ANCHOR: health_routes
/// `/healthz` (the process is alive) and `/readyz` (its dependencies answer; 503 naming the
/// first that does not, so a load balancer stops sending traffic).
pub fn health_routes(ready: ReadinessCheck) -> Router {
    Router::new().route("/healthz", get(|| async { axum::Json(serde_json::json!({"status": "ok"})) })).route(
        "/readyz",
        get(move || {
            let ready = Arc::clone(&ready);
            async move {
                match ready().await {
                    Ok(()) => axum::Json(serde_json::json!({"status": "ready"})).into_response(),
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "not ready");
                        json_error(StatusCode::SERVICE_UNAVAILABLE, "not_ready", format!("{e}"))
                    }
                }
            }
        }),
    )
}
// ANCHOR_END: health_routes

/// Serves `router` on `listener` until `shutdown` fires, then stops accepting and waits for
/// in-flight requests (answered with `Connection: close`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    serve_draining(listener, router, shutdown, std::time::Duration::ZERO).await
}

// ANCHOR: serve_draining
/// Like [`serve`], with a lame-duck period: when `shutdown` fires the server keeps serving for
/// `lame_duck`, but every response carries `Connection: close`, so keep-alive clients open a new
/// connection (to another replica) for their next request instead of racing the close of an
/// idle one; then it stops accepting, closes idle connections and waits for in-flight requests.
pub async fn serve_draining(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: Shutdown,
    lame_duck: std::time::Duration,
) -> anyhow::Result<()> {
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&draining);
    let router = router.layer(axum::middleware::map_response(move |mut response: Response| {
        let closing = flag.load(std::sync::atomic::Ordering::Relaxed);
        async move {
            if closing {
                response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
            }
            response
        }
    }));
    let stop = async move {
        shutdown.wait().await;
        draining.store(true, std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(lame_duck).await;
    };
    axum::serve(listener, router).with_graceful_shutdown(stop).await?;
    Ok(())
}
// ANCHOR_END: serve_draining

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::post;
    use tower::ServiceExt as _;

    fn app() -> Router {
        Router::new()
            .route("/thing", post(|| async { StatusCode::CREATED }))
            .fallback(not_found)
            .layer(axum::middleware::from_fn(json_method_not_allowed))
            .layer(axum::middleware::from_fn(telemetry_middleware))
    }

    async fn body_of(r: Response) -> ErrorBody {
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn unknown_route_is_json_404() {
        let r = app().oneshot(Request::get("/nope").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = body_of(r).await;
        assert_eq!((body.code.as_str(), body.status, body.title.as_str()), ("not_found", 404, "Not Found"));
        assert_eq!(body.kind, "urn:cruncan:problem:not_found");
    }

    #[tokio::test]
    async fn wrong_method_is_json_405_with_allow() {
        let r = app().oneshot(Request::get("/thing").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "POST");
        assert_eq!(body_of(r).await.code, "method_not_allowed");
    }

    #[tokio::test]
    async fn readyz_names_the_failing_dependency() {
        let ready: ReadinessCheck =
            Arc::new(|| Box::pin(async { anyhow::bail!("database: connection refused") }));
        let r =
            health_routes(ready).oneshot(Request::get("/readyz").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(body_of(r).await.detail.contains("database"));
    }
}
