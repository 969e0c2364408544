//! The transactional outbox, shared by service one and the choreographed saga.
//!
//! An event is a row written in the transaction of the change it announces, so the change and
//! its event commit together or not at all. A [`Relay`] publishes committed rows to Kafka in id
//! order and marks them sent only after the broker acknowledged them; [`retention`] deletes sent
//! rows once they are old enough.
//!
//! - Several relays may run on one table: a batch is claimed with `FOR UPDATE SKIP LOCKED`, so
//!   two relays never hold the same row.
//! - A relay is woken in-process right after a commit ([`OutboxWaker`]), with a poll as the net
//!   for rows other replicas wrote or a wake-up that was missed. An insert trigger with `NOTIFY`
//!   would do the same across processes, but PostgreSQL takes a global lock at commit for every
//!   notifying transaction, serialising all writers.
//! - At-least-once: a relay that dies after the broker acked a row but before its transaction
//!   committed leaves the row pending, and the next relay publishes it again. Consumers
//!   de-duplicate (by request id, by event id in an inbox).
//!
//! The table is the service's own (its migrations create it) with these columns: `id bigserial
//! PRIMARY KEY, topic text, key text, payload bytea, headers jsonb, created_at timestamptz,
//! sent_at timestamptz NULL, attempts integer, last_error text NULL`, and a partial index on
//! `(id) WHERE sent_at IS NULL` for the claim.

mod metrics;
mod relay;
pub mod retention;
mod settings;
mod table;
mod waker;

pub use relay::{Claimed, Relay, TopicSpec};
pub use settings::OutboxSettings;
pub use table::{InvalidTable, Table};
pub use waker::OutboxWaker;

use anyhow::Context as _;
use cruncan_kafka::Headers;
use sqlx::{PgConnection, PgPool};

/// One event to publish: where, under which key, what, with which headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Kafka topic.
    pub topic: String,
    /// Message key (the partition, and the order, follow it).
    pub key: String,
    /// Message value.
    pub payload: Vec<u8>,
    /// Message headers; the trace context among them continues the trace in the consumer.
    pub headers: Headers,
}

// ANCHOR: enqueue
/// Writes `record` to `table` inside the caller's transaction (`conn` is in one): it is
/// published once that transaction commits, and never if it rolls back. Wake the table's relay
/// after the commit.
pub async fn enqueue(conn: &mut PgConnection, table: &Table, record: &Record) -> anyhow::Result<()> {
    sqlx::query(table.sql("INSERT INTO {outbox} (topic, key, payload, headers) VALUES ($1, $2, $3, $4)"))
        .bind(&record.topic)
        .bind(&record.key)
        .bind(&record.payload)
        .bind(sqlx::types::Json(&record.headers))
        .execute(conn)
        .await
        .with_context(|| format!("writing a row to {table}"))?;
    Ok(())
}
// ANCHOR_END: enqueue

/// How many rows of `table` are pending, and the age of the oldest in milliseconds (0 if none).
pub async fn backlog(pool: &PgPool, table: &Table) -> anyhow::Result<(i64, i64)> {
    sqlx::query_as(table.sql(
        "SELECT count(*), coalesce((extract(epoch FROM now() - min(created_at)) * 1000)::bigint, 0)
         FROM {outbox} WHERE sent_at IS NULL",
    ))
    .fetch_one(pool)
    .await
    .with_context(|| format!("measuring the backlog of {table}"))
}
