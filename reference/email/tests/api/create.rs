//! Create → queued → sent → at the sink; reads; idempotency.

use crate::helpers::*;
use serde_json::Value;
use std::time::Duration;

#[tokio::test]
async fn rest_create_is_sent_and_arrives_at_the_sink_with_headers_and_body() {
    let app = spawn_app(Options::default()).await;
    let subject = cruncan_testkit::unique_name("Quarterly report");
    let r = app.post(&new_email(&subject)).await;
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let id = r.json::<Value>().await.unwrap()["email_id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/v1/email/{id}"));
    assert_eq!(id.parse::<uuid::Uuid>().unwrap().get_version_num(), 7);

    let (status, attempts) = app.wait_for_status(&id, "sent", Duration::from_secs(15)).await;
    assert_eq!((status.as_str(), attempts), ("sent", 1));

    let sink = SinkApi::stack();
    let m = sink.wait_for(&id, Duration::from_secs(5)).await;
    assert_eq!(m["subject"], subject.as_str());
    assert_eq!(m["from"][0]["address"], "sender@example.com");
    let to: Vec<&str> = m["to"].as_array().unwrap().iter().map(|a| a["address"].as_str().unwrap()).collect();
    assert_eq!(to, ["alice@example.com", "bob@example.org"]);
    let envelope: Vec<&str> =
        m["envelope"]["to"].as_array().unwrap().iter().map(|a| a["address"].as_str().unwrap()).collect();
    assert_eq!(envelope, ["alice@example.com", "bob@example.org"]);
    assert_eq!(m["text"].as_str().unwrap().trim_end(), format!("Body of {subject}\nsecond line"));
    assert!(m["headers"]["content-type"].as_str().unwrap().starts_with("text/plain"));
    assert_eq!(sink.messages_for(&id).await.len(), 1, "sent exactly once");

    let read = app.get_json(&id).await;
    assert_eq!(read["status"], "sent");
    assert_eq!(read["attempts"], 1);
    assert!(read["sent_at"].is_string());
    assert_eq!(read["to"], serde_json::json!(["alice@example.com", "bob@example.org"]));
    assert_eq!(cruncan_jetstream::pending(&app.pool).await.unwrap(), 0, "the outbox is drained");
    app.stop().await;
}

#[tokio::test]
async fn idempotency_key_replays_the_same_email_and_refuses_another_body() {
    let app = spawn_app(Options { workers: 0, ..Options::default() }).await;
    let post = |body: Value, key: &'static str| {
        let req =
            app.http.post(format!("{}/api/v1/email", app.base)).header("idempotency-key", key).json(&body);
        async move { req.send().await.unwrap() }
    };
    let first = post(new_email("once"), "key-1").await;
    assert_eq!(first.status(), 202);
    let id = first.json::<Value>().await.unwrap()["email_id"].clone();
    let again = post(new_email("once"), "key-1").await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap()["email_id"], id);
    let other = post(new_email("another"), "key-1").await;
    assert_eq!(other.status(), 422);
    assert_eq!(other.json::<Value>().await.unwrap()["code"], "idempotency_key_reused");
    let bad = post(new_email("x"), "has space").await;
    assert_eq!(bad.status(), 400);
    let (rows, events): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM email), (SELECT count(*) FROM outbox) + 0")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(rows, 1, "one email stored for one key");
    assert!(events <= 1);
    app.stop().await;
}

#[tokio::test]
async fn unknown_id_is_404_and_malformed_id_is_400() {
    let app = spawn_app(Options { workers: 0, ..Options::default() }).await;
    let unknown = app.get(&uuid::Uuid::now_v7().to_string()).await;
    assert_eq!(unknown.status(), 404);
    let malformed = app.get("not-a-uuid").await;
    assert_eq!(malformed.status(), 400);
    let body: Value = malformed.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("email_id"), "{body}");
    let ready = reqwest::get(format!("{}/readyz", app.admin)).await.unwrap();
    assert_eq!(ready.status(), 200);
    let openapi: Value =
        reqwest::get(format!("{}/openapi.json", app.base)).await.unwrap().json().await.unwrap();
    assert!(openapi["paths"]["/api/v1/email"]["post"].is_object(), "{openapi}");
    assert!(openapi["paths"]["/api/v1/email"]["get"].is_object());
    assert!(openapi["paths"]["/api/v1/email/{id}"]["get"].is_object());
    assert_eq!(reqwest::get(format!("{}/docs/", app.base)).await.unwrap().status(), 200);
    app.stop().await;
}
