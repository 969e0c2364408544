//! PostgreSQL for the services: a pool built from typed settings (never a URL glued from strings),
//! creating the service's database when asked, and isolated databases for tests.

use anyhow::Context as _;
use cruncan_config::{ExposeSecret as _, Secret};
use serde::Deserialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{ConnectOptions as _, Connection as _, PgPool};
use std::time::Duration;

// ANCHOR: settings
/// Database settings, from the service's config (`database:` section).
#[derive(Debug, Clone, Deserialize)]
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
    /// Require TLS (`true` in production).
    #[serde(default)]
    pub require_ssl: bool,
    /// Pool size.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before the service answers 503.
    #[serde(default = "default_acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
    /// Create the database at start-up when it does not exist (local development).
    #[serde(default)]
    pub create_if_missing: bool,
}
// ANCHOR_END: settings

fn default_max_connections() -> u32 {
    16
}

fn default_acquire_timeout_ms() -> u64 {
    2_000
}

impl DatabaseSettings {
    /// Connection options for the configured database.
    pub fn connect_options(&self) -> PgConnectOptions {
        self.server_options().database(&self.name)
    }

    /// Connection options for the server's maintenance database (`postgres`).
    pub fn server_options(&self) -> PgConnectOptions {
        PgConnectOptions::new()
            .host(&self.host)
            .port(self.port)
            .username(&self.username)
            .password(self.password.expose_secret())
            .ssl_mode(if self.require_ssl { PgSslMode::Require } else { PgSslMode::Prefer })
            .log_statements(tracing::log::LevelFilter::Trace)
    }

    /// Overrides host, port, user, password and database name from a `postgres://` URL
    /// (`DATABASE_URL`); the URL's database name wins only when it names one.
    pub fn apply_url(&mut self, url: &str) -> anyhow::Result<()> {
        let opts: PgConnectOptions = url.parse().context("DATABASE_URL is not a valid postgres:// URL")?;
        self.host = opts.get_host().to_owned();
        self.port = opts.get_port();
        self.username = opts.get_username().to_owned();
        if let Some(password) = url_password(url) {
            self.password = Secret::from(password);
        }
        if let Some(db) = opts.get_database().filter(|d| !d.is_empty() && *d != "postgres") {
            self.name = db.to_owned();
        }
        Ok(())
    }

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
            .acquire_timeout(Duration::from_millis(self.acquire_timeout_ms))
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= Duration::from_secs(1) {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(self.connect_options())
    }
    // ANCHOR_END: lazy_pool
}

fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.split_once('@')?.0;
    let pw = userinfo.split_once(':')?.1;
    Some(percent_decode(pw))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `CREATE/DROP DATABASE` cannot take a bind parameter; the name is quoted as an identifier
/// (doubling any `"`), so it cannot break out of the statement.
fn ddl(verb: &str, database: &str, suffix: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(format!(r#"{verb} "{}" {suffix}"#, database.replace('"', "\"\"")))
}

/// Creates the configured database if it does not exist yet.
pub async fn ensure_database(settings: &DatabaseSettings) -> anyhow::Result<()> {
    let mut conn = settings.server_options().database("postgres").connect().await.with_context(|| {
        format!("connecting to PostgreSQL at {}:{} to create {}", settings.host, settings.port, settings.name)
    })?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&settings.name)
        .fetch_one(&mut conn)
        .await?;
    if !exists {
        match sqlx::query(ddl("CREATE DATABASE", &settings.name, "")).execute(&mut conn).await {
            Ok(_) => tracing::info!(database = %settings.name, "database created"),
            // Another replica created it at the same moment.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(e).context("creating database"),
        }
    }
    conn.close().await.ok();
    Ok(())
}

// ANCHOR: migrate
/// Runs `migrator`, retrying while the database is unreachable (a service often starts before its
/// database is ready) until `patience` runs out. Several replicas may run this at once: sqlx
/// serialises them with an advisory lock.
pub async fn migrate(
    migrator: &sqlx::migrate::Migrator,
    pool: &PgPool,
    patience: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut delay = Duration::from_millis(200);
    loop {
        match migrator.run(pool).await {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() + delay < deadline => {
                tracing::warn!(error = %e, ?delay, "database not ready for migrations; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e).context("running database migrations"),
        }
    }
}
// ANCHOR_END: migrate

// ANCHOR: is_unavailable
/// Whether `e` means the database cannot be reached right now (connection refused or lost, pool
/// exhausted, server shutting down): worth a 503 and a retry, unlike a bug in a query.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        // Class 08 (connection exception) and 57P0x (server shutting down).
        sqlx::Error::Database(db) => db.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P0")),
        _ => false,
    }
}
// ANCHOR_END: is_unavailable

/// Checks that the database answers, within `timeout`.
pub async fn ping(pool: &PgPool, timeout: Duration) -> anyhow::Result<()> {
    tokio::time::timeout(timeout, sqlx::query("SELECT 1").execute(pool))
        .await
        .context("database ping timed out")?
        .context("database ping failed")?;
    Ok(())
}

// ANCHOR: test_database
/// Settings of the local stack's server (or `DATABASE_URL`), for tests.
pub fn local_test_settings() -> anyhow::Result<DatabaseSettings> {
    let mut s = DatabaseSettings {
        host: "127.0.0.1".into(),
        port: 15432,
        username: "postgres".into(),
        password: Secret::from("postgres"),
        name: "postgres".into(),
        require_ssl: false,
        max_connections: 8,
        acquire_timeout_ms: 2_000,
        create_if_missing: false,
    };
    if let Ok(url) = std::env::var("DATABASE_URL") {
        s.apply_url(&url)?;
    }
    Ok(s)
}

/// Creates a fresh database named `t_<unix seconds>_<random>` for one test and returns settings
/// pointing at it. Databases of earlier runs older than an hour are dropped on the way, so the
/// server does not fill up while tests never share state.
pub async fn create_test_database(base: &DatabaseSettings) -> anyhow::Result<DatabaseSettings> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let name = format!("t_{now}_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut conn =
        base.server_options().database("postgres").connect().await.context("connecting to PostgreSQL")?;
    let old: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 't\\_%\\_%'")
            .fetch_all(&mut conn)
            .await?;
    for db in old {
        let created = db.split('_').nth(1).and_then(|t| t.parse::<u64>().ok()).unwrap_or(u64::MAX);
        if created.saturating_add(3600) < now {
            let _ = sqlx::query(ddl("DROP DATABASE IF EXISTS", &db, "WITH (FORCE)")).execute(&mut conn).await;
        }
    }
    sqlx::query(ddl("CREATE DATABASE", &name, ""))
        .execute(&mut conn)
        .await
        .context("creating test database")?;
    conn.close().await.ok();
    Ok(DatabaseSettings { name, ..base.clone() })
}
// ANCHOR_END: test_database

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn maintenance_database_in_url_keeps_the_service_database() {
        let mut s = DatabaseSettings { name: "one".into(), ..local_test_settings().unwrap() };
        s.apply_url("postgres://postgres:postgres@127.0.0.1:15432/postgres").unwrap();
        assert_eq!(s.name, "one");
    }
}
