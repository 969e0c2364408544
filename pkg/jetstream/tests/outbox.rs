//! The outbox against real PostgreSQL and NATS (`make up`): what a transaction writes is
//! published once it commits and never when it rolls back, with its `Nats-Msg-Id` and headers;
//! a row published twice is stored once; rows wait while NATS is unreachable; a backlog is
//! deleted by its primary key, not scanned.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed setup step is a failed test

use async_nats::jetstream::{self, stream};
use cruncan_jetstream::{Relay, RelaySettings, enqueue, pending};
use cruncan_shutdown::Shutdown;
use cruncan_testkit::{unique_name, wait_until};
use std::collections::BTreeMap;
use std::time::Duration;

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:14222".into())
}

const TABLE: &str = "CREATE TABLE outbox (
    seq        bigserial   PRIMARY KEY,
    subject    text        NOT NULL,
    msg_id     uuid        NOT NULL,
    payload    jsonb       NOT NULL,
    headers    jsonb       NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
)";

struct Env {
    pool: sqlx::PgPool,
    js: jetstream::Context,
    stream: String,
    subject: String,
}

async fn env() -> Env {
    let base = cruncan_db::local_test_settings().unwrap();
    let pool = cruncan_db::create_test_database(&base).await.unwrap().lazy_pool();
    sqlx::query(TABLE).execute(&pool).await.unwrap();
    let js = jetstream::new(async_nats::connect(nats_url()).await.unwrap());
    let stream = unique_name("OUTBOX").replace('-', "_");
    let subject = format!("{}.events", unique_name("outbox"));
    js.create_stream(stream::Config {
        name: stream.clone(),
        subjects: vec![subject.clone()],
        duplicate_window: Duration::from_secs(120),
        max_age: Duration::from_secs(600),
        ..Default::default()
    })
    .await
    .unwrap();
    Env { pool, js, stream, subject }
}

fn settings() -> RelaySettings {
    RelaySettings { batch_size: 10, poll_interval: Duration::from_millis(50) }
}

async fn stored(env: &Env) -> u64 {
    env.js.get_stream(&env.stream).await.unwrap().info().await.unwrap().state.messages
}

#[tokio::test]
async fn a_committed_row_is_published_once_with_its_id_and_headers_and_a_rolled_back_one_never() {
    let env = env().await;
    let headers = BTreeMap::from([(
        "traceparent".to_owned(),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
    )]);
    let kept = uuid::Uuid::new_v4();
    let mut tx = env.pool.begin().await.unwrap();
    enqueue(&mut tx, &env.subject, kept, &serde_json::json!({"n": 1}), &headers).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = env.pool.begin().await.unwrap();
    enqueue(&mut tx, &env.subject, uuid::Uuid::new_v4(), &serde_json::json!({"n": 2}), &headers)
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    let relay = Relay::new(env.pool.clone(), env.js.clone(), settings());
    assert_eq!(relay.publish_batch().await.unwrap(), 1);
    assert_eq!(pending(&env.pool).await.unwrap(), 0, "deleted once acked");
    assert_eq!(stored(&env).await, 1);
    let message = env
        .js
        .get_stream(&env.stream)
        .await
        .unwrap()
        .get_last_raw_message_by_subject(&env.subject)
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&message.payload).unwrap(),
        serde_json::json!({"n": 1})
    );
    let got = message.headers;
    assert_eq!(got.get("Nats-Msg-Id").map(|v| v.as_str()), Some(kept.to_string().as_str()));
    assert_eq!(got.get("traceparent").map(|v| v.as_str()), Some(headers["traceparent"].as_str()));
}

#[tokio::test]
async fn a_row_published_again_after_a_crash_is_stored_once() {
    let env = env().await;
    let id = uuid::Uuid::new_v4();
    let relay = Relay::new(env.pool.clone(), env.js.clone(), settings());
    for _ in 0..2 {
        // The second row is what a relay that died between the publish and the delete leaves.
        let mut tx = env.pool.begin().await.unwrap();
        enqueue(&mut tx, &env.subject, id, &serde_json::json!({"n": 1}), &BTreeMap::new()).await.unwrap();
        tx.commit().await.unwrap();
        relay.publish_batch().await.unwrap();
    }
    assert_eq!(pending(&env.pool).await.unwrap(), 0);
    assert_eq!(stored(&env).await, 1, "JetStream dropped the copy with the same Nats-Msg-Id");
}

