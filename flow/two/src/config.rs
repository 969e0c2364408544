//! Settings of service two: `config/*.yaml`, `APP_*` variables, then these flags.

use clap::Parser;
use cruncan_accesstoken::TokenSettings;
use cruncan_config::{ConfigArgs, Sources};
use cruncan_db::DatabaseSettings;
use cruncan_kafka::{ConsumerSettings, ProducerSettings};
use serde::Deserialize;
use std::time::Duration;

/// Service two: consumes request events from Kafka, gets an OAuth2 token and posts each request
/// to the third party, with retries, a dead-letter topic and de-duplication.
///
/// Settings come from config/base.yaml, config/<environment>.yaml and APP_* environment
/// variables (APP_KAFKA__CONSUMER__CONCURRENCY=32); the flags below override them.
#[derive(Debug, Clone, Parser)]
#[command(name = "two", version)]
pub struct Cli {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Admin (health) address [config: admin.host]
    #[arg(long)]
    pub admin_host: Option<String>,
    /// Admin (health) port, 0 for any free port [config: admin.port]
    #[arg(long)]
    pub admin_port: Option<u16>,
    /// PostgreSQL URL; overrides the database.* fields it names
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Kafka bootstrap servers [config: kafka.brokers]
    #[arg(long, env = "KAFKA_BROKERS")]
    pub brokers: Option<String>,
    /// Topic to consume [config: kafka.topic]
    #[arg(long)]
    pub topic: Option<String>,
    /// Consumer group [config: kafka.consumer.group_id]
    #[arg(long)]
    pub group_id: Option<String>,
    /// Messages handled at once [config: kafka.consumer.concurrency]
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Token server base URL [config: token.url]
    #[arg(long)]
    pub token_url: Option<String>,
    /// Third-party base URL [config: three.url]
    #[arg(long)]
    pub three_url: Option<String>,
    /// Log filter, e.g. `info,two=debug` (RUST_LOG wins) [config: telemetry.log_filter]
    #[arg(long)]
    pub log_filter: Option<String>,
}

/// Everything service two is configured with. Each section rejects keys it does not know (a
/// misspelt key is a start-up error); the top level cannot, because `APP_ENVIRONMENT` and
/// `APP_CONFIG_DIR` arrive through the same `APP_` prefix.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// Health endpoints.
    pub admin: AdminSettings,
    /// Two's own database (processed ids).
    pub database: DatabaseSettings,
    /// Kafka consumer.
    pub kafka: KafkaSettings,
    /// OAuth2 token client.
    pub token: TokenSettings,
    /// Third-party API.
    pub three: ThirdPartySettings,
    /// De-duplication store.
    pub dedup: DedupSettings,
    /// Logs and telemetry.
    pub telemetry: TelemetrySettings,
}

/// Admin server settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// Bind address.
    pub host: String,
    /// Bind port.
    pub port: u16,
}

/// Kafka settings: the cluster and topic are the service's; the consumer's and the dead-letter
/// producer's tuning are `cruncan_kafka`'s own settings types.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// Bootstrap servers.
    pub brokers: String,
    /// Topic to consume.
    pub topic: String,
    /// Partitions when the topic is created.
    pub partitions: i32,
    /// Replication when the topic is created.
    pub replication: i32,
    /// The group consumer: lanes, retries, dead letters, circuit breaker.
    pub consumer: ConsumerSettings,
    /// The producer of dead letters.
    pub dead_letters: ProducerSettings,
}

/// Third-party API settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThirdPartySettings {
    /// Base URL; requests go to `{url}/three`.
    pub url: String,
    /// Timeout of one call.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Value of the `language` header.
    pub language: String,
}

/// The shortest `dedup.retention` accepted: a zero or tiny one would silently turn
/// de-duplication off.
pub const MIN_DEDUP_RETENTION: Duration = Duration::from_secs(60);

/// De-duplication store settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupSettings {
    /// Processed ids are deleted this long after they were processed; longer than a record can
    /// stay in the topic and than any redrive of dead letters ([`crate::retention`]). At least
    /// [`MIN_DEDUP_RETENTION`].
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
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
            .override_with("admin.host", cli.admin_host.as_ref())
            .override_with("admin.port", cli.admin_port)
            .override_with("kafka.brokers", cli.brokers.as_ref())
            .override_with("kafka.topic", cli.topic.as_ref())
            .override_with("kafka.consumer.group_id", cli.group_id.as_ref())
            .override_with("kafka.consumer.concurrency", cli.concurrency)
            .override_with("token.url", cli.token_url.as_ref())
            .override_with("three.url", cli.three_url.as_ref())
            .override_with("telemetry.log_filter", cli.log_filter.as_ref());
        let mut settings: Settings = cruncan_config::load(&sources)?;
        if let Some(url) = &cli.database_url {
            settings.database.apply_url(url)?;
        }
        settings.validate()?;
        Ok(settings)
    }

    /// Rejects settings that would load but break a guarantee.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.dedup.retention >= MIN_DEDUP_RETENTION,
            "dedup.retention is {:?}: at least {MIN_DEDUP_RETENTION:?}, or redelivered messages reach the third party twice",
            self.dedup.retention
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let dir = cruncan_config::crate_dir!().join("config");
        cruncan_config::load_with_env(dir.to_str().unwrap(), "local", env)
    }

    #[test]
    fn the_defaults_keep_processed_ids_15_days_and_a_tiny_retention_is_refused() {
        let settings = load(&[]).unwrap();
        assert_eq!(settings.dedup.retention, Duration::from_secs(15 * 24 * 3600));
        settings.validate().unwrap();
        for tiny in ["0s", "30s"] {
            let err = load(&[("APP_DEDUP__RETENTION", tiny)]).unwrap().validate().unwrap_err();
            assert!(format!("{err}").contains("dedup.retention"), "{err}");
        }
        load(&[("APP_DEDUP__RETENTION", "1m")]).unwrap().validate().unwrap();
    }
}
