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

/// Everything the orchestrator is configured with. Each section rejects keys it does not know;
/// the top level cannot (`APP_ENVIRONMENT` and `APP_CONFIG_DIR` share the `APP_` prefix).
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// HTTP server.
    pub http: HttpSettings,
    /// PostgreSQL (saga state, and the participants' schemas when in process).
    pub database: DatabaseSettings,
    /// Orchestrator knobs.
    pub orchestrator: OrchestratorConfig,
    /// Where the participants run.
    pub participants: ParticipantsSettings,
    /// Logs.
    pub telemetry: TelemetrySettings,
}

/// HTTP server settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Bind address.
    pub host: String,
    /// Bind port (0: any free port).
    pub port: u16,
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
#[serde(deny_unknown_fields)]
pub struct ParticipantsSettings {
    /// In process or over HTTP.
    pub mode: ParticipantsMode,
    /// HTTP client timeout (the orchestrator's step timeout also applies).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
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
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// `EnvFilter` syntax; `RUST_LOG` wins.
    pub log_filter: String,
}

impl Settings {
    /// Layers config files, `APP_*` variables and `cli`.
    pub fn load(cli: &Cli) -> anyhow::Result<Self> {
        let dir = cli.config.dir_or(cruncan_config::crate_dir!().join("config"));
        let sources = Sources::new(dir, cli.config.environment.clone())
            .override_with("http.port", cli.port)
            .override_with("participants.mode", cli.participants.clone());
        let mut settings: Settings = cruncan_config::load(&sources)?;
        if let Some(url) = &cli.database_url {
            settings.database.apply_url(url)?;
        }
        settings.orchestrator.validate()?;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(overrides: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let mut sources = Sources::new(cruncan_config::crate_dir!().join("config"), "local");
        sources.env = Some(Default::default());
        for (k, v) in overrides {
            sources = sources.override_with(k, Some(v));
        }
        cruncan_config::load(&sources)
    }

    #[test]
    fn durations_read_as_durations_and_a_misspelt_key_is_an_error() {
        let settings = load(&[]).unwrap();
        assert_eq!(settings.orchestrator.lease, Duration::from_secs(15));
        assert_eq!(settings.orchestrator.backoff_initial, Duration::from_millis(100));
        assert_eq!(settings.participants.timeout, Duration::from_secs(2));
        settings.orchestrator.validate().unwrap();
        let err = load(&[("orchestrator.lease_ms", "15000")]).unwrap_err();
        assert!(format!("{err:#}").contains("lease_ms"), "{err:#}");
        assert!(load(&[("participants.timeout", "soon")]).is_err());
    }
}
