//! The skeleton of every service's `main`, in one place: telemetry first, SIGINT/SIGTERM bound to
//! a [`Shutdown`], the service run with it, a failure logged once, and telemetry flushed last so
//! the spans of the shutdown itself are exported too.
//!
//! It sits above [`cruncan_telemetry`] and [`cruncan_shutdown`] (each knows nothing of the other),
//! so a program that only needs one of them does not pull in the other.

use anyhow::Context as _;
use cruncan_shutdown::Shutdown;
use cruncan_telemetry::TelemetrySettings;
use std::future::Future;

// ANCHOR: run
/// The body of every service's `main`: installs telemetry, binds SIGINT/SIGTERM to a
/// [`Shutdown`], runs `service` with it, logs a failure once, and flushes telemetry last (off the
/// async threads: flushing blocks on the exporters).
pub async fn run<F, Fut>(telemetry: TelemetrySettings, service: F) -> anyhow::Result<()>
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let guard = cruncan_telemetry::init_telemetry(&telemetry)?;
    let shutdown = Shutdown::on_signals()?;
    let result = service(shutdown).await;
    if let Err(e) = &result {
        tracing::error!(error = %format!("{e:#}"), service = %telemetry.service_name, "service failed");
    }
    tokio::task::spawn_blocking(move || guard.shutdown()).await.context("flushing telemetry")?;
    result
}
// ANCHOR_END: run
