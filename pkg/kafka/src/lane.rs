//! The lanes: each handles the messages the poll loop sends it one at a time, in order, with
//! retries, the circuit breaker and dead letters, and reports finished offsets to the tracker.

use crate::breaker::{Breaker, BreakerState};
use crate::consumer::{ConsumerSettings, Ctx};
use crate::handler::{DeadLetterHeaders, Handler, HandlerError, Message};
use crate::metrics::Metrics;
use crate::offsets::OffsetTracker;
use crate::producer::Producer;
use backon::{BackoffBuilder as _, ExponentialBuilder};
use cruncan_shutdown::Shutdown;
use opentelemetry::KeyValue;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Same partition and key → same lane, so per-key order holds; keyless messages go by partition.
pub(crate) fn lane_of(msg: &Message, lanes: usize) -> usize {
    lane_for(&msg.topic, msg.partition, msg.key.as_deref(), lanes)
}

/// The lane (of `lanes`) that handles messages with this topic, partition and key.
pub fn lane_for(topic: &str, partition: i32, key: Option<&[u8]>, lanes: usize) -> usize {
    let mut h = DefaultHasher::new();
    topic.hash(&mut h);
    partition.hash(&mut h);
    key.map(<[u8]>::to_vec).hash(&mut h);
    (h.finish() % lanes.max(1) as u64) as usize
}

/// One lane: handles the messages the poll loop sends it, one at a time, in order.
pub(crate) struct Lane<H> {
    pub(crate) handler: Arc<H>,
    pub(crate) consumer: Arc<StreamConsumer<Ctx>>,
    pub(crate) offsets: OffsetTracker,
    pub(crate) dead_letters: Producer,
    pub(crate) settings: ConsumerSettings,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) stop: Shutdown,
    pub(crate) breaker: Breaker,
}

/// How one message ended.
enum Finished {
    Done,
    DeadLettered,
    /// Stopped before finishing: its offset must not be stored.
    Abandoned,
}

impl<H: Handler> Lane<H> {
    pub(crate) async fn run(self, mut rx: mpsc::Receiver<Message>) {
        loop {
            let msg = tokio::select! {
                biased;
                () = self.stop.wait() => return,
                msg = rx.recv() => match msg { Some(m) => m, None => return },
            };
            match self.process(&msg).await {
                Finished::Done | Finished::DeadLettered => self.finish(&msg),
                Finished::Abandoned => return,
            }
        }
    }

    /// Runs the handler in a span that continues the producer's trace; retries retryable errors
    /// with exponential backoff and jitter (or the delay the error asks for); dead-letters
    /// permanent errors and exhausted retries.
    async fn process(&self, msg: &Message) -> Finished {
        // ANCHOR: process_span
        let span = tracing::info_span!(
            "process",
            otel.name = format!("process {}", msg.topic),
            otel.kind = "consumer",
            messaging.system = "kafka",
            messaging.operation.type = "process",
            messaging.destination.name = %msg.topic,
            messaging.destination.partition.id = msg.partition,
            messaging.kafka.offset = msg.offset,
            messaging.kafka.message.key = %msg.key_str(),
            messaging.consumer.group.name = %self.settings.group_id,
        );
        // The remote parent: the trace of whoever produced the record.
        let _ = span.set_parent(cruncan_telemetry::extract_context(&msg.headers));
        // ANCHOR_END: process_span
        let started = Instant::now();
        let outcome = async {
            // Attempts made while the breaker is open are the outage's, not the message's.
            let mut attempt = 0u32;
            let mut delays = retry_delays(&self.settings);
            let mut probe = None;
            loop {
                if self.breaker.state() == BreakerState::Open {
                    if probe.is_none() {
                        probe = tokio::select! {
                            () = self.stop.wait() => return (Finished::Abandoned, "abandoned"),
                            turn = self.breaker.probe_turn() => Some(turn),
                        };
                    }
                } else {
                    probe = None;
                }
                let probing = probe.is_some() && self.breaker.state() == BreakerState::Open;
                if !probing {
                    probe = None; // closed while we waited for the turn: run normally, let others go
                    attempt += 1;
                }
                let err = match self.handler.handle(msg).await {
                    Ok(()) => {
                        self.breaker.record_success();
                        return (Finished::Done, "success");
                    }
                    Err(e) => e,
                };
                // ANCHOR: failure_outcomes
                let (error, retry_after) = match err {
                    HandlerError::Permanent(error) => {
                        // The dependency answered: the message is at fault, not the dependency.
                        self.breaker.record_success();
                        tracing::warn!(error = %format!("{error:#}"), attempt, key = %msg.key_str(), "permanent failure; dead-lettering");
                        return (self.dead_letter(msg, &format!("{error:#}"), "permanent", attempt).await, "dead_letter");
                    }
                    HandlerError::Unavailable(error) => {
                        self.breaker.trip();
                        (error, None)
                    }
                    HandlerError::Retryable { error, retry_after } => {
                        let state = self.breaker.record_failure();
                        if state == BreakerState::Closed && attempt >= self.settings.max_attempts {
                            tracing::warn!(error = %format!("{error:#}"), attempt, key = %msg.key_str(), "retries exhausted; dead-lettering");
                            return (
                                self.dead_letter(msg, &format!("{error:#}"), "retries-exhausted", attempt).await,
                                "dead_letter",
                            );
                        }
                        (error, retry_after)
                    }
                };
                self.metrics.processed.add(1, &[KeyValue::new("outcome", "retry")]);
                let policy = if self.breaker.state() == BreakerState::Open {
                    self.breaker.next_probe_delay()
                } else {
                    delays.next().unwrap_or(self.settings.backoff_max)
                };
                // `Retry-After` may lengthen the wait, never shorten it below the policy's.
                let delay = retry_after.map_or(policy, |asked| asked.max(policy));
                // ANCHOR_END: failure_outcomes
                tracing::info!(error = %format!("{error:#}"), attempt, ?delay, breaker = ?self.breaker.state(), key = %msg.key_str(), "retryable failure; retrying");
                tokio::select! {
                    () = self.stop.wait() => return (Finished::Abandoned, "abandoned"),
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
        .instrument(span)
        .await;
        let (finished, label) = outcome;
        if !matches!(finished, Finished::Abandoned) {
            let attrs = [
                KeyValue::new("outcome", label),
                KeyValue::new("messaging.destination.name", msg.topic.clone()),
            ];
            self.metrics.processed.add(1, &attrs[..1]);
            self.metrics.duration.record(started.elapsed().as_secs_f64(), &attrs);
        }
        finished
    }

    /// Produces the record to `<topic>.dlq`; keeps trying (never skips a message) until it
    /// succeeds or the consumer stops.
    async fn dead_letter(&self, msg: &Message, error: &str, reason: &str, attempts: u32) -> Finished {
        let mut headers = msg.headers.clone();
        headers.extend([
            (DeadLetterHeaders::ERROR, error.to_owned()),
            (DeadLetterHeaders::REASON, reason.to_owned()),
            (DeadLetterHeaders::ATTEMPTS, attempts.to_string()),
            (DeadLetterHeaders::TOPIC, msg.topic.clone()),
            (DeadLetterHeaders::PARTITION, msg.partition.to_string()),
            (DeadLetterHeaders::OFFSET, msg.offset.to_string()),
        ]);
        let topic = self.settings.dead_letter_topic(&msg.topic);
        let mut delays = retry_delays(&self.settings);
        loop {
            let sent = self
                .dead_letters
                .send(
                    &topic,
                    msg.key.as_deref().unwrap_or_default(),
                    msg.payload.as_deref().unwrap_or_default(),
                    &headers,
                )
                .await;
            match sent {
                Ok(_) => return Finished::DeadLettered,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), %topic, "dead-letter produce failed; retrying");
                    tokio::select! {
                        () = self.stop.wait() => return Finished::Abandoned,
                        () = tokio::time::sleep(delays.next().unwrap_or(self.settings.backoff_max)) => {}
                    }
                }
            }
        }
    }

