//! Proves that telemetry really leaves the process: an in-process OTLP receiver must get the span,
//! the log record (with the span's trace id) and the metric after the guard shuts down, and the
//! JSON log line on "stdout" must carry the same trace id. One test per binary: it installs the
//! process-global subscriber.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic: that is its failure report

use cruncan_telemetry::{Otlp, TelemetrySettings, current_span_ids, init_telemetry_with_writer};
use cruncan_testkit::{LogCapture, OtlpReceiver};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn span_log_and_metric_arrive_with_the_right_trace_id() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let logs = LogCapture::default();
    let cfg = TelemetrySettings {
        otlp: Otlp::HttpEndpoint(receiver.endpoint()),
        log_filter: "info".into(),
        ..TelemetrySettings::new("telemetry-test", "0.0.0")
    };
    let guard = init_telemetry_with_writer(&cfg, logs.clone()).unwrap();
    assert!(guard.exporting());

    let counter = cruncan_telemetry::meter("telemetry-test").u64_counter("test.things").build();
    let (trace_id, span_id) = {
        let span = tracing::info_span!("unit.of.work", work.kind = "test");
        let _entered = span.enter();
        tracing::info!(answer = 42, authorization = "Bearer s3cr3t", "inside the span");
        counter.add(1, &[]);
        current_span_ids().expect("an active span has ids")
    };

    // Shutting down blocks on the exporters; keep the runtime (and the receiver) free meanwhile.
    tokio::task::spawn_blocking(move || guard.shutdown()).await.unwrap();

    let spans = receiver
        .wait_for_spans(Duration::from_secs(10), "span unit.of.work", |s| {
            s.iter().any(|s| s.name == "unit.of.work")
        })
        .await
        .unwrap();
    let span = spans.iter().find(|s| s.name == "unit.of.work").unwrap();
    assert_eq!((span.trace_id.as_str(), span.span_id.as_str()), (trace_id.as_str(), span_id.as_str()));
    assert_eq!(span.service, "telemetry-test");
    assert_eq!(span.attributes.get("work.kind").map(String::as_str), Some("test"));

    let records = receiver
        .wait_for_logs(Duration::from_secs(10), "the log record", |l| {
            l.iter().any(|l| l.body == "inside the span")
        })
        .await
        .unwrap();
    let record = records.iter().find(|l| l.body == "inside the span").unwrap();
    assert_eq!(record.trace_id, trace_id, "the OTLP log record carries the span's trace id");

    receiver.wait_for_metrics(Duration::from_secs(10), &["test.things"]).await.unwrap();

    let line = logs
        .json_lines()
        .into_iter()
        .find(|l| l["message"] == "inside the span")
        .unwrap_or_else(|| panic!("no JSON line for the event in: {}", logs.contents()));
    assert_eq!(line["trace_id"], trace_id.as_str());
    assert_eq!(line["span_id"], span_id.as_str());
    assert_eq!(line["answer"], 42);
    assert_eq!(line["level"], "INFO");
    assert!(!logs.contents().contains("s3cr3t"), "an authorization field must be redacted");
}
