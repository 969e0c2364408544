//! Group commit: concurrent plain requests share statements, each is stored exactly once, and a
//! row that cannot be stored fails only its own request.

use crate::helpers::{spawn_app, test_database, valid_body};
use chrono::Utc;
use futures::future::join_all;
use one::batch::{Batcher, NewRow};
use one::outbox::OutboxWaker;
use one::repo::RepoError;

fn row(req_id: &str) -> NewRow {
    NewRow {
        req_id: req_id.into(),
        user_id: "u".into(),
        created_at: Utc::now(),
        req: serde_json::json!({"user_id": "u", "prompt": "p", "data": []}),
        topic: "t".into(),
        key: req_id.into(),
        payload: req_id.as_bytes().to_vec(),
        headers: serde_json::json!({}),
    }
}

/// A migrated database's pool, and a second pool on it that only the batcher uses (so its
/// connection counts say what the writers hold).
async fn migrated_pools() -> (sqlx::PgPool, sqlx::PgPool) {
    let db = test_database().await;
    let pool = db.lazy_pool();
    one::MIGRATOR.run(&pool).await.unwrap();
    (pool, db.lazy_pool())
}

async fn migrated_pool() -> sqlx::PgPool {
    let db = test_database().await;
    let pool = db.lazy_pool();
    one::MIGRATOR.run(&pool).await.unwrap();
    pool
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_queued_behind_a_write_in_flight_share_one_statement() {
    let pool = migrated_pool().await;
    // One writer at a time: while the first batch is in flight, the other 49 rows queue.
    let batcher = Batcher::spawn(pool.clone(), OutboxWaker::default(), 64, 1);
    let ids: Vec<String> = (0..50).map(|i| format!("{i:020}")).collect();
    let sizes: Vec<usize> = join_all(ids.iter().map(|id| batcher.insert(row(id))))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(sizes.iter().any(|&s| s > 1), "some rows were committed together: {sizes:?}");

    let requests: i64 = sqlx::query_scalar("SELECT count(*) FROM request").fetch_one(&pool).await.unwrap();
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT key FROM outbox ORDER BY id").fetch_all(&pool).await.unwrap();
    assert_eq!(requests, 50, "every request stored once");
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(sorted, ids, "one outbox row per request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_cannot_be_stored_fails_alone() {
    let pool = migrated_pool().await;
    let batcher = Batcher::spawn(pool.clone(), OutboxWaker::default(), 64, 1);
    batcher.insert(row("taken")).await.unwrap();
    // A primary-key clash inside a batch: the batch statement fails, its rows are retried one by one.
    let mut ids: Vec<String> = (0..9).map(|i| format!("ok-{i}")).collect();
    ids.insert(4, "taken".into());
    let results = join_all(ids.iter().map(|id| batcher.insert(row(id)))).await;
    for (id, result) in ids.iter().zip(&results) {
        match (id.as_str(), result) {
            ("taken", Err(RepoError::Other(e))) => assert!(e.to_string().contains("duplicate key"), "{e}"),
            ("taken", other) => panic!("the clashing row must fail on its own: {other:?}"),
            (_, r) => assert!(r.is_ok(), "{id}: {r:?}"),
        }
    }
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(&pool).await.unwrap();
    assert_eq!(outbox, 10, "the first 'taken' and the nine others");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_posts_are_each_stored_and_published_once() {
    let app = spawn_app().await;
    let body = valid_body();
    let responses = join_all((0..64).map(|_| app.post_one(&body))).await;
    let mut ids = Vec::new();
    for r in responses {
        assert_eq!(r.status(), 201);
        let body: serde_json::Value = r.json().await.unwrap();
        ids.push(body["request_id"].as_str().unwrap().to_owned());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 64);
    assert_eq!(app.count("request").await, 64);
    assert_eq!(app.count("outbox").await, 64);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_keeps_its_connection_between_batches_and_hands_it_back_when_idle() {
    let (_, writers) = migrated_pools().await;
    let batcher = Batcher::spawn(writers.clone(), OutboxWaker::default(), 64, 1);
    batcher.insert(row("first")).await.unwrap();
    // Held by the writer, not back in the pool (where sqlx would ping it on its way in).
    assert_eq!((writers.size(), writers.num_idle()), (1, 0), "the writer holds its one connection");
    batcher.insert(row("second")).await.unwrap();
    assert_eq!((writers.size(), writers.num_idle()), (1, 0), "the second batch went out on it too");
    // Idle for a second, the writer hands it back.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while writers.num_idle() < 1 {
        assert!(std::time::Instant::now() < deadline, "the idle writer's connection never came back");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    batcher.insert(row("third")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_whose_connection_the_database_ended_takes_a_new_one() {
    let pool = migrated_pool().await;
    let batcher = Batcher::spawn(pool.clone(), OutboxWaker::default(), 64, 1);
    batcher.insert(row("before")).await.unwrap();
    // The writer keeps that connection for its next batch; the database ends it (and waits until
    // the backend is gone), as a restart or an administrator would.
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(!ended.is_empty() && ended.iter().all(|&e| e), "the writer's backend ended: {ended:?}");

    // The batch sent on that connection fails as unavailable (a 503 at the edge); had the writer
    // sat idle for a second meanwhile, it would have taken a fresh connection and succeeded.
    // Either way the writer does not keep a dead connection: the next batch is stored.
    let during = batcher.insert(row("during")).await;
    assert!(matches!(during, Ok(_) | Err(RepoError::Unavailable(_))), "{during:?}");
    batcher.insert(row("after")).await.unwrap();
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT req_id FROM request ORDER BY req_id").fetch_all(&pool).await.unwrap();
    let expected: &[&str] =
        if during.is_ok() { &["after", "before", "during"] } else { &["after", "before"] };
    assert_eq!(stored, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_left_idle_by_a_trickle_hands_its_connection_back() {
    let (_, pool) = migrated_pools().await;
    // Batches of one, two writers: a burst gives each writer a connection.
    let batcher = Batcher::spawn(pool.clone(), OutboxWaker::default(), 1, 2);
    let ids: Vec<String> = (0..32).map(|i| format!("burst-{i:02}")).collect();
    for r in join_all(ids.iter().map(|id| batcher.insert(row(id)))).await {
        r.unwrap();
    }
    assert_eq!(pool.size(), 2, "both writers took a connection");
    // Then a trickle that one writer serves alone: the other's connection, unused for a second,
    // goes back to the pool even though rows keep coming.
    for i in 0..15 {
        batcher.insert(row(&format!("trickle-{i:02}"))).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        pool.num_idle() >= pool.size() as usize - 1,
        "at most the busy writer holds a connection: {} of {} idle",
        pool.num_idle(),
        pool.size()
    );
}
