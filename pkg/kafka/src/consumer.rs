//! The at-least-once group consumer: the poll loop.
//!
//! One task polls the broker and hands each message to one of `concurrency` *lanes*
//! ([`crate::lane`]); the lane is chosen by hashing (partition, key), so messages with the same key
//! are handled one after the other, in order, while other keys run in parallel. The
//! [`OffsetTracker`] knows which offsets are still in flight, and the offset stored for commit is
//! always the lowest unfinished one: a crash at any point re-delivers unfinished messages and
//! never skips one.

use crate::breaker::{Breaker, BreakerSettings, BreakerState};
use crate::close::CloseOffRuntime;
use crate::handler::{Handler, Message};
use crate::lane::{Lane, lane_of};
use crate::metrics::{Lag, Metrics};
use crate::offsets::OffsetTracker;
use crate::producer::Producer;
use anyhow::Context as _;
use cruncan_shutdown::Shutdown;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::statistics::Statistics;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a stopping consumer waits to leave its group ([`CloseOffRuntime`]).
const CLOSE_WITHIN: Duration = Duration::from_secs(10);

// ANCHOR: consumer_settings
/// Consumer settings: the `consumer:` section of a service's Kafka config. Durations are
/// humantime strings (`200ms`, `10s`); a misspelt key is an error.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerSettings {
    /// Consumer group.
    pub group_id: String,
    /// Messages handled at once (lanes); messages of one key always share a lane.
    pub concurrency: usize,
    /// Messages a lane may have queued before polling waits (backpressure).
    pub lane_capacity: usize,
    /// Handler runs per message before a retryable failure is dead-lettered.
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt, with jitter.
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    /// Largest retry delay.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Suffix of the dead-letter topic (`<topic><suffix>`).
    pub dead_letter_suffix: String,
    /// How long a graceful stop waits for in-flight messages.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// When a dependency outage pauses consumption instead of dead-lettering.
    pub breaker: BreakerSettings,
    /// Any other librdkafka property; these win.
    #[serde(default)]
    pub extra: BTreeMap<String, String>,
}
// ANCHOR_END: consumer_settings

impl ConsumerSettings {
    /// Defaults: 16 lanes, 5 attempts, 200 ms..10 s backoff, `.dlq` suffix, 20 s drain.
    pub fn new(group_id: impl Into<String>) -> Self {
        Self {
            group_id: group_id.into(),
            concurrency: 16,
            lane_capacity: 64,
            max_attempts: 5,
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            dead_letter_suffix: ".dlq".into(),
            drain_timeout: Duration::from_secs(20),
            breaker: BreakerSettings::default(),
            extra: BTreeMap::new(),
        }
    }

    /// The dead-letter topic of `topic`.
    pub fn dead_letter_topic(&self, topic: &str) -> String {
        format!("{topic}{}", self.dead_letter_suffix)
    }
}

