//! Processed ids are kept for `dedup.retention`, then deleted by a task beside the consumer.
//! Without it the de-duplication table grows by every request ever delivered.
//!
//! The retention must outlast every way a message can come back: the topic's own retention (a
//! consumer group reset or a new group reads from there), and a redrive of dead letters, which
//! can come days later. An id deleted earlier is delivered to the third party again. The default
//! is 8 days, one more than Kafka's default topic retention.

use anyhow::Context as _;
use cruncan_db::Pruning;
use cruncan_shutdown::Shutdown;
use sqlx::PgPool;
use std::time::Duration;

/// Ids deleted per statement at most: a short statement, few locks.
const CHUNK: i64 = 5_000;

// ANCHOR: delete_expired
/// Deletes up to `chunk` ids processed more than `retention` ago, oldest first, and returns how
/// many. The index on `processed_at` finds them, so a statement costs the same on any table size.
/// Planned each time (`persistent(false)`), as every statement here that meets a growing table.
pub async fn delete_expired(pool: &PgPool, retention: Duration, chunk: i64) -> anyhow::Result<u64> {
    let deleted = sqlx::query(
        "DELETE FROM processed_request WHERE request_id = ANY(ARRAY(
             SELECT request_id FROM processed_request
             WHERE processed_at < now() - make_interval(secs => $1)
             ORDER BY processed_at LIMIT $2))",
    )
    .bind(retention.as_secs_f64())
    .bind(chunk)
    .persistent(false)
    .execute(pool)
    .await
    .context("deleting expired processed ids")?;
    Ok(deleted.rows_affected())
}
// ANCHOR_END: delete_expired

/// Deletes expired processed ids every few seconds until `shutdown`.
pub async fn run(pool: PgPool, retention: Duration, shutdown: Shutdown) {
    Pruning::for_retention(retention)
        .run("processed ids", shutdown, || delete_expired(&pool, retention, CHUNK))
        .await;
}
