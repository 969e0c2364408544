//! `cargo run --example saga_orchestrator`: the order saga's orchestrator on
//! http://127.0.0.1:8400 (`POST /orders`, `GET /sagas/{id}`, `GET /orders/{id}`), with the
//! participants in process; `-- --participants http` calls them as HTTP services instead
//! (start them with `cargo run --example saga_participant -- --name orders`, and so on).

use clap::Parser as _;
use cruncan_telemetry::TelemetrySettings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = saga::config::Cli::parse();
    let settings = saga::Settings::load(&cli)?;
    let telemetry = TelemetrySettings {
        log_filter: settings.telemetry.log_filter.clone(),
        ..TelemetrySettings::new("saga-orchestrator", env!("CARGO_PKG_VERSION"))
    };
    cruncan_service::run(telemetry, |shutdown| async move {
        saga::build(settings).await?.run_until_stopped(shutdown).await
    })
    .await
}