/// librdkafka callbacks: rebalances (forget revoked partitions, keep new ones paused while the
/// breaker is open) and statistics (consumer lag).
pub(crate) struct Ctx {
    offsets: OffsetTracker,
    lag: Lag,
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
                for e in tpl.elements() {
                    let position = self.offsets.committable(e.topic(), e.partition());
                    tracing::debug!(
                        topic = e.topic(),
                        partition = e.partition(),
                        ?position,
                        "giving up partition"
                    );
                    self.offsets.revoke(e.topic(), e.partition());
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

/// The group consumer. Build it, then [`Consumer::run`] it with a handler until shutdown.
pub struct Consumer {
    settings: ConsumerSettings,
    inner: CloseOffRuntime<StreamConsumer<Ctx>>,
    offsets: OffsetTracker,
    dead_letters: Producer,
    metrics: Arc<Metrics>,
    breaker: Breaker,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Consumer {
    // ANCHOR: consumer_new
    /// Creates the consumer of `topics` on the cluster at `brokers` and subscribes.
    /// `dead_letters` produces to the dead-letter topics.
    pub fn new(
        brokers: &str,
        topics: &[String],
        settings: ConsumerSettings,
        dead_letters: Producer,
    ) -> anyhow::Result<Self> {
        let offsets = OffsetTracker::default();
        let lag = Lag::default();
        let breaker = Breaker::new(settings.breaker.clone());
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", brokers)
            .set("group.id", &settings.group_id)
            // Commit in the background, but only offsets we stored: those of finished messages.
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", "1000")
            .set("auto.offset.reset", "earliest")
            .set("statistics.interval.ms", "5000")
            .set("partition.assignment.strategy", "cooperative-sticky");
        for (k, v) in &settings.extra {
            cc.set(k, v);
        }
        let ctx = Ctx { offsets: offsets.clone(), lag: Arc::clone(&lag), breaker: breaker.clone() };
        let inner: StreamConsumer<Ctx> = cc.create_with_context(ctx).context("creating Kafka consumer")?;
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        inner.subscribe(&topics).with_context(|| format!("subscribing to {topics:?}"))?;
        let metrics = Arc::new(Metrics::new(lag, settings.group_id.clone(), breaker.clone()));
        Ok(Self { settings, inner: CloseOffRuntime::new(inner), offsets, dead_letters, metrics, breaker })
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
    /// handling (queued ones are left for the next owner), stores their offsets, commits and
    /// leaves the group. A lane that stops by itself ends the run the same way, with its error.
    pub async fn run<H: Handler>(self, handler: Arc<H>, shutdown: Shutdown) -> anyhow::Result<()> {
        let lanes_stop = Shutdown::new();
        let mut lanes = Vec::with_capacity(self.settings.concurrency);
        let mut senders = Vec::with_capacity(self.settings.concurrency);
        for _ in 0..self.settings.concurrency.max(1) {
            let (tx, rx) = mpsc::channel::<Message>(self.settings.lane_capacity.max(1));
            senders.push(tx);
            let lane = Lane {
                handler: Arc::clone(&handler),
                consumer: Arc::clone(&self.inner),
                offsets: self.offsets.clone(),
                dead_letters: self.dead_letters.clone(),
                settings: self.settings.clone(),
                metrics: Arc::clone(&self.metrics),
                stop: lanes_stop.clone(),
                breaker: self.breaker.clone(),
            };
            lanes.push(tokio::spawn(lane.run(rx)));
        }

        let mut breaker_state = self.breaker.subscribe();
        // A lane that stopped by itself ends the run too, through the same drain and close.
        let mut failed = None;
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
            self.offsets.begin(&msg.topic, msg.partition, msg.offset);
            let lane = lane_of(&msg, senders.len());
            tokio::select! {
                biased;
                () = shutdown.wait() => break,
                sent = senders[lane].send(msg) => if sent.is_err() {
                    failed = Some(anyhow::anyhow!("consumer lane {lane} stopped unexpectedly"));
                    break;
                },
            }
        }

        tracing::info!(group = %self.settings.group_id, "consumer stopping: finishing in-flight messages");
        lanes_stop.trigger();
        drop(senders);
        let drained =
            tokio::time::timeout(self.settings.drain_timeout, futures::future::join_all(lanes.iter_mut()))
                .await;
        if drained.is_err() {
            tracing::warn!(timeout = ?self.settings.drain_timeout, "drain deadline passed; unfinished messages will be redelivered");
            // Their clones of the consumer must go before it is closed (below).
            for lane in &lanes {
                lane.abort();
            }
            futures::future::join_all(lanes).await;
        }
        let consumer = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => tracing::info!("final offsets committed"),
            // Nothing stored since the last auto-commit is not a failure.
            Err(e) => tracing::info!(error = %e, "final commit had nothing to do or failed"),
        })
        .await
        .context("final commit task")?;
        // Leave the group now, so the next member need not wait out a session timeout; but not
        // for ever (see `close`).
        if !self.inner.close(CLOSE_WITHIN).await {
            tracing::error!(within = ?CLOSE_WITHIN, "the Kafka consumer did not close in time; leaving it to the process's exit");
        }
        failed.map_or(Ok(()), Err)
    }
    // ANCHOR_END: consumer_run
}

fn to_owned(m: &rdkafka::message::BorrowedMessage<'_>) -> Message {
    let headers = m
        .headers()
        .map(|hs| hs.iter().map(|h| (h.key, h.value.map(<[u8]>::to_vec).unwrap_or_default())).collect())
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
