//! `cargo run --example notes`: the user service (:8601), the notes service (:8602) and the
//! gateway — the page at http://127.0.0.1:8600/, its WebSocket at /ws, the gRPC stream on :8603 —
//! on the local stack (`make up`: PostgreSQL, NATS). Builds the page first when it is missing
//! (scripts/notes-web.sh). SIGINT/SIGTERM stops it gracefully.

use clap::Parser as _;
use cruncan_telemetry::TelemetrySettings;

// ANCHOR: main
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = notes::Settings::load(&notes::Cli::parse())?;
    if !settings.web_dir().join("index.html").is_file() {
        let script = cruncan_config::workspace_dir().join("scripts/notes-web.sh");
        let status = std::process::Command::new(&script).status()?;
        anyhow::ensure!(status.success(), "{} failed", script.display());
    }
    let telemetry = TelemetrySettings {
        log_filter: settings.telemetry.log_filter.clone(),
        ..TelemetrySettings::new("notes", env!("CARGO_PKG_VERSION"))
    };
    cruncan_service::run(telemetry, |shutdown| async move {
        let app = notes::build(settings).await?;
        println!("notes: open http://{}/ (sign up two users in two windows)", app.gateway_addr()?);
        app.run_until_stopped(shutdown).await
    })
    .await
}
// ANCHOR_END: main
