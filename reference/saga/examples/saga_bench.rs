//! `cargo run --release --example saga_bench`: completed order sagas per second and their
//! latency (p50, p99) at 8 concurrent clients, orchestrated (participants in process) and
//! choreographed (over Kafka), each client waiting for its saga to end before starting the next.
//! Bounded (a few seconds per phase) and loopback only, on a fresh database and topic. Prints one
//! JSON line, with how many PostgreSQL transactions one orchestrated saga costs (for the pgbench
//! limit beside it). Needs `make up`.

use anyhow::Context as _;
use clap::Parser;
use cruncan_shutdown::Shutdown;
use flow_bench::{Op, closed_loop, percentiles_ms};
use saga::choreography::{Choreography, ChoreographyConfig};
use saga::domain::{CreateOrderBody, CreateOrderItem, NewOrder};
use saga::participants::Participants;
use saga::state::SagaStatus;
use saga::{Orchestrator, OrchestratorConfig};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Bench knobs.
#[derive(Debug, Parser)]
struct Args {
    /// Seconds of each phase
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent clients
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Kafka bootstrap servers
    #[arg(long, env = "KAFKA_BROKERS", default_value = cruncan_kafka::LOCAL_BROKERS)]
    brokers: String,
}

/// Inserting the saga, a write before and after each of the four participant calls, the four
/// participant transactions, and the final status.
const TRANSACTIONS_PER_ORCHESTRATED_SAGA: u32 = 1 + 4 * 3 + 1;

fn order() -> anyhow::Result<NewOrder> {
    let items = vec![
        CreateOrderItem { product_id: "product_1".into(), quantity: 1, price: 10.0 },
        CreateOrderItem { product_id: "product_3".into(), quantity: 2, price: 2.5 },
    ];
    Ok(CreateOrderBody { user_id: "bench".into(), items }.validate()?)
}

fn figures(run: &flow_bench::Run) -> serde_json::Value {
    let [p50, _, p99, max] = percentiles_ms(&run.latency);
    json!({"sagas_per_s": (run.throughput() * 10.0).round() / 10.0, "p50_ms": p50, "p99_ms": p99,
           "max_ms": max, "completed": run.ok, "failed": run.failed})
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let base = cruncan_db::local_test_settings()?;
    let mut db = cruncan_db::create_test_database(&base).await?;
    db.max_connections = 32;
    let pool = db.lazy_pool();
    saga::MIGRATOR.run(&pool).await.context("migrating the bench database")?;
    // Enough stock that no saga is refused: the bench measures the happy path.
    sqlx::query("UPDATE inventory.stock SET available = 1000000000").execute(&pool).await?;
    let duration = Duration::from_secs(args.seconds);

    let cfg = OrchestratorConfig { concurrency: args.clients, ..OrchestratorConfig::default() };
    let orchestrator = Arc::new(Orchestrator::new(pool.clone(), Participants::in_process(pool.clone()), cfg));
    let op: Op = Arc::new(move || {
        let orchestrator = Arc::clone(&orchestrator);
        Box::pin(async move {
            let record = orchestrator.accept(order()?).await?;
            let status = orchestrator.drive(record).await?;
            anyhow::ensure!(status == SagaStatus::Completed, "saga ended {status:?}");
            Ok(None)
        })
    });
    let orchestrated = closed_loop(op, args.clients, duration).await?;

    let cfg = ChoreographyConfig {
        brokers: args.brokers,
        topic: format!("saga-bench-{}", uuid::Uuid::new_v4().simple()),
        group_prefix: format!("saga-bench-{}", uuid::Uuid::new_v4().simple()),
        partitions: 3,
    };
    let choreography = Arc::new(Choreography::new(pool.clone(), cfg)?);
    let stop = Shutdown::new();
    let running = tokio::spawn({
        let (c, stop) = (Arc::clone(&choreography), stop.clone());
        async move { c.run(stop).await }
    });
    // Warm-up: the consumer groups join before the clock starts.
    let warm = choreography.place_order(order()?).await?;
    wait_confirmed(&pool, warm.order_id, Duration::from_secs(60)).await?;
    let op: Op = {
        let pool = pool.clone();
        Arc::new(move || {
            let (choreography, pool) = (Arc::clone(&choreography), pool.clone());
            Box::pin(async move {
                let saga = choreography.place_order(order()?).await?;
                wait_confirmed(&pool, saga.order_id, Duration::from_secs(30)).await?;
                Ok(None)
            })
        })
    };
    let choreographed = closed_loop(op, args.clients, duration).await?;
    stop.trigger();
    running.await??;

    println!(
        "{}",
        json!({
            "bench": "saga",
            "clients": args.clients,
            "seconds": args.seconds,
            "orchestrated": figures(&orchestrated),
            "choreographed": figures(&choreographed),
            "db_transactions_per_orchestrated_saga": TRANSACTIONS_PER_ORCHESTRATED_SAGA,
        })
    );
    Ok(())
}

/// Polls the order's status until the choreography confirms it.
async fn wait_confirmed(pool: &sqlx::PgPool, order_id: uuid::Uuid, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM orders.orders WHERE id = $1")
            .bind(order_id)
            .fetch_optional(pool)
            .await?;
        match status.as_deref() {
            Some("confirmed") => return Ok(()),
            Some("cancelled") => anyhow::bail!("order {order_id} was cancelled"),
            _ if tokio::time::Instant::now() > deadline => {
                anyhow::bail!("order {order_id} not confirmed in time")
            }
            _ => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
}
