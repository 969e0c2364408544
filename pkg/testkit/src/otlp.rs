//! An in-process OTLP/HTTP (protobuf) receiver, so a test proves that spans, logs and metrics
//! really leave the process through the exporter, with the right trace id; and a capture of the
//! JSON log lines.

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One span as the receiver saw it.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// Span name.
    pub name: String,
    /// Trace id, 32 lowercase hex characters.
    pub trace_id: String,
    /// Span id, 16 lowercase hex characters.
    pub span_id: String,
    /// Parent span id (empty for a root span).
    pub parent_span_id: String,
    /// Span kind as the OTLP enum number (1 internal, 2 server, 3 client, 4 producer, 5 consumer).
    pub kind: i32,
    /// Attributes, values rendered as strings.
    pub attributes: BTreeMap<String, String>,
    /// `service.name` of the resource that sent it.
    pub service: String,
}

/// One log record as the receiver saw it.
#[derive(Debug, Clone)]
pub struct ReceivedLog {
    /// The body rendered as a string.
    pub body: String,
    /// Trace id (hex), empty when the record carried none.
    pub trace_id: String,
    /// Severity text, e.g. `INFO`.
    pub severity: String,
    /// Attributes, values rendered as strings.
    pub attributes: BTreeMap<String, String>,
    /// `service.name` of the resource that sent it.
    pub service: String,
}

/// What the receiver learnt about one metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricInfo {
    /// Unit, e.g. `s` (empty when none).
    pub unit: String,
    /// `counter` (monotonic sum), `updowncounter`, `gauge` or `histogram`.
    pub kind: String,
    /// Data points received in total.
    pub points: u64,
}

#[derive(Debug, Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    logs: Vec<ReceivedLog>,
    metrics: BTreeMap<String, MetricInfo>,
}

/// An in-process OTLP/HTTP receiver on 127.0.0.1 (port chosen by the OS).
#[derive(Debug, Clone)]
pub struct OtlpReceiver {
    addr: SocketAddr,
    received: Arc<Mutex<Received>>,
}

