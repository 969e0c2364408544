//! Sent outbox rows are kept for `outbox.retention` after they were written (what was published,
//! when, after how many attempts), then deleted by a task beside the relay. Without it the table
//! only grows: a million rows a quarter of an hour at 1,000 requests a second.
//!
//! - Deleting runs in its own task, on a connection of its own from the service's pool, in
//!   chunks, so the relay never waits behind a large `DELETE`.
//! - Rows still pending are never deleted, however old: they have not been published yet.
//! - Several replicas may prune at once: one waits for the other's chunk, then finds its rows gone.
//! - Age is `created_at`, written by the service, against the database's clock: keep clocks in
//!   sync (a replica whose clock runs an hour ahead has its rows kept an hour longer).

use crate::Table;
use anyhow::Context as _;
use cruncan_db::Pruning;
use cruncan_shutdown::Shutdown;
use sqlx::PgPool;
use std::time::Duration;

/// Oldest rows looked at per statement: small enough to hold locks briefly, large enough to keep
/// up (20 × 5,000 rows per visit every 10 s: 10,000 rows a second; [`Pruning::for_retention`]).
const CHUNK: i64 = 5_000;

// ANCHOR: delete_sent
/// Deletes the sent rows of `table` written more than `retention` ago among its `head` oldest
/// rows, and returns how many.
///
/// Rows are written in id order, so the expired ones are the oldest ids: walking the primary key
/// from the oldest row reads at most `head` rows whatever the table's size, even when a backlog of
/// pending rows lies ahead (a broker outage). A condition on the time alone (`WHERE created_at <
/// …`) would read the whole table, or need an index on the time that every insert pays for.
/// Planned each time (`persistent(false)`): a generic plan knows neither the limit nor the array,
/// and may scan the table.
pub async fn delete_sent(
    pool: &PgPool,
    table: &Table,
    retention: Duration,
    head: i64,
) -> anyhow::Result<u64> {
    let deleted = sqlx::query(table.sql(
        "DELETE FROM {outbox} WHERE id = ANY(ARRAY(
             SELECT id FROM (SELECT id, created_at, sent_at FROM {outbox} ORDER BY id LIMIT $2) AS oldest
             WHERE sent_at IS NOT NULL AND created_at < now() - make_interval(secs => $1)))",
    ))
    .bind(retention.as_secs_f64())
    .bind(head)
    .persistent(false)
    .execute(pool)
    .await
    .with_context(|| format!("deleting expired rows of {table}"))?;
    Ok(deleted.rows_affected())
}
// ANCHOR_END: delete_sent

/// Deletes expired sent rows of `table` every few seconds until `shutdown`, until a chunk finds
/// nothing expired: the oldest rows are then young, or still pending.
pub(crate) async fn run(pool: PgPool, table: Table, retention: Duration, shutdown: Shutdown) {
    let what = format!("sent rows of outbox {table}");
    Pruning::for_retention(retention)
        .run(&what, shutdown, || delete_sent(&pool, &table, retention, CHUNK))
        .await;
}
