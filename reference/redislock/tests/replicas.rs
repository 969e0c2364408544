//! Three replicas over 100 failed rows against the real Redis and PostgreSQL: the downstream sees
//! each row exactly once; a replica that dies holding a lock delays that row only by the TTL.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic: that is its failure report

use cruncan_testkit::unique_name;
use redislock::{JobSettings, RetryJob, RetryPolicy, Round};
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

fn config(server: &MockServer, prefix: &str, ttl: Duration) -> JobSettings {
    JobSettings {
        lock_prefix: prefix.to_owned(),
        lock_ttl: ttl,
        downstream_url: format!("{}/retry", server.uri()),
        downstream_timeout: Duration::from_secs(1),
        interval: Duration::from_millis(100),
        retry: RetryPolicy {
            first_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(60),
            max_attempts: 5,
        },
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
    assert_eq!(replicas[0].run_once().await.unwrap(), Round::default());
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

fn replicas(pool: &sqlx::PgPool, cfg: &JobSettings) -> Vec<RetryJob> {
    (0..3).map(|_| RetryJob::new(pool.clone(), vec![redis_url()], cfg.clone()).unwrap()).collect()
}

/// One round of every replica at the same time.
async fn concurrent_round(replicas: &[RetryJob]) -> Vec<Round> {
    futures::future::join_all(replicas.iter().map(RetryJob::run_once))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

fn sum(rounds: &[Round], field: fn(&Round) -> u32) -> u32 {
    rounds.iter().map(field).sum()
}

/// The downstream is down: 500 after a little latency, so the replicas' rounds overlap.
async fn failing_downstream() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/retry"))
        .respond_with(ResponseTemplate::new(500).set_delay(Duration::from_millis(10)))
        .mount(&server)
        .await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_downstream_is_called_once_per_row_per_round_across_three_replicas() {
    let pool = seeded(100).await;
    let server = failing_downstream().await;
    let cfg = config(&server, &format!("{}:", unique_name("retry-fail")), Duration::from_secs(10));
    let replicas = replicas(&pool, &cfg);

    let first = concurrent_round(&replicas).await;
    assert_eq!(sum(&first, |r| r.failed), 100, "{first:?}");
    let calls = keys(&server.received_requests().await.unwrap());
    assert_eq!(calls.len(), 100, "every row was attempted");
    assert!(calls.values().all(|n| *n == 1), "a row was called more than once in one round: {calls:?}");

    // The same round again, right away: every row is in its backoff, nobody calls anything.
    let second = concurrent_round(&replicas).await;
    assert!(second.iter().all(|r| *r == Round::default()), "{second:?}");
    assert_eq!(server.received_requests().await.unwrap().len(), 100);
    let (failed, attempts_one, not_due): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'failed'), count(*) FILTER (WHERE attempts = 1),
                count(*) FILTER (WHERE next_attempt_at > now())
         FROM failed_transaction",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((failed, attempts_one, not_due), (100, 100, 100));
}

#[derive(Debug, sqlx::FromRow)]
struct Attempted {
    id: i64,
    status: String,
    attempts: i32,
    last_error: Option<String>,
    last_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
    next_attempt_at: chrono::DateTime<chrono::Utc>,
}

async fn attempted(pool: &sqlx::PgPool) -> Vec<Attempted> {
    sqlx::query_as(
        "SELECT id, status, attempts, last_error, last_attempt_at, next_attempt_at
         FROM failed_transaction ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_delays_the_next_attempt_and_rows_are_parked_after_the_cap() {
    let pool = seeded(4).await;
    let server = failing_downstream().await;
    let mut cfg = config(&server, &format!("{}:", unique_name("retry-park")), Duration::from_secs(10));
    let policy = RetryPolicy {
        first_backoff: Duration::from_millis(300),
        max_backoff: Duration::from_secs(1),
        max_attempts: 3,
    };
    cfg.retry = policy;
    let replicas = replicas(&pool, &cfg);

    // Rounds of all three replicas at once, every 100 ms, until nothing is left to retry.
    let mut history: Vec<Vec<Attempted>> = Vec::new();
    let mut totals = Round::default();
    let mut seen = 0;
    for _ in 0..100 {
        let rounds = concurrent_round(&replicas).await;
        totals.failed += sum(&rounds, |r| r.failed);
        totals.parked += sum(&rounds, |r| r.parked);
        let requests = server.received_requests().await.unwrap();
        let this_round = keys(&requests[seen..]);
        seen = requests.len();
        assert!(this_round.values().all(|n| *n == 1), "a row called twice in one round: {this_round:?}");
        if !this_round.is_empty() {
            history.push(attempted(&pool).await);
        }
        if attempted(&pool).await.iter().all(|r| r.status == "parked") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let rows = attempted(&pool).await;
    for row in &rows {
        assert_eq!((row.status.as_str(), row.attempts), ("parked", 3), "{row:?}");
        assert!(row.last_error.as_deref().unwrap().contains("500"), "{row:?}");
    }
    assert_eq!((totals.failed, totals.parked), (8, 4), "two failed retries, then parked");
    let calls = keys(&server.received_requests().await.unwrap());
    assert_eq!(calls.len(), 4);
    assert!(calls.values().all(|n| *n == 3), "each row called exactly max_attempts times: {calls:?}");

    // Each attempt was claimed no earlier than the backoff its predecessor set, and that backoff
    // was the policy's: the first wait at least 300 ms, the second at least 600 ms.
    for id in rows.iter().map(|r| r.id) {
        let states = history.iter().map(|snapshot| snapshot.iter().find(|r| r.id == id).unwrap());
        let mut previous: Option<&Attempted> = None;
        for state in states {
            if previous.is_some_and(|p| p.attempts == state.attempts) {
                continue; // another row was attempted in that round
            }
            if let Some(p) = previous {
                assert_eq!(state.attempts, p.attempts + 1, "row {id}: one attempt per round");
                let claimed = state.last_attempt_at.unwrap();
                assert!(
                    claimed >= p.next_attempt_at,
                    "row {id}: attempt {} came before its backoff",
                    state.attempts
                );
                let waited = (p.next_attempt_at - p.last_attempt_at.unwrap()).to_std().unwrap();
                let floor = policy.first_backoff * 2u32.pow(u32::try_from(p.attempts).unwrap() - 1);
                assert!(waited >= floor && waited < floor * 2, "row {id} attempt {}: {waited:?}", p.attempts);
            }
            previous = Some(state);
        }
    }

    // Parked rows are left alone, however long one waits.
    tokio::time::sleep(policy.max_backoff * 2).await;
    assert_eq!(concurrent_round(&replicas).await, vec![Round::default(); 3]);
    assert_eq!(server.received_requests().await.unwrap().len(), 12);
}

#[tokio::test]
async fn a_row_whose_last_attempt_was_never_recorded_is_parked_without_a_call() {
    // A replica claimed the last allowed attempt and died before recording its outcome: the row
    // is still `failed`, with every attempt used, and due again once its backoff has passed.
    let pool = seeded(1).await;
    sqlx::query("UPDATE failed_transaction SET attempts = 5, last_error = 'HTTP 503' WHERE id = 1")
        .execute(&pool)
        .await
        .unwrap();
    let server = MockServer::start().await;
    Mock::given(path("/retry")).respond_with(ResponseTemplate::new(200)).expect(0).mount(&server).await;
    let job = RetryJob::new(
        pool.clone(),
        vec![redis_url()],
        config(&server, &format!("{}:", unique_name("l")), Duration::from_secs(5)),
    )
    .unwrap();
    assert_eq!(job.run_once().await.unwrap(), Round { parked: 1, ..Round::default() });
    let (status, attempts): (String, i32) =
        sqlx::query_as("SELECT status, attempts FROM failed_transaction").fetch_one(&pool).await.unwrap();
    assert_eq!((status.as_str(), attempts), ("parked", 5), "max_attempts is 5: no sixth call");
}
