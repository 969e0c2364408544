//! `two`: parse flags and settings, then consume with telemetry until SIGINT/SIGTERM.

use clap::Parser as _;
use cruncan_telemetry::TelemetrySettings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = two::Cli::parse();
    let settings = two::Settings::load(&cli)?;
    let telemetry = TelemetrySettings {
        log_filter: settings.telemetry.log_filter.clone(),
        ..TelemetrySettings::new("two", env!("CARGO_PKG_VERSION"))
    };
    cruncan_service::run(telemetry, |shutdown| async move {
        two::build(settings).await?.run_until_stopped(shutdown).await
    })
    .await
}
