//! Settings of the email service: `config/*.yaml`, `APP_*` variables, then these flags.

use clap::Parser;
use cruncan_config::{ConfigArgs, Sources};
use cruncan_db::DatabaseSettings;
use serde::Deserialize;
use std::time::Duration;

/// The email service: REST on :8300, gRPC (TLS) on :8301, health on :8302; a PostgreSQL outbox
/// to NATS JetStream, workers sending over SMTP, Redis cache-aside reads.
///
/// Settings come from config/base.yaml, config/<environment>.yaml and APP_* environment
/// variables (APP_WORKERS__COUNT=8); the flags below override them.
#[derive(Debug, Clone, Parser)]
#[command(name = "email_service", version)]
pub struct Cli {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// REST port, 0 for any free port [config: http.port]
    #[arg(long)]
    pub http_port: Option<u16>,
    /// gRPC port [config: grpc.port]
    #[arg(long)]
    pub grpc_port: Option<u16>,
    /// Health port [config: admin.port]
    #[arg(long)]
    pub admin_port: Option<u16>,
    /// PostgreSQL URL; overrides the database.* fields it names
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// NATS URL [config: nats.url]
    #[arg(long, env = "NATS_URL")]
    pub nats_url: Option<String>,
    /// Redis URL [config: redis.url]
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// SMTP URL, e.g. smtp://127.0.0.1:11025 or smtps://user:pass@host [config: smtp.url]
    #[arg(long, env = "SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Sending workers [config: workers.count]
    #[arg(long)]
    pub workers: Option<usize>,
}

/// Everything the service is configured with. Each section rejects keys it does not know (a
/// misspelt key is a start-up error); the top level cannot (`APP_ENVIRONMENT` and `APP_CONFIG_DIR`
/// share the `APP_` prefix). Durations are written `5s`, `200ms`, `168h`.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// REST edge.
    pub http: HttpSettings,
    /// gRPC edge.
    pub grpc: GrpcSettings,
    /// Health endpoints.
    pub admin: AdminSettings,
    /// PostgreSQL.
    pub database: DatabaseSettings,
    /// NATS JetStream.
    pub nats: NatsSettings,
    /// Redis cache.
    pub redis: RedisSettings,
    /// SMTP server.
    pub smtp: SmtpSettings,
    /// Worker pool.
    pub workers: WorkerSettings,
    /// Outbox relay.
    pub outbox: cruncan_jetstream::RelaySettings,
    /// Logs.
    pub telemetry: TelemetrySettings,
    /// Graceful shutdown.
    pub shutdown: ShutdownSettings,
}

/// REST edge settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Bind address.
    pub host: String,
    /// Bind port (0: any free port).
    pub port: u16,
    /// Largest accepted body (413 above).
    pub body_limit_bytes: usize,
    /// Time budget of one request's database work (503 above).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

/// gRPC edge settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcSettings {
    /// Bind address.
    pub host: String,
    /// Bind port.
    pub port: u16,
    /// PEM certificate chain; with `key_path`. Neither: a development certificate made at start.
    #[serde(default)]
    pub cert_path: Option<String>,
    /// PEM private key.
    #[serde(default)]
    pub key_path: Option<String>,
    /// Where to write the development CA (for clients), when one is made.
    #[serde(default)]
    pub dev_ca_out: Option<String>,
    /// HTTP/2 keepalive ping interval.
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// A ping unanswered this long closes the connection.
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// Connections older than this are closed gracefully (clients reconnect, load spreads).
    #[serde(with = "humantime_serde")]
    pub max_connection_age: Duration,
}

/// Health port settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// Bind address.
    pub host: String,
    /// Bind port.
    pub port: u16,
}

/// NATS JetStream settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSettings {
    /// Server URL.
    pub url: String,
    /// Stream name.
    pub stream: String,
    /// Durable consumer name (shared by every replica's workers).
    pub consumer: String,
    /// Prefix of every subject (empty in production; tests isolate themselves with one).
    #[serde(default)]
    pub subject_prefix: String,
    /// Unacked messages are redelivered after this.
    #[serde(with = "humantime_serde")]
    pub ack_wait: Duration,
    /// Deliveries before a message is dead-lettered.
    pub max_deliver: i64,
    /// Messages in flight (delivered, not acked) across all workers.
    pub max_ack_pending: i64,
    /// Events are kept this long (replay window).
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl NatsSettings {
    /// `subject` with the configured prefix.
    pub fn subject(&self, subject: &str) -> String {
        format!("{}{subject}", self.subject_prefix)
    }
}

/// Redis cache settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// Server URL.
    pub url: String,
    /// Entries expire after this.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// One cache call waits at most this long before the read goes to PostgreSQL.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Key prefix (tests isolate themselves with one).
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
}

fn default_key_prefix() -> String {
    "email:".into()
}

/// SMTP settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    /// `smtp://host:port` (plain, local sinks), `smtp://host:587?tls=required` (STARTTLS) or
    /// `smtps://user:pass@host:465`.
    pub url: cruncan_config::Secret,
    /// One SMTP conversation's time limit.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Pooled connections.
    pub pool_size: u32,
    /// Domain of the `Message-ID` (`<email_id@domain>`).
    pub message_id_domain: String,
}

/// Worker pool settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    /// Concurrent sends in this replica (0: accept and store only, no sending).
    pub count: usize,
    /// How long one pull waits for a message.
    #[serde(with = "humantime_serde")]
    pub pull_wait: Duration,
    /// First retry delay after a transient SMTP error; doubles per delivery.
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    /// Longest retry delay.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
}

/// Telemetry settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// `EnvFilter` directive.
    pub log_filter: String,
}

/// Shutdown settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownSettings {
    /// How long in-flight requests and sends may take after SIGTERM.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Settings {
    /// Loads the layered settings with the flags of `cli` on top.
    pub fn load(cli: &Cli) -> anyhow::Result<Self> {
        let dir = cli.config.dir_or(cruncan_config::crate_dir!().join("config"));
        let sources = Sources::new(dir, cli.config.environment.clone())
            .override_with("http.port", cli.http_port)
            .override_with("grpc.port", cli.grpc_port)
            .override_with("admin.port", cli.admin_port)
            .override_with("nats.url", cli.nats_url.as_ref())
            .override_with("redis.url", cli.redis_url.as_ref())
            .override_with("smtp.url", cli.smtp_url.as_ref())
            .override_with("workers.count", cli.workers);
        let mut settings: Settings = cruncan_config::load(&sources)?;
        if let Some(url) = &cli.database_url {
            settings.database.apply_url(url)?;
        }
        Ok(settings)
    }
}
