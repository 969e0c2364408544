//! `one`: parse flags and settings, start telemetry, build, run until SIGINT/SIGTERM.

use clap::Parser as _;
use cruncan_telemetry::{TelemetryConfig, init_telemetry};

// ANCHOR: main
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = one::Cli::parse();
    let settings = one::Settings::load(&cli)?;
    let telemetry = init_telemetry(&TelemetryConfig {
        log_filter: settings.telemetry.log_filter.clone(),
        ..TelemetryConfig::new("one", env!("CARGO_PKG_VERSION"))
    })?;
    let shutdown = cruncan_shutdown::Shutdown::on_signals()?;
    let result = match one::build(settings).await {
        Ok(app) => app.run_until_stopped(shutdown).await,
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        tracing::error!(error = %format!("{e:#}"), "service one failed");
    }
    // Flushing blocks on the exporters: off the async threads.
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await?;
    result
}
// ANCHOR_END: main
