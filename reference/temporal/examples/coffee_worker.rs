//! `cargo run --example coffee_worker`: a worker for the coffee shop and the order saga on task
//! queue `coffee-shop`, against the dev server at `TEMPORAL_ADDRESS` (default 127.0.0.1:17233)
//! and PostgreSQL at `DATABASE_URL` (databases `temporal_ref` and `temporal_saga`, created and
//! migrated at start).
//! Run two of them to share the work; kill one mid-order and the other finishes it.
//! SIGINT/SIGTERM stops it after in-flight tasks finish.

use clap::Parser;
use cruncan_telemetry::TelemetryConfig;
use std::time::Duration;
use temporal_ref::connect::{TemporalSettings, connect};
use temporal_ref::saga::activities::CrashPoint;
use temporal_ref::worker::{TASK_QUEUE, WorkerSettings, run_worker};

#[derive(Debug, Parser)]
struct Args {
    /// Task queue to poll.
    #[arg(long, default_value = TASK_QUEUE)]
    task_queue: String,
    /// Milliseconds to brew one drink.
    #[arg(long, default_value_t = 3000)]
    brew_ms: u64,
    /// Milliseconds the server keeps this worker's next workflow task for it (sticky queue)
    /// before another worker may take it.
    #[arg(long, default_value_t = 10_000)]
    sticky_timeout_ms: u64,
    /// The coffee shop's database.
    #[arg(long, default_value = temporal_ref::db::COFFEE_DATABASE)]
    database: String,
    /// The saga participants' database.
    #[arg(long, default_value = temporal_ref::db::SAGA_DATABASE)]
    saga_database: String,
    /// Abort the process right after a participant answered this step or compensation
    /// (e.g. ProcessPayment, RefundPayment): the crash-resume demo.
    #[arg(long, value_parser = parse_crash_point)]
    crash_after: Option<CrashPoint>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    cruncan_telemetry::run_service(
        TelemetryConfig::new("coffee-worker", env!("CARGO_PKG_VERSION")),
        |shutdown| async move {
            let coffee_db = temporal_ref::db::settings_for(&args.database)?;
            let saga_db = temporal_ref::db::settings_for(&args.saga_database)?;
            let stores = temporal_ref::db::connect(&coffee_db, &saga_db).await?;
            let client = connect(&TemporalSettings::from_env("coffee-worker")).await?;
            let settings = WorkerSettings {
                sticky_timeout: Duration::from_millis(args.sticky_timeout_ms),
                crash: args.crash_after,
                ..WorkerSettings::new(args.task_queue, Duration::from_millis(args.brew_ms))
            };
            tracing::info!(task_queue = %settings.task_queue, "worker polling");
            run_worker(client, stores, settings, shutdown.wait()).await
        },
    )
    .await
}

fn parse_crash_point(name: &str) -> Result<CrashPoint, String> {
    CrashPoint::parse(name).ok_or_else(|| format!("{name:?} is not a saga step or compensation name"))
}
