//! `cargo run --example email_service`: the email service on 127.0.0.1 — REST :8300 (Swagger UI
//! at /docs), gRPC with TLS :8301 (its dev CA in target/email-demo/ca.pem), health :8302. Needs
//! `make up` (PostgreSQL, NATS, Redis and the SMTP sink). SIGINT/SIGTERM stops it gracefully.

use clap::Parser as _;
use cruncan_telemetry::TelemetrySettings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = email::Cli::parse();
    let settings = email::Settings::load(&cli)?;
    let telemetry = TelemetrySettings {
        log_filter: settings.telemetry.log_filter.clone(),
        ..TelemetrySettings::new("email", env!("CARGO_PKG_VERSION"))
    };
    cruncan_service::run(telemetry, |shutdown| async move {
        email::build(settings).await?.run_until_stopped(shutdown).await
    })
    .await
}
