//! The transactional outbox both services publish through: a change and its event are written
//! in one PostgreSQL transaction ([`enqueue`]); the [`Relay`] publishes the rows to JetStream in
//! order, with the event id as `Nats-Msg-Id`, and deletes them only once JetStream acked. A crash
//! between the publish and the delete re-publishes the row, which JetStream's duplicate window
//! drops; past the window the consumers' own idempotency covers it.

use anyhow::Context as _;
use async_nats::jetstream;
use cruncan_shutdown::Shutdown;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::config::OutboxSettings;

// ANCHOR: enqueue
/// Writes `payload` for `subject` in the caller's transaction.
pub async fn enqueue(
    tx: &mut PgConnection,
    subject: &str,
    msg_id: Uuid,
    payload: &impl Serialize,
) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO outbox (subject, msg_id, payload) VALUES ($1, $2, $3)")
        .bind(subject)
        .bind(msg_id)
        .bind(sqlx::types::Json(payload))
        .execute(tx)
        .await
        .context("writing the outbox row")?;
    Ok(())
}
// ANCHOR_END: enqueue

/// Publishes the outbox rows of one database.
#[derive(Clone)]
pub struct Relay {
    pool: PgPool,
    js: jetstream::Context,
    wake: Arc<Notify>,
    settings: OutboxSettings,
}

impl Relay {
    /// A relay over `pool`'s `outbox` table.
    pub fn new(pool: PgPool, js: jetstream::Context, settings: OutboxSettings) -> Self {
        Self { pool, js, wake: Arc::new(Notify::new()), settings }
    }

    /// Tells the relay a transaction with outbox rows committed (it publishes at once instead of
    /// at the next poll).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Publishes until `stop`; a failed round (database or NATS down) is retried next poll.
    pub async fn run(self, stop: Shutdown) {
        let poll = self.settings.poll_interval;
        loop {
            match self.publish_batch().await {
                Ok(n) if n as i64 == self.settings.batch_size => continue, // more waiting
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "outbox relay round failed; retrying"),
            }
            tokio::select! {
                () = stop.wait() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
        // What the last requests wrote before the stop.
        if let Err(e) = self.publish_batch().await {
            tracing::warn!(error = %format!("{e:#}"), "outbox rows left for the next start");
        }
    }

    // ANCHOR: publish_batch
    /// One round: claims up to `batch_size` rows (other replicas skip them), publishes them in
    /// order, waits for every ack, then deletes them in the same transaction. Any failure rolls
    /// back: the rows stay and are published again.
    pub async fn publish_batch(&self) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<(i64, String, Uuid, serde_json::Value)> = sqlx::query_as(
            "SELECT seq, subject, msg_id, payload FROM outbox ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(self.settings.batch_size)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut acks = Vec::with_capacity(rows.len());
        for (_, subject, msg_id, payload) in &rows {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", msg_id.to_string().as_str());
            let body = serde_json::to_vec(payload)?;
            let ack = self
                .js
                .publish_with_headers(subject.clone(), headers, body.into())
                .await
                .with_context(|| format!("publishing to {subject}"))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await.context("waiting for JetStream's ack")?;
        }
        let seqs: Vec<i64> = rows.iter().map(|r| r.0).collect();
        sqlx::query("DELETE FROM outbox WHERE seq = ANY($1)").bind(&seqs).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(rows.len())
    }
    // ANCHOR_END: publish_batch
}
