//! The create never loses an accepted email between PostgreSQL and NATS.

use crate::helpers::*;
use std::time::Duration;

#[tokio::test]
async fn an_email_accepted_while_nats_is_down_is_sent_when_it_is_back() {
    let upstream: std::net::SocketAddr = nats_url().trim_start_matches("nats://").parse().unwrap();
    let proxy = cruncan_testkit::TcpProxy::start(upstream).unwrap();
    let mut s = settings(&Options { workers: 1, ..Options::default() }).await;
    s.nats.url = format!("nats://{}", proxy.addr());
    let app = spawn_with(s, None).await;

    proxy.cut();
    let id = app.create(&new_email(&cruncan_testkit::unique_name("while NATS is down"))).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.status(&id).await.0, "queued");
    assert_eq!(cruncan_jetstream::pending(&app.pool).await.unwrap(), 1, "the event waits in the outbox");

    proxy.restore();
    app.wait_for_status(&id, "sent", Duration::from_secs(30)).await;
    SinkApi::stack().wait_for(&id, Duration::from_secs(5)).await;
    assert_eq!(cruncan_jetstream::pending(&app.pool).await.unwrap(), 0);
    app.stop().await;
}

#[tokio::test]
async fn a_relay_that_publishes_a_row_twice_is_deduplicated_by_jetstream() {
    let app = spawn_app(Options { workers: 0, ..Options::default() }).await;
    let id = app.create(&new_email("published twice")).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while cruncan_jetstream::pending(&app.pool).await.unwrap() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "relay did not publish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A relay that died after JetStream stored the event but before its DELETE committed:
    // the row is still there, and the next relay publishes it again.
    let event = serde_json::json!({"email_id": id, "from": "sender@example.com", "to": ["alice@example.com"],
        "subject": "published twice", "created_at": chrono::Utc::now()});
    sqlx::query("INSERT INTO outbox (subject, msg_id, payload) VALUES ($1, $2::uuid, $3)")
        .bind(app.settings.nats.subject(email::jetstream::SEND_SUBJECT))
        .bind(&id)
        .bind(&event)
        .execute(&app.pool)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while cruncan_jetstream::pending(&app.pool).await.unwrap() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "relay did not publish the second time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut stream = app.js.get_stream(&app.settings.nats.stream).await.unwrap();
    let state = stream.info().await.unwrap().state.clone();
    assert_eq!(state.messages, 1, "the second publish was dropped: {state:?}");
    app.stop().await;
}
