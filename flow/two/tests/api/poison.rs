use crate::helpers::{mount_token, read_topic, spawn_two, wait_until};
use cruncan_kafka::DeadLetterHeaders;
use std::time::Duration;
use wiremock::matchers::path;
use wiremock::{Mock, ResponseTemplate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_go_to_the_dead_letter_topic_at_once_and_the_next_one_is_processed() {
    let two = spawn_two(|_| {}).await;
    mount_token(&two.token_server, "tok", 1).await;
    Mock::given(path("/three")).respond_with(ResponseTemplate::new(200)).expect(1).mount(&two.three).await;
    two.publish("poison-1", b"{not json", &[]).await;
    two.publish("poison-2", br#"{"request_id": "00000000000000000009"}"#, &[]).await;
    let good = "00000000000000000010";
    two.publish_event(good).await;

    let dead = read_topic(&two.dlq(), 2, Duration::from_secs(30), Duration::from_millis(500)).await;
    let keys: Vec<&str> = dead.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(keys, ["poison-1", "poison-2"]);
    for d in &dead {
        assert_eq!(d.header(DeadLetterHeaders::REASON), Some("permanent"));
        assert_eq!(d.header(DeadLetterHeaders::ATTEMPTS), Some("1"), "no retry for poison");
        assert!(d.header(DeadLetterHeaders::ERROR).unwrap().contains("undecodable"), "{:?}", d.headers);
    }
    wait_until(Duration::from_secs(10), "the good message processed", || two.processed(good)).await;
    two.stop().await;
}