    // ANCHOR: finish_offset
    /// Marks the offset finished and, when the partition's commit position moved, stores it for
    /// librdkafka's next auto-commit.
    fn finish(&self, msg: &Message) {
        let Some(position) = self.offsets.finish(&msg.topic, msg.partition, msg.offset) else { return };
        let mut tpl = TopicPartitionList::new();
        if tpl.add_partition_offset(&msg.topic, msg.partition, Offset::Offset(position)).is_ok()
            && let Err(e) = self.consumer.store_offsets(&tpl)
        {
            tracing::debug!(error = %e, partition = msg.partition, "offset not stored (partition revoked?)");
        }
    }
    // ANCHOR_END: finish_offset
}

// ANCHOR: retry_delays
/// The retry delays of one message: exponential from `backoff_initial`, doubling, capped at
/// `backoff_max`, with "equal jitter": each delay is uniform in [d/2, d) where d is the nominal
/// delay, so a retry never comes sooner than half of it while retries of many messages spread out.
/// backon's jitter adds up to one more delay on top, so it is built on half the nominal values.
pub(crate) fn retry_delays(settings: &ConsumerSettings) -> impl Iterator<Item = Duration> + use<> {
    ExponentialBuilder::new()
        .with_min_delay(settings.backoff_initial / 2)
        .with_max_delay(settings.backoff_max / 2)
        .with_jitter()
        .without_max_times()
        .build()
}
// ANCHOR_END: retry_delays

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::Headers;
    use std::collections::BTreeSet;

    #[test]
    fn delays_double_with_equal_jitter_and_cap() {
        let settings = ConsumerSettings {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(1000),
            ..ConsumerSettings::new("g")
        };
        for _ in 0..50 {
            let delays: Vec<u64> = retry_delays(&settings).take(7).map(|d| d.as_millis() as u64).collect();
            for (delay, full) in delays.iter().zip([100, 200, 400, 800, 1000, 1000, 1000]) {
                assert!(
                    (full / 2..=full).contains(delay),
                    "{delays:?}: {delay} ms not in [{}, {full}]",
                    full / 2
                );
            }
        }
    }

    #[test]
    fn same_partition_and_key_share_a_lane() {
        let m = |p: i32, k: &str| Message {
            payload: None,
            key: Some(k.as_bytes().to_vec()),
            headers: Headers::new(),
            topic: "t".into(),
            partition: p,
            offset: 0,
        };
        assert_eq!(lane_of(&m(0, "a"), 16), lane_of(&m(0, "a"), 16));
        let lanes: BTreeSet<_> = (0..100).map(|i| lane_of(&m(0, &format!("k{i}")), 16)).collect();
        assert!(lanes.len() > 8, "keys spread over lanes: {lanes:?}");
    }
}
