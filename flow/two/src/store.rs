//! Which request ids two has delivered: the de-duplication of an at-least-once consumer.

use anyhow::Context as _;
use sqlx::PgPool;

/// Processed request ids in two's own database.
#[derive(Debug, Clone)]
pub struct ProcessedStore {
    pool: PgPool,
}

impl ProcessedStore {
    /// A store over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Whether `request_id` was delivered before.
    pub async fn is_processed(&self, request_id: &str) -> anyhow::Result<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM processed_request WHERE request_id = $1)")
            .bind(request_id)
            .fetch_one(&self.pool)
            .await
            .context("reading processed ids")
    }

    /// Records that `request_id` was delivered (idempotent).
    pub async fn mark(&self, request_id: &str, status: u16) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO processed_request (request_id, third_party_status) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(request_id)
        .bind(i32::from(status))
        .execute(&self.pool)
        .await
        .context("recording a processed id")?;
        Ok(())
    }
}
