//! Kafka over rdkafka, the way both services use it:
//!
//! - [`Producer`]: idempotent by default (`enable.idempotence=true`, `acks=all`), async send with a
//!   key and headers that resolves only when the broker has acknowledged the record.
//! - [`Consumer`]: an at-least-once group consumer. A [`Handler`] processes each [`Message`];
//!   offsets are stored only after the handler finished (or the message went to the dead-letter
//!   topic), partitions and keys are processed concurrently while order within a key is kept, and
//!   a graceful stop finishes in-flight work and commits.
//! - [`Headers`]: record headers and the trace-context carrier, serde-able for an outbox row.
//! - [`ensure_topic`]: creates a topic when it is missing.
//!
//! Settings ([`ProducerSettings`], [`ConsumerSettings`]) deserialise from a service's config; the
//! brokers and topics are the service's, passed beside them.

mod breaker;
mod close;
mod consumer;
mod handler;
mod headers;
mod lane;
mod metrics;
mod offsets;
mod producer;
mod redrive;

pub use breaker::{Breaker, BreakerSettings, BreakerState};
pub use consumer::{Consumer, ConsumerSettings};
pub use handler::{DeadLetterHeaders, Handler, HandlerError, Message};
pub use headers::Headers;
pub use lane::lane_for;
pub use producer::{Delivery, Producer, ProducerSettings};
pub use redrive::{REDRIVE_COUNT, RedriveOptions, RedriveReport, redrive};

use anyhow::Context as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

/// Default brokers of the local stack (`scripts/stack.sh`); `KAFKA_BROKERS` overrides in config.
pub const LOCAL_BROKERS: &str = "127.0.0.1:19092";

// ANCHOR: ensure_topic
/// Creates `topic` with `partitions` and `replication` unless it already exists.
pub async fn ensure_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    replication: i32,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("creating Kafka admin client")?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results =
        admin.create_topics([&new], &opts).await.with_context(|| format!("creating topic {topic}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => anyhow::bail!("creating topic {name}: {code}"),
        }
    }
    Ok(())
}
// ANCHOR_END: ensure_topic
