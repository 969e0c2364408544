use crate::helpers::{read_topic, spawn_app, valid_body};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_key_same_body_replays_and_other_body_is_422() {
    let app = spawn_app().await;
    let key = [("idempotency-key", "order-42")];
    let first = app.post_raw("application/json", valid_body().to_string(), &key).await;
    assert_eq!(first.status(), 201);
    let first_location = first.headers()["location"].clone();
    let first_body: serde_json::Value = first.json().await.unwrap();

    // Same request, keys in another order: the same request.
    let reordered =
        json!({"data": [{"key": "lang", "value": "en"}], "prompt": "summarise this", "user_id": "user-1"});
    let second = app.post_raw("application/json", reordered.to_string(), &key).await;
    assert_eq!(second.status(), 201);
    assert_eq!(second.headers()["location"], first_location);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert_eq!(second.json::<serde_json::Value>().await.unwrap(), first_body);

    let other = app
        .post_raw(
            "application/json",
            json!({"user_id": "user-1", "prompt": "something else"}).to_string(),
            &key,
        )
        .await;
    assert_eq!(other.status(), 422);
    assert_eq!(other.json::<serde_json::Value>().await.unwrap()["code"], "idempotency_key_reused");

    assert_eq!(app.count("request").await, 1);
    assert_eq!(app.count("outbox").await, 1);
    let records =
        read_topic(&app.settings.kafka.topic, 1, Duration::from_secs(30), Duration::from_secs(1)).await;
    assert_eq!(records.len(), 1, "one message for one key");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_with_one_key_store_one_row() {
    let app = spawn_app().await;
    let sends = (0..10).map(|_| {
        app.post_raw("application/json", valid_body().to_string(), &[("idempotency-key", "race-1")])
    });
    let responses = futures::future::join_all(sends).await;
    let mut ids = std::collections::BTreeSet::new();
    for r in responses {
        assert_eq!(r.status(), 201);
        ids.insert(r.json::<serde_json::Value>().await.unwrap()["request_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "every racer got the same id: {ids:?}");
    assert_eq!(app.count("request").await, 1);
    assert_eq!(app.count("outbox").await, 1);
    assert_eq!(app.count("idempotency_key").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn malformed_key_is_rejected() {
    let app = spawn_app().await;
    let long = "k".repeat(256);
    for key in ["", long.as_str(), "has space"] {
        let r = app.post_raw("application/json", valid_body().to_string(), &[("idempotency-key", key)]).await;
        assert_eq!(r.status(), 400, "key {key:?}");
    }
    assert_eq!(app.count("request").await, 0);
    app.stop().await;
}
