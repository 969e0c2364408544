//! A retry job that several replicas run at once: every interval each replica lists the failed
//! transactions, and for each one takes a Redis lock named `<prefix><id>` (Redlock, via
//! `rslock`), re-reads the row inside the lock, retries the downstream call, records the outcome
//! and releases the lock. A replica that dies holding a lock blocks that row only until the lock's
//! TTL passes.
//!
//! What the lock does *not* give: a guarantee. A replica paused longer than the TTL (GC, a stalled
//! VM) can still believe it holds a lock another replica has taken — Redlock has no fencing token.
//! So the downstream call carries an `Idempotency-Key`, its timeout is well under the TTL, and the
//! outcome is written with a conditional `UPDATE … WHERE status = 'failed'`.

use anyhow::Context as _;
use cruncan_shutdown::Shutdown;
use rslock::{LockError, LockManager};
use sqlx::PgPool;
use std::time::Duration;

/// The job's migrations (the `failed_transaction` table).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Job settings.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// Lock names are `<lock_prefix><row id>`.
    pub lock_prefix: String,
    /// How long a lock lives if its holder dies; must exceed the downstream timeout comfortably.
    pub lock_ttl: Duration,
    /// Where failed transactions are sent again (`POST`, JSON payload).
    pub downstream_url: String,
    /// Timeout of one downstream call.
    pub downstream_timeout: Duration,
    /// Pause between rounds.
    pub interval: Duration,
}

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// Rows retried successfully.
    pub succeeded: u32,
    /// Rows whose retry failed again.
    pub failed: u32,
    /// Rows another replica held the lock for.
    pub skipped_locked: u32,
    /// Rows done by someone else between listing and locking.
    pub skipped_done: u32,
}

/// One replica of the job.
pub struct RetryJob {
    pool: PgPool,
    locks: LockManager,
    http: reqwest::Client,
    cfg: JobConfig,
}

impl std::fmt::Debug for RetryJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryJob").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

impl RetryJob {
    /// A replica over `pool`, locking on the Redis servers `redis_urls`.
    pub fn new(pool: PgPool, redis_urls: Vec<String>, cfg: JobConfig) -> anyhow::Result<Self> {
        let mut locks = LockManager::new(redis_urls);
        // One attempt per row and round: a busy row is someone else's this round.
        locks.set_retry(1, Duration::from_millis(0));
        let http = reqwest::Client::builder().timeout(cfg.downstream_timeout).build()?;
        Ok(Self { pool, locks, http, cfg })
    }

    /// Rounds until `shutdown`.
    pub async fn run(&self, shutdown: Shutdown) {
        while !shutdown.is_triggered() {
            match self.run_once().await {
                Ok(r) => tracing::info!(?r, "retry round done"),
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "retry round failed"),
            }
            tokio::select! {
                () = shutdown.wait() => return,
                () = tokio::time::sleep(self.cfg.interval) => {}
            }
        }
    }

    // ANCHOR: run_once
    /// One round over every failed row.
    pub async fn run_once(&self) -> anyhow::Result<Round> {
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM failed_transaction WHERE status = 'failed' ORDER BY id")
                .fetch_all(&self.pool)
                .await
                .context("listing failed transactions")?;
        let mut round = Round::default();
        for id in ids {
            let name = format!("{}{id}", self.cfg.lock_prefix);
            let lock = match self.locks.lock(name.as_bytes(), self.cfg.lock_ttl).await {
                Ok(lock) => lock,
                Err(LockError::Unavailable) => {
                    round.skipped_locked += 1;
                    continue;
                }
                Err(e) => return Err(anyhow::anyhow!("locking {name}: {e}")),
            };
            let outcome = self.retry_locked(id).await;
            // Release even when the retry failed; a crash instead leaves it to the TTL.
            self.locks.unlock(&lock).await;
            match outcome? {
                Some(true) => round.succeeded += 1,
                Some(false) => round.failed += 1,
                None => round.skipped_done += 1,
            }
        }
        Ok(round)
    }

    /// Inside the lock: re-read, call, record. `None` when the row was no longer failed.
    async fn retry_locked(&self, id: i64) -> anyhow::Result<Option<bool>> {
        // Another replica may have finished it between our listing and our lock.
        let payload: Option<serde_json::Value> =
            sqlx::query_scalar("SELECT payload FROM failed_transaction WHERE id = $1 AND status = 'failed'")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        let Some(payload) = payload else { return Ok(None) };
        let sent = self
            .http
            .post(&self.cfg.downstream_url)
            .header("idempotency-key", format!("failed-transaction-{id}"))
            .json(&payload)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        let ok = sent.is_ok();
        sqlx::query(
            "UPDATE failed_transaction
             SET status = CASE WHEN $2 THEN 'done' ELSE 'failed' END, attempts = attempts + 1,
                 last_error = $3, updated_at = now()
             WHERE id = $1 AND status = 'failed'",
        )
        .bind(id)
        .bind(ok)
        .bind(sent.err().map(|e| e.to_string()))
        .execute(&self.pool)
        .await
        .context("recording the outcome")?;
        Ok(Some(ok))
    }
    // ANCHOR_END: run_once
}
