//! `one`: parse flags and settings, then run with telemetry until SIGINT/SIGTERM.

use clap::Parser as _;
use cruncan_telemetry::TelemetrySettings;

// ANCHOR: main
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = one::Cli::parse();
    let settings = one::Settings::load(&cli)?;
    let telemetry = TelemetrySettings {
        log_filter: settings.telemetry.log_filter.clone(),
        ..TelemetrySettings::new("one", env!("CARGO_PKG_VERSION"))
    };
    cruncan_service::run(telemetry, |shutdown| async move {
        one::build(settings).await?.run_until_stopped(shutdown).await
    })
    .await
}
// ANCHOR_END: main
