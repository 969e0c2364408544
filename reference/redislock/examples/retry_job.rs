//! `cargo run --example retry_job -- [--rows 100] [--replicas 3] [--failing]`
//!
//! Seeds failed transactions in a fresh database, starts a downstream that counts the calls it
//! gets, runs several replicas of the retry job at once against the local Redis, and prints who
//! did what. With `--failing` the downstream answers 500: rounds run every second until every
//! row is parked, and each round's calls are printed (never more than one per row). Needs
//! `make up`.

use clap::Parser;
use redislock::{JobSettings, RetryJob, RetryPolicy};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Parser)]
struct Args {
    /// Failed transactions to seed
    #[arg(long, default_value_t = 100)]
    rows: i64,
    /// Replicas running at once
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// The downstream answers 500 to every call
    #[arg(long)]
    failing: bool,
    /// Redis URL
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:16379")]
    redis_url: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = cruncan_db::create_test_database(&cruncan_db::local_test_settings()?).await?;
    let pool = db.lazy_pool();
    redislock::MIGRATOR.run(&pool).await?;
    sqlx::query("INSERT INTO failed_transaction (payload) SELECT jsonb_build_object('tx', g) FROM generate_series(1, $1) g")
        .bind(args.rows)
        .execute(&pool)
        .await?;

    // The downstream: counts calls, and fails them all with --failing.
    let calls = Arc::new(AtomicU64::new(0));
    let counter = calls.clone();
    let status =
        if args.failing { axum::http::StatusCode::INTERNAL_SERVER_ERROR } else { axum::http::StatusCode::OK };
    let app = axum::Router::new().route(
        "/retry",
        axum::routing::post(move || {
            let c = counter.clone();
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                status
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let downstream = format!("http://{}/retry", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let cfg = JobSettings {
        lock_prefix: format!("retry-demo:{}:", db.name),
        lock_ttl: Duration::from_secs(10),
        downstream_url: downstream,
        downstream_timeout: Duration::from_secs(2),
        interval: Duration::from_secs(1),
        retry: RetryPolicy {
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_attempts: 3,
        },
    };
    let replicas: Vec<RetryJob> = (0..args.replicas)
        .map(|_| RetryJob::new(pool.clone(), vec![args.redis_url.clone()], cfg.clone()))
        .collect::<anyhow::Result<_>>()?;
    if args.failing {
        return failing_rounds(&replicas, &pool, &calls, args.rows).await;
    }
    let rounds = futures::future::join_all(replicas.iter().map(RetryJob::run_once)).await;
    for (i, r) in rounds.into_iter().enumerate() {
        let r = r?;
        println!(
            "replica {i}: retried {}, skipped {} locked by another replica, {} already taken",
            r.succeeded, r.skipped_locked, r.skipped_not_due
        );
    }
    let done: i64 = sqlx::query_scalar("SELECT count(*) FROM failed_transaction WHERE status = 'done'")
        .fetch_one(&pool)
        .await?;
    println!("rows done: {done} of {}; downstream calls: {}", args.rows, calls.load(Ordering::SeqCst));
    // A long-running replica loops instead: `job.run(shutdown).await` (see RetryJob::run).
    anyhow::ensure!(
        done == args.rows && calls.load(Ordering::SeqCst) == args.rows as u64,
        "some row was missed or retried twice"
    );
    Ok(())
}

/// Rounds of every replica at once, a second apart, until every row is parked.
async fn failing_rounds(
    replicas: &[RetryJob],
    pool: &sqlx::PgPool,
    calls: &AtomicU64,
    rows: i64,
) -> anyhow::Result<()> {
    for round in 1..=30 {
        let before = calls.load(Ordering::SeqCst);
        for r in futures::future::join_all(replicas.iter().map(RetryJob::run_once)).await {
            r?;
        }
        let made = calls.load(Ordering::SeqCst) - before;
        let parked: i64 =
            sqlx::query_scalar("SELECT count(*) FROM failed_transaction WHERE status = 'parked'")
                .fetch_one(pool)
                .await?;
        println!("round {round:>2}: {made:>3} downstream calls, {parked} of {rows} rows parked");
        anyhow::ensure!(made <= rows as u64, "a row was called more than once in a round");
        if parked == rows {
            println!("every row parked after 3 attempts; downstream calls: {}", calls.load(Ordering::SeqCst));
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    anyhow::bail!("rows still not parked after 30 rounds")
}
