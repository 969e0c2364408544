//! W3C trace-context propagation over HTTP headers (and, through [`Injector`]/[`Extractor`], any
//! other carrier such as Kafka headers).

use http::HeaderMap;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry::{Context, global};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

pub use opentelemetry::propagation::{Extractor, Injector};
/// The `http::HeaderMap` carriers, from opentelemetry-http rather than written here.
pub use opentelemetry_http::{HeaderExtractor, HeaderInjector};

// ANCHOR: inject_extract
/// Injects the current tracing span's context (`traceparent`, `tracestate`) into `carrier`.
pub fn inject_current(carrier: &mut dyn Injector) {
    inject_context(&tracing::Span::current().context(), carrier);
}

/// Injects `cx` into `carrier` with the global propagator.
pub fn inject_context(cx: &Context, carrier: &mut dyn Injector) {
    global::get_text_map_propagator(|p| p.inject_context(cx, carrier));
}

/// Extracts a remote parent context from `carrier` (an empty context when there is none).
pub fn extract_context(carrier: &dyn Extractor) -> Context {
    global::get_text_map_propagator(|p| p.extract(carrier))
}
// ANCHOR_END: inject_extract

/// Injects the current span's context into outgoing HTTP headers.
pub fn inject_current_into_http_headers(headers: &mut HeaderMap) {
    inject_current(&mut HeaderInjector(headers));
}

/// The remote parent carried by incoming HTTP headers.
pub fn context_from_http_headers(headers: &HeaderMap) -> Context {
    extract_context(&HeaderExtractor(headers))
}

/// `(trace_id, span_id)` of the current tracing span, as lowercase hex, when it has a valid one.
pub fn current_span_ids() -> Option<(String, String)> {
    let cx = tracing::Span::current().context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}
