//! Telemetry for every service: one call, [`init_telemetry`], gives
//!
//! - JSON logs on stdout, one object per line, always carrying `trace_id` and `span_id` of the span
//!   they were written in (so a log line leads to its trace even without a collector);
//! - OTLP export of traces, metrics and logs when `OTEL_EXPORTER_OTLP_ENDPOINT` (or a per-signal
//!   `OTEL_EXPORTER_OTLP_*_ENDPOINT`) is set, with the standard `OTEL_*` variables honoured
//!   (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc|http/protobuf`, `OTEL_SERVICE_NAME`,
//!   `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SDK_DISABLED`, ...); nothing exported and no error otherwise;
//! - the W3C trace-context propagator, and helpers to carry context in HTTP and Kafka headers.
//!
//! The returned [`TelemetryGuard`] flushes traces, then logs, then metrics when shut down or dropped.

mod json;
mod propagation;

pub use json::JsonFormat;
pub use opentelemetry::Context;
pub use propagation::{
    Extractor, HeaderExtractor, HeaderInjector, Injector, context_from_http_headers, current_span_ids,
    extract_context, inject_context, inject_current, inject_current_into_http_headers,
};

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{KeyValue, global};
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

pub use opentelemetry::global::meter;

// ANCHOR: seconds_boundaries
/// Bucket boundaries for every histogram in seconds. The SDK's defaults (0, 5, 10, 25, …, 10000)
/// are meant for milliseconds: in seconds every value under 5 s falls in one bucket and a
/// p99 panel reads 4.95 s whatever happened. `grafanastack/check` fails on a seconds histogram
/// built without explicit boundaries.
pub const SECONDS_BOUNDARIES: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
// ANCHOR_END: seconds_boundaries

/// Where OTLP data goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Otlp {
    /// Export when the standard `OTEL_EXPORTER_OTLP_*ENDPOINT` variables say so.
    #[default]
    FromEnv,
    /// Export over OTLP/HTTP protobuf to this base URL (tests point it at an in-process receiver).
    HttpEndpoint(String),
    /// Never export.
    Disabled,
}

/// What [`init_telemetry`] needs to know.
#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    /// `service.name` of every signal (`OTEL_SERVICE_NAME` wins when set).
    pub service_name: String,
    /// `service.version`.
    pub service_version: String,
    /// Log filter in `EnvFilter` syntax, e.g. `info,one=debug`; `RUST_LOG` wins when set.
    pub log_filter: String,
    /// OTLP export target.
    pub otlp: Otlp,
}

impl TelemetrySettings {
    /// Defaults for a service: `info` logs, OTLP from the environment.
    pub fn new(service_name: impl Into<String>, service_version: impl Into<String>) -> Self {
        Self {
            service_name: service_name.into(),
            service_version: service_version.into(),
            log_filter: "info".into(),
            otlp: Otlp::FromEnv,
        }
    }
}

/// Keeps the providers alive; shutting it down (or dropping it) flushes every signal.
#[must_use = "dropping the guard flushes and stops telemetry"]
#[derive(Debug)]
pub struct TelemetryGuard {
    tracer: SdkTracerProvider,
    logger: Option<SdkLoggerProvider>,
    meter: Option<SdkMeterProvider>,
    /// The thread writing log lines to stdout; dropping it writes what is still queued.
    log_writer: Option<tracing_appender::non_blocking::WorkerGuard>,
    done: bool,
}

impl TelemetryGuard {
    /// Whether spans, logs and metrics are exported over OTLP.
    pub fn exporting(&self) -> bool {
        self.logger.is_some()
    }

    /// Exports everything recorded so far without stopping (tests; blocks on the exporters).
    pub fn force_flush(&self) {
        let _ = self.tracer.force_flush();
        if let Some(logger) = &self.logger {
            let _ = logger.force_flush();
        }
        if let Some(meter) = &self.meter {
            let _ = meter.force_flush();
        }
    }

    // ANCHOR: guard_shutdown
    /// Flushes and stops, in order: traces (the spans of the work that just ended), logs, then
    /// metrics (whose final export then includes the counts of that work).
    pub fn shutdown(mut self) {
        self.shutdown_inner();
    }

    fn shutdown_inner(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        drop(self.log_writer.take());
        if let Err(e) = self.tracer.shutdown() {
            eprintln!("telemetry: flushing traces failed: {e}");
        }
        if let Some(logger) = &self.logger
            && let Err(e) = logger.shutdown()
        {
            eprintln!("telemetry: flushing logs failed: {e}");
        }
        if let Some(meter) = &self.meter
            && let Err(e) = meter.shutdown()
        {
            eprintln!("telemetry: flushing metrics failed: {e}");
        }
    }
    // ANCHOR_END: guard_shutdown
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.shutdown_inner();
    }
}

