//! Cache-aside: miss → hit → invalidated on a status change; Redis down → reads still answer.

use crate::helpers::*;
use futures::StreamExt as _;
use redis::AsyncCommands as _;
use std::time::Duration;

async fn redis_has(app: &TestApp, id: &str) -> bool {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    conn.exists(format!("{}{id}", app.settings.redis.key_prefix)).await.unwrap()
}

#[tokio::test]
async fn reads_go_through_the_cache_and_a_status_change_invalidates_it() {
    // No workers: the test sends the one message itself, through the service's worker.
    let app = spawn_app(Options { workers: 0, ..Options::default() }).await;
    let id = app.create(&new_email(&cruncan_testkit::unique_name("cached"))).await;
    assert!(!redis_has(&app, &id).await, "nothing cached before the first read");

    let first = app.get_json(&id).await; // miss: PostgreSQL, then cached
    assert_eq!(first["status"], "queued");
    assert!(redis_has(&app, &id).await, "the miss filled the cache");

    // Change the row behind the cache's back: a hit still returns the cached copy.
    sqlx::query("UPDATE email SET subject = 'changed underneath' WHERE email_id = $1::uuid")
        .bind(&id)
        .execute(&app.pool)
        .await
        .unwrap();
    let hit = app.get_json(&id).await;
    assert_eq!(hit["subject"], first["subject"], "served from the cache");

    // The worker sends it: the status change drops the entry, the next read sees PostgreSQL.
    let consumer = app.consumer().await;
    let mut batch = consumer.fetch().max_messages(1).messages().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let msg = loop {
        if let Some(Ok(m)) = batch.next().await {
            break m;
        }
        assert!(tokio::time::Instant::now() < deadline, "no message");
        tokio::time::sleep(Duration::from_millis(100)).await;
        batch = consumer.fetch().max_messages(1).messages().await.unwrap();
    };
    let disposition = app.worker.process(&msg).await;
    assert_eq!(disposition, email::worker::Disposition::Ack("sent"));
    app.worker.settle(&msg, disposition).await.unwrap();
    assert!(!redis_has(&app, &id).await, "status change invalidated the entry");
    let fresh = app.get_json(&id).await;
    assert_eq!(
        (fresh["status"].as_str(), fresh["subject"].as_str()),
        (Some("sent"), Some("changed underneath"))
    );
    app.stop().await;
}

#[tokio::test]
async fn redis_down_reads_still_answer_from_postgres() {
    let upstream: std::net::SocketAddr =
        redis_url().trim_start_matches("redis://").trim_end_matches('/').parse().unwrap();
    let proxy = cruncan_testkit::TcpProxy::start(upstream).unwrap();
    let app = spawn_app(Options {
        workers: 0,
        redis_url: format!("redis://{}", proxy.addr()),
        ..Options::default()
    })
    .await;
    let id = app.create(&new_email("redis outage")).await;
    // Wait for the cache to connect, so the outage really cuts a live connection.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !redis_has(&app, &id).await {
        assert_eq!(app.get(&id).await.status(), 200);
        assert!(tokio::time::Instant::now() < deadline, "cache never filled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    proxy.cut();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let r = app.get(&id).await;
        assert_eq!(r.status(), 200, "a Redis outage does not fail the read");
        assert!(started.elapsed() < Duration::from_secs(3), "bounded by the cache timeout");
    }
    let unknown = app.get(&uuid::Uuid::now_v7().to_string()).await;
    assert_eq!(unknown.status(), 404);
    proxy.restore();
    app.stop().await;
}

#[tokio::test]
async fn a_redis_that_never_answered_does_not_stop_the_service() {
    // A port with nothing behind it: the cache never connects.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let app = spawn_app(Options {
        workers: 0,
        redis_url: format!("redis://127.0.0.1:{port}"),
        ..Options::default()
    })
    .await;
    let id = app.create(&new_email("no redis at all")).await;
    assert_eq!(app.get_json(&id).await["status"], "queued");
    assert_eq!(app.get_json(&id).await["status"], "queued");
    app.stop().await;
}
