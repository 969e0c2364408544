//! `cargo run --release --example saga_bench`: completed order sagas per second and their
//! latency (p50, p99) at 8 concurrent clients, orchestrated (participants in process) and
//! choreographed (over Kafka), each client waiting for its saga to end before starting the next.
//! Bounded (a few seconds per phase) and loopback only, on a fresh database and topic. Beside them
//! the limit, measured in the same run on the same database: pgbench running the 14 transactions
//! one orchestrated saga writes (the saga row, a state write before and after each of the four
//! participant calls, each participant's transaction with its idempotency record, the final
//! status), as the code writes them, with the same 8 clients. Prints one JSON line. Needs
//! `make up` (and pgbench, Debian's postgresql-client).

use anyhow::Context as _;
use clap::Parser;
use cruncan_config::ExposeSecret as _;
use cruncan_shutdown::Shutdown;
use flow_bench::{Op, closed_loop, percentiles_ms, pgbench};
use saga::choreography::{Choreography, ChoreographyConfig};
use saga::domain::{CreateOrderBody, NewOrder, OrderSaga, Step};
use saga::participants::Participants;
use saga::state::{SagaRecord, SagaStatus, StepState};
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
    Ok(CreateOrderBody::from_lines("bench", &[("product_1", 1, 10.0), ("product_3", 2, 2.5)]).validate()?)
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

    // The limit: the same transactions by pgbench, same clients, same database, same time.
    let script = std::env::temp_dir().join(format!("cruncan-saga-{}.sql", uuid::Uuid::new_v4().simple()));
    std::fs::write(&script, saga_transactions(&order()?)?)?;
    let target = pgbench::Target {
        host: db.host.clone(),
        port: db.port,
        user: db.username.clone(),
        password: db.password.expose_secret().to_owned(),
        database: db.name.clone(),
    };
    let limit = pgbench::run(&target, &script, args.clients, args.seconds, &std::env::temp_dir());
    std::fs::remove_file(&script)?;
    let limit = limit?;

    let cfg = ChoreographyConfig {
        brokers: args.brokers,
        topic: format!("saga-bench-{}", uuid::Uuid::new_v4().simple()),
        group_prefix: format!("saga-bench-{}", uuid::Uuid::new_v4().simple()),
        partitions: 3,
        outbox: Default::default(),
        inbox_retention: saga::choreography::inbox::DEFAULT_RETENTION,
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
            "limit_pgbench_same_transactions": {
                "sagas_per_s": (limit.per_second * 10.0).round() / 10.0,
                "p50_ms": limit.latency_ms[0],
                "p99_ms": limit.latency_ms[2],
                "transactions_per_saga": TRANSACTIONS_PER_ORCHESTRATED_SAGA,
            },
            "orchestrated_over_limit": (orchestrated.throughput() / limit.per_second * 100.0).round() / 100.0,
            "target_over_limit": 0.5,
            "choreographed": figures(&choreographed),
        })
    );
    Ok(())
}

