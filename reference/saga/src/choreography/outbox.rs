//! One transactional outbox per participant, with the design of service one's relay
//! (`flow/one/src/outbox.rs`): an event is a row written in the transaction of the effect it
//! announces, and a relay publishes committed rows in id order, marking them sent only after the
//! broker acknowledged them.
//!
//! - Several relays may run: a batch is claimed with `FOR UPDATE SKIP LOCKED`.
//! - Woken in-process right after a commit ([`OutboxWaker`]), with a poll as the safety net.
//! - At-least-once: a relay that dies after the broker acked and before its commit publishes the
//!   rows again; consumers de-duplicate by event id (their inbox).

use super::events::Envelope;
use anyhow::Context as _;
use cruncan_kafka::Headers;
use cruncan_kafka::Producer;
use cruncan_shutdown::Shutdown;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Header carrying the saga id.
pub const CORRELATION_ID: &str = "correlation-id";
/// Header carrying the event type.
pub const EVENT_TYPE: &str = "event-type";

/// Wakes a relay after a transaction that wrote outbox rows committed.
#[derive(Debug, Clone, Default)]
pub struct OutboxWaker(Arc<Notify>);

impl OutboxWaker {
    /// Call after the commit.
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

fn sql(template: &str, schema: &str) -> sqlx::AssertSqlSafe<String> {
    // `schema` is one of the participants' constant schema names, never input.
    sqlx::AssertSqlSafe(template.replace("{schema}", schema))
}

// ANCHOR: enqueue
/// Writes `envelope` to `schema`'s outbox inside the caller's transaction, with the current
/// trace context, the correlation id and the event type as headers.
pub async fn enqueue(
    conn: &mut PgConnection,
    schema: &str,
    topic: &str,
    envelope: &Envelope,
) -> anyhow::Result<()> {
    let mut headers = Headers::current_trace();
    headers.set(CORRELATION_ID, envelope.correlation_id.to_string());
    headers.set(EVENT_TYPE, envelope.event.name());
    sqlx::query(sql(
        "INSERT INTO {schema}.outbox (topic, key, payload, headers) VALUES ($1, $2, $3, $4)",
        schema,
    ))
    .bind(topic)
    .bind(envelope.correlation_id.to_string())
    .bind(serde_json::to_vec(envelope)?)
    .bind(Json(headers))
    .execute(&mut *conn)
    .await
    .context("writing outbox row")?;
    Ok(())
}
// ANCHOR_END: enqueue

#[derive(Debug, sqlx::FromRow)]
struct Row {
    id: i64,
    topic: String,
    key: String,
    payload: Vec<u8>,
    headers: Json<Headers>,
}

/// Publishes one participant's outbox.
#[derive(Debug)]
pub struct Relay {
    pool: PgPool,
    producer: Producer,
    schema: &'static str,
    waker: OutboxWaker,
    batch_size: i64,
    poll_interval: Duration,
}

impl Relay {
    /// A relay of `schema.outbox`, woken by `waker`.
    pub fn new(pool: PgPool, producer: Producer, schema: &'static str, waker: OutboxWaker) -> Self {
        Self { pool, producer, schema, waker, batch_size: 100, poll_interval: Duration::from_millis(500) }
    }

    /// Publishes until `shutdown`, then once more for what the last handlers wrote.
    pub async fn run(self, shutdown: Shutdown) {
        let mut failures = 0u32;
        while !shutdown.is_triggered() {
            let wait = match self.publish_batch().await {
                Ok(n) if n as i64 >= self.batch_size => continue,
                Ok(_) => {
                    failures = 0;
                    self.poll_interval
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(schema = self.schema, error = %format!("{e:#}"), "outbox relay failed; will retry");
                    Duration::from_millis((100u64 << failures.min(5)).min(3_000))
                }
            };
            tokio::select! {
                () = shutdown.wait() => break,
                () = tokio::time::sleep(wait) => {}
                () = self.waker.0.notified(), if failures == 0 => {}
            }
        }
        if let Err(e) = self.publish_batch().await {
            tracing::warn!(schema = self.schema, error = %format!("{e:#}"), "final outbox round failed; rows stay pending");
        }
    }

    /// Claims pending rows, publishes them in id order, marks the acknowledged ones sent.
    pub async fn publish_batch(&self) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin().await.context("starting outbox transaction")?;
        let rows: Vec<Row> = sqlx::query_as(sql(
            "SELECT id, topic, key, payload, headers FROM {schema}.outbox
             WHERE sent_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
            self.schema,
        ))
        .bind(self.batch_size)
        .fetch_all(&mut *tx)
        .await
        .context("claiming outbox rows")?;
        let sent = futures::future::join_all(rows.iter().map(|row| self.publish(row))).await;
        let mut acked = Vec::with_capacity(rows.len());
        let mut first_error = None;
        for (row, result) in rows.iter().zip(sent) {
            match result {
                Ok(()) => acked.push(row.id),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        sqlx::query(sql(
            "UPDATE {schema}.outbox SET sent_at = now(), attempts = attempts + 1 WHERE id = ANY($1)",
            self.schema,
        ))
        .bind(&acked)
        .execute(&mut *tx)
        .await
        .context("marking outbox rows sent")?;
        tx.commit().await.context("committing outbox transaction")?;
        match first_error {
            Some(e) if acked.is_empty() => Err(e),
            _ => Ok(acked.len()),
        }
    }

    /// One row to Kafka, in a producer span continuing the trace of the transaction that wrote it.
    async fn publish(&self, row: &Row) -> anyhow::Result<()> {
        let headers = &row.headers.0;
        let event = headers.get_str(EVENT_TYPE).unwrap_or_default().to_owned();
        let span = tracing::info_span!(
            "publish",
            otel.name = format!("publish {event}"),
            otel.kind = "producer",
            messaging.system = "kafka",
            messaging.destination.name = %row.topic,
            correlation_id = %row.key,
        );
        let _ = span.set_parent(cruncan_telemetry::extract_context(headers));
        self.producer
            .send(&row.topic, row.key.as_bytes(), &row.payload, headers)
            .instrument(span)
            .await
            .map(drop)
    }
}

/// One event of a saga as its participant's outbox recorded it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Recorded {
    /// Event type, e.g. `PaymentProcessed`.
    pub event_type: String,
    /// Participant (schema) that published it.
    pub participant: String,
    /// The W3C `traceparent` it was published with.
    pub traceparent: Option<String>,
}

/// Every event of saga `correlation_id`, from the four outboxes, in the order they were written.
pub async fn history(pool: &PgPool, correlation_id: uuid::Uuid) -> anyhow::Result<Vec<Recorded>> {
    let union = ["orders", "payments", "inventory", "shipping"]
        .map(|s| format!("SELECT '{s}' AS participant, id, created_at, key, headers FROM {s}.outbox"))
        .join(" UNION ALL ");
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT headers->>'{EVENT_TYPE}' AS event_type, participant, headers->>'traceparent' AS traceparent
         FROM ({union}) e WHERE key = $1 ORDER BY created_at, id"
    )))
    .bind(correlation_id.to_string())
    .fetch_all(pool)
    .await
    .context("reading the outboxes")
}
