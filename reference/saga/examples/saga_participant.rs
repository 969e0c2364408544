//! `cargo run --example saga_participant -- --name payments`: one participant of the order saga
//! as its own HTTP service (orders 8401, payments 8402, inventory 8403, shipping 8404), on the
//! same database settings as the orchestrator.

use anyhow::Context as _;
use clap::Parser;
use cruncan_telemetry::TelemetrySettings;
use std::sync::Arc;
use std::time::Duration;

/// One saga participant over HTTP.
#[derive(Debug, Parser)]
struct Args {
    /// orders, payments, inventory or shipping
    #[arg(long)]
    name: String,
    /// Port [default: 8401..8404 by name]
    #[arg(long)]
    port: Option<u16>,
    /// PostgreSQL URL; overrides the database.* fields it names
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cli = saga::config::Cli {
        config: cruncan_config::ConfigArgs { config_dir: None, environment: "local".into() },
        port: None,
        database_url: args.database_url.clone(),
        participants: None,
    };
    let settings = saga::Settings::load(&cli)?;
    let port = args.port.unwrap_or(match args.name.as_str() {
        "orders" => 8401,
        "payments" => 8402,
        "inventory" => 8403,
        _ => 8404,
    });
    let service = format!("saga-{}", args.name);
    cruncan_service::run(TelemetrySettings::new(service, env!("CARGO_PKG_VERSION")), |shutdown| async move {
        if settings.database.create_if_missing {
            cruncan_db::ensure_database(&settings.database).await?;
        }
        let pool = settings.database.lazy_pool();
        cruncan_db::migrate(&saga::MIGRATOR, &pool, Duration::from_secs(30)).await?;
        let participant = saga::participants::by_name(&args.name, pool.clone())
            .with_context(|| format!("no participant named {}", args.name))?;
        let ready: cruncan_http::ReadinessCheck = Arc::new(move || {
            let pool = pool.clone();
            Box::pin(async move { cruncan_db::ping(&pool, Duration::from_secs(1)).await })
        });
        let router = saga::participants::http::router(participant, ready);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        tracing::info!(name = %args.name, addr = %listener.local_addr()?, "participant listening");
        cruncan_http::serve(listener, router, shutdown).await
    })
    .await
}
