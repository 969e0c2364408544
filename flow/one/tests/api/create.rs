use crate::helpers::{read_topic, spawn_app, valid_body};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_request_is_stored_published_and_readable() {
    let app = spawn_app().await;
    // A caller that is itself traced: the service must continue this trace.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let resp =
        app.post_raw("application/json", valid_body().to_string(), &[("traceparent", &traceparent)]).await;

    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let body: serde_json::Value = resp.json().await.unwrap();
    let id = body["request_id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 20, "20-digit zero-padded id: {id}");
    assert!(id.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(location, format!("/one/{id}"));
    assert_eq!(body.as_object().unwrap().len(), 1, "body is exactly {{request_id}}: {body}");

    // One row.
    let (user_id, req): (String, serde_json::Value) =
        sqlx::query_as("SELECT user_id, req FROM request WHERE req_id = $1")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(user_id, "user-1");
    assert_eq!(req, valid_body());
    assert_eq!(app.count("request").await, 1);

    // One message, keyed by the id, carrying the request's trace.
    let records =
        read_topic(&app.settings.kafka.topic, 1, Duration::from_secs(30), Duration::from_millis(500)).await;
    assert_eq!(records.len(), 1, "exactly one message");
    let r = &records[0];
    assert_eq!(r.key, id);
    assert_eq!(r.payload["request_id"], id.as_str());
    assert_eq!(r.payload["user_id"], "user-1");
    assert_eq!(r.payload["prompt"], "summarise this");
    assert_eq!(r.payload["data"], serde_json::json!([{"key": "lang", "value": "en"}]));
    assert!(r.payload["created_at"].as_str().is_some());
    let tp = r.header("traceparent").expect("traceparent header");
    assert!(tp.starts_with(&format!("00-{trace_id}-")), "message continues the caller's trace: {tp}");
    assert_ne!(tp, traceparent, "the parent is the server span, not the caller's");

    // Readable.
    let got = app.get(&location).await;
    assert_eq!(got.status(), 200);
    let stored: serde_json::Value = got.json().await.unwrap();
    assert_eq!(stored["request_id"], id.as_str());
    assert_eq!(stored["user_id"], "user-1");
    assert_eq!(stored["prompt"], "summarise this");
    assert_eq!(stored["data"], serde_json::json!([{"key": "lang", "value": "en"}]));
    assert!(stored["created_at"].is_string() && stored["updated_at"].is_string());

    wait_pending_zero(&app).await;
    app.stop().await;
}

async fn wait_pending_zero(app: &crate::helpers::TestApp) {
    crate::helpers::wait_until(Duration::from_secs(10), "outbox marked sent", || async {
        app.pending().await == 0
    })
    .await;
}

#[tokio::test]
async fn unknown_and_malformed_ids() {
    let app = spawn_app().await;
    let missing = app.get("/one/00000000000000000042").await;
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
    let bad = app.get("/one/abc").await;
    assert_eq!(bad.status(), 400);
    let body: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(body["code"], "invalid_id");
    app.stop().await;
}
