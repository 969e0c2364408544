//! `stub`: the local token server and third party (see the crate docs and `stub --help`).

use clap::Parser as _;
use cruncan_telemetry::TelemetrySettings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cfg = stub::Settings::parse();
    cruncan_service::run(TelemetrySettings::new("stub", env!("CARGO_PKG_VERSION")), |shutdown| async move {
        stub::build(cfg).await?.run_until_stopped(shutdown).await
    })
    .await
}
