//! Processed ids are kept for `dedup.retention`, then deleted by a task beside the consumer.
//! Without it the de-duplication table grows by every request ever delivered.
//!
//! The retention must outlast every way a message can come back. Kafka deletes a log segment only
//! when its newest record is past `retention.ms` (7 days by default), and segments roll every
//! `segment.ms` (also 7 days): a record of a quiet partition can be read for about 14 days, and a
//! group whose offsets expired (`offsets.retention.minutes`, 7 days of being empty) starts again
//! from the earliest one. A redrive of dead letters can come later still. An id deleted earlier
//! is delivered to the third party again. The default is 15 days.

use anyhow::Context as _;
use cruncan_db::Pruning;
use cruncan_shutdown::Shutdown;
use sqlx::PgPool;
use std::time::Duration;

/// Smallest ids looked at per statement: a short statement, few locks.
const CHUNK: i64 = 5_000;

// ANCHOR: delete_expired
/// Deletes the ids processed more than `retention` ago among the `head` smallest ids, and returns
/// how many.
///
/// Request ids are zero-padded Snowflake ids, which sort by the time one accepted the request, so
/// the expired ids are the smallest: walking the primary key from the smallest reads at most
/// `head` rows whatever the table's size, and needs no index on the time (which every insert would
/// pay for, and which a migration would have to build on a table that may be large by then).
/// Ids processed late (a backlog, a redrive) can sit young among old ones; deleting then waits
/// behind them, at most until they expire too. Planned each time (`persistent(false)`).
pub async fn delete_expired(pool: &PgPool, retention: Duration, head: i64) -> anyhow::Result<u64> {
    let deleted = sqlx::query(
        "DELETE FROM processed_request WHERE request_id = ANY(ARRAY(
             SELECT request_id FROM (
                 SELECT request_id, processed_at FROM processed_request ORDER BY request_id LIMIT $2
             ) AS smallest
             WHERE processed_at < now() - make_interval(secs => $1)))",
    )
    .bind(retention.as_secs_f64())
    .bind(head)
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
