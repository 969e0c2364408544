//! The outbox as it grows: the relay's statements keep using the table's indexes when the table
//! grows under a connection that first met it small, and sent rows past their retention are
//! deleted while pending ones stay.

use crate::helpers::{brokers, read_topic, settings, spawn_with, test_database, valid_body, wait_until};
use cruncan_db::table_scans;
use cruncan_kafka::{Producer, ProducerSettings};
use one::outbox::retention;
use sqlx::PgPool;
use std::time::Duration;

/// Adds outbox rows `row-from` ..= `row-to`, written `age` ago; sent, or still pending.
async fn add_rows(pool: &PgPool, topic: &str, (from, to): (i32, i32), age: Duration, sent: bool) {
    sqlx::query(
        "INSERT INTO outbox (topic, key, payload, created_at, sent_at)
         SELECT $1, 'row-' || n, '\\x7b7d'::bytea, now() - make_interval(secs => $4),
                CASE WHEN $5 THEN now() - make_interval(secs => $4) END
         FROM generate_series($2, $3) AS n",
    )
    .bind(topic)
    .bind(from)
    .bind(to)
    .bind(age.as_secs_f64())
    .bind(sent)
    .execute(pool)
    .await
    .unwrap();
}

/// A fresh database with one's schema, for tests that drive the outbox table directly.
async fn migrated_database() -> PgPool {
    let admin = test_database().await.lazy_pool();
    one::MIGRATOR.run(&admin).await.unwrap();
    admin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grown_outbox_is_marked_sent_by_its_index_not_scanned() {
    let db = test_database().await;
    let mut s = settings(&db);
    s.outbox.batch_size = 100;
    let admin = db.lazy_pool();
    one::MIGRATOR.run(&admin).await.unwrap();
    let topic = s.kafka.topic.clone();
    cruncan_kafka::ensure_topic(&brokers(), &topic, 1, 1).await.unwrap();
    // The relay's one connection meets the table small: 1,000 sent rows, about ten pages.
    let relay_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(db.connect_options())
        .await
        .unwrap();
    let producer = Producer::new(&brokers(), &ProducerSettings::new("growth-relay")).unwrap();
    let relay = one::outbox::relay(relay_pool.clone(), producer, &s.kafka, &s.outbox).unwrap();
    add_rows(&admin, &topic, (1, 1_000), Duration::ZERO, true).await;
    let mut next = 1_000;
    let round = async |next: &mut i32| {
        add_rows(&admin, &topic, (*next + 1, *next + 20), Duration::ZERO, false).await;
        *next += 20;
        assert_eq!(relay.publish_batch().await.unwrap(), 20);
    };
    for _ in 0..10 {
        round(&mut next).await;
    }
    // The table grows (a day of traffic) and the same connection keeps publishing.
    add_rows(&admin, &topic, (next + 1, next + 50_000), Duration::ZERO, true).await;
    next += 50_000;
    for _ in 0..30 {
        round(&mut next).await;
    }
    // A backend reports its table statistics when it ends.
    drop(relay);
    relay_pool.close().await;
    let scans = table_scans(&admin, "outbox", 40, Duration::from_secs(15)).await.unwrap();
    // Each round's claim is an index scan (of the pending rows): that many show the counts came in.
    assert!(scans.index_scans >= 40, "the statistics came in: {} index scans", scans.index_scans);
    // Scanning the small table early is cheap (ten rounds × 1,000 rows); scanning the grown one
    // in each of the thirty later rounds would read 1.5 million rows.
    assert!(
        scans.seq_rows_read < 200_000,
        "marking rows sent scanned the grown table: {} rows read by sequential scans",
        scans.seq_rows_read
    );
}

#[tokio::test]
async fn sent_rows_past_their_retention_are_deleted_and_pending_ones_stay() {
    let admin = migrated_database().await;
    let hour = Duration::from_secs(3600);
    add_rows(&admin, "t", (1, 23), 2 * hour, true).await; // expired
    add_rows(&admin, "t", (24, 26), 2 * hour, false).await; // old but never published
    add_rows(&admin, "t", (27, 40), Duration::from_secs(60), true).await; // young
    add_rows(&admin, "t", (41, 45), Duration::ZERO, false).await;

    // The seven oldest rows at a time: 7, 7, 7, then 2 (the rest of that head is pending or
    // young), then none.
    let mut chunks = Vec::new();
    loop {
        match retention::delete_sent(&admin, &one::outbox::table().unwrap(), hour, 7).await.unwrap() {
            0 => break,
            n => chunks.push(n),
        }
    }

    assert_eq!(chunks, [7, 7, 7, 2]);
    let left: Vec<(String, bool)> = sqlx::query_as("SELECT key, sent_at IS NOT NULL FROM outbox ORDER BY id")
        .fetch_all(&admin)
        .await
        .unwrap();
    let keys: Vec<&str> = left.iter().map(|(k, _)| k.as_str()).collect();
    let expected: Vec<String> = (24..=45).map(|n| format!("row-{n}")).collect();
    assert_eq!(keys, expected, "the old pending rows, the young sent and pending rows stay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_service_deletes_what_it_sent_after_the_retention() {
    let mut s = settings(&test_database().await);
    s.outbox.retention = Duration::from_secs(1);
    let topic = s.kafka.topic.clone();
    let app = spawn_with(s).await;
    for _ in 0..3 {
        assert_eq!(app.post_one(&valid_body()).await.status(), 201);
    }
    // Published first (the pruner never takes a pending row), then deleted.
    read_topic(&topic, 3, Duration::from_secs(20), Duration::ZERO).await;
    wait_until(Duration::from_secs(15), "published rows deleted after the retention", || async {
        app.count("outbox").await == 0
    })
    .await;
    assert_eq!(app.count("request").await, 3, "the requests themselves stay");
    app.stop().await;
}

#[tokio::test]
async fn deleting_waits_behind_a_head_of_pending_rows_instead_of_walking_them() {
    let admin = migrated_database().await;
    let hour = Duration::from_secs(3600);
    // A broker outage longer than the retention: the oldest rows are still pending.
    add_rows(&admin, "t", (1, 10), 3 * hour, false).await;
    add_rows(&admin, "t", (11, 20), 2 * hour, true).await;

    assert_eq!(
        retention::delete_sent(&admin, &one::outbox::table().unwrap(), hour, 5).await.unwrap(),
        0,
        "the head holds only pending rows"
    );
    sqlx::query("UPDATE outbox SET sent_at = now() WHERE sent_at IS NULL").execute(&admin).await.unwrap();
    let mut deleted = 0;
    while let n @ 1.. = retention::delete_sent(&admin, &one::outbox::table().unwrap(), hour, 5).await.unwrap()
    {
        deleted += n;
    }
    assert_eq!(deleted, 20, "once published, the backlog and what lay behind it expire");
}
