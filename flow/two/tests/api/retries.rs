use crate::helpers::{
    mount_token, read_topic, spawn_two, telemetry, three_failing_with_retry_after, wait_calls, wait_until,
};
use cruncan_kafka::DeadLetterHeaders;
use std::time::Duration;
use wiremock::matchers::path;
use wiremock::{Mock, ResponseTemplate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_503s_then_200_is_delivered_once_and_counted_as_retried() {
    let two = spawn_two(|_| {}).await;
    mount_token(&two.token_server, "tok", 1).await;
    Mock::given(path("/three"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .expect(2)
        .mount(&two.three)
        .await;
    Mock::given(path("/three")).respond_with(ResponseTemplate::new(200)).expect(1).mount(&two.three).await;
    let id = "00000000000000000503";
    two.publish_event(id).await;
    wait_calls(&two.three, "/three", 3, Duration::from_secs(30)).await;
    wait_until(Duration::from_secs(10), "processed", || two.processed(id)).await;
    let retries = telemetry()
        .logs
        .json_lines()
        .into_iter()
        .filter(|l| l["message"] == "retryable failure; retrying" && l["key"] == id)
        .count();
    assert_eq!(retries, 2, "two retries logged for {id}");
    two.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let two = spawn_two(|_| {}).await;
    mount_token(&two.token_server, "tok", 1).await;
    let times = three_failing_with_retry_after(&two, 1, "1").await;
    two.publish_event("00000000000000000777").await;
    wait_calls(&two.three, "/three", 2, Duration::from_secs(30)).await;
    let t = times.lock().unwrap().clone();
    let gap = t[1] - t[0];
    // The configured backoff is 20 ms; only Retry-After explains a pause of a second.
    assert!(gap >= Duration::from_millis(950), "waited {gap:?}, Retry-After said 1 s");
    two.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_is_retried() {
    let two = spawn_two(|s| s.three.timeout = Duration::from_millis(300)).await;
    mount_token(&two.token_server, "tok", 1).await;
    Mock::given(path("/three"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(2)))
        .up_to_n_times(1)
        .expect(1)
        .mount(&two.three)
        .await;
    Mock::given(path("/three")).respond_with(ResponseTemplate::new(200)).expect(1).mount(&two.three).await;
    let id = "00000000000000000408";
    two.publish_event(id).await;
    wait_until(Duration::from_secs(20), "processed after a timeout", || two.processed(id)).await;
    two.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_is_permanent_dead_lettered_with_reasons_and_not_retried() {
    let two = spawn_two(|_| {}).await;
    mount_token(&two.token_server, "tok", 1).await;
    Mock::given(path("/three")).respond_with(ResponseTemplate::new(400)).expect(1).mount(&two.three).await;
    let id = "00000000000000000400";
    two.publish_event(id).await;
    let dead = read_topic(&two.dlq(), 1, Duration::from_secs(30), Duration::from_millis(500)).await;
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(d.key, id);
    assert_eq!(d.payload["request_id"], id, "original value kept");
    assert_eq!(d.header(DeadLetterHeaders::REASON), Some("permanent"));
    assert!(d.header(DeadLetterHeaders::ERROR).unwrap().contains("400"));
    assert_eq!(d.header(DeadLetterHeaders::ATTEMPTS), Some("1"));
    assert_eq!(d.header(DeadLetterHeaders::TOPIC), Some(two.settings.kafka.topic.as_str()));
    assert_eq!(d.header(DeadLetterHeaders::PARTITION), Some("0"));
    assert_eq!(d.header(DeadLetterHeaders::OFFSET), Some("0"));
    assert!(!two.processed(id).await);
    two.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_are_dead_lettered() {
    let two = spawn_two(|s| s.kafka.consumer.max_attempts = 3).await;
    mount_token(&two.token_server, "tok", 1).await;
    Mock::given(path("/three")).respond_with(ResponseTemplate::new(502)).expect(3).mount(&two.three).await;
    two.publish_event("00000000000000000502").await;
    let dead = read_topic(&two.dlq(), 1, Duration::from_secs(30), Duration::from_millis(500)).await;
    assert_eq!(dead[0].header(DeadLetterHeaders::REASON), Some("retries-exhausted"));
    assert_eq!(dead[0].header(DeadLetterHeaders::ATTEMPTS), Some("3"));
    two.stop().await;
}
