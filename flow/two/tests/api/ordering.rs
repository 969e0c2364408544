//! Same key: in order. Other keys: in parallel.

use crate::helpers::{event_bytes, mount_token, spawn_two, wait_calls};
use cruncan_kafka::lane_for;
use cruncan_model::ThreeRequest;
use std::time::Duration;
use wiremock::matchers::{body_string_contains, path};
use wiremock::{Mock, ResponseTemplate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_key_in_order_other_keys_in_parallel() {
    let two = spawn_two(|s| s.kafka.consumer.concurrency = 16).await;
    let topic = two.settings.kafka.topic.clone();
    // Two keys that land in different lanes (the lane is a hash of partition and key).
    let lane = |k: &str| lane_for(&topic, 0, Some(k.as_bytes()), 16);
    let slow = "key-slow";
    let fast = (0..100).map(|i| format!("key-fast-{i}")).find(|k| lane(k) != lane(slow)).unwrap();

    mount_token(&two.token_server, "tok", 1).await;
    // The slow key's calls take 300 ms each; the fast key's return at once.
    Mock::given(path("/three"))
        .and(body_string_contains("\"prompt\":\"slow-"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(300)))
        .mount(&two.three)
        .await;
    Mock::given(path("/three")).respond_with(ResponseTemplate::new(200)).mount(&two.three).await;

    for i in 0..4 {
        two.publish(slow, &event_bytes(&format!("{:020}", 10 + i), &format!("slow-{i}")), &[]).await;
        two.publish(&fast, &event_bytes(&format!("{:020}", 20 + i), &format!("fast-{i}")), &[]).await;
    }
    let calls = wait_calls(&two.three, "/three", 8, Duration::from_secs(30)).await;
    let prompts: Vec<String> =
        calls.iter().map(|c| c.body_json::<ThreeRequest>().unwrap().one_request.prompt).collect();
    let order = |prefix: &str| prompts.iter().filter(|p| p.starts_with(prefix)).cloned().collect::<Vec<_>>();
    assert_eq!(order("slow-"), ["slow-0", "slow-1", "slow-2", "slow-3"], "same key in order: {prompts:?}");
    assert_eq!(order("fast-"), ["fast-0", "fast-1", "fast-2", "fast-3"], "same key in order: {prompts:?}");
    let pos = |p: &str| prompts.iter().position(|x| x == p).unwrap();
    assert!(pos("fast-3") < pos("slow-1"), "the fast key did not wait for the slow one: {prompts:?}");
    two.stop().await;
}
