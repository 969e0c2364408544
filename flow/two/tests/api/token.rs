use crate::helpers::{mount_token, spawn_two, wait_calls, wait_until};
use std::time::Duration;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, ResponseTemplate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_messages_need_one_token() {
    let two = spawn_two(|_| {}).await;
    mount_token(&two.token_server, "tok-1", 1).await;
    Mock::given(method("POST"))
        .and(path("/three"))
        .respond_with(ResponseTemplate::new(200))
        .expect(50)
        .mount(&two.three)
        .await;
    for i in 0..50 {
        two.publish_event(&format!("{:020}", 100 + i)).await;
    }
    wait_calls(&two.three, "/three", 50, Duration::from_secs(60)).await;
    two.stop().await; // the mocks verify their counts when dropped
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_drops_the_token_and_retries_once_with_a_new_one() {
    let two = spawn_two(|_| {}).await;
    Mock::given(path("/v2/oauth/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"access_token": "old", "expires_in": 3600})),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&two.token_server)
        .await;
    mount_token(&two.token_server, "new", 1).await;
    Mock::given(path("/three"))
        .and(header("authorization", "Bearer old"))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&two.three)
        .await;
    Mock::given(path("/three"))
        .and(header("authorization", "Bearer new"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&two.three)
        .await;
    let id = "00000000000000000401";
    two.publish_event(id).await;
    wait_calls(&two.three, "/three", 2, Duration::from_secs(30)).await;
    wait_until(Duration::from_secs(10), "request processed", || two.processed(id)).await;
    two.stop().await;
}
