//! The relay: publishes the `email.send` events the create transaction wrote to `email_outbox`,
//! then deletes them. Rows are claimed with `FOR UPDATE SKIP LOCKED`, so replicas share the work
//! without publishing a row twice at the same time; a crash between publish and delete publishes
//! again, and JetStream drops that copy because it carries the same `Nats-Msg-Id`.

use anyhow::Context as _;
use async_nats::HeaderMap;
use async_nats::jetstream::{self, message::PublishMessage as Publish};
use cruncan_shutdown::Shutdown;
use sqlx::PgPool;
use sqlx::types::Json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

use crate::config::{NatsSettings, OutboxSettings};
use crate::jetstream::SEND_SUBJECT;

/// The outbox relay of one replica.
#[derive(Clone)]
pub struct Relay {
    pool: PgPool,
    js: jetstream::Context,
    subject: String,
    settings: OutboxSettings,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("subject", &self.subject).finish_non_exhaustive()
    }
}

type OutboxRow = (i64, uuid::Uuid, serde_json::Value, Json<BTreeMap<String, String>>);

impl Relay {
    /// A relay publishing to `nats`'s send subject.
    pub fn new(pool: PgPool, js: jetstream::Context, nats: &NatsSettings, settings: OutboxSettings) -> Self {
        Self { pool, js, subject: nats.subject(SEND_SUBJECT), settings, wake: Arc::default() }
    }

    /// Wakes the relay at once (the create path calls it after commit; polling is the fallback).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs until `shutdown`, then publishes what is left once more and returns.
    pub async fn run(self, shutdown: Shutdown) {
        let poll = self.settings.poll_interval;
        let mut delay = poll;
        loop {
            match self.publish_batch().await {
                // A full batch: there may be more right now.
                Ok(n) if n as i64 >= self.settings.batch_size => continue,
                Ok(_) => delay = poll,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "outbox relay: publishing failed; retrying");
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
            tokio::select! {
                () = shutdown.wait() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(delay) => {}
            }
        }
        if let Err(e) = self.publish_batch().await {
            tracing::warn!(error = %format!("{e:#}"), "outbox relay: final publish failed; rows stay for the next start");
        }
    }

    // ANCHOR: publish_batch
    /// Claims up to `batch_size` rows, publishes each and waits for JetStream's acks, deletes
    /// them, commits. Any failure rolls back: the rows stay and are published again later.
    pub async fn publish_batch(&self) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<OutboxRow> = sqlx::query_as(
            "SELECT id, email_id, payload, headers FROM email_outbox
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(self.settings.batch_size)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut acks = Vec::with_capacity(rows.len());
        for (_, email_id, payload, headers) in &rows {
            let mut map = HeaderMap::new();
            for (k, v) in headers.iter() {
                map.insert(k.as_str(), v.as_str());
            }
            let publish = Publish::build()
                .payload(serde_json::to_vec(payload)?.into())
                .headers(map)
                // JetStream drops a second publish with this id inside the duplicate window.
                .message_id(email_id.to_string());
            acks.push(self.js.send_publish(self.subject.clone(), publish).await?);
        }
        for ack in acks {
            ack.await.context("JetStream did not acknowledge a publish")?;
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
        sqlx::query("DELETE FROM email_outbox WHERE id = ANY($1)").bind(&ids).execute(&mut *tx).await?;
        tx.commit().await?;
        tracing::debug!(published = rows.len(), "outbox relay published");
        Ok(rows.len())
    }
    // ANCHOR_END: publish_batch
}

/// Rows waiting in the outbox (tests, readiness).
pub async fn pending(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM email_outbox").fetch_one(pool).await?)
}