#[tokio::test]
async fn rows_wait_while_nats_is_unreachable_and_a_woken_relay_publishes_in_order() {
    let env = env().await;
    // A client of a NATS that is not there: every publish fails, nothing is deleted.
    let nowhere = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_millis(200))
        .connect("nats://127.0.0.1:1")
        .await
        .unwrap();
    let unreachable = jetstream::ContextBuilder::new().timeout(Duration::from_millis(300)).build(nowhere);
    let down = Relay::new(env.pool.clone(), unreachable, settings());
    let mut tx = env.pool.begin().await.unwrap();
    for n in 0..25 {
        enqueue(&mut tx, &env.subject, uuid::Uuid::new_v4(), &serde_json::json!({"n": n}), &BTreeMap::new())
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    assert!(down.publish_batch().await.is_err());
    assert_eq!(pending(&env.pool).await.unwrap(), 25, "nothing is lost while NATS is away");

    // Back: the running relay drains it in batches of 10, in order.
    let relay = Relay::new(env.pool.clone(), env.js.clone(), settings());
    let stop = Shutdown::new();
    let running = tokio::spawn(relay.clone().run(stop.clone()));
    relay.wake();
    wait_until(Duration::from_secs(10), "the outbox drained", || async {
        pending(&env.pool).await.unwrap() == 0
    })
    .await;
    stop.trigger();
    running.await.unwrap();
    assert_eq!(stored(&env).await, 25);
    let stream = env.js.get_stream(&env.stream).await.unwrap();
    for seq in [1u64, 10, 25] {
        let m = stream.get_raw_message(seq).await.unwrap();
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap()["n"], seq - 1);
    }
}

/// Adds `n` rows for `subject` without going through `enqueue` (a backlog, quickly).
async fn add_rows(pool: &sqlx::PgPool, subject: &str, n: i32) {
    sqlx::query(
        "INSERT INTO outbox (subject, msg_id, payload)
         SELECT $1, gen_random_uuid(), jsonb_build_object('n', g) FROM generate_series(1, $2) AS g",
    )
    .bind(subject)
    .bind(n)
    .execute(pool)
    .await
    .unwrap();
}

/// Service one's relay once marked rows sent with a cached generic plan that scanned the grown
/// table on every round. This relay's claim and delete keep the primary key: about 100 rows read
/// by sequential scans (the first rounds, table nearly empty) against 1.5 million if they did not.
#[tokio::test]
async fn a_backlog_is_deleted_by_its_primary_key_not_scanned() {
    let env = env().await;
    // The relay's one connection meets the table nearly empty, as it is between bursts.
    let relay_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with((*env.pool.connect_options()).clone())
        .await
        .unwrap();
    let relay =
        Relay::new(relay_pool.clone(), env.js.clone(), RelaySettings { batch_size: 20, ..settings() });
    for _ in 0..10 {
        add_rows(&env.pool, &env.subject, 20).await;
        assert_eq!(relay.publish_batch().await.unwrap(), 20);
    }
    // NATS was away for a while: 50,000 rows wait, and the same connection works through them.
    add_rows(&env.pool, &env.subject, 50_000).await;
    for _ in 0..30 {
        assert_eq!(relay.publish_batch().await.unwrap(), 20);
    }
    // A backend reports its table statistics when it ends.
    drop(relay);
    relay_pool.close().await;
    let scans = cruncan_db::table_scans(&env.pool, "outbox", 40, Duration::from_secs(15)).await.unwrap();
    assert!(scans.index_scans >= 40, "the statistics came in: {} index scans", scans.index_scans);
    // Each of the thirty rounds reading the whole backlog would be 1.5 million rows.
    assert!(
        scans.seq_rows_read < 200_000,
        "the relay scanned the backlog: {} rows read by sequential scans",
        scans.seq_rows_read
    );
    assert_eq!(stored(&env).await, 800);
}
