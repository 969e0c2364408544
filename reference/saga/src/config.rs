//! Settings of the saga orchestrator: `config/base.yaml`, `APP_*` variables, then flags.

use crate::orchestrator::OrchestratorConfig;
use clap::Parser;
use cruncan_config::{ConfigArgs, Sources};
use cruncan_db::DatabaseSettings;
use serde::Deserialize;
use std::time::Duration;

/// The saga orchestrator: `POST /orders` starts the order saga.
#[derive(Debug, Clone, Parser)]
#[command(name = "saga_orchestrator")]
pub struct Cli {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Port to listen on, 0 for any free port [config: http.port]
    #[arg(long, short)]
    pub port: Option<u16>,
    /// PostgreSQL URL; overrides the database.* fields it names
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// `in_process` or `http` [config: participants.mode]
    #[arg(long)]
    pub participants: Option<String>,
}

/// Everything the orchestrator is configured with.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// HTTP server.
    pub http: HttpSettings,
    /// PostgreSQL (saga state, and the participants' schemas when in process).
    pub database: DatabaseSettings,
    /// Orchestrator knobs.
    pub orchestrator: OrchestratorSettings,
    /// Where the participants run.
    pub participants: ParticipantsSettings,
    /// Logs.
    pub telemetry: TelemetrySettings,
}

/// HTTP server settings.
#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    /// Bind address.
    pub host: String,
    /// Bind port (0: any free port).
    pub port: u16,
}

/// Orchestrator knobs, in milliseconds; see [`OrchestratorConfig`].
#[derive(Debug, Clone, Deserialize)]
pub struct OrchestratorSettings {
    /// Lease of a claimed saga.
    pub lease_ms: u64,
    /// Timeout of one participant call.
    pub step_timeout_ms: u64,
    /// Calls of a step before it fails.
    pub max_attempts: u32,
    /// Calls of a compensation before the saga is parked.
    pub max_compensation_attempts: u32,
    /// First retry delay.
    pub backoff_initial_ms: u64,
    /// Largest retry delay.
    pub backoff_max_ms: u64,
    /// Sagas driven at once.
    pub concurrency: usize,
    /// Claim poll interval.
    pub poll_interval_ms: u64,
    /// On shutdown, how long running sagas may take before their leases are released.
    pub drain_timeout_ms: u64,
}

impl OrchestratorSettings {
    /// The orchestrator's config.
    pub fn config(&self) -> OrchestratorConfig {
        let ms = Duration::from_millis;
        OrchestratorConfig {
            lease: ms(self.lease_ms),
            step_timeout: ms(self.step_timeout_ms),
            max_attempts: self.max_attempts,
            max_compensation_attempts: self.max_compensation_attempts,
            backoff_initial: ms(self.backoff_initial_ms),
            backoff_max: ms(self.backoff_max_ms),
            concurrency: self.concurrency,
            poll_interval: ms(self.poll_interval_ms),
        }
    }
}

/// Where the participants run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantsMode {
    /// In this process, on the orchestrator's database.
    InProcess,
    /// As HTTP services at the configured URLs.
    Http,
}

/// Participant settings.
#[derive(Debug, Clone, Deserialize)]
pub struct ParticipantsSettings {
    /// In process or over HTTP.
    pub mode: ParticipantsMode,
    /// HTTP client timeout (the orchestrator's step timeout also applies).
    pub timeout_ms: u64,
    /// Orders service.
    pub orders_url: String,
    /// Payments service.
    pub payments_url: String,
    /// Inventory service.
    pub inventory_url: String,
    /// Shipping service.
    pub shipping_url: String,
}

/// Log settings.
#[derive(Debug, Clone, Deserialize)]
pub struct TelemetrySettings {
    /// `EnvFilter` syntax; `RUST_LOG` wins.
    pub log_filter: String,
}

impl Settings {
    /// Layers config files, `APP_*` variables and `cli`.
    pub fn load(cli: &Cli) -> anyhow::Result<Self> {
        let dir = cli.config.dir_or(concat!(env!("CARGO_MANIFEST_DIR"), "/config"));
        let sources = Sources::new(dir, cli.config.environment.clone())
            .override_with("http.port", cli.port)
            .override_with("participants.mode", cli.participants.clone());
        let mut settings: Settings = cruncan_config::load(&sources)?;
        if let Some(url) = &cli.database_url {
            settings.database.apply_url(url)?;
        }
        settings.orchestrator.config().validate()?;
        Ok(settings)
    }
}
