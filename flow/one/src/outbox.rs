//! One's outbox: the table `outbox` (migrations `0002_outbox.sql`, `0004_outbox_no_notify.sql`),
//! written with each request, and published to the configured topic by the shared relay of
//! `cruncan-outbox` (the book's outbox chapter).

pub use cruncan_outbox::{OutboxWaker, Relay, Table, retention};

use crate::config::KafkaSettings;
use cruncan_kafka::Producer;
use cruncan_outbox::{OutboxSettings, TopicSpec};
use sqlx::PgPool;

/// One's outbox table.
pub fn table() -> anyhow::Result<Table> {
    Ok(Table::new("outbox")?)
}

// ANCHOR: relay
/// The relay of one's outbox, creating the request topic before its first round.
pub fn relay(
    pool: PgPool,
    producer: Producer,
    kafka: &KafkaSettings,
    cfg: &OutboxSettings,
) -> anyhow::Result<Relay> {
    let topic = TopicSpec {
        brokers: kafka.brokers.clone(),
        topic: kafka.topic.clone(),
        partitions: kafka.partitions,
        replication: kafka.replication,
    };
    Ok(Relay::new(pool, producer, table()?, cfg.clone()).ensuring_topic(topic))
}
// ANCHOR_END: relay