// ANCHOR: log_writer
/// Installs telemetry for the process with JSON logs on stdout. Call once, early in `main`, inside
/// the Tokio runtime (the gRPC exporter needs it).
///
/// Log lines are written by a thread of their own, not by the async worker that logged them: a
/// slow or full stdout pipe must not stall request handling, and the writer thread batches the
/// lines queued meanwhile into one `write` (a `BufWriter` it flushes whenever its queue is
/// empty) instead of one system call per line. Nothing is dropped: past 8,192 queued lines (about
/// 2–3 MB of JSON) the logging thread waits (backpressure) rather than losing lines silently. The
/// queue is bounded that tightly on purpose: at tracing-appender's default of 128k lines, a
/// consumer starved of CPU on a backlog queued 40 MB of log lines (two's peak RSS in `make bench`).
pub fn init_telemetry(cfg: &TelemetrySettings) -> anyhow::Result<TelemetryGuard> {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(8_192)
        .thread_name("log-writer")
        .finish(std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout()));
    let mut telemetry = init_telemetry_with_writer(cfg, writer)?;
    telemetry.log_writer = Some(guard);
    Ok(telemetry)
}
// ANCHOR_END: log_writer

// ANCHOR: init_telemetry
/// Like [`init_telemetry`], with the JSON log lines going to `writer` (tests capture them).
pub fn init_telemetry_with_writer<W>(cfg: &TelemetrySettings, writer: W) -> anyhow::Result<TelemetryGuard>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    global::set_text_map_propagator(TraceContextPropagator::new());
    let resource = resource(cfg);
    let export = otlp_enabled(&cfg.otlp);

    // Traces: always a real provider, so log lines carry ids even when nothing is exported.
    let mut tracer_builder = SdkTracerProvider::builder().with_resource(resource.clone());
    if export {
        tracer_builder = tracer_builder.with_batch_exporter(span_exporter(&cfg.otlp)?);
    }
    let tracer_provider = tracer_builder.build();
    global::set_tracer_provider(tracer_provider.clone());

    let (logger, meter) = if export {
        let logger = SdkLoggerProvider::builder()
            .with_resource(resource.clone())
            .with_batch_exporter(log_exporter(&cfg.otlp)?)
            .build();
        let meter = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_periodic_exporter(metric_exporter(&cfg.otlp)?)
            .build();
        global::set_meter_provider(meter.clone());
        (Some(logger), Some(meter))
    } else {
        (None, None)
    };

    let filter = || EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(&cfg.log_filter));
    let stdout_layer = tracing_subscriber::fmt::layer()
        .event_format(JsonFormat)
        .with_writer(writer)
        .with_filter(filter().context("invalid log filter")?);
    // The exporters' own HTTP/gRPC clients log through `tracing` too; sending those records back
    // through the OTLP log exporter would feed a loop, so they are kept out of it.
    let otel_logs = logger.as_ref().map(|l| {
        let quiet = filter().unwrap_or_else(|_| EnvFilter::new("info"));
        let quiet = ["hyper", "hyper_util", "h2", "tonic", "tower", "reqwest", "opentelemetry"]
            .iter()
            .fold(quiet, |f, noisy| f.add_directive(format!("{noisy}=off").parse().unwrap_or_default()));
        OpenTelemetryTracingBridge::new(l).with_filter(quiet)
    });
    let tracer = tracer_provider.tracer(cfg.service_name.clone());
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .with(stdout_layer)
        .with(otel_logs)
        .try_init()
        .context("a global tracing subscriber is already installed")?;

    Ok(TelemetryGuard { tracer: tracer_provider, logger, meter, log_writer: None, done: false })
}
// ANCHOR_END: init_telemetry

fn resource(cfg: &TelemetrySettings) -> Resource {
    // Resource::builder() already reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
    let mut builder = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        builder = builder.with_service_name(cfg.service_name.clone());
    }
    builder.with_attribute(KeyValue::new("service.version", cfg.service_version.clone())).build()
}

fn otlp_enabled(otlp: &Otlp) -> bool {
    match otlp {
        Otlp::Disabled => false,
        Otlp::HttpEndpoint(_) => true,
        Otlp::FromEnv => {
            let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
            !std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
                && [
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                ]
                .iter()
                .any(|k| set(k))
        }
    }
}

// From the environment, the exporter builders pick gRPC or HTTP from OTEL_EXPORTER_OTLP_PROTOCOL;
// with an explicit endpoint we use OTLP/HTTP and the per-signal path.
fn span_exporter(otlp: &Otlp) -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
    let built = match otlp {
        Otlp::HttpEndpoint(base) => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{base}/v1/traces"))
            .build(),
        _ => opentelemetry_otlp::SpanExporter::builder().build(),
    };
    built.context("building the OTLP span exporter")
}

fn log_exporter(otlp: &Otlp) -> anyhow::Result<opentelemetry_otlp::LogExporter> {
    let built = match otlp {
        Otlp::HttpEndpoint(base) => opentelemetry_otlp::LogExporter::builder()
            .with_http()
            .with_endpoint(format!("{base}/v1/logs"))
            .build(),
        _ => opentelemetry_otlp::LogExporter::builder().build(),
    };
    built.context("building the OTLP log exporter")
}

fn metric_exporter(otlp: &Otlp) -> anyhow::Result<opentelemetry_otlp::MetricExporter> {
    let built = match otlp {
        Otlp::HttpEndpoint(base) => opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_endpoint(format!("{base}/v1/metrics"))
            .build(),
        _ => opentelemetry_otlp::MetricExporter::builder().build(),
    };
    built.context("building the OTLP metric exporter")
}
