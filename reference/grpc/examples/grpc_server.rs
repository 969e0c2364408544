//! `cargo run --example grpc_server`: the payments service on https://127.0.0.1:50051 with a
//! certificate made at start; the CA is written to target/grpc-demo/ca.pem for the client.
//! Health and reflection are on; SIGINT/SIGTERM stops it gracefully.

use cruncan_telemetry::TelemetrySettings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cruncan_service::run(
        TelemetrySettings::new("grpc-payments", env!("CARGO_PKG_VERSION")),
        |shutdown| async move {
            let pki = grpc::tls::dev_pki()?;
            std::fs::create_dir_all("target/grpc-demo")?;
            std::fs::write("target/grpc-demo/ca.pem", &pki.ca_pem)?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:50051").await?;
            tracing::info!(
                addr = "127.0.0.1:50051",
                ca = "target/grpc-demo/ca.pem",
                "payments server listening (TLS)"
            );
            grpc::serve(listener, Some(pki.server), grpc::Payments::default(), shutdown).await
        },
    )
    .await
}
