//! The saga's safety net: releases what failed or interrupted orders still hold.
//!
//! `place_order` releases on failure, but a release can fail too (the product service is down)
//! and the process can die between the reserve and the confirm. Both leave a row: the order is
//! `release_pending`, or `pending` for longer than any order may take. This loop finds those,
//! releases every reservation of the order (idempotent; an id that was never reserved gets a
//! tombstone) and marks it cancelled. Several replicas may sweep at once: releases are
//! idempotent and the status change is conditional.

use super::place::Catalog;
use crate::deadline::Deadline;
use crate::error::{ApiError, db};
use cruncan_shutdown::Shutdown;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The sweeper of one order service.
#[derive(Clone)]
pub struct Sweeper {
    /// The order database.
    pub pool: PgPool,
    /// The product service.
    pub catalog: Arc<dyn Catalog>,
    /// Pause between sweeps.
    pub every: Duration,
    /// A `pending` order older than this was abandoned (longer than any request may take).
    pub stale_after: Duration,
    /// Budget of one order's releases.
    pub release_timeout: Duration,
}

impl Sweeper {
    // ANCHOR: sweep
    /// One pass; returns how many orders it cancelled.
    pub async fn sweep_once(&self) -> Result<usize, ApiError> {
        let stuck: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM orders WHERE status = 'release_pending'
                OR (status = 'pending' AND updated_at < now() - make_interval(secs => $1))
             ORDER BY updated_at LIMIT 100",
        )
        .bind(self.stale_after.as_secs_f64())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut cancelled = 0;
        for order in stuck {
            let reservations: Vec<Uuid> =
                sqlx::query_scalar("SELECT reservation_id FROM order_items WHERE order_id = $1")
                    .bind(order)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?;
            let deadline = Deadline::after(self.release_timeout);
            let mut released = true;
            for r in reservations {
                released &= self.catalog.release(r, deadline).await.is_ok();
            }
            if released {
                sqlx::query(
                    "UPDATE orders SET status = 'cancelled', updated_at = now()
                     WHERE id = $1 AND status IN ('pending', 'release_pending')",
                )
                .bind(order)
                .execute(&self.pool)
                .await
                .map_err(db)?;
                cancelled += 1;
            }
        }
        Ok(cancelled)
    }
    // ANCHOR_END: sweep

    /// Sweeps every `every` until `shutdown`.
    pub async fn run(self, shutdown: Shutdown) {
        loop {
            tokio::select! {
                () = shutdown.wait() => return,
                () = tokio::time::sleep(self.every) => {}
            }
            match self.sweep_once().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(orders = n, "released what failed orders held"),
                Err(e) => tracing::warn!(error = %e, "sweep failed"),
            }
        }
    }
}
