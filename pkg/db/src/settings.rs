//! [`DatabaseSettings`]: the `database:` section of a service's config, `DATABASE_URL` applied
//! on top, and the connection options and pool built from them.

use anyhow::Context as _;
use cruncan_config::{ExposeSecret as _, Secret};
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{ConnectOptions as _, PgPool};
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

// ANCHOR: settings
/// Database settings, from the service's config (`database:` section). A key it does not know is
/// an error; `acquire_timeout` is a humantime string (`2s`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// User name.
    pub username: String,
    /// Password (never printed).
    pub password: Secret,
    /// Database name.
    pub name: String,
    /// TLS, as libpq's `sslmode`: `disable`, `allow`, `prefer` (the default), `require`,
    /// `verify-ca` or `verify-full` (production: certificate and host name checked).
    #[serde(default = "default_ssl_mode", deserialize_with = "ssl_mode")]
    pub ssl_mode: PgSslMode,
    /// CA certificate(s) to verify the server with (`sslrootcert`), for `verify-ca`/`verify-full`.
    #[serde(default)]
    pub ssl_root_cert: Option<PathBuf>,
    /// `application_name`, shown in `pg_stat_activity`.
    #[serde(default)]
    pub application_name: Option<String>,
    /// Pool size.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before the service answers 503.
    #[serde(default = "default_acquire_timeout", with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// Create the database at start-up when it does not exist (local development).
    #[serde(default)]
    pub create_if_missing: bool,
}
// ANCHOR_END: settings

fn default_ssl_mode() -> PgSslMode {
    PgSslMode::Prefer
}

fn ssl_mode<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PgSslMode, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(serde::de::Error::custom)
}

fn default_max_connections() -> u32 {
    16
}

fn default_acquire_timeout() -> Duration {
    Duration::from_secs(2)
}

/// The `DATABASE_URL` query parameters [`DatabaseSettings::apply_url`] understands; any other is
/// an error rather than a setting silently dropped.
pub const URL_PARAMETERS: [&str; 3] = ["sslmode", "sslrootcert", "application_name"];

impl DatabaseSettings {
    /// Connection options for the configured database.
    pub fn connect_options(&self) -> PgConnectOptions {
        self.server_options().database(&self.name)
    }

    /// Connection options for the server's maintenance database (`postgres`).
    pub fn server_options(&self) -> PgConnectOptions {
        let mut options = PgConnectOptions::new()
            .host(&self.host)
            .port(self.port)
            .username(&self.username)
            .password(self.password.expose_secret())
            .ssl_mode(self.ssl_mode)
            .log_statements(tracing::log::LevelFilter::Trace);
        if let Some(cert) = &self.ssl_root_cert {
            options = options.ssl_root_cert(cert);
        }
        if let Some(name) = &self.application_name {
            options = options.application_name(name);
        }
        options
    }

    // ANCHOR: apply_url
    /// Overrides the fields a `postgres://` URL (`DATABASE_URL`) names: host, port, user, password
    /// (percent-decoded), database name (only when it names one other than `postgres`) and the
    /// query parameters in [`URL_PARAMETERS`]. A parameter outside that list is an error.
    pub fn apply_url(&mut self, raw: &str) -> anyhow::Result<()> {
        let url = Url::parse(raw).context("DATABASE_URL is not a valid URL")?;
        anyhow::ensure!(
            matches!(url.scheme(), "postgres" | "postgresql"),
            "DATABASE_URL must start with postgres:// (got {}://)",
            url.scheme()
        );
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        if let Some(host) = url.host_str().filter(|h| !h.is_empty()) {
            self.host = decode(host);
        }
        if let Some(port) = url.port() {
            self.port = port;
        }
        if !url.username().is_empty() {
            self.username = decode(url.username());
        }
        if let Some(password) = url.password() {
            self.password = Secret::from(decode(password));
        }
        let db = decode(url.path().trim_start_matches('/'));
        if !db.is_empty() && db != "postgres" {
            self.name = db;
        }
        for (key, value) in url.query_pairs() {
            match &*key {
                "sslmode" => {
                    self.ssl_mode = value.parse().with_context(|| format!("DATABASE_URL sslmode={value}"))?;
                }
                "sslrootcert" => self.ssl_root_cert = Some(PathBuf::from(&*value)),
                "application_name" => self.application_name = Some(value.into_owned()),
                other => anyhow::bail!(
                    "DATABASE_URL parameter {other:?} is not supported here (supported: {})",
                    URL_PARAMETERS.join(", ")
                ),
            }
        }
        Ok(())
    }
    // ANCHOR_END: apply_url