// ANCHOR: limit
/// The transactions one orchestrated saga of `order` writes, as a pgbench script (one execution =
/// one saga): the statements of `SagaStore::insert`/`save` and of each participant's
/// `execute_once` and `apply`, with ids drawn per execution and the saga's JSON as the
/// orchestrator writes it at each point.
fn saga_transactions(order: &NewOrder) -> anyhow::Result<String> {
    // Per-execution ids without a round trip: uuids hashed from pgbench's client id and a random.
    let id = |tag: &str| format!("md5('{tag}:' || :client_id || ':' || :r)::uuid");
    let (saga, order_id) = (id("s"), id("o"));
    let mut rec = SagaRecord::new(OrderSaga::new(order.clone()));
    let save = |rec: &SagaRecord| -> anyhow::Result<String> {
        Ok(format!(
            "UPDATE saga.sagas SET status = '{}', steps = '{}'::jsonb,\n\
             updated_at = now(), version = version + 1,\n\
             lease_until = now() + make_interval(secs => 30)\n\
             WHERE id = {saga} AND lease_owner = 'bench';\n",
            rec.status.as_str(),
            sql_json(&rec.steps)?
        ))
    };
    let mut sql = format!(
        "\\set r random(1, 1000000000000000)\n\
         INSERT INTO saga.sagas (id, order_id, status, input, steps, lease_owner, lease_until)\n\
         VALUES ({saga}, {order_id}, 'pending', '{}'::jsonb, '{}'::jsonb, 'bench',\n\
         now() + make_interval(secs => 30));\n",
        sql_json(&rec.input)?,
        sql_json(&rec.steps)?
    );
    let total = rec.input.total.0;
    let list = |f: &dyn Fn(&saga::domain::OrderItem) -> String| -> String {
        order.items.iter().map(f).collect::<Vec<_>>().join(",")
    };
    for (i, step) in Step::ALL.into_iter().enumerate() {
        rec.status = SagaStatus::Running;
        rec.steps[i].state = StepState::Running;
        rec.steps[i].attempts = 1;
        sql += &save(&rec)?;
        let (schema, effect, reference) = match step {
            Step::CreateOrder => {
                let lines = (1..=order.items.len()).map(|l| l.to_string()).collect::<Vec<_>>().join(",");
                let products = list(&|i| i.product_id.clone());
                let units = list(&|i| i.quantity.to_string());
                let prices = list(&|i| i.price.0.to_string());
                let effect = format!(
                    "INSERT INTO orders.orders (id, user_id, total, status)\n\
                     VALUES ({order_id}, 'bench', {total}, 'created');\n\
                     INSERT INTO orders.order_items (order_id, line, product_id, quantity, price)\n\
                     SELECT {order_id}, * FROM unnest('{{{lines}}}'::int[], '{{{products}}}'::text[],\n\
                     '{{{units}}}'::int[], '{{{prices}}}'::bigint[]);\n"
                );
                ("orders", effect, format!("{order_id}::text"))
            }
            Step::ProcessPayment => {
                let payment = id("p");
                let effect = format!(
                    "INSERT INTO payments.payments (id, order_id, amount, status)\n\
                     VALUES ({payment}, {order_id}, {total}, 'captured');\n"
                );
                ("payments", effect, format!("{payment}::text"))
            }
            Step::ReserveInventory => {
                let mut wanted = std::collections::BTreeMap::<&str, u32>::new();
                for item in &order.items {
                    *wanted.entry(item.product_id.as_str()).or_default() += item.quantity;
                }
                let mut effect = String::new();
                for (n, (product, need)) in wanted.into_iter().enumerate() {
                    let reservation = id(&format!("r{n}"));
                    effect += &format!(
                        "UPDATE inventory.stock SET available = available - {need}\n\
                         WHERE product_id = '{product}' AND available >= {need};\n\
                         INSERT INTO inventory.reservations (id, order_id, product_id, quantity, status)\n\
                         VALUES ({reservation}, {order_id}, '{product}', {need}, 'reserved');\n"
                    );
                }
                ("inventory", effect, format!("{order_id}::text"))
            }
            Step::ScheduleShipment => {
                let shipment = id("h");
                let effect = format!(
                    "INSERT INTO shipping.shipments (id, order_id, tracking_number, status, scheduled_for)\n\
                     VALUES ({shipment}, {order_id}, 'TRK' || upper(left(md5(:r::text), 12)),\n\
                     'scheduled', now() + interval '1 day');\n"
                );
                ("shipping", effect, format!("{shipment}::text"))
            }
        };
        let key = format!("{saga}::text || ':{}'", step.name());
        sql += &format!(
            "BEGIN;\n\
             INSERT INTO {schema}.idempotency (key, state) VALUES ({key}, 'done')\n\
             ON CONFLICT (key) DO NOTHING;\n\
             {effect}\
             UPDATE {schema}.idempotency SET state = 'done', reference = {reference}, error = NULL\n\
             WHERE key = {key};\n\
             COMMIT;\n"
        );
        rec.steps[i].state = StepState::Completed;
        rec.steps[i].reference = Some(uuid::Uuid::new_v4().to_string());
        rec.steps[i].needs_compensation = true;
        sql += &save(&rec)?;
    }
    rec.status = SagaStatus::Completed;
    sql += &save(&rec)?;
    Ok(sql)
}
// ANCHOR_END: limit

/// `value` as a SQL string literal's content.
fn sql_json<T: serde::Serialize>(value: &T) -> anyhow::Result<String> {
    Ok(serde_json::to_string(value)?.replace('\'', "''"))
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
