//! Settings of the notes system: `config/*.yaml`, `APP_*` variables, then these flags.

use clap::Parser;
use cruncan_config::{ConfigArgs, Sources};
use cruncan_db::DatabaseSettings;
use serde::Deserialize;
use std::time::Duration;

/// Real-time note sharing: the user service (:8601), the notes service (:8602), the gateway
/// with the page and the WebSocket (:8600) and its gRPC stream (:8603).
///
/// Settings come from config/base.yaml, config/<environment>.yaml and APP_* environment
/// variables (APP_GATEWAY__QUEUE_CAPACITY=64); the flags below override them.
#[derive(Debug, Clone, Parser)]
#[command(name = "notes", version)]
pub struct Cli {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Gateway (page + WebSocket) port [config: gateway.port]
    #[arg(long)]
    pub gateway_port: Option<u16>,
    /// PostgreSQL server URL; its database name is replaced by users.database / notes.database
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// NATS URL [config: nats.url]
    #[arg(long, env = "NATS_URL")]
    pub nats_url: Option<String>,
}

/// Everything the system is configured with.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// The PostgreSQL server; each service has its own database on it.
    pub database: DatabaseSettings,
    /// The user service.
    pub users: ServiceSettings,
    /// The notes service.
    pub notes: ServiceSettings,
    /// The gateway.
    pub gateway: GatewaySettings,
    /// NATS JetStream.
    pub nats: NatsSettings,
    /// Tokens the user service issues and the others verify.
    pub auth: AuthSettings,
    /// The outbox relays of both services.
    pub outbox: cruncan_jetstream::RelaySettings,
    /// Logs.
    pub telemetry: TelemetrySettings,
}

/// One REST service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettings {
    /// Bind address.
    pub host: String,
    /// Bind port (0: any free port).
    pub port: u16,
    /// Its database's name on the server of `database`.
    pub database: String,
    /// Origins whose pages may call it (the gateway's page).
    pub cors_origins: Vec<String>,
}

/// The gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySettings {
    /// Bind address.
    pub host: String,
    /// Page and WebSocket port.
    pub port: u16,
    /// gRPC (server-streaming `Follow`) port.
    pub grpc_port: u16,
    /// The built page (scripts/notes-web.sh); empty: `reference/notes/web/dist`.
    #[serde(default)]
    pub web_dir: String,
    /// Events queued for one connection; a connection that falls this far behind is closed
    /// (WebSocket close code 4008, gRPC `RESOURCE_EXHAUSTED`).
    pub queue_capacity: usize,
    /// A WebSocket ping every this often.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// A connection that sent nothing (not even a pong) for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// One frame that takes longer than this to write closes the connection.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// The kernel's send buffer per connection (`SO_SNDBUF`, inherited from the listening
    /// socket); 0 leaves Linux's autotuning, which lets one client that stopped reading park up
    /// to `net.ipv4.tcp_wmem`'s maximum (4 MiB by default) in the kernel before the gateway
    /// notices.
    #[serde(default)]
    pub socket_send_buffer_bytes: u32,
    /// Time for the first message (the token) when it is not in the URL.
    #[serde(with = "humantime_serde")]
    pub auth_timeout: Duration,
    /// Most events one resume may replay; further behind, the client is told to reload.
    pub max_replay: usize,
}

/// NATS JetStream settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSettings {
    /// Server URL.
    pub url: String,
    /// Stream holding every event.
    pub stream: String,
    /// The notes service's durable consumer of `user.created`.
    pub users_consumer: String,
    /// Prefix of every subject (empty in production; tests isolate themselves with one).
    #[serde(default)]
    pub subject_prefix: String,
    /// Unacked messages are redelivered after this.
    #[serde(with = "humantime_serde")]
    pub ack_wait: Duration,
    /// Deliveries before a message is given up.
    pub max_deliver: i64,
    /// Events are kept this long: the window in which a client can resume.
    pub max_age_hours: u64,
}

impl NatsSettings {
    /// `subject` with the configured prefix.
    pub fn subject(&self, subject: &str) -> String {
        format!("{}{subject}", self.subject_prefix)
    }
}

/// Token settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// `iss` of the tokens.
    pub issuer: String,
    /// `aud` of the tokens.
    pub audience: String,
    /// Token lifetime.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
}

/// Telemetry settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// `EnvFilter` directive.
    pub log_filter: String,
}

impl Settings {
    /// Loads the layered settings with the flags of `cli` on top.
    pub fn load(cli: &Cli) -> anyhow::Result<Self> {
        let dir = cli.config.dir_or(cruncan_config::crate_dir!().join("config"));
        let sources = Sources::new(dir, cli.config.environment.clone())
            .override_with("gateway.port", cli.gateway_port)
            .override_with("nats.url", cli.nats_url.as_ref());
        let mut settings: Settings = cruncan_config::load(&sources)?;
        if let Some(url) = &cli.database_url {
            settings.database.apply_url(url)?;
        }
        Ok(settings)
    }

    /// The database settings of one service.
    pub fn database_of(&self, service: &ServiceSettings) -> DatabaseSettings {
        DatabaseSettings { name: service.database.clone(), ..self.database.clone() }
    }

    /// Where the built page is.
    pub fn web_dir(&self) -> std::path::PathBuf {
        if self.gateway.web_dir.is_empty() {
            cruncan_config::crate_dir!().join("web/dist")
        } else {
            self.gateway.web_dir.clone().into()
        }
    }
}
