use crate::helpers::{committed_offset, header, mount_token, spawn_two, wait_calls, wait_until};
use std::process::Command;
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_becomes_exactly_one_post_three_and_its_offset_is_committed() {
    let two = spawn_two(|_| {}).await;
    mount_token(&two.token_server, "tok-1", 1).await;
    Mock::given(method("POST"))
        .and(path("/three"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&two.three)
        .await;

    let id = "00000000000000000001";
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    two.publish(id, &crate::helpers::event_bytes(id, "summarise this"), &[("traceparent", traceparent)])
        .await;

    let calls = wait_calls(&two.three, "/three", 1, Duration::from_secs(30)).await;
    let call = &calls[0];
    assert_eq!(header(call, "content-type"), Some("application/json"));
    assert_eq!(header(call, "language"), Some("en"));
    assert_eq!(header(call, "authorization"), Some("Bearer tok-1"));
    assert_eq!(header(call, "idempotency-key"), Some(id));
    let tp = header(call, "traceparent").expect("trace context on the call");
    assert!(tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "same trace: {tp}");
    let body: serde_json::Value = call.body_json().unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "id": id,
            "metadata": format!("kafka:{}/0@0", two.settings.kafka.topic),
            "one_request": {"user_id": "user-1", "prompt": "summarise this", "data": [{"key": "lang", "value": "en"}]}
        })
    );

    // Offsets are committed after the message is finished.
    let (group, topic) = (two.settings.kafka.consumer.group_id.clone(), two.settings.kafka.topic.clone());
    wait_until(Duration::from_secs(15), "offset 1 committed", || {
        let (g, t) = (group.clone(), topic.clone());
        async move { tokio::task::spawn_blocking(move || committed_offset(&g, &t, 0)).await.unwrap() == Some(1) }
    })
    .await;
    assert!(two.processed(id).await);
    let admin = format!("http://{}", two.admin);
    assert_eq!(reqwest::get(format!("{admin}/healthz")).await.unwrap().status(), 200);
    assert_eq!(reqwest::get(format!("{admin}/readyz")).await.unwrap().status(), 200);
    two.stop().await;
}

#[test]
fn help_documents_every_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_two")).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--config-dir",
        "--environment",
        "--admin-host",
        "--admin-port",
        "--database-url",
        "--brokers",
        "--topic",
        "--group-id",
        "--concurrency",
        "--token-url",
        "--three-url",
        "--log-filter",
    ] {
        assert!(help.contains(flag), "--help lists {flag}:\n{help}");
    }
}
