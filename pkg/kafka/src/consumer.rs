//! The at-least-once group consumer.
//!
//! One task polls the broker and hands each message to one of `concurrency` *lanes*; the lane is
//! chosen by hashing (partition, key), so messages with the same key are handled one after the
//! other, in order, while other keys run in parallel. A per-partition tracker knows which offsets
//! are still in flight, and the offset stored for commit is always the lowest unfinished one: a
//! crash at any point re-delivers unfinished messages and never skips one.

use crate::breaker::{Breaker, BreakerConfig, BreakerState};
use crate::headers::KafkaHeaderExtractor;
use crate::producer::Producer;
use anyhow::Context as _;
use cruncan_shutdown::Shutdown;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// One consumed record, owned, as a [`Handler`] sees it.
#[derive(Debug, Clone)]
pub struct Message {
    /// The record value (`None` for a tombstone).
    pub payload: Option<Vec<u8>>,
    /// The record key.
    pub key: Option<Vec<u8>>,
    /// Headers in record order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Topic it was read from.
    pub topic: String,
    /// Partition it was read from.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
}

impl Message {
    /// The first header named `name`, as UTF-8 text.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The key as UTF-8 text (lossy), for logs.
    pub fn key_str(&self) -> String {
        self.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default()
    }
}

// ANCHOR: handler
/// What a handler reports when it could not finish a message.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth trying again (a timeout, a 503): the consumer retries with backoff, then dead-letters;
    /// many in a row across messages open the circuit breaker instead (see [`crate::Breaker`]).
    #[error("retryable: {error:#}")]
    Retryable {
        /// The cause.
        error: anyhow::Error,
        /// A delay the other side asked for (`Retry-After`): it may lengthen the backoff, never
        /// shorten it.
        retry_after: Option<Duration>,
    },
    /// Will never succeed (bad input, a 400): dead-lettered at once.
    #[error("permanent: {0:#}")]
    Permanent(anyhow::Error),
    /// Not the message's fault: a dependency is down or misconfigured (its credentials are
    /// refused). Opens the circuit breaker at once: consumption pauses, nothing is dead-lettered.
    #[error("unavailable: {0:#}")]
    Unavailable(anyhow::Error),
}

impl HandlerError {
    /// A retryable error without a requested delay.
    pub fn retryable(error: impl Into<anyhow::Error>) -> Self {
        Self::Retryable { error: error.into(), retry_after: None }
    }

    /// A permanent error.
    pub fn permanent(error: impl Into<anyhow::Error>) -> Self {
        Self::Permanent(error.into())
    }

    /// A dependency is down or misconfigured.
    pub fn unavailable(error: impl Into<anyhow::Error>) -> Self {
        Self::Unavailable(error.into())
    }
}

/// Processes one message. Polling, offsets, retries, dead letters and tracing are the consumer's
/// job; the handler only decides what a message means and whether a failure is worth retrying.
pub trait Handler: Send + Sync + 'static {
    /// Handles one message; called again for the same message after a retryable error.
    fn handle(&self, msg: &Message) -> impl Future<Output = Result<(), HandlerError>> + Send;
}
// ANCHOR_END: handler

/// Names of the headers added to a dead-lettered record.
#[derive(Debug)]
pub struct DeadLetterHeaders;

impl DeadLetterHeaders {
    /// Why it failed (the error text).
    pub const ERROR: &'static str = "dlq.error";
    /// `permanent` or `retries-exhausted`.
    pub const REASON: &'static str = "dlq.reason";
    /// How many times the handler ran.
    pub const ATTEMPTS: &'static str = "dlq.attempts";
    /// Topic the record was read from.
    pub const TOPIC: &'static str = "dlq.original.topic";
    /// Partition the record was read from.
    pub const PARTITION: &'static str = "dlq.original.partition";
    /// Offset the record had.
    pub const OFFSET: &'static str = "dlq.original.offset";
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Consumer group.
    pub group_id: String,
    /// Topics to subscribe to.
    pub topics: Vec<String>,
    /// Messages handled at once (lanes); messages of one key always share a lane.
    pub concurrency: usize,
    /// Messages a lane may have queued before polling waits (backpressure).
    pub lane_capacity: usize,
    /// Handler runs per message before a retryable failure is dead-lettered.
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt, with jitter.
    pub backoff_initial: Duration,
    /// Largest retry delay.
    pub backoff_max: Duration,
    /// Suffix of the dead-letter topic (`<topic><suffix>`).
    pub dead_letter_suffix: String,
    /// How long a graceful stop waits for in-flight messages.
    pub drain_timeout: Duration,
    /// When a dependency outage pauses consumption instead of dead-lettering.
    pub breaker: BreakerConfig,
    /// Any other librdkafka property; these win.
    pub extra: BTreeMap<String, String>,
}

