//! [`enqueue`] in the writer's transaction, and the [`Relay`] that publishes what it wrote.

use anyhow::Context as _;
use async_nats::HeaderMap;
use async_nats::jetstream::{self, message::PublishMessage};
use backon::{BackoffBuilder as _, ExponentialBuilder};
use cruncan_shutdown::Shutdown;
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use uuid::Uuid;

/// How the relay works through the table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySettings {
    /// Rows claimed, published and deleted per transaction.
    pub batch_size: i64,
    /// Poll for rows no wake-up announced (other replicas' rows, a missed wake-up).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

// ANCHOR: enqueue
/// Writes the event `payload` for `subject`, with `headers` to publish it with, in the caller's
/// transaction. `msg_id` becomes its `Nats-Msg-Id`: the id JetStream de-duplicates on.
pub async fn enqueue(
    tx: &mut PgConnection,
    subject: &str,
    msg_id: Uuid,
    payload: &impl Serialize,
    headers: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO outbox (subject, msg_id, payload, headers) VALUES ($1, $2, $3, $4)")
        .bind(subject)
        .bind(msg_id)
        .bind(Json(payload))
        .bind(Json(headers))
        .execute(tx)
        .await
        .context("writing the outbox row")?;
    Ok(())
}
// ANCHOR_END: enqueue

/// The current trace context (`traceparent`, `tracestate`) as headers for [`enqueue`], so the
/// consumer's span continues the writer's trace.
pub fn trace_headers() -> BTreeMap<String, String> {
    let mut headers = std::collections::HashMap::new();
    cruncan_telemetry::inject_current(&mut headers);
    headers.into_iter().collect()
}

/// Publishes the `outbox` rows of one database.
#[derive(Clone)]
pub struct Relay {
    pool: PgPool,
    js: jetstream::Context,
    settings: RelaySettings,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("settings", &self.settings).finish_non_exhaustive()
    }
}

type OutboxRow = (i64, String, Uuid, serde_json::Value, Json<BTreeMap<String, String>>);

impl Relay {
    /// A relay over `pool`'s `outbox` table, publishing through `js`.
    pub fn new(pool: PgPool, js: jetstream::Context, settings: RelaySettings) -> Self {
        Self { pool, js, settings, wake: Arc::default() }
    }

    /// Tells the relay a transaction with outbox rows committed: it publishes at once instead of
    /// at the next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Publishes until `stop`, then once more (what the last requests wrote) and returns. A
    /// failed round (database or NATS down) is retried after a pause that doubles from the poll
    /// interval up to 5 s (backon).
    pub async fn run(self, stop: Shutdown) {
        let poll = self.settings.poll_interval;
        let failure_backoff = || {
            ExponentialBuilder::new()
                .with_min_delay(poll)
                .with_max_delay(Duration::from_secs(5).max(poll))
                .without_max_times()
                .build()
        };
        let mut backoff = failure_backoff();
        loop {
            let pause = match self.publish_batch().await {
                Ok(n) if n as i64 >= self.settings.batch_size => continue, // more waiting
                Ok(_) => {
                    backoff = failure_backoff();
                    poll
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "outbox relay: publishing failed; retrying");
                    backoff.next().unwrap_or(poll)
                }
            };
            tokio::select! {
                () = stop.wait() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
        if let Err(e) = self.publish_batch().await {
            tracing::warn!(error = %format!("{e:#}"), "outbox relay: final round failed; rows stay for the next start");
        }
    }

    // ANCHOR: publish_batch
    /// One round: claims up to `batch_size` rows (other replicas skip them), publishes them in
    /// order, waits for every ack, then deletes them in the same transaction. Any failure rolls
    /// back: the rows stay and are published again.
    pub async fn publish_batch(&self) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<OutboxRow> = sqlx::query_as(
            "SELECT seq, subject, msg_id, payload, headers FROM outbox
             ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(self.settings.batch_size)
        .fetch_all(&mut *tx)
        .await
        .context("claiming outbox rows")?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut acks = Vec::with_capacity(rows.len());
        for (_, subject, msg_id, payload, headers) in &rows {
            let mut map = HeaderMap::new();
            for (k, v) in headers.iter() {
                map.insert(k.as_str(), v.as_str());
            }
            let publish = PublishMessage::build()
                .payload(serde_json::to_vec(payload)?.into())
                .headers(map)
                // JetStream drops a second publish with this id inside the duplicate window.
                .message_id(msg_id.to_string());
            let ack = self
                .js
                .send_publish(subject.clone(), publish)
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

/// Rows waiting in `pool`'s outbox (tests, readiness).
pub async fn pending(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(pool).await?)
}
