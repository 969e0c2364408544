//! A retention job: deletes `request` rows older than a retention period, in batches, so it never
//! holds long locks or a huge transaction; `--dry-run` only counts. Built to run as a Kubernetes
//! CronJob (`deploy/k8s/cronjob.yaml`): one summary line on stdout, and an exit code the scheduler
//! can act on.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::time::Duration;

/// Exit code: the job did what it was asked.
pub const EXIT_OK: i32 = 0;
/// Exit code: a run-time failure (database unreachable, a statement failed); retrying may help.
pub const EXIT_FAILED: i32 = 1;
/// Exit code: bad arguments or configuration; retrying will not help.
pub const EXIT_USAGE: i32 = 2;

/// What to delete.
#[derive(Debug, Clone)]
pub struct Retention {
    /// Rows created before this are deleted.
    pub cutoff: DateTime<Utc>,
    /// Rows per batch (per transaction).
    pub batch_size: i64,
    /// Count only.
    pub dry_run: bool,
    /// Pause between batches, to leave room for the service's own load.
    pub pause: Duration,
}

/// What the job did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Rows deleted (or, in a dry run, that would be).
    pub rows: u64,
    /// Batches run.
    pub batches: u64,
    /// Whether nothing was deleted on purpose.
    pub dry_run: bool,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.dry_run {
            write!(f, "retention: dry run, would delete {} request rows", self.rows)
        } else {
            write!(f, "retention: deleted {} request rows in {} batches", self.rows, self.batches)
        }
    }
}

// ANCHOR: run
/// Deletes (or counts) the expired rows. Each batch is its own statement: the idempotency keys of
/// the batch go in the same statement (they reference `request`), and `SKIP LOCKED` lets the job
/// run beside the live service and even beside a second copy of itself.
pub async fn run(pool: &PgPool, r: &Retention) -> anyhow::Result<Summary> {
    if r.dry_run {
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM request WHERE created_at < $1")
            .bind(r.cutoff)
            .fetch_one(pool)
            .await
            .context("counting expired rows")?;
        return Ok(Summary { rows: rows as u64, batches: 0, dry_run: true });
    }
    let mut summary = Summary { rows: 0, batches: 0, dry_run: false };
    loop {
        let deleted = sqlx::query(
            "WITH doomed AS (
                 SELECT req_id FROM request WHERE created_at < $1
                 ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED
             ), keys AS (
                 DELETE FROM idempotency_key WHERE req_id IN (SELECT req_id FROM doomed)
             )
             DELETE FROM request WHERE req_id IN (SELECT req_id FROM doomed)",
        )
        .bind(r.cutoff)
        .bind(r.batch_size)
        .execute(pool)
        .await
        .with_context(|| format!("deleting batch {}", summary.batches + 1))?
        .rows_affected();
        if deleted == 0 {
            return Ok(summary);
        }
        summary.rows += deleted;
        summary.batches += 1;
        tracing::info!(batch = summary.batches, deleted, total = summary.rows, "retention batch done");
        tokio::time::sleep(r.pause).await;
    }
}
// ANCHOR_END: run
