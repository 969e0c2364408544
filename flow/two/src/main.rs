//! `two`: parse flags and settings, start telemetry, build, consume until SIGINT/SIGTERM.

use clap::Parser as _;
use cruncan_telemetry::{TelemetryConfig, init_telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = two::Cli::parse();
    let settings = two::Settings::load(&cli)?;
    let telemetry = init_telemetry(&TelemetryConfig {
        log_filter: settings.telemetry.log_filter.clone(),
        ..TelemetryConfig::new("two", env!("CARGO_PKG_VERSION"))
    })?;
    let shutdown = cruncan_shutdown::Shutdown::on_signals()?;
    let result = match two::build(settings).await {
        Ok(app) => app.run_until_stopped(shutdown).await,
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        tracing::error!(error = %format!("{e:#}"), "service two failed");
    }
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await?;
    result
}
