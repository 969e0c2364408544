//! A retry job that several replicas run at once: every interval each replica lists the failed
//! transactions that are due, and for each one takes a Redis lock named `<prefix><id>` (Redlock,
//! via `rslock`), claims the row inside the lock (counts the attempt and moves `next_attempt_at`
//! past the backoff), retries the downstream call, records the outcome and releases the lock. A
//! replica that dies holding a lock blocks that row only until the lock's TTL passes. A row that
//! keeps failing is retried with backoff and, after `max_attempts`, parked for an operator.
//!
//! What the lock does *not* give: a guarantee. A replica paused longer than the TTL (GC, a stalled
//! VM) can still believe it holds a lock another replica has taken — Redlock has no fencing token.
//! So the claim is a conditional `UPDATE` (the database is the fence: one claim per row and
//! backoff period, lock or no lock), the downstream call carries an `Idempotency-Key`, and its
//! timeout is well under the TTL.

mod policy;

pub use policy::RetryPolicy;

use anyhow::Context as _;
use cruncan_shutdown::Shutdown;
use rslock::{LockError, LockManager};
use sqlx::PgPool;
use std::time::Duration;

/// The job's migrations (the `failed_transaction` table).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Job settings.
#[derive(Debug, Clone)]
pub struct JobSettings {
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
    /// Backoff and cap of a row that keeps failing.
    pub retry: RetryPolicy,
}

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// Rows retried successfully.
    pub succeeded: u32,
    /// Rows whose retry failed again; they are due again after their backoff.
    pub failed: u32,
    /// Rows that failed their last allowed attempt (or were found exhausted) and are now parked.
    pub parked: u32,
    /// Rows another replica held the lock for.
    pub skipped_locked: u32,
    /// Rows another replica finished or attempted between our listing and our lock.
    pub skipped_not_due: u32,
}

/// What happened to one row inside its lock.
enum Outcome {
    Succeeded,
    Failed,
    Parked,
    NotDue,
}

/// One replica of the job.
pub struct RetryJob {
    pool: PgPool,
    locks: LockManager,
    http: reqwest::Client,
    cfg: JobSettings,
}

impl std::fmt::Debug for RetryJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryJob").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

impl RetryJob {
    /// A replica over `pool`, locking on the Redis servers `redis_urls`.
    pub fn new(pool: PgPool, redis_urls: Vec<String>, cfg: JobSettings) -> anyhow::Result<Self> {
        // A row claimed in one round must not be due again in the next one of another replica.
        anyhow::ensure!(
            cfg.retry.first_backoff >= cfg.interval,
            "retry.first_backoff ({:?}) must be at least the interval ({:?})",
            cfg.retry.first_backoff,
            cfg.interval
        );
        anyhow::ensure!(cfg.retry.max_attempts >= 1, "retry.max_attempts must be at least 1");
        anyhow::ensure!(
            cfg.downstream_timeout < cfg.lock_ttl,
            "downstream_timeout must be shorter than lock_ttl, or a lock can expire mid-call"
        );
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
    /// One round over every failed row that is due.
    pub async fn run_once(&self) -> anyhow::Result<Round> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM failed_transaction
             WHERE status = 'failed' AND next_attempt_at <= now() ORDER BY id",
        )
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
                Outcome::Succeeded => round.succeeded += 1,
                Outcome::Failed => round.failed += 1,
                Outcome::Parked => round.parked += 1,
                Outcome::NotDue => round.skipped_not_due += 1,
            }
        }
        Ok(round)
    }

    /// Inside the lock: claim, call, record.
    async fn retry_locked(&self, id: i64) -> anyhow::Result<Outcome> {
        let (attempt, payload) = match self.claim(id).await? {
            Claim::NotDue => return Ok(Outcome::NotDue),
            Claim::Exhausted => return Ok(Outcome::Parked),
            Claim::Attempt { attempt, payload } => (attempt, payload),
        };
        let sent = self
            .http
            .post(&self.cfg.downstream_url)
            .header("idempotency-key", format!("failed-transaction-{id}"))
            .json(&payload)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        match sent {
            Ok(_) => {
                // The call went through: done, whoever holds the row now.
                sqlx::query(
                    "UPDATE failed_transaction SET status = 'done', last_error = NULL, updated_at = now()
                     WHERE id = $1 AND status = 'failed'",
                )
                .bind(id)
                .execute(&self.pool)
                .await
                .context("recording the success")?;
                Ok(Outcome::Succeeded)
            }
            Err(e) => {
                let park = self.cfg.retry.exhausted(attempt);
                // Only our own attempt's outcome: a later claim (after a lost lock) owns the row.
                sqlx::query(
                    "UPDATE failed_transaction
                     SET status = CASE WHEN $3 THEN 'parked' ELSE 'failed' END, last_error = $4,
                         updated_at = now()
                     WHERE id = $1 AND status = 'failed' AND attempts = $2",
                )
                .bind(id)
                .bind(i32::try_from(attempt)?)
                .bind(park)
                .bind(e.to_string())
                .execute(&self.pool)
                .await
                .context("recording the failure")?;
                if park {
                    tracing::warn!(id, attempt, error = %e, "failed transaction parked: retries exhausted");
                    Ok(Outcome::Parked)
                } else {
                    Ok(Outcome::Failed)
                }
            }
        }
    }

    /// Counts the attempt and moves `next_attempt_at` past the backoff *before* the call, with a
    /// compare-and-set on `attempts`: whoever lists the row afterwards — this round or a replica
    /// whose lock expired — finds it not due. A row found with every attempt used (its last
    /// attempt's replica died before recording) is parked instead.
    async fn claim(&self, id: i64) -> anyhow::Result<Claim> {
        let used: Option<i32> = sqlx::query_scalar(
            "SELECT attempts FROM failed_transaction
             WHERE id = $1 AND status = 'failed' AND next_attempt_at <= now()",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .context("reading the row")?;
        let Some(used) = used else { return Ok(Claim::NotDue) };
        let used_attempts = u32::try_from(used).unwrap_or(0);
        if self.cfg.retry.exhausted(used_attempts) {
            let parked = sqlx::query(
                "UPDATE failed_transaction SET status = 'parked', updated_at = now()
                 WHERE id = $1 AND status = 'failed' AND attempts = $2",
            )
            .bind(id)
            .bind(used)
            .execute(&self.pool)
            .await
            .context("parking an exhausted row")?;
            tracing::warn!(id, attempts = used, "failed transaction parked: retries exhausted");
            return Ok(if parked.rows_affected() == 1 { Claim::Exhausted } else { Claim::NotDue });
        }
        let attempt = used_attempts + 1;
        let payload: Option<serde_json::Value> = sqlx::query_scalar(
            "UPDATE failed_transaction
             SET attempts = attempts + 1, last_attempt_at = now(), next_attempt_at = now() + $3,
                 updated_at = now()
             WHERE id = $1 AND status = 'failed' AND next_attempt_at <= now() AND attempts = $2
             RETURNING payload",
        )
        .bind(id)
        .bind(used)
        .bind(self.cfg.retry.backoff_after(attempt))
        .fetch_optional(&self.pool)
        .await
        .context("claiming the row")?;
        Ok(payload.map_or(Claim::NotDue, |payload| Claim::Attempt { attempt, payload }))
    }
    // ANCHOR_END: run_once
}

/// What [`RetryJob::claim`] found.
enum Claim {
    NotDue,
    Exhausted,
    Attempt { attempt: u32, payload: serde_json::Value },
}
