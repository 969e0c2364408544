//! A consumer dropped before committing: the message comes again, and the processed-id store
//! keeps the third party from seeing it twice.

use crate::helpers::{mount_token, settings, start, telemetry, wait_calls, wait_until};
use std::time::Duration;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_message_is_processed_once() {
    let token_server = MockServer::start().await;
    let three = MockServer::start().await;
    mount_token(&token_server, "tok", 1).await; // the duplicate is skipped before a token is needed
    Mock::given(path("/three")).respond_with(ResponseTemplate::new(200)).expect(1).mount(&three).await;
    let mut s = settings(&token_server, &three).await;
    // Commit nothing in the background: the drop below then loses the offset, as a crash would.
    s.kafka.consumer.extra.insert("enable.auto.commit".into(), "false".into());

    let mut first = start(s.clone(), token_server, three).await;
    let id = "00000000000000000666";
    first.publish_event(id).await;
    wait_calls(&first.three, "/three", 1, Duration::from_secs(30)).await;
    wait_until(Duration::from_secs(10), "processed by the first consumer", || first.processed(id)).await;
    // Crash: abort the task; nothing is committed.
    let task = first.handle.take().unwrap();
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());

    let second = start(s, first.token_server, first.three).await;
    wait_until(Duration::from_secs(30), "the duplicate to be seen and skipped", || async {
        telemetry().logs.json_lines().iter().any(|l| {
            l["message"] == "already processed; skipping duplicate delivery" && l["request_id"] == id
        })
    })
    .await;
    assert_eq!(second.three.received_requests().await.unwrap().len(), 1, "the third party saw one call");
    second.stop().await;
}
