//! `stub`: the local token server and third party (see the crate docs and `stub --help`).

use clap::Parser as _;
use cruncan_telemetry::{TelemetryConfig, init_telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cfg = stub::Config::parse();
    let telemetry = init_telemetry(&TelemetryConfig::new("stub", env!("CARGO_PKG_VERSION")))?;
    let shutdown = cruncan_shutdown::Shutdown::on_signals()?;
    let result = match stub::build(cfg).await {
        Ok(app) => app.run_until_stopped(shutdown).await,
        Err(e) => Err(e),
    };
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await?;
    result
}
