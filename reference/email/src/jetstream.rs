//! The JetStream side: the `EMAILS` stream, the `email.send` event, the durable pull consumer
//! the workers share, and the dead-letter subject.

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, stream};
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::config::NatsSettings;
use crate::domain::EmailId;

/// Subject of the send events.
pub const SEND_SUBJECT: &str = "email.send";
/// Subject of the dead letters: the original payload plus `Email-Dlq-*` headers.
pub const DLQ_SUBJECT: &str = "email.send.dlq";
/// Header naming why a message was dead-lettered.
pub const DLQ_REASON: &str = "Email-Dlq-Reason";

/// The `email.send` event: which email to send. The body stays in PostgreSQL, the source of
/// truth the worker reads (and whose status it checks) before sending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendEmail {
    /// The email to send.
    pub email_id: EmailId,
    /// Sender, recipients and subject: enough to read the stream's history (`email_replay`).
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Subject.
    pub subject: String,
    /// When it was accepted.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

// ANCHOR: stream_config
/// Creates (or finds) the stream holding both subjects. File storage survives a server restart;
/// the duplicate window is how long JetStream drops a re-publish with the same `Nats-Msg-Id`.
pub async fn ensure_stream(js: &jetstream::Context, s: &NatsSettings) -> anyhow::Result<stream::Stream> {
    js.get_or_create_stream(stream::Config {
        name: s.stream.clone(),
        subjects: vec![s.subject(SEND_SUBJECT), s.subject(DLQ_SUBJECT)],
        storage: stream::StorageType::File,
        max_age: s.max_age,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .with_context(|| format!("creating or reading stream {}", s.stream))
}

/// The durable pull consumer every worker of every replica shares: at most `max_ack_pending`
/// messages in flight, redelivered after `ack_wait` unless acked, given up after `max_deliver`.
pub async fn ensure_consumer(
    stream: &stream::Stream,
    s: &NatsSettings,
) -> anyhow::Result<consumer::PullConsumer> {
    stream
        .get_or_create_consumer(
            &s.consumer,
            consumer::pull::Config {
                durable_name: Some(s.consumer.clone()),
                filter_subject: s.subject(SEND_SUBJECT),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: s.ack_wait,
                max_deliver: s.max_deliver,
                max_ack_pending: s.max_ack_pending,
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("creating or reading consumer {}", s.consumer))
}
// ANCHOR_END: stream_config

/// Connects to NATS with the client's own reconnect loop (it retries forever in the background).
pub async fn connect(s: &NatsSettings) -> anyhow::Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .name("email")
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .connect(&s.url)
        .await
        .with_context(|| format!("connecting to NATS at {}", s.url))
}