impl OtlpReceiver {
    /// Starts the receiver on the current Tokio runtime.
    pub async fn start() -> anyhow::Result<Self> {
        let received = Arc::new(Mutex::new(Received::default()));
        let app = Router::new()
            .route("/v1/traces", post(traces))
            .route("/v1/logs", post(logs))
            .route("/v1/metrics", post(metrics))
            .with_state(Arc::clone(&received));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("bind OTLP receiver")?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, received })
    }

    /// Base URL to give an exporter, e.g. `http://127.0.0.1:41234` (the exporter adds `/v1/...`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.lock().spans.clone()
    }

    /// Every log record received so far.
    pub fn logs(&self) -> Vec<ReceivedLog> {
        self.lock().logs.clone()
    }

    /// Every metric received so far: unit, kind and data points.
    pub fn metrics(&self) -> BTreeMap<String, MetricInfo> {
        self.lock().metrics.clone()
    }

    // ANCHOR: wait_for_spans
    /// Waits until `pred` holds over the spans received, or fails after `timeout` with what it saw.
    pub async fn wait_for_spans(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> anyhow::Result<Vec<ReceivedSpan>> {
        self.wait(
            timeout,
            what,
            |r| pred(&r.spans).then(|| r.spans.clone()),
            |r| r.spans.iter().map(|s| format!("{} ({})", s.name, s.trace_id)).collect::<Vec<_>>().join(", "),
        )
        .await
    }
    // ANCHOR_END: wait_for_spans

    /// Waits until `pred` holds over the log records received.
    pub async fn wait_for_logs(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&[ReceivedLog]) -> bool,
    ) -> anyhow::Result<Vec<ReceivedLog>> {
        self.wait(
            timeout,
            what,
            |r| pred(&r.logs).then(|| r.logs.clone()),
            |r| format!("{} log records", r.logs.len()),
        )
        .await
    }

    /// Waits until every metric name in `names` has been received.
    pub async fn wait_for_metrics(
        &self,
        timeout: Duration,
        names: &[&str],
    ) -> anyhow::Result<BTreeMap<String, MetricInfo>> {
        self.wait(
            timeout,
            &format!("metrics {names:?}"),
            |r| names.iter().all(|n| r.metrics.contains_key(*n)).then(|| r.metrics.clone()),
            |r| format!("{:?}", r.metrics.keys().collect::<Vec<_>>()),
        )
        .await
    }

    async fn wait<T>(
        &self,
        timeout: Duration,
        what: &str,
        check: impl Fn(&Received) -> Option<T>,
        describe: impl Fn(&Received) -> String,
    ) -> anyhow::Result<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(found) = check(&self.lock()) {
                return Ok(found);
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "OTLP receiver: expected {what} within {timeout:?}; saw: {}",
                    describe(&self.lock())
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Received> {
        self.received.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

type Shared = State<Arc<Mutex<Received>>>;

fn protobuf(msg: impl Message) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/x-protobuf")], msg.encode_to_vec())
}

async fn traces(State(received): Shared, body: Bytes) -> axum::response::Response {
    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let mut r = received.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for rs in req.resource_spans {
        let service = service_name(rs.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or_default());
        for ss in rs.scope_spans {
            for s in ss.spans {
                r.spans.push(ReceivedSpan {
                    name: s.name,
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    kind: s.kind,
                    attributes: attrs(&s.attributes),
                    service: service.clone(),
                });
            }
        }
    }
    protobuf(ExportTraceServiceResponse::default()).into_response()
}

async fn logs(State(received): Shared, body: Bytes) -> axum::response::Response {
    let Ok(req) = ExportLogsServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let mut r = received.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for rl in req.resource_logs {
        let service = service_name(rl.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or_default());
        for sl in rl.scope_logs {
            for l in sl.log_records {
                r.logs.push(ReceivedLog {
                    body: l.body.as_ref().map(render).unwrap_or_default(),
                    trace_id: hex(&l.trace_id),
                    severity: l.severity_text,
                    attributes: attrs(&l.attributes),
                    service: service.clone(),
                });
            }
        }
    }
    protobuf(ExportLogsServiceResponse::default()).into_response()
}

async fn metrics(State(received): Shared, body: Bytes) -> axum::response::Response {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    let Ok(req) = ExportMetricsServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let mut r = received.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for rm in req.resource_metrics {
        for sm in rm.scope_metrics {
            for m in sm.metrics {
                let (kind, points) = match &m.data {
                    Some(Data::Sum(s)) if s.is_monotonic => ("counter", s.data_points.len()),
                    Some(Data::Sum(s)) => ("updowncounter", s.data_points.len()),
                    Some(Data::Gauge(g)) => ("gauge", g.data_points.len()),
                    Some(Data::Histogram(h)) => ("histogram", h.data_points.len()),
                    Some(Data::ExponentialHistogram(h)) => ("histogram", h.data_points.len()),
                    Some(Data::Summary(s)) => ("summary", s.data_points.len()),
                    None => ("none", 0),
                };
                let info = r.metrics.entry(m.name).or_insert_with(|| MetricInfo {
                    unit: m.unit.clone(),
                    kind: kind.to_owned(),
                    points: 0,
                });
                info.points += points as u64;
            }
        }
    }
    protobuf(ExportMetricsServiceResponse::default()).into_response()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn render(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attrs(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map(render).unwrap_or_default())).collect()
}

fn service_name(kvs: &[KeyValue]) -> String {
    attrs(kvs).remove("service.name").unwrap_or_default()
}

impl OtlpReceiver {
    /// Starts the receiver on a runtime of its own thread, so it outlives any one test's runtime
    /// (a test binary shares one global telemetry pipeline between its tests).
    pub fn start_background() -> anyhow::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new().name("otlp-receiver".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(anyhow::Error::from(e)));
                    return;
                }
            };
            rt.block_on(async move {
                let started = Self::start().await;
                let _ = tx.send(started);
                std::future::pending::<()>().await;
            });
        })?;
        rx.recv().context("OTLP receiver thread died")?
    }
}