impl ConsumerConfig {
    /// Defaults: 16 lanes, 5 attempts, 200 ms..10 s backoff, `.dlq` suffix, 20 s drain.
    pub fn new(brokers: impl Into<String>, group_id: impl Into<String>, topics: Vec<String>) -> Self {
        Self {
            brokers: brokers.into(),
            group_id: group_id.into(),
            topics,
            concurrency: 16,
            lane_capacity: 64,
            max_attempts: 5,
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            dead_letter_suffix: ".dlq".into(),
            drain_timeout: Duration::from_secs(20),
            breaker: BreakerConfig::default(),
            extra: BTreeMap::new(),
        }
    }
}

/// Offsets of one partition that were handed to lanes and not finished yet.
#[derive(Debug, Default)]
struct PartitionOffsets {
    in_flight: BTreeSet<i64>,
    /// One past the highest offset handed out.
    next: i64,
    /// The last offset stored for commit.
    stored: i64,
}

type Tracker = Arc<Mutex<HashMap<(String, i32), PartitionOffsets>>>;

fn lock(t: &Tracker) -> std::sync::MutexGuard<'_, HashMap<(String, i32), PartitionOffsets>> {
    t.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// librdkafka callbacks: rebalances (forget revoked partitions, keep new ones paused while the
/// breaker is open) and statistics (consumer lag).
struct Ctx {
    tracker: Tracker,
    lag: Arc<Mutex<HashMap<(String, i32), i64>>>,
    breaker: Breaker,
}

