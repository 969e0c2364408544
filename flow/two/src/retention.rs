//! Processed ids are kept for `dedup.retention`, then deleted by a task beside the consumer.
//! Without it the de-duplication table grows by every request ever delivered.
//!
//! The retention must outlast every way a message can come back. Kafka deletes a log segment only
//! when its newest record is past `retention.ms` (7 days by default), and segments roll every
//! `segment.ms` (also 7 days): a record of a quiet partition can be read for about 14 days, and a
//! group whose offsets expired (`offsets.retention.minutes`, 7 days of being empty) starts again
//! from the earliest one. A redrive of dead letters can come later still. An id deleted earlier
//! is delivered to the third party again. The default is 15 days.
//!
//! Ids that are not Snowflake ids (20 digits) sort outside the walk and are never deleted; one
//! only sends Snowflake ids.

use anyhow::Context as _;
use cruncan_db::Pruning;
use cruncan_id::Id;
use cruncan_shutdown::Shutdown;
use sqlx::PgPool;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Ids looked at per statement: a short statement, few locks.
const WINDOW: i64 = 5_000;

/// What one statement did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Ids deleted.
    pub deleted: u64,
    /// The largest id looked at; `None` when the window was empty (the walk reached its end).
    pub last: Option<String>,
}

// ANCHOR: delete_expired
/// Looks at the `window` smallest ids above `after` and below `below`, deletes those processed
/// more than `retention` ago, and says how many and where it stopped.
///
/// Request ids are zero-padded Snowflake ids, which sort by the time one accepted the request. An
/// id made after the cutoff was processed after it too, so only ids below the first id of the
/// cutoff time ([`Id::first_at`]) can be expired: the walk never reads the young part of the
/// table, and needs no index on the time (which every insert would pay for, and which a migration
/// would have to build on a table that may be large by then). Ids processed late (a backlog, a
/// redrive) are young among old ones: the walk steps over them, and meets them again on its next
/// pass from the start. Planned each time (`persistent(false)`).
pub async fn delete_expired(
    pool: &PgPool,
    retention: Duration,
    after: &str,
    below: &str,
    window: i64,
) -> anyhow::Result<Window> {
    let (deleted, last): (i64, Option<String>) = sqlx::query_as(
        "WITH walked AS (
             SELECT request_id, processed_at FROM processed_request
             WHERE request_id > $3 AND request_id < $4 ORDER BY request_id LIMIT $2),
         gone AS (
             DELETE FROM processed_request p USING walked w
             WHERE p.request_id = w.request_id AND w.processed_at < now() - make_interval(secs => $1)
             RETURNING 1)
         SELECT (SELECT count(*) FROM gone), (SELECT max(request_id) FROM walked)",
    )
    .bind(retention.as_secs_f64())
    .bind(window)
    .bind(after)
    .bind(below)
    .persistent(false)
    .fetch_one(pool)
    .await
    .context("deleting expired processed ids")?;
    Ok(Window { deleted: deleted.unsigned_abs(), last })
}
// ANCHOR_END: delete_expired

/// The first id made `retention` ago, as the 20 digits ids are written in.
pub fn first_id_since(retention: Duration) -> anyhow::Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.saturating_sub(retention);
    let ms = u64::try_from(now.as_millis())?;
    Ok(Id::first_at(ms).context("the cutoff is outside the Snowflake time range")?.to_string())
}

/// Walks the expired ids every few seconds until `shutdown`, each visit going on from where the
/// last one stopped, back to the smallest id once it reaches the cutoff.
pub async fn run(pool: PgPool, retention: Duration, shutdown: Shutdown) {
    let cursor = Arc::new(Mutex::new(String::new()));
    Pruning::for_retention(retention)
        .run("processed ids", shutdown, || {
            let (pool, cursor) = (pool.clone(), Arc::clone(&cursor));
            async move {
                let after = cursor.lock().unwrap_or_else(PoisonError::into_inner).clone();
                let walked =
                    delete_expired(&pool, retention, &after, &first_id_since(retention)?, WINDOW).await?;
                let looked_at = walked.last.is_some();
                // At the end of the expired part: start again from the smallest id next time.
                *cursor.lock().unwrap_or_else(PoisonError::into_inner) = walked.last.unwrap_or_default();
                // Not the rows deleted: a window of late, young ids deletes nothing, and the walk
                // must go on past it. A visit ends at the walk's end.
                Ok(u64::from(looked_at))
            }
        })
        .await;
}
