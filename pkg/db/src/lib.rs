//! PostgreSQL for the services: a pool built from typed settings (never a URL glued from strings),
//! creating the service's database when asked, isolated databases for tests, a connection kept
//! by a busy task ([`KeptConnection`]), and the loop that trims expired rows beside a service
//! ([`Pruning`], which is why this crate knows the shutdown signal).

mod kept;
mod prune;
mod settings;

pub use kept::KeptConnection;
pub use prune::Pruning;
pub use settings::{DatabaseSettings, URL_PARAMETERS};
pub use sqlx::postgres::PgSslMode;

use anyhow::Context as _;
use backon::{ExponentialBuilder, Retryable as _};
use cruncan_config::Secret;
use sqlx::{ConnectOptions as _, Connection as _, PgPool};
use std::time::Duration;

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
/// database is ready) with exponential backoff from 200 ms to 5 s until the waits add up to
/// `patience`. Several replicas may run this at once: sqlx serialises them with an advisory lock.
pub async fn migrate(
    migrator: &sqlx::migrate::Migrator,
    pool: &PgPool,
    patience: Duration,
) -> anyhow::Result<()> {
    let backoff = ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_total_delay(Some(patience))
        .without_max_times();
    (|| migrator.run(pool))
        .retry(backoff)
        .notify(|e, delay| tracing::warn!(error = %e, ?delay, "database not ready for migrations; retrying"))
        .await
        .context("running database migrations")
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

/// A pooled connection idle this long is pinged before it is handed out ([`DatabaseSettings::lazy_pool`]);
/// one used more recently has just proven itself.
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

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
        ssl_mode: PgSslMode::Prefer,
        ssl_root_cert: None,
        application_name: None,
        max_connections: 8,
        acquire_timeout: Duration::from_secs(2),
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
    drop_test_databases_older_than(base, Duration::from_secs(3600)).await?;
    let mut conn =
        base.server_options().database("postgres").connect().await.context("connecting to PostgreSQL")?;
    sqlx::query(ddl("CREATE DATABASE", &name, ""))
        .execute(&mut conn)
        .await
        .context("creating test database")?;
    conn.close().await.ok();
    Ok(DatabaseSettings { name, ..base.clone() })
}
// ANCHOR_END: test_database

/// Drops the test databases ([`create_test_database`]) created more than `age` ago and returns
/// how many. A test uses its database for seconds to minutes; the benchmark clears them after
/// ten minutes, because autovacuum visits every database once a minute and a thousand of them
/// take CPU from whatever is measured.
pub async fn drop_test_databases_older_than(base: &DatabaseSettings, age: Duration) -> anyhow::Result<usize> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let mut conn =
        base.server_options().database("postgres").connect().await.context("connecting to PostgreSQL")?;
    let old: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 't\\_%\\_%'")
            .fetch_all(&mut conn)
            .await?;
    let mut dropped = 0;
    for db in old {
        let created = db.split('_').nth(1).and_then(|t| t.parse::<u64>().ok()).unwrap_or(u64::MAX);
        if created.saturating_add(age.as_secs()) < now
            && sqlx::query(ddl("DROP DATABASE IF EXISTS", &db, "WITH (FORCE)"))
                .execute(&mut conn)
                .await
                .is_ok()
        {
            dropped += 1;
        }
    }
    conn.close().await.ok();
    Ok(dropped)
}

/// How a table has been read, as `pg_stat_user_tables` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableScans {
    /// Rows read by sequential scans.
    pub seq_rows_read: i64,
    /// Index scans started.
    pub index_scans: i64,
}

// ANCHOR: table_scans
/// How `table` (`schema.table`, or a table in `public`) has been read so far, once at least `index_scans` index scans show or `within`
/// passes. A backend reports its counts when it has been idle a moment or when it ends, so a test
/// closes the connections it measures first. For tests that prove a query keeps using its index.
pub async fn table_scans(
    pool: &PgPool,
    table: &str,
    index_scans: i64,
    within: Duration,
) -> anyhow::Result<TableScans> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        // `schema.table`, or a table of the search path's first schema (`public`).
        let (schema, name) = table.split_once('.').unwrap_or(("public", table));
        let (seq_rows_read, seen): (i64, i64) = sqlx::query_as(
            "SELECT coalesce(seq_tup_read, 0), coalesce(idx_scan, 0)
             FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = $2",
        )
        .bind(schema)
        .bind(name)
        .fetch_one(pool)
        .await
        .with_context(|| format!("reading the scan statistics of {table}"))?;
        if seen >= index_scans || tokio::time::Instant::now() >= deadline {
            return Ok(TableScans { seq_rows_read, index_scans: seen });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
// ANCHOR_END: table_scans
