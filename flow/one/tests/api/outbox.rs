//! The outbox under failure: broker down, two relays, a relay that dies between publishing and
//! marking.

use crate::helpers::{brokers, read_topic, settings, spawn_with, test_database, valid_body, wait_until};
use cruncan_kafka::{Producer, ProducerSettings};
use cruncan_shutdown::Shutdown;
use std::collections::BTreeSet;
use std::time::Duration;

/// Settings whose broker address answers nothing: the relay cannot publish.
fn unreachable_broker(s: &mut one::Settings) {
    s.kafka.brokers = "127.0.0.1:9".into();
    s.kafka.producer.message_timeout = Duration::from_secs(2);
    s.outbox.drain_timeout = Duration::from_millis(500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_broker_down_requests_succeed_and_rows_wait_until_it_is_back() {
    let db = test_database().await;
    let mut s = settings(&db);
    unreachable_broker(&mut s);
    let topic = s.kafka.topic.clone();
    let down = spawn_with(s.clone()).await;
    let mut ids = BTreeSet::new();
    for _ in 0..5 {
        let r = down.post_one(&valid_body()).await;
        assert_eq!(r.status(), 201, "accepting does not need the broker");
        ids.insert(r.json::<serde_json::Value>().await.unwrap()["request_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(down.pending().await, 5, "rows wait in the outbox");
    assert_eq!(
        down.get("/readyz").await.status(),
        200,
        "a broker outage does not take the API out of rotation"
    );
    down.stop().await;

    // The broker is back (a new start with a reachable broker, same database and topic).
    let mut back = settings(&db);
    back.kafka.topic = topic.clone();
    let up = spawn_with(back).await;
    let records = read_topic(&topic, 5, Duration::from_secs(30), Duration::from_secs(1)).await;
    let published: BTreeSet<String> = records.iter().map(|r| r.key.clone()).collect();
    assert_eq!(records.len(), 5, "each pending row published once");
    assert_eq!(published, ids);
    wait_until(Duration::from_secs(10), "outbox marked sent", || async { up.pending().await == 0 }).await;
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_on_one_database_never_publish_a_row_twice() {
    let mut s = settings(&test_database().await);
    s.outbox.batch_size = 5;
    let app = spawn_with(s.clone()).await;
    let producer = Producer::new(&brokers(), &ProducerSettings::new("second-relay")).unwrap();
    let second = one::outbox::relay(app.pool.clone(), producer, &s.kafka, &s.outbox).unwrap();
    let stop_second = Shutdown::new();
    let second_task = tokio::spawn(second.run(stop_second.clone()));

    let body = valid_body();
    let posts = (0..60).map(|_| app.post_one(&body));
    for r in futures::future::join_all(posts).await {
        assert_eq!(r.status(), 201);
    }
    let records = read_topic(&s.kafka.topic, 60, Duration::from_secs(30), Duration::from_secs(2)).await;
    let keys: BTreeSet<&str> = records.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(records.len(), 60, "no row published twice");
    assert_eq!(keys.len(), 60);
    stop_second.trigger();
    second_task.await.unwrap();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_after_publishing_republishes_at_most_once_more() {
    let db = test_database().await;
    let mut s = settings(&db);
    unreachable_broker(&mut s);
    let app = spawn_with(s.clone()).await;
    let r = app.post_one(&valid_body()).await;
    let id = r.json::<serde_json::Value>().await.unwrap()["request_id"].as_str().unwrap().to_owned();
    app.stop().await; // closes the app's pool
    let pool = db.lazy_pool();

    let producer = Producer::new(&brokers(), &ProducerSettings::new("crashing-relay")).unwrap();
    let mut kafka = s.kafka.clone();
    kafka.brokers = brokers();
    let relay = one::outbox::relay(pool.clone(), producer, &kafka, &s.outbox).unwrap();
    cruncan_kafka::ensure_topic(&brokers(), &s.kafka.topic, 1, 1).await.unwrap();
    // Publish, then die before marking: the transaction is dropped, the row stays pending.
    let mut tx = pool.begin().await.unwrap();
    let claimed = relay.claim_and_publish(&mut tx).await.unwrap();
    assert_eq!(claimed.acked.len(), 1);
    drop(tx);
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(pending, 1, "the crash left the row pending");

    // The next relay publishes it again, once, and marks it.
    assert_eq!(relay.publish_batch().await.unwrap(), 1);
    assert_eq!(relay.publish_batch().await.unwrap(), 0);
    let records = read_topic(&s.kafka.topic, 2, Duration::from_secs(30), Duration::from_secs(1)).await;
    assert_eq!(records.len(), 2, "published exactly twice: at-least-once, at most once more");
    assert!(records.iter().all(|r| r.key == id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sends_are_recorded_on_their_rows_and_stay_pending() {
    let db = test_database().await;
    let mut s = settings(&db);
    unreachable_broker(&mut s);
    let app = spawn_with(s.clone()).await;
    assert_eq!(app.post_one(&valid_body()).await.status(), 201);
    app.stop().await;
    let pool = db.lazy_pool();

    // The topic exists (the admin client reaches the broker) but every send times out: the
    // producer points at an address where nothing answers.
    let mut kafka = s.kafka.clone();
    kafka.brokers = brokers();
    cruncan_kafka::ensure_topic(&brokers(), &s.kafka.topic, 1, 1).await.unwrap();
    let producer = Producer::new(
        "127.0.0.1:9",
        &ProducerSettings {
            message_timeout: Duration::from_secs(1),
            ..ProducerSettings::new("failing-relay")
        },
    )
    .unwrap();
    let relay = one::outbox::relay(pool.clone(), producer, &kafka, &s.outbox).unwrap();
    assert!(relay.publish_batch().await.is_err(), "nothing could be published");
    let (pending, attempts, error): (i64, i32, Option<String>) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE sent_at IS NULL), max(attempts), max(last_error) FROM outbox",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(pending, 1, "the row stays pending");
    assert_eq!(attempts, 1, "the failed attempt survived the batch");
    assert!(error.is_some_and(|e| !e.is_empty()), "the failure is recorded for the operator");
}
