//! Outgoing HTTP: a client span per call (`METHOD /path`, kind client, HTTP semantic-convention
//! attributes), W3C trace context injected into the request, and the
//! `http.client.request.duration` histogram.

use opentelemetry::KeyValue;
use opentelemetry::metrics::Histogram;
use std::sync::OnceLock;
use std::time::Instant;
use tracing::Instrument as _;

fn duration_histogram() -> &'static Histogram<f64> {
    static H: OnceLock<Histogram<f64>> = OnceLock::new();
    H.get_or_init(|| {
        cruncan_telemetry::meter("cruncan-http")
            .f64_histogram("http.client.request.duration")
            .with_unit("s")
            .with_description("Duration of outgoing HTTP requests")
            .with_boundaries(cruncan_telemetry::SECONDS_BOUNDARIES.to_vec())
            .build()
    })
}

// ANCHOR: send_traced
/// Sends `request` inside a client span that is a child of the current span. Headers are never
/// recorded (they carry `Authorization`); the URL is recorded without its query string.
pub async fn send_traced(
    client: &reqwest::Client,
    mut request: reqwest::Request,
) -> reqwest::Result<reqwest::Response> {
    let method = request.method().as_str().to_owned();
    let url = request.url().clone();
    let span = tracing::info_span!(
        "http.client",
        otel.name = format!("{method} {}", url.path()),
        otel.kind = "client",
        http.request.method = %method,
        url.full = format!("{}://{}{}", url.scheme(), url.host_str().unwrap_or_default(), url.path()),
        server.address = url.host_str().unwrap_or_default(),
        server.port = url.port_or_known_default().unwrap_or_default(),
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    span.in_scope(|| crate::inject_into(request.headers_mut()));
    let started = Instant::now();
    let result = client.execute(request).instrument(span.clone()).await;
    let mut attrs = vec![
        KeyValue::new("http.request.method", method),
        KeyValue::new("server.address", url.host_str().unwrap_or_default().to_owned()),
    ];
    match &result {
        Ok(resp) => {
            let status = resp.status().as_u16();
            span.record("http.response.status_code", status);
            if status >= 400 {
                span.record("error.type", status.to_string());
                span.record("otel.status_code", "ERROR");
            }
            attrs.push(KeyValue::new("http.response.status_code", i64::from(status)));
        }
        Err(e) => {
            let kind = if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connect"
            } else {
                "transport"
            };
            span.record("error.type", kind);
            span.record("otel.status_code", "ERROR");
            attrs.push(KeyValue::new("error.type", kind));
        }
    }
    duration_histogram().record(started.elapsed().as_secs_f64(), &attrs);
    result
}
// ANCHOR_END: send_traced
