//! The shop's database: the stack's PostgreSQL (`DATABASE_URL`), database `temporal_ref` unless
//! told otherwise, created and migrated at start.

use crate::MIGRATOR;
use cruncan_db::DatabaseSettings;
use sqlx::PgPool;
use std::time::Duration;

/// The database the examples use when `DATABASE_URL` names none.
pub const DEFAULT_DATABASE: &str = "temporal_ref";

/// Settings from `DATABASE_URL` (or the stack's defaults); `name` overrides the database.
pub fn settings_from_env(name: Option<&str>) -> anyhow::Result<DatabaseSettings> {
    let mut settings = cruncan_db::local_test_settings()?;
    match name {
        Some(name) => settings.name = name.to_owned(),
        None if settings.name == "postgres" => settings.name = DEFAULT_DATABASE.to_owned(),
        None => {}
    }
    Ok(settings)
}

/// Creates the database if missing, runs the migrations, returns a pool.
pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<PgPool> {
    cruncan_db::ensure_database(settings).await?;
    let pool = settings.lazy_pool();
    cruncan_db::migrate(&MIGRATOR, &pool, Duration::from_secs(30)).await?;
    Ok(pool)
}
