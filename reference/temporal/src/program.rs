//! The worker program: flags, telemetry, databases, client, then [`run_worker`] until SIGINT
//! or SIGTERM. `cargo run --example coffee_worker` runs it; so does the `temporal_worker` binary,
//! which the crash tests start and kill (cargo builds binaries before integration tests, and
//! hands them the path).

use crate::connect::{TemporalSettings, connect};
use crate::saga::activities::CrashPoint;
use crate::worker::{TASK_QUEUE, WorkerSettings, run_worker};
use clap::Parser;
use cruncan_telemetry::TelemetrySettings;
use std::time::Duration;

/// The worker's flags.
#[derive(Debug, Parser)]
pub struct WorkerArgs {
    /// Task queue to poll.
    #[arg(long, default_value = TASK_QUEUE)]
    pub task_queue: String,
    /// How long one drink takes to brew, e.g. `3s`, `500ms`.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub brew: Duration,
    /// How long the server keeps this worker's next workflow task for it (sticky queue) before
    /// another worker may take it.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub sticky_timeout: Duration,
    /// The coffee shop's database.
    #[arg(long, default_value = crate::db::COFFEE_DATABASE)]
    pub database: String,
    /// The saga participants' database.
    #[arg(long, default_value = crate::db::SAGA_DATABASE)]
    pub saga_database: String,
    /// Abort the process right after a participant answered this step or compensation
    /// (e.g. ProcessPayment, RefundPayment): the crash-resume demo.
    #[arg(long, value_parser = parse_crash_point)]
    pub crash_after: Option<CrashPoint>,
}

fn parse_crash_point(name: &str) -> Result<CrashPoint, String> {
    CrashPoint::parse(name).ok_or_else(|| format!("{name:?} is not a saga step or compensation name"))
}

/// Runs the worker process until SIGINT or SIGTERM.
pub async fn main(args: WorkerArgs) -> anyhow::Result<()> {
    cruncan_service::run(
        TelemetrySettings::new("coffee-worker", env!("CARGO_PKG_VERSION")),
        |shutdown| async move {
            let coffee_db = crate::db::settings_for(&args.database)?;
            let saga_db = crate::db::settings_for(&args.saga_database)?;
            let stores = crate::db::connect(&coffee_db, &saga_db).await?;
            let client = connect(&TemporalSettings::from_env("coffee-worker")).await?;
            let settings = WorkerSettings {
                sticky_timeout: args.sticky_timeout,
                crash: args.crash_after,
                ..WorkerSettings::new(args.task_queue, args.brew)
            };
            tracing::info!(task_queue = %settings.task_queue, "worker polling");
            run_worker(client, stores, settings, shutdown.wait()).await
        },
    )
    .await
}
