//! `cargo run --example saga_choreography`: the order saga as a choreography over Kafka. Runs
//! the four participants (consumers with outboxes) on topic `saga.events`, places three orders —
//! one that completes, one whose payment is refused, one too large to ship — and prints the
//! events each one went through. Needs `make up`.

use clap::Parser;
use cruncan_shutdown::Shutdown;
use saga::choreography::{Choreography, ChoreographyConfig, outbox};
use saga::domain::CreateOrderBody;
use std::time::Duration;

/// The choreographed order saga, once.
#[derive(Debug, Parser)]
struct Args {
    /// Kafka bootstrap servers
    #[arg(long, env = "KAFKA_BROKERS", default_value = cruncan_kafka::LOCAL_BROKERS)]
    brokers: String,
    /// PostgreSQL URL; overrides the database.* fields it names
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

fn order(lines: &[(&str, i64, f64)]) -> anyhow::Result<saga::domain::NewOrder> {
    Ok(CreateOrderBody::from_lines("user_123", lines).validate()?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cli = saga::config::Cli {
        config: cruncan_config::ConfigArgs { config_dir: None, environment: "local".into() },
        port: None,
        database_url: args.database_url,
        participants: None,
    };
    let settings = saga::Settings::load(&cli)?;
    let telemetry = cruncan_telemetry::TelemetrySettings {
        log_filter: "warn".into(),
        ..cruncan_telemetry::TelemetrySettings::new("saga-choreography", env!("CARGO_PKG_VERSION"))
    };
    cruncan_service::run(telemetry, |signals| async move {
        cruncan_db::ensure_database(&settings.database).await?;
        let pool = settings.database.lazy_pool();
        cruncan_db::migrate(&saga::MIGRATOR, &pool, Duration::from_secs(30)).await?;
        let cfg = ChoreographyConfig {
            brokers: args.brokers,
            topic: "saga.events".into(),
            group_prefix: "saga-choreography".into(),
            partitions: 3,
            outbox: Default::default(),
            inbox_retention: saga::choreography::inbox::DEFAULT_RETENTION,
        };
        let choreography = std::sync::Arc::new(Choreography::new(pool.clone(), cfg)?);
        let stop = Shutdown::new();
        let running = tokio::spawn({
            let (c, stop) = (std::sync::Arc::clone(&choreography), stop.clone());
            async move { c.run(stop).await }
        });
        let orders = [
            ("completes", order(&[("product_1", 2, 100.0), ("product_2", 1, 5.0)])?),
            ("payment refused", order(&[("product_1", 2, 10_000.0)])?),
            ("too large to ship", order(&[("product_3", 150, 1.0), ("product_1", 60, 1.0)])?),
        ];
        let mut placed = Vec::new();
        for (what, o) in orders {
            placed.push((what, choreography.place_order(o).await?));
        }
        for (what, saga) in &placed {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            let events = loop {
                let events = outbox::history(&pool, saga.saga_id).await?;
                let last = events.last().map(|e| e.event_type.as_str());
                if matches!(last, Some("OrderConfirmed" | "OrderCancelled"))
                    || tokio::time::Instant::now() > deadline
                    || signals.is_triggered()
                {
                    break events;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            println!("order {} ({what}), correlation id {}:", saga.order_id, saga.saga_id);
            for e in events {
                println!("  {:<18} by {}", e.event_type, e.participant);
            }
        }
        stop.trigger();
        running.await??;
        Ok(())
    })
    .await
}
