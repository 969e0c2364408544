//! The token cache against a wiremock token server: one fetch for many calls and for concurrent
//! misses, refresh ahead of expiry, `expires_in` as number or string, 401 handling, errors.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic: that is its failure report

use cruncan_accesstoken::{TokenCache, TokenError, TokenSettings};
use std::time::Duration;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn settings(server: &MockServer, margin: u64) -> TokenSettings {
    TokenSettings {
        url: server.uri(),
        client_id: "client-1".into(),
        client_secret: "s3cr3t".into(),
        scope: "general".into(),
        refresh_margin: Duration::from_secs(margin),
        timeout: Duration::from_secs(2),
    }
}

fn token_response(token: &str, expires_in: serde_json::Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(
        serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": expires_in}),
    )
}

#[tokio::test]
async fn fifty_calls_one_fetch_with_basic_auth_and_the_form() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/oauth/token"))
        // base64("client-1:s3cr3t")
        .and(header("authorization", "Basic Y2xpZW50LTE6czNjcjN0"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains("scope=general"))
        .respond_with(token_response("tok-1", serde_json::json!(3600)))
        .expect(1)
        .mount(&server)
        .await;
    let cache = TokenCache::new(reqwest::Client::new(), settings(&server, 30));
    for _ in 0..50 {
        assert_eq!(cache.token().await.unwrap().bearer(), "tok-1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_misses_cause_one_fetch() {
    let server = MockServer::start().await;
    Mock::given(path("/v2/oauth/token"))
        .respond_with(token_response("tok", serde_json::json!(3600)).set_delay(Duration::from_millis(200)))
        .expect(1)
        .mount(&server)
        .await;
    let cache = TokenCache::new(reqwest::Client::new(), settings(&server, 30));
    let calls = (0..20).map(|_| {
        let c = cache.clone();
        tokio::spawn(async move { c.token().await.unwrap().bearer().to_owned() })
    });
    for t in futures::future::join_all(calls).await {
        assert_eq!(t.unwrap(), "tok");
    }
}

#[tokio::test]
async fn expires_in_as_a_string_works_and_a_token_near_expiry_is_refreshed_ahead() {
    let server = MockServer::start().await;
    // Lifetime 2 s, margin 1 s: the cache refreshes after 1 s, before the token dies.
    Mock::given(path("/v2/oauth/token"))
        .respond_with(token_response("first", serde_json::json!("2")))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/v2/oauth/token"))
        .respond_with(token_response("second", serde_json::json!(3600)))
        .expect(1)
        .mount(&server)
        .await;
    let cache = TokenCache::new(reqwest::Client::new(), settings(&server, 1));
    let first = cache.token().await.unwrap();
    assert_eq!(first.bearer(), "first");
    assert_eq!(first.expires_in, Duration::from_secs(2));
    assert!(first.refreshes_in() <= Duration::from_secs(1));
    assert_eq!(cache.token().await.unwrap().bearer(), "first", "still fresh");
    tokio::time::sleep(first.refreshes_in() + Duration::from_millis(150)).await;
    assert_eq!(cache.token().await.unwrap().bearer(), "second", "refreshed before expiry");
}

#[tokio::test]
async fn a_rejected_token_is_dropped_once() {
    let server = MockServer::start().await;
    Mock::given(path("/v2/oauth/token"))
        .respond_with(token_response("old", serde_json::json!(3600)))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(path("/v2/oauth/token"))
        .respond_with(token_response("new", serde_json::json!(3600)))
        .mount(&server)
        .await;
    let cache = TokenCache::new(reqwest::Client::new(), settings(&server, 30));
    let old = cache.token().await.unwrap();
    cache.reject(&old).await;
    let new = cache.token().await.unwrap();
    assert_eq!(new.bearer(), "new");
    // A late 401 for the old token must not drop the new one.
    cache.reject(&old).await;
    assert_eq!(cache.token().await.unwrap().bearer(), "new");
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn errors_say_whether_retrying_helps_and_nothing_prints_the_secret() {
    let server = MockServer::start().await;
    Mock::given(path("/v2/oauth/token"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(path("/v2/oauth/token"))
        .respond_with(ResponseTemplate::new(401))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(path("/v2/oauth/token"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{}"))
        .mount(&server)
        .await;
    let cache = TokenCache::new(reqwest::Client::new(), settings(&server, 30));
    let e = cache.token().await.unwrap_err();
    assert!(matches!(*e, TokenError::Status { status: 503 }) && e.is_retryable());
    let e = cache.token().await.unwrap_err();
    assert!(matches!(*e, TokenError::Status { status: 401 }) && !e.is_retryable());
    let e = cache.token().await.unwrap_err();
    assert!(matches!(*e, TokenError::Decode(_)));

    let printed = format!("{cache:?} {:?}", settings(&server, 1));
    assert!(!printed.contains("s3cr3t"), "{printed}");
}
