//! Each participant's inbox (`<schema>.inbox`) remembers the events it handled, so a redelivered
//! event changes nothing. An event can only come back while Kafka still has it, so inbox rows are
//! deleted once they are older than the inbox retention: longer than a record can stay in the
//! topic (`retention.ms` + `segment.ms`, about 14 days with Kafka's defaults) and than any redrive
//! of dead letters (a row deleted earlier lets its event act twice; the steps' own idempotency
//! keys still stop a second charge).

use anyhow::Context as _;
use cruncan_db::Pruning;
use cruncan_shutdown::Shutdown;
use sqlx::PgPool;
use std::time::Duration;

/// 15 days: longer than a record can stay in a topic with Kafka's defaults.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(15 * 24 * 3600);

/// Rows deleted per statement at most.
const CHUNK: i64 = 5_000;

/// Deletes up to `chunk` rows of `schema`'s inbox received more than `retention` ago, oldest
/// first (through the index on `received_at`), and returns how many.
pub async fn delete_expired(
    pool: &PgPool,
    schema: &str,
    retention: Duration,
    chunk: i64,
) -> anyhow::Result<u64> {
    // `schema` is one of the participants' constant schema names, never input.
    let deleted = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {schema}.inbox WHERE event_id = ANY(ARRAY(
             SELECT event_id FROM {schema}.inbox
             WHERE received_at < now() - make_interval(secs => $1)
             ORDER BY received_at LIMIT $2))"
    )))
    .bind(retention.as_secs_f64())
    .bind(chunk)
    .persistent(false)
    .execute(pool)
    .await
    .with_context(|| format!("deleting expired rows of {schema}.inbox"))?;
    Ok(deleted.rows_affected())
}

/// Deletes expired rows of `schema`'s inbox every few seconds until `shutdown`.
pub async fn run(pool: PgPool, schema: &'static str, retention: Duration, shutdown: Shutdown) {
    let what = format!("rows of {schema}.inbox");
    Pruning::for_retention(retention)
        .run(&what, shutdown, || delete_expired(&pool, schema, retention, CHUNK))
        .await;
}
