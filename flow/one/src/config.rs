//! Settings of service one: `config/*.yaml`, `APP_*` variables, then these flags.

use clap::Parser;
use cruncan_config::{ConfigArgs, Sources};
use cruncan_db::DatabaseSettings;
use cruncan_kafka::ProducerSettings;
use serde::Deserialize;
use std::time::Duration;

// ANCHOR: cli
/// Service one: accepts requests over HTTP, stores them and publishes them to Kafka through a
/// transactional outbox.
///
/// Settings come from config/base.yaml, config/<environment>.yaml and APP_* environment
/// variables (APP_HTTP__PORT=9000); the flags below override them.
#[derive(Debug, Clone, Parser)]
#[command(name = "one", version)]
pub struct Cli {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Address to listen on [config: http.host]
    #[arg(long)]
    pub host: Option<String>,
    /// Port to listen on, 0 for any free port [config: http.port]
    #[arg(long, short)]
    pub port: Option<u16>,
    /// PostgreSQL URL; overrides the database.* fields it names
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Kafka bootstrap servers [config: kafka.brokers]
    #[arg(long, env = "KAFKA_BROKERS")]
    pub brokers: Option<String>,
    /// Topic to publish to [config: kafka.topic]
    #[arg(long)]
    pub topic: Option<String>,
    /// Snowflake node id (0..=65535); wins over POD_IP [config: snowflake.node_id]
    #[arg(long)]
    pub node_id: Option<u16>,
    /// Pod IPv4 address; its low 16 bits are the Snowflake node id
    #[arg(long, env = "POD_IP")]
    pub pod_ip: Option<String>,
    /// Log filter, e.g. `info,one=debug` (RUST_LOG wins) [config: telemetry.log_filter]
    #[arg(long)]
    pub log_filter: Option<String>,
}
// ANCHOR_END: cli

/// Everything service one is configured with. Each section rejects keys it does not know (a
/// misspelt key is a start-up error); the top level cannot, because `APP_ENVIRONMENT` and
/// `APP_CONFIG_DIR` arrive through the same `APP_` prefix.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// HTTP server.
    pub http: HttpSettings,
    /// PostgreSQL.
    pub database: DatabaseSettings,
    /// Kafka.
    pub kafka: KafkaSettings,
    /// Outbox relay.
    pub outbox: cruncan_outbox::OutboxSettings,
    /// Group commit of plain requests.
    pub writes: WriteSettings,
    /// Input limits.
    pub limits: Limits,
    /// Snowflake ids.
    pub snowflake: SnowflakeSettings,
    /// Logs and telemetry.
    pub telemetry: TelemetrySettings,
    /// Graceful shutdown.
    pub shutdown: ShutdownSettings,
    /// Pod IP (from `POD_IP`), for the Snowflake node id.
    #[serde(default)]
    pub pod_ip: Option<String>,
}

/// Group commit: requests that arrive while writes are in flight are stored by one statement.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteSettings {
    /// Most requests per statement; 1 turns group commit off (one transaction per request).
    pub max_batch: usize,
    /// Batches in flight at once (each holds one pool connection while it runs).
    pub concurrency: usize,
}

/// HTTP server settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Bind address.
    pub host: String,
    /// Bind port (0: any free port).
    pub port: u16,
    /// Largest accepted body (413 above).
    pub body_limit_bytes: usize,
    /// A request taking longer is answered 503.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

/// Kafka settings: the cluster and topic are the service's, the producer's tuning is
/// `cruncan_kafka`'s own settings type.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// Bootstrap servers.
    pub brokers: String,
    /// Topic for request events.
    pub topic: String,
    /// Partitions when the topic is created.
    pub partitions: i32,
    /// Replication factor when the topic is created.
    pub replication: i32,
    /// The producer the outbox relay publishes with.
    pub producer: ProducerSettings,
}

// ANCHOR: limits
/// Input limits, enforced with a 400 that names the field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Longest `user_id`, in characters.
    pub max_user_id_len: usize,
    /// Longest `prompt`, in characters.
    pub max_prompt_len: usize,
    /// Most `data` entries.
    pub max_data_entries: usize,
    /// Longest `data[].key`.
    pub max_data_key_len: usize,
    /// Longest `data[].value`.
    pub max_data_value_len: usize,
}
// ANCHOR_END: limits

/// Snowflake settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnowflakeSettings {
    /// Explicit node id; otherwise from `POD_IP`.
    pub node_id: Option<u16>,
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
    /// How long in-flight requests may take after SIGTERM.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// After SIGTERM, keep serving this long with `Connection: close` on every response, so
    /// keep-alive clients leave before idle connections are closed.
    #[serde(default, with = "humantime_serde")]
    pub lame_duck: Duration,
}

impl Settings {
    /// Loads the layered settings with the flags of `cli` on top.
    pub fn load(cli: &Cli) -> anyhow::Result<Self> {
        let dir = cli.config.dir_or(cruncan_config::crate_dir!().join("config"));
        let sources = Sources::new(dir, cli.config.environment.clone())
            .override_with("http.host", cli.host.as_ref())
            .override_with("http.port", cli.port)
            .override_with("kafka.brokers", cli.brokers.as_ref())
            .override_with("kafka.topic", cli.topic.as_ref())
            .override_with("snowflake.node_id", cli.node_id)
            .override_with("telemetry.log_filter", cli.log_filter.as_ref())
            .override_with("pod_ip", cli.pod_ip.as_ref());
        let mut settings: Settings = cruncan_config::load(&sources)?;
        if let Some(url) = &cli.database_url {
            settings.database.apply_url(url)?;
        }
        Ok(settings)
    }
}