    /// A pool that connects lazily: the service starts (and answers `/healthz`) even while the
    /// database is down, and requests get 503 until it is back.
    ///
    /// A connection is pinged on checkout only when it sat idle for a second or more: a ping on
    /// every checkout is a round trip per query (a third of a small request's database time),
    /// while a connection in constant use has just proven itself. One that broke anyway fails
    /// its query, which is retryable (503), and is discarded.
    // ANCHOR: lazy_pool
    pub fn lazy_pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= crate::PING_AFTER_IDLE {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(self.connect_options())
    }
    // ANCHOR_END: lazy_pool
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local_test_settings;

    #[test]
    fn url_overrides_fields_and_decodes_the_password() {
        let mut s = local_test_settings().unwrap();
        s.apply_url("postgres://app:p%40ss%3Aw0rd@db.internal:6543/orders").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.username.as_str(), s.name.as_str()),
            ("db.internal", 6543, "app", "orders")
        );
        assert_eq!(s.password.expose_secret(), "p@ss:w0rd");
        assert!(!format!("{s:?}").contains("p@ss"), "password must not print");
        assert!(s.apply_url("not a url").is_err());
        assert!(s.apply_url("mysql://u:p@h/db").is_err());
    }

    #[test]
    fn url_parameters_reach_the_connect_options() {
        let mut s = local_test_settings().unwrap();
        s.apply_url(
            "postgres://app:pw@db.internal:6543/orders?sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=one",
        )
        .unwrap();
        let opts = s.connect_options();
        assert!(matches!(opts.get_ssl_mode(), PgSslMode::VerifyFull), "{:?}", opts.get_ssl_mode());
        assert_eq!(opts.get_application_name(), Some("one"));
        assert_eq!(
            (opts.get_host(), opts.get_port(), opts.get_database()),
            ("db.internal", 6543, Some("orders"))
        );
        assert_eq!(s.ssl_root_cert.as_deref(), Some(std::path::Path::new("/etc/ca.pem")));
    }

    #[test]
    fn an_unknown_url_parameter_is_an_error_not_dropped() {
        let mut s = local_test_settings().unwrap();
        let err = s.apply_url("postgres://u:p@h/db?sslmode=require&connect_timeout=5").unwrap_err();
        assert!(format!("{err:#}").contains("connect_timeout"), "{err:#}");
        assert!(
            s.apply_url("postgres://u:p@h/db?sslmode=sometimes").is_err(),
            "an invalid sslmode is an error"
        );
    }

    #[test]
    fn settings_deserialize_with_humantime_and_reject_unknown_keys() {
        let yaml = "{host: h, port: 1, username: u, password: p, name: n, ssl_mode: verify-full, acquire_timeout: 500ms}";
        let s: DatabaseSettings = serde_yaml_ng::from_str(yaml).unwrap();
        assert!(matches!(s.ssl_mode, PgSslMode::VerifyFull));
        assert_eq!(s.acquire_timeout, Duration::from_millis(500));
        let misspelt = "{host: h, port: 1, username: u, password: p, name: n, require_ssl: true}";
        let err = serde_yaml_ng::from_str::<DatabaseSettings>(misspelt).unwrap_err();
        assert!(err.to_string().contains("require_ssl"), "{err}");
    }

    #[test]
    fn maintenance_database_in_url_keeps_the_service_database() {
        let mut s = DatabaseSettings { name: "one".into(), ..local_test_settings().unwrap() };
        s.apply_url("postgres://postgres:postgres@127.0.0.1:15432/postgres").unwrap();
        assert_eq!(s.name, "one");
    }
}
