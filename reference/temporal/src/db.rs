//! The two databases a worker writes to, on the stack's PostgreSQL (`DATABASE_URL`): the coffee
//! shop's (`temporal_ref`) and the saga participants' (`temporal_saga`, the schemas of
//! `reference/saga`). Two databases, because each has its own migration history.

use cruncan_db::DatabaseSettings;
use sqlx::PgPool;
use std::time::Duration;

/// The coffee shop's database when `DATABASE_URL` names none.
pub const COFFEE_DATABASE: &str = "temporal_ref";
/// The saga participants' database.
pub const SAGA_DATABASE: &str = "temporal_saga";

/// The pools a worker's activities use.
#[derive(Debug, Clone)]
pub struct Stores {
    /// Coffee shop tables ([`crate::MIGRATOR`]).
    pub coffee: PgPool,
    /// Orders, payments, inventory, shipping (`saga::MIGRATOR`).
    pub saga: PgPool,
}

/// Settings from `DATABASE_URL` (or the stack's defaults) for database `name`.
pub fn settings_for(name: &str) -> anyhow::Result<DatabaseSettings> {
    let mut settings = cruncan_db::local_test_settings()?;
    settings.name = name.to_owned();
    Ok(settings)
}

/// Creates both databases if missing, runs their migrations, returns the pools.
pub async fn connect(coffee: &DatabaseSettings, saga: &DatabaseSettings) -> anyhow::Result<Stores> {
    Ok(Stores {
        coffee: migrated(coffee, &crate::MIGRATOR).await?,
        saga: migrated(saga, &saga::MIGRATOR).await?,
    })
}

async fn migrated(settings: &DatabaseSettings, migrator: &sqlx::migrate::Migrator) -> anyhow::Result<PgPool> {
    cruncan_db::ensure_database(settings).await?;
    let pool = settings.lazy_pool();
    cruncan_db::migrate(migrator, &pool, Duration::from_secs(30)).await?;
    Ok(pool)
}
