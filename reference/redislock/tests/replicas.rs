//! Three replicas over 100 failed rows against the real Redis and PostgreSQL: the downstream sees
//! each row exactly once; a replica that dies holding a lock delays that row only by the TTL.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic: that is its failure report

use cruncan_testkit::unique_name;
use redislock::{JobConfig, RetryJob};
use std::collections::BTreeMap;
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:16379".into())
}

async fn seeded(rows: i64) -> sqlx::PgPool {
    let db = cruncan_db::create_test_database(&cruncan_db::local_test_settings().unwrap()).await.unwrap();
    let pool = db.lazy_pool();
    redislock::MIGRATOR.run(&pool).await.unwrap();
    sqlx::query("INSERT INTO failed_transaction (payload) SELECT jsonb_build_object('tx', g) FROM generate_series(1, $1) g")
        .bind(rows)
        .execute(&pool)
        .await
        .unwrap();
    pool
}

fn config(server: &MockServer, prefix: &str, ttl: Duration) -> JobConfig {
    JobConfig {
        lock_prefix: prefix.to_owned(),
        lock_ttl: ttl,
        downstream_url: format!("{}/retry", server.uri()),
        downstream_timeout: Duration::from_secs(2),
        interval: Duration::from_millis(100),
    }
}

fn keys(requests: &[wiremock::Request]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in requests {
        *out.entry(r.headers.get("idempotency-key").unwrap().to_str().unwrap().to_owned()).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_retry_a_hundred_rows_exactly_once() {
    let pool = seeded(100).await;
    let server = MockServer::start().await;
    // A little latency so the replicas really overlap.
    Mock::given(method("POST"))
        .and(path("/retry"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(10)))
        .expect(100)
        .mount(&server)
        .await;
    let prefix = unique_name("retry-lock");
    let replicas: Vec<RetryJob> = (0..3)
        .map(|_| {
            RetryJob::new(
                pool.clone(),
                vec![redis_url()],
                config(&server, &format!("{prefix}:"), Duration::from_secs(10)),
            )
            .unwrap()
        })
        .collect();
    let rounds = futures::future::join_all(replicas.iter().map(RetryJob::run_once)).await;
    let rounds: Vec<_> = rounds.into_iter().map(Result::unwrap).collect();
    let succeeded: u32 = rounds.iter().map(|r| r.succeeded).sum();
    assert_eq!(succeeded, 100, "every row retried once across replicas: {rounds:?}");
    assert!(rounds.iter().filter(|r| r.succeeded > 0).count() >= 2, "the work was shared: {rounds:?}");

    let calls = keys(&server.received_requests().await.unwrap());
    assert_eq!(calls.len(), 100);
    assert!(calls.values().all(|n| *n == 1), "no row called twice");
    let done: i64 =
        sqlx::query_scalar("SELECT count(*) FROM failed_transaction WHERE status = 'done' AND attempts = 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(done, 100);
    // A further round finds nothing to do.
    assert_eq!(replicas[0].run_once().await.unwrap(), redislock::Round::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_dies_holding_a_lock_delays_the_row_until_the_ttl() {
    let pool = seeded(3).await;
    let server = MockServer::start().await;
    Mock::given(path("/retry")).respond_with(ResponseTemplate::new(200)).expect(3).mount(&server).await;
    let prefix = format!("{}:", unique_name("retry-lock"));
    let ttl = Duration::from_millis(1500);

    // The dead replica: it took the lock of row 2 and never released it.
    let dead = rslock::LockManager::new(vec![redis_url()]);
    let held = dead.lock(format!("{prefix}2").as_bytes(), ttl).await.unwrap();
    let taken_at = std::time::Instant::now();
    std::mem::forget(held);

    let survivor = RetryJob::new(pool.clone(), vec![redis_url()], config(&server, &prefix, ttl)).unwrap();
    let first = survivor.run_once().await.unwrap();
    assert_eq!((first.succeeded, first.skipped_locked), (2, 1), "row 2 is skipped while locked");
    assert!(!keys(&server.received_requests().await.unwrap()).contains_key("failed-transaction-2"));

    tokio::time::sleep(ttl.saturating_sub(taken_at.elapsed()) + Duration::from_millis(200)).await;
    let second = survivor.run_once().await.unwrap();
    assert_eq!(second.succeeded, 1, "after the TTL another replica takes the row");
    let calls = keys(&server.received_requests().await.unwrap());
    assert_eq!(calls.get("failed-transaction-2"), Some(&1));
}

#[tokio::test]
async fn a_failed_retry_stays_failed_with_its_error() {
    let pool = seeded(1).await;
    let server = MockServer::start().await;
    Mock::given(path("/retry")).respond_with(ResponseTemplate::new(502)).expect(1).mount(&server).await;
    let job = RetryJob::new(
        pool.clone(),
        vec![redis_url()],
        config(&server, &format!("{}:", unique_name("l")), Duration::from_secs(5)),
    )
    .unwrap();
    let round = job.run_once().await.unwrap();
    assert_eq!(round.failed, 1);
    let (status, attempts, error): (String, i32, Option<String>) =
        sqlx::query_as("SELECT status, attempts, last_error FROM failed_transaction")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), attempts), ("failed", 1));
    assert!(error.unwrap().contains("502"));
}
