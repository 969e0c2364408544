//! One transactional outbox per participant (`<schema>.outbox`), published by the shared relay
//! of `cruncan-outbox`, the one service one uses: an event is a row written in the transaction of
//! the effect it announces, and a relay publishes committed rows in id order, marking them sent
//! only after the broker acknowledged them. Sent rows are deleted after `outbox.retention`.
//!
//! - Several relays may run: a batch is claimed with `FOR UPDATE SKIP LOCKED`.
//! - Woken in-process right after a commit ([`OutboxWaker`]), with a poll as the safety net.
//! - At-least-once: a relay that dies after the broker acked and before its commit publishes the
//!   rows again; consumers de-duplicate by event id (their inbox).

use super::events::Envelope;
use anyhow::Context as _;
use cruncan_kafka::{Headers, Producer};
use cruncan_outbox::{OutboxSettings, Record, Relay, Table};
use sqlx::{PgConnection, PgPool};

pub use cruncan_outbox::OutboxWaker;

/// Header carrying the saga id.
pub const CORRELATION_ID: &str = "correlation-id";
/// Header carrying the event type.
pub const EVENT_TYPE: &str = "event-type";

/// The outbox table of the participant whose schema is `schema`.
pub fn table(schema: &str) -> anyhow::Result<Table> {
    Ok(Table::new(&format!("{schema}.outbox"))?)
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
    let record = Record {
        topic: topic.to_owned(),
        key: envelope.correlation_id.to_string(),
        payload: serde_json::to_vec(envelope)?,
        headers,
    };
    cruncan_outbox::enqueue(conn, &table(schema)?, &record).await
}
// ANCHOR_END: enqueue

/// The relay of `schema`'s outbox, woken by `waker`; its spans are named after the event type
/// and carry the saga id as `correlation_id`, like the participants' own spans.
pub fn relay(
    pool: PgPool,
    producer: Producer,
    schema: &str,
    waker: OutboxWaker,
    cfg: &OutboxSettings,
) -> anyhow::Result<Relay> {
    Ok(Relay::new(pool, producer, table(schema)?, cfg.clone())
        .with_waker(waker)
        .naming_spans_by(EVENT_TYPE)
        .correlating_spans_by(CORRELATION_ID))
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