impl ClientContext for Ctx {
    fn stats(&self, stats: Statistics) {
        let mut lag = self.lag.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        lag.clear();
        for (topic, t) in stats.topics {
            for (partition, p) in t.partitions {
                if partition >= 0 && p.consumer_lag >= 0 {
                    lag.insert((topic.clone(), partition), p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for Ctx {
    fn post_rebalance(&self, consumer: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let mut tracker = lock(&self.tracker);
                for e in tpl.elements() {
                    tracker.remove(&(e.topic().to_owned(), e.partition()));
                }
                tracing::info!(partitions = tpl.count(), "partitions revoked");
            }
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions assigned");
                if self.breaker.state() == BreakerState::Open
                    && let Err(e) = consumer.pause(tpl)
                {
                    tracing::warn!(error = %e, "could not pause newly assigned partitions");
                }
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

struct Metrics {
    processed: Counter<u64>,
    duration: Histogram<f64>,
    paused: Arc<AtomicI64>,
}

impl Metrics {
    fn new(lag: Arc<Mutex<HashMap<(String, i32), i64>>>, group: String, breaker: Breaker) -> Self {
        let meter = cruncan_telemetry::meter("cruncan-kafka");
        let paused = Arc::new(AtomicI64::new(0));
        let observed = Arc::clone(&paused);
        let _paused = meter
            .i64_observable_gauge("messaging.consumer.paused_partitions")
            .with_description("Partitions paused because the circuit breaker is open")
            .with_callback(move |obs| obs.observe(observed.load(Ordering::Relaxed), &[]))
            .build();
        let _state = meter
            .i64_observable_gauge("messaging.consumer.breaker.open")
            .with_description("1 while the consumer's circuit breaker is open (a dependency is down), else 0")
            .with_callback(move |obs| obs.observe(i64::from(breaker.state() == BreakerState::Open), &[]))
            .build();
        // Observed when metrics are collected: the lag librdkafka last reported per partition.
        let _gauge = meter
            .i64_observable_gauge("messaging.kafka.consumer.lag")
            .with_description("Messages between the committed position and the end of the partition")
            .with_callback(move |obs| {
                for ((topic, partition), lag) in
                    lag.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter()
                {
                    obs.observe(
                        *lag,
                        &[
                            KeyValue::new("messaging.destination.name", topic.clone()),
                            KeyValue::new("messaging.destination.partition.id", partition.to_string()),
                            KeyValue::new("messaging.consumer.group.name", group.clone()),
                        ],
                    );
                }
            })
            .build();
        Self {
            processed: meter
                .u64_counter("messaging.process.messages")
                .with_description("Messages handled, by outcome: success, retry (an attempt failed and will be retried), dead_letter")
                .build(),
            duration: meter
                .f64_histogram("messaging.process.duration")
                .with_unit("s")
                .with_description("Time to handle one message, retries included")
                .with_boundaries(cruncan_telemetry::SECONDS_BOUNDARIES.to_vec())
                .build(),
            paused,
        }
    }
}

/// The group consumer. Build it, then [`Consumer::run`] it with a handler until shutdown.
pub struct Consumer {
    cfg: ConsumerConfig,
    inner: Arc<StreamConsumer<Ctx>>,
    tracker: Tracker,
    dead_letters: Producer,
    metrics: Arc<Metrics>,
    breaker: Breaker,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

impl Consumer {
    // ANCHOR: consumer_new
    /// Creates the consumer and subscribes. `dead_letters` produces to the dead-letter topics.
    pub fn new(cfg: ConsumerConfig, dead_letters: Producer) -> anyhow::Result<Self> {
        let tracker: Tracker = Arc::default();
        let lag = Arc::default();
        let breaker = Breaker::new(cfg.breaker.clone());
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", &cfg.brokers)
            .set("group.id", &cfg.group_id)
            // Commit in the background, but only offsets we stored: those of finished messages.
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", "1000")
            .set("auto.offset.reset", "earliest")
            .set("statistics.interval.ms", "5000")
            .set("partition.assignment.strategy", "cooperative-sticky");
        for (k, v) in &cfg.extra {
            cc.set(k, v);
        }
        let ctx = Ctx { tracker: Arc::clone(&tracker), lag: Arc::clone(&lag), breaker: breaker.clone() };
        let inner: StreamConsumer<Ctx> = cc.create_with_context(ctx).context("creating Kafka consumer")?;
        let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
        inner.subscribe(&topics).with_context(|| format!("subscribing to {topics:?}"))?;
        let metrics = Arc::new(Metrics::new(lag, cfg.group_id.clone(), breaker.clone()));
        Ok(Self { cfg, inner: Arc::new(inner), tracker, dead_letters, metrics, breaker })
    }
    // ANCHOR_END: consumer_new

    /// The circuit breaker, to observe its state (readiness, tests).
    pub fn breaker(&self) -> Breaker {
        self.breaker.clone()
    }

    // ANCHOR: pause_resume
    /// Pauses (breaker open) or resumes (closed) every assigned partition. Paused, the consumer
    /// keeps polling, so it stays in its group, but fetches nothing; offsets do not move.
    fn apply_breaker(&self, state: BreakerState) {
        let assignment = match self.inner.assignment() {
            Ok(a) => a,
            Err(e) => return tracing::warn!(error = %e, "could not read the assignment"),
        };
        let result = match state {
            BreakerState::Open => self.inner.pause(&assignment),
            BreakerState::Closed => self.inner.resume(&assignment),
        };
        match result {
            Ok(()) => {
                let n = if state == BreakerState::Open { assignment.count() as i64 } else { 0 };
                self.metrics.paused.store(n, Ordering::Relaxed);
                tracing::info!(partitions = assignment.count(), ?state, "partitions paused or resumed");
            }
            Err(e) => tracing::warn!(error = %e, ?state, "pause/resume failed"),
        }
    }
    // ANCHOR_END: pause_resume

    // ANCHOR: consumer_run
    /// Polls and dispatches until `shutdown` fires, then lets each lane finish the message it is
    /// handling (queued ones are left for the next owner), stores their offsets and commits.
    pub async fn run<H: Handler>(self, handler: Arc<H>, shutdown: Shutdown) -> anyhow::Result<()> {
        let lanes_stop = Shutdown::new();
        let mut lanes = Vec::with_capacity(self.cfg.concurrency);
        let mut senders = Vec::with_capacity(self.cfg.concurrency);
        for _ in 0..self.cfg.concurrency.max(1) {
            let (tx, rx) = mpsc::channel::<Message>(self.cfg.lane_capacity.max(1));
            senders.push(tx);
            let lane = Lane {
                handler: Arc::clone(&handler),
                consumer: Arc::clone(&self.inner),
                tracker: Arc::clone(&self.tracker),
                dead_letters: self.dead_letters.clone(),
                cfg: self.cfg.clone(),
                metrics: Arc::clone(&self.metrics),
                stop: lanes_stop.clone(),
                breaker: self.breaker.clone(),
            };
            lanes.push(tokio::spawn(lane.run(rx)));
        }

        let mut breaker_state = self.breaker.subscribe();
        loop {
            let received = tokio::select! {
                biased;
                () = shutdown.wait() => break,
                Ok(()) = breaker_state.changed() => {
                    let state = *breaker_state.borrow_and_update();
                    self.apply_breaker(state);
                    continue;
                }
                received = self.inner.recv() => received,
            };
            let msg = match received {
                Ok(m) => to_owned(&m),
                Err(e) => {
                    // Broker hiccups surface here; librdkafka reconnects by itself.
                    tracing::warn!(error = %e, "kafka consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            {
                let mut tracker = lock(&self.tracker);
                let p = tracker.entry((msg.topic.clone(), msg.partition)).or_default();
                p.in_flight.insert(msg.offset);
                p.next = p.next.max(msg.offset + 1);
            }
            let lane = lane_of(&msg, senders.len());
            tokio::select! {
                biased;
                () = shutdown.wait() => break,
                sent = senders[lane].send(msg) => if sent.is_err() {
                    anyhow::bail!("consumer lane {lane} stopped unexpectedly");
                },
            }
        }

        tracing::info!(group = %self.cfg.group_id, "consumer stopping: finishing in-flight messages");
        lanes_stop.trigger();
        drop(senders);
        let drained = tokio::time::timeout(self.cfg.drain_timeout, futures::future::join_all(lanes)).await;
        if drained.is_err() {
            tracing::warn!(timeout = ?self.cfg.drain_timeout, "drain deadline passed; unfinished messages will be redelivered");
        }
        let consumer = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => tracing::info!("final offsets committed"),
            // Nothing stored since the last auto-commit is not a failure.
            Err(e) => tracing::info!(error = %e, "final commit had nothing to do or failed"),
        })
        .await
        .context("final commit task")?;
        Ok(())
    }
    // ANCHOR_END: consumer_run
}

fn to_owned(m: &rdkafka::message::BorrowedMessage<'_>) -> Message {
    let headers = m
        .headers()
        .map(|hs| {
            hs.iter().map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec).unwrap_or_default())).collect()
        })
        .unwrap_or_default();
    Message {
        payload: m.payload().map(<[u8]>::to_vec),
        key: m.key().map(<[u8]>::to_vec),
        headers,
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
    }
}

/// Same partition and key → same lane, so per-key order holds; keyless messages go by partition.
fn lane_of(msg: &Message, lanes: usize) -> usize {
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

struct Lane<H> {
    handler: Arc<H>,
    consumer: Arc<StreamConsumer<Ctx>>,
    tracker: Tracker,
    dead_letters: Producer,
    cfg: ConsumerConfig,
    metrics: Arc<Metrics>,
    stop: Shutdown,
    breaker: Breaker,
}

/// How one message ended.
enum Finished {
    Done,
    DeadLettered,
    /// Stopped before finishing: its offset must not be stored.
    Abandoned,
}

impl<H: Handler> Lane<H> {
    async fn run(self, mut rx: mpsc::Receiver<Message>) {
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

    // ANCHOR: lane_process
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
            messaging.consumer.group.name = %self.cfg.group_id,
        );
        // The remote parent: the trace of whoever produced the record.
        let _ = span.set_parent(cruncan_telemetry::extract_context(&KafkaHeaderExtractor(&msg.headers)));
        // ANCHOR_END: process_span
        let started = Instant::now();
        let outcome = async {
            // Attempts made while the breaker is open are the outage's, not the message's.
            let mut attempt = 0u32;
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
                        if state == BreakerState::Closed && attempt >= self.cfg.max_attempts {
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
                    backoff(&self.cfg, attempt)
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
    // ANCHOR_END: lane_process

    /// Produces the record to `<topic>.dlq`; keeps trying (never skips a message) until it
    /// succeeds or the consumer stops.
    async fn dead_letter(&self, msg: &Message, error: &str, reason: &str, attempts: u32) -> Finished {
        let mut headers = msg.headers.clone();
        headers.extend([
            (DeadLetterHeaders::ERROR.to_owned(), error.as_bytes().to_vec()),
            (DeadLetterHeaders::REASON.to_owned(), reason.as_bytes().to_vec()),
            (DeadLetterHeaders::ATTEMPTS.to_owned(), attempts.to_string().into_bytes()),
            (DeadLetterHeaders::TOPIC.to_owned(), msg.topic.as_bytes().to_vec()),
            (DeadLetterHeaders::PARTITION.to_owned(), msg.partition.to_string().into_bytes()),
            (DeadLetterHeaders::OFFSET.to_owned(), msg.offset.to_string().into_bytes()),
        ]);
        let topic = format!("{}{}", msg.topic, self.cfg.dead_letter_suffix);
        let mut attempt = 0;
        loop {
            attempt += 1;
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
                        () = tokio::time::sleep(backoff(&self.cfg, attempt)) => {}
                    }
                }
            }
        }
    }

    // ANCHOR: finish_offset
    /// Marks the offset finished and stores the partition's new commit position: the lowest
    /// offset still in flight, or one past the highest handed out when none is.
    fn finish(&self, msg: &Message) {
        let key = (msg.topic.clone(), msg.partition);
        let position = {
            let mut tracker = lock(&self.tracker);
            let Some(p) = tracker.get_mut(&key) else { return }; // revoked meanwhile
            p.in_flight.remove(&msg.offset);
            let position = p.in_flight.first().copied().unwrap_or(p.next);
            if position <= p.stored {
                return;
            }
            p.stored = position;
            position
        };
        let mut tpl = TopicPartitionList::new();
        if tpl.add_partition_offset(&msg.topic, msg.partition, Offset::Offset(position)).is_ok()
            && let Err(e) = self.consumer.store_offsets(&tpl)
        {
            tracing::debug!(error = %e, partition = msg.partition, "offset not stored (partition revoked?)");
        }
    }
    // ANCHOR_END: finish_offset
}

/// Exponential backoff with "equal jitter": uniform in [d/2, d] where d = initial * 2^(attempt-1),
/// so a retry never comes sooner than half the nominal delay.
fn backoff(cfg: &ConsumerConfig, attempt: u32) -> Duration {
    let exp = cfg.backoff_initial.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let capped = exp.min(cfg.backoff_max);
    let half = capped / 2;
    half + half.mul_f64(rand_unit())
}

/// A cheap uniform [0, 1) without a global RNG: hashes the time and a counter.
fn rand_unit() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = DefaultHasher::new();
    Instant::now().hash(&mut h);
    COUNTER.fetch_add(1, Ordering::Relaxed).hash(&mut h);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let cfg = ConsumerConfig {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(1000),
            ..ConsumerConfig::new("x", "g", vec![])
        };
        for (attempt, full) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (30, 1000)] {
            for _ in 0..50 {
                let d = backoff(&cfg, attempt).as_millis() as u64;
                assert!(
                    (full / 2..=full).contains(&d),
                    "attempt {attempt}: {d} ms not in [{}, {full}]",
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
            headers: vec![],
            topic: "t".into(),
            partition: p,
            offset: 0,
        };
        assert_eq!(lane_of(&m(0, "a"), 16), lane_of(&m(0, "a"), 16));
        let lanes: BTreeSet<_> = (0..100).map(|i| lane_of(&m(0, &format!("k{i}")), 16)).collect();
        assert!(lanes.len() > 8, "keys spread over lanes: {lanes:?}");
    }
}
