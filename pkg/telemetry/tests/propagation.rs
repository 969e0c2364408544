//! W3C trace context survives a round trip through HTTP headers, and logs without an exporter
//! still carry trace ids.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic: that is its failure report

use cruncan_telemetry::{
    Otlp, TelemetrySettings, context_from_http_headers, current_span_ids, init_telemetry_with_writer,
    inject_current_into_http_headers,
};
use cruncan_testkit::LogCapture;
use opentelemetry::trace::TraceContextExt as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

#[tokio::test]
async fn context_round_trips_through_http_headers_without_an_exporter() {
    let logs = LogCapture::default();
    let cfg = TelemetrySettings { otlp: Otlp::Disabled, ..TelemetrySettings::new("prop-test", "0") };
    let guard = init_telemetry_with_writer(&cfg, logs.clone()).unwrap();
    assert!(!guard.exporting());

    let mut headers = http::HeaderMap::new();
    let (trace_id, span_id) = {
        let _s = tracing::info_span!("client.call").entered();
        inject_current_into_http_headers(&mut headers);
        current_span_ids().unwrap()
    };
    let traceparent = headers.get("traceparent").unwrap().to_str().unwrap();
    assert_eq!(traceparent, format!("00-{trace_id}-{span_id}-01"));

    // The receiving side continues the trace.
    let parent = context_from_http_headers(&headers);
    let server = tracing::info_span!("server.handle");
    server.set_parent(parent).unwrap();
    let _e = server.enter();
    let (child_trace, child_span) = current_span_ids().unwrap();
    assert_eq!(child_trace, trace_id);
    assert_ne!(child_span, span_id);
    assert_eq!(server.context().span().span_context().trace_id().to_string(), trace_id);

    tracing::warn!("logged on the server side");
    let line = logs.json_lines().into_iter().find(|l| l["message"] == "logged on the server side").unwrap();
    assert_eq!(line["trace_id"], trace_id.as_str());
    assert_eq!(line["span"], "server.handle");
}
