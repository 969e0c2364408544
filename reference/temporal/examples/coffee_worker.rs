//! `cargo run --example coffee_worker`: a worker for the coffee shop and the order saga on task
//! queue `coffee-shop`, against the dev server at `TEMPORAL_ADDRESS` (default 127.0.0.1:17233)
//! and PostgreSQL at `DATABASE_URL` (database `temporal_ref`, created and migrated at start).
//! Run two of them to share the work; kill one mid-order and the other finishes it.
//! SIGINT/SIGTERM stops it after in-flight tasks finish.

use clap::Parser;
use cruncan_telemetry::TelemetryConfig;
use std::time::Duration;
use temporal_ref::connect::{TemporalSettings, connect};
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
    /// Database name (default: the one in DATABASE_URL, else temporal_ref).
    #[arg(long)]
    database: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    cruncan_telemetry::run_service(
        TelemetryConfig::new("coffee-worker", env!("CARGO_PKG_VERSION")),
        |shutdown| async move {
            let db = temporal_ref::db::settings_from_env(args.database.as_deref())?;
            let pool = temporal_ref::db::connect(&db).await?;
            let client = connect(&TemporalSettings::from_env("coffee-worker")).await?;
            let settings = WorkerSettings {
                sticky_timeout: Duration::from_millis(args.sticky_timeout_ms),
                ..WorkerSettings::new(args.task_queue, Duration::from_millis(args.brew_ms))
            };
            tracing::info!(task_queue = %settings.task_queue, database = %db.name, "worker polling");
            run_worker(client, pool, settings, shutdown.wait()).await
        },
    )
    .await
}
