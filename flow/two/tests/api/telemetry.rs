//! Two's processing span continues the producer's trace; the token and /three calls are its
//! children with HTTP attributes; secrets appear in no log line and no span attribute.

use crate::helpers::{SECRET, event_bytes, mount_token, spawn_two, telemetry, wait_until};
use std::time::Duration;
use wiremock::matchers::path;
use wiremock::{Mock, ResponseTemplate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processing_continues_the_trace_and_secrets_stay_out_of_telemetry() {
    let two = spawn_two(|_| {}).await;
    mount_token(&two.token_server, "tok-very-secret-value", 1).await;
    Mock::given(path("/three")).respond_with(ResponseTemplate::new(200)).mount(&two.three).await;
    let trace_id = "5bf92f3577b34da6a3ce929d0e0e4737";
    let parent = "10f067aa0ba902b7";
    let id = "00000000000000000123";
    two.publish(id, &event_bytes(id, "p"), &[("traceparent", &format!("00-{trace_id}-{parent}-01"))]).await;
    wait_until(Duration::from_secs(30), "processed", || two.processed(id)).await;

    let t = telemetry();
    let topic = two.settings.kafka.topic.clone();
    let names = ["POST /v2/oauth/token", "POST /three"];
    let spans = loop_flush(|| async {
        t.receiver
            .wait_for_spans(Duration::from_secs(2), "process, token and /three spans", |spans| {
                let of: Vec<_> =
                    spans.iter().filter(|s| s.trace_id == trace_id).map(|s| s.name.clone()).collect();
                of.contains(&format!("process {topic}")) && names.iter().all(|n| of.iter().any(|x| x == n))
            })
            .await
            .ok()
    })
    .await;
    let process =
        spans.iter().find(|s| s.trace_id == trace_id && s.name == format!("process {topic}")).unwrap();
    assert_eq!(process.kind, 5, "consumer span");
    assert_eq!(process.parent_span_id, parent, "continues the producer's span");
    assert_eq!(process.attributes.get("messaging.destination.name"), Some(&topic));
    for name in names {
        let call = spans.iter().find(|s| s.trace_id == trace_id && s.name == name).unwrap();
        assert_eq!(call.kind, 3, "{name} is a client span");
        assert_eq!(call.parent_span_id, process.span_id, "{name} is a child of processing");
        assert_eq!(call.attributes.get("http.request.method").map(String::as_str), Some("POST"));
        assert_eq!(call.attributes.get("http.response.status_code").map(String::as_str), Some("200"));
        assert_eq!(call.attributes.get("server.address").map(String::as_str), Some("127.0.0.1"));
    }

    // Metrics, including the lag librdkafka reports every 5 s.
    loop_flush(|| async {
        t.receiver
            .wait_for_metrics(
                Duration::from_secs(2),
                &[
                    "messaging.process.messages",
                    "messaging.process.duration",
                    "token.fetches",
                    "http.client.request.duration",
                    "messaging.kafka.consumer.lag",
                ],
            )
            .await
            .ok()
    })
    .await;

    // No secret anywhere.
    let logs = t.logs.contents();
    let attributes: String =
        t.receiver.spans().iter().flat_map(|s| s.attributes.values().cloned()).collect::<Vec<_>>().join(" ");
    for secret in [SECRET, "tok-very-secret-value", "Bearer "] {
        assert!(!logs.contains(secret), "{secret:?} in the logs");
        assert!(!attributes.contains(secret), "{secret:?} in a span attribute");
    }
    two.stop().await;
}

/// Flushes telemetry and checks, again and again for up to 20 s.
async fn loop_flush<T, F, Fut>(mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..10 {
        tokio::task::spawn_blocking(|| telemetry().guard.force_flush()).await.unwrap();
        if let Some(found) = check().await {
            return found;
        }
    }
    panic!("telemetry did not arrive within 20 s");
}
