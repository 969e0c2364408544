//! Spans, metrics and logs leave the process: asserted with the in-process OTLP receiver.

use crate::helpers::{spawn_app, telemetry, valid_body, wait_until};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_metrics_and_logs_of_a_request_share_its_trace() {
    let app = spawn_app().await;
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let r = app
        .post_raw(
            "application/json",
            valid_body().to_string(),
            &[("traceparent", &format!("00-{trace_id}-b7ad6b7169203331-01"))],
        )
        .await;
    assert_eq!(r.status(), 201);
    let id = r.json::<serde_json::Value>().await.unwrap()["request_id"].as_str().unwrap().to_owned();
    wait_until(Duration::from_secs(10), "outbox published", || async { app.pending().await == 0 }).await;
    tokio::task::spawn_blocking(|| telemetry().guard.force_flush()).await.unwrap();

    let t = telemetry();
    let topic = app.settings.kafka.topic.clone();
    let spans = t
        .receiver
        .wait_for_spans(
            Duration::from_secs(15),
            "server, repository and publish spans of the trace",
            |spans| {
                let of_trace: Vec<_> =
                    spans.iter().filter(|s| s.trace_id == trace_id).map(|s| s.name.as_str()).collect();
                ["POST /one", "one_request.create", &format!("publish {topic}")]
                    .iter()
                    .all(|n| of_trace.contains(n))
            },
        )
        .await
        .unwrap();
    let server = spans.iter().find(|s| s.trace_id == trace_id && s.name == "POST /one").unwrap();
    assert_eq!(server.kind, 2, "server span");
    assert_eq!(server.parent_span_id, "b7ad6b7169203331", "continues the caller");
    assert_eq!(server.attributes.get("http.request.method").map(String::as_str), Some("POST"));
    assert_eq!(server.attributes.get("http.route").map(String::as_str), Some("/one"));
    assert_eq!(server.attributes.get("http.response.status_code").map(String::as_str), Some("201"));
    let db = spans.iter().find(|s| s.trace_id == trace_id && s.name == "one_request.create").unwrap();
    assert_eq!(db.attributes.get("db.system.name").map(String::as_str), Some("postgresql"));
    let publish =
        spans.iter().find(|s| s.trace_id == trace_id && s.name == format!("publish {topic}")).unwrap();
    assert_eq!(publish.kind, 4, "producer span");
    assert_eq!(publish.attributes.get("messaging.kafka.message.key"), Some(&id));

    t.receiver
        .wait_for_metrics(
            Duration::from_secs(15),
            &[
                "http.server.request.duration",
                "one.requests",
                "outbox.published",
                "outbox.publish.latency",
                "outbox.pending",
            ],
        )
        .await
        .unwrap();

    let line = t
        .logs
        .json_lines()
        .into_iter()
        .find(|l| l["message"] == "request accepted" && l["request_id"] == id.as_str())
        .expect("a JSON log line for the request");
    assert_eq!(line["trace_id"], trace_id);
    app.stop().await;
}
