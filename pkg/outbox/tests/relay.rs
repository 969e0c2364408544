//! The shared relay on a participant's own schema (`payments.outbox`, the saga's layout), against
//! the local stack's PostgreSQL and Kafka (`make up`): committed rows are published in order with
//! their headers and marked sent once; a failed send is recorded on its row and retried; a running
//! relay is woken by a commit, and deletes what it sent once the retention has passed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic: that is its failure report

use cruncan_kafka::{Headers, Producer, ProducerSettings};
use cruncan_outbox::{OutboxSettings, Record, Relay, Table, TopicSpec, backlog, enqueue};
use cruncan_shutdown::Shutdown;
use cruncan_testkit::{brokers, read_topic, unique_name, wait_until};
use sqlx::PgPool;
use std::time::Duration;

/// A fresh database with `payments.outbox`, created as the saga's migration creates it.
async fn database() -> (PgPool, Table) {
    let base = cruncan_db::local_test_settings().unwrap();
    let pool = cruncan_db::create_test_database(&base).await.unwrap().lazy_pool();
    sqlx::raw_sql(
        "CREATE SCHEMA payments;
         CREATE TABLE payments.outbox (
             id         bigserial   PRIMARY KEY,
             topic      text        NOT NULL,
             key        text        NOT NULL,
             payload    bytea       NOT NULL,
             headers    jsonb       NOT NULL DEFAULT '{}'::jsonb,
             created_at timestamptz NOT NULL DEFAULT now(),
             sent_at    timestamptz,
             attempts   integer     NOT NULL DEFAULT 0,
             last_error text);
         CREATE INDEX outbox_pending ON payments.outbox (id) WHERE sent_at IS NULL;",
    )
    .execute(&pool)
    .await
    .unwrap();
    (pool, Table::new("payments.outbox").unwrap())
}

fn record(topic: &str, n: u32) -> Record {
    let mut headers = Headers::new();
    headers.set("event-type", format!("Event{n}"));
    Record {
        topic: topic.into(),
        key: format!("saga-{n}"),
        payload: format!("{{\"n\":{n}}}").into_bytes(),
        headers,
    }
}

/// Writes records `ns` in one transaction.
async fn write(pool: &PgPool, table: &Table, topic: &str, ns: impl IntoIterator<Item = u32>) {
    let mut tx = pool.begin().await.unwrap();
    for n in ns {
        enqueue(&mut tx, table, &record(topic, n)).await.unwrap();
    }
    tx.commit().await.unwrap();
}

async fn rows(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM payments.outbox").fetch_one(pool).await.unwrap()
}

fn topic_spec(topic: &str) -> TopicSpec {
    TopicSpec { brokers: brokers(), topic: topic.into(), partitions: 1, replication: 1 }
}

fn producer(name: &str) -> Producer {
    Producer::new(&brokers(), &ProducerSettings::new(name)).unwrap()
}

#[tokio::test]
async fn committed_rows_are_published_in_order_with_their_headers_and_marked_sent_once() {
    let (pool, table) = database().await;
    let topic = unique_name("outbox-order");
    write(&pool, &table, &topic, 1..=3).await;
    write(&pool, &table, &topic, 4..=5).await;
    let relay = Relay::new(pool.clone(), producer("outbox-order"), table.clone(), OutboxSettings::default())
        .ensuring_topic(topic_spec(&topic));
    assert_eq!(relay.publish_batch().await.unwrap(), 5);
    assert_eq!(relay.publish_batch().await.unwrap(), 0, "nothing is published twice");

    let records = read_topic(&topic, 5, Duration::from_secs(20), Duration::from_millis(500)).await;
    let keys: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["saga-1", "saga-2", "saga-3", "saga-4", "saga-5"]);
    assert_eq!(records[3].header("event-type"), Some("Event4"));
    assert_eq!(records[3].payload, serde_json::json!({"n": 4}));
    let marked: Vec<(i32, bool)> =
        sqlx::query_as("SELECT attempts, sent_at IS NOT NULL FROM payments.outbox ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(marked, vec![(1, true); 5]);
    assert_eq!(backlog(&pool, &table).await.unwrap(), (0, 0));
}

#[tokio::test]
async fn a_failed_send_is_recorded_on_its_row_and_the_row_is_published_later() {
    let (pool, table) = database().await;
    let topic = unique_name("outbox-retry");
    cruncan_kafka::ensure_topic(&brokers(), &topic, 1, 1).await.unwrap();
    write(&pool, &table, &topic, 1..=2).await;
    // No broker answers at this address: both sends time out.
    let settings = ProducerSettings {
        message_timeout: Duration::from_millis(300),
        ..ProducerSettings::new("outbox-away")
    };
    let away = Producer::new("127.0.0.1:9", &settings).unwrap();
    let relay = Relay::new(pool.clone(), away, table.clone(), OutboxSettings::default());
    assert!(relay.publish_batch().await.is_err(), "nothing could be published");
    let rows: Vec<(i32, bool, Option<String>)> =
        sqlx::query_as("SELECT attempts, sent_at IS NOT NULL, last_error FROM payments.outbox ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    for (attempts, sent, error) in &rows {
        assert_eq!((*attempts, *sent), (1, false));
        assert!(error.as_deref().is_some_and(|e| !e.is_empty()), "no error recorded: {rows:?}");
    }
    let (pending, _) = backlog(&pool, &table).await.unwrap();
    assert_eq!(pending, 2);

    let relay = Relay::new(pool.clone(), producer("outbox-back"), table, OutboxSettings::default());
    assert_eq!(relay.publish_batch().await.unwrap(), 2);
    let attempts: Vec<i32> =
        sqlx::query_scalar("SELECT attempts FROM payments.outbox WHERE sent_at IS NOT NULL ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(attempts, [2, 2]);
    let records = read_topic(&topic, 2, Duration::from_secs(20), Duration::from_millis(500)).await;
    assert_eq!(records.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["saga-1", "saga-2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_relay_is_woken_by_a_commit_and_deletes_what_it_sent_after_the_retention() {
    let (pool, table) = database().await;
    let topic = unique_name("outbox-woken");
    // Polling once an hour: only the wake-up can publish within the test's time.
    let cfg = OutboxSettings {
        poll_interval: Duration::from_secs(3600),
        retention: Duration::from_secs(1),
        ..OutboxSettings::default()
    };
    let relay = Relay::new(pool.clone(), producer("outbox-woken"), table.clone(), cfg)
        .ensuring_topic(topic_spec(&topic));
    let waker = relay.waker();
    // A first row, published by the relay's first round: once it is deleted, that round is long
    // over and the relay sleeps on the hour-long poll.
    write(&pool, &table, &topic, [1]).await;
    let shutdown = Shutdown::new();
    let running = tokio::spawn(relay.run(shutdown.clone()));
    wait_until(
        Duration::from_secs(20),
        "the first row published, then deleted after its retention",
        || async { rows(&pool).await == 0 },
    )
    .await;

    write(&pool, &table, &topic, [7]).await;
    waker.wake();
    let records = read_topic(&topic, 2, Duration::from_secs(10), Duration::ZERO).await;
    assert_eq!(records.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["saga-1", "saga-7"]);
    wait_until(Duration::from_secs(15), "the second row deleted after its retention", || async {
        rows(&pool).await == 0
    })
    .await;
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(10), running).await.unwrap().unwrap();
}
