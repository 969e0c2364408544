//! Replaying the `email.send` history: an ordered, ephemeral consumer from a chosen start
//! position — the start positions NATS Streaming offered, as JetStream deliver policies.

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer::DeliverPolicy};
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use serde::Serialize;
use std::time::Duration;

use crate::jetstream::{DLQ_REASON, SendEmail};

// ANCHOR: start_at
/// Where a replay starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartAt {
    /// The first message kept.
    FromStart,
    /// Only the newest message ("last value").
    Last,
    /// A stream sequence number.
    Sequence(u64),
    /// Messages stored at or after this time (`--since 30s` is now minus 30 s).
    Time(DateTime<Utc>),
}

impl StartAt {
    fn policy(&self) -> DeliverPolicy {
        match self {
            Self::FromStart => DeliverPolicy::All,
            Self::Last => DeliverPolicy::Last,
            Self::Sequence(seq) => DeliverPolicy::ByStartSequence { start_sequence: *seq },
            Self::Time(t) => DeliverPolicy::ByStartTime { start_time: *t },
        }
    }
}
// ANCHOR_END: start_at

/// Parses `30s`, `5m`, `2h` or `1d`.
pub fn parse_age(s: &str) -> anyhow::Result<Duration> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().with_context(|| format!("{s:?} is not a duration like 30s, 5m, 2h"))?;
    let secs = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => anyhow::bail!("unknown unit {other:?} in {s:?} (s, m, h, d)"),
    };
    Ok(Duration::from_secs(n * secs))
}

/// One event of the history.
#[derive(Debug, Clone, Serialize)]
pub struct Replayed {
    /// Stream sequence.
    pub seq: u64,
    /// When JetStream stored it.
    pub published: DateTime<Utc>,
    /// The event, or `None` when the payload is not one.
    pub event: Option<SendEmail>,
    /// On the dead-letter subject: why it is there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dlq_reason: Option<String>,
}

/// Reads the history of `subject` (`email.send`, or `email.send.dlq`) in `stream` from `start`
/// up to the message that was newest when the replay began (at most `limit`), without touching
/// the workers' durable consumer.
pub async fn replay(
    js: &jetstream::Context,
    stream: &str,
    subject: &str,
    start: &StartAt,
    limit: usize,
) -> anyhow::Result<Vec<Replayed>> {
    let mut stream = js.get_stream(stream).await.with_context(|| format!("stream {stream}"))?;
    let last = stream.info().await?.state.last_sequence;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: subject.to_owned(),
            deliver_policy: start.policy(),
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut out = Vec::new();
    while out.len() < limit {
        // Nothing more within a second: the rest of the stream holds none of `subject`.
        let Ok(Some(next)) = tokio::time::timeout(Duration::from_secs(1), messages.next()).await else {
            break;
        };
        let msg = next?;
        let info = msg.info().map_err(|e| anyhow::anyhow!("message info: {e}"))?;
        let (seq, published) = (info.stream_sequence, info.published);
        let dlq_reason = msg.headers.as_ref().and_then(|h| h.get(DLQ_REASON)).map(|v| v.as_str().to_owned());
        out.push(Replayed { seq, published, event: serde_json::from_slice(&msg.payload).ok(), dlq_reason });
        if seq >= last {
            break;
        }
    }
    Ok(out)
}
