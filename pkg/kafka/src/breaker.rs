//! The consumer's circuit breaker: when a dependency is down, stop consuming instead of burning
//! every message's retries and dead-lettering the topic.
//!
//! Closed, every message runs and retryable failures are retried per message. After
//! `failure_threshold` retryable failures in a row (across all lanes, no success in between),
//! or at once for a [`HandlerError::Unavailable`](crate::HandlerError::Unavailable), it opens:
//! the consumer pauses its partitions (no new messages are fetched, no offsets move), and one
//! lane at a time probes with the message it holds, with a delay that doubles up to
//! `probe_max`. The first success closes it and consumption resumes. Attempts made while open
//! do not count towards a message's `max_attempts`: an outage dead-letters nothing.
//!
//! A threshold above `max_attempts` keeps the dead-letter path for the message that fails alone:
//! its retries run out before it alone can open the breaker.

use opentelemetry::KeyValue;
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard, watch};

/// Breaker settings (the consumer's `breaker:` section; durations as humantime strings).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerSettings {
    /// Retryable failures in a row, across lanes, that open the breaker.
    pub failure_threshold: u32,
    /// First delay between probes while open.
    #[serde(with = "humantime_serde")]
    pub probe_initial: Duration,
    /// Largest delay between probes.
    #[serde(with = "humantime_serde")]
    pub probe_max: Duration,
}

impl Default for BreakerSettings {
    /// 10 failures in a row; probes from 1 s, doubling to 30 s.
    fn default() -> Self {
        Self {
            failure_threshold: 10,
            probe_initial: Duration::from_secs(1),
            probe_max: Duration::from_secs(30),
        }
    }
}

/// Whether messages flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Consuming.
    Closed,
    /// A dependency is down: partitions paused, one lane probing.
    Open,
}

// ANCHOR: breaker
/// Shared by the poll loop (which pauses and resumes partitions on its changes) and the lanes.
#[derive(Debug, Clone)]
pub struct Breaker {
    settings: BreakerSettings,
    state: Arc<watch::Sender<BreakerState>>,
    consecutive: Arc<AtomicU32>,
    failed_probes: Arc<AtomicU32>,
    probe: Arc<Mutex<()>>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(settings: BreakerSettings) -> Self {
        let (state, _) = watch::channel(BreakerState::Closed);
        Self {
            settings,
            state: Arc::new(state),
            consecutive: Arc::default(),
            failed_probes: Arc::default(),
            probe: Arc::default(),
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        *self.state.borrow()
    }

    /// Changes of state, for the poll loop.
    pub fn subscribe(&self) -> watch::Receiver<BreakerState> {
        self.state.subscribe()
    }

    /// A message succeeded (or failed for its own reasons): the dependency answers.
    pub fn record_success(&self) {
        self.consecutive.store(0, Ordering::Relaxed);
        self.failed_probes.store(0, Ordering::Relaxed);
        self.set(BreakerState::Closed);
    }

    /// A retryable failure; returns the state after it.
    pub fn record_failure(&self) -> BreakerState {
        let n = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.settings.failure_threshold {
            self.set(BreakerState::Open);
        }
        self.state()
    }

    /// A dependency is known to be down or misconfigured: open at once.
    pub fn trip(&self) {
        self.set(BreakerState::Open);
    }

    /// Waits for the turn to probe (one lane at a time while open).
    pub async fn probe_turn(&self) -> OwnedMutexGuard<()> {
        Arc::clone(&self.probe).lock_owned().await
    }

    /// How long to wait after a failed probe: doubling from `probe_initial` to `probe_max`.
    pub fn next_probe_delay(&self) -> Duration {
        let n = self.failed_probes.fetch_add(1, Ordering::Relaxed);
        self.settings.probe_initial.saturating_mul(1u32 << n.min(16)).min(self.settings.probe_max)
    }

    fn set(&self, to: BreakerState) {
        let changed = self.state.send_if_modified(|s| std::mem::replace(s, to) != to);
        if changed {
            match to {
                BreakerState::Open => tracing::warn!(
                    "circuit breaker open: a dependency is down; pausing consumption and probing"
                ),
                BreakerState::Closed => {
                    tracing::info!("circuit breaker closed: the dependency answers; resuming consumption")
                }
            }
            metrics()
                .transitions
                .add(1, &[KeyValue::new("state", if to == BreakerState::Open { "open" } else { "closed" })]);
        }
    }
}
// ANCHOR_END: breaker

struct Metrics {
    transitions: opentelemetry::metrics::Counter<u64>,
}

fn metrics() -> &'static Metrics {
    static M: std::sync::OnceLock<Metrics> = std::sync::OnceLock::new();
    M.get_or_init(|| Metrics {
        transitions: cruncan_telemetry::meter("cruncan-kafka")
            .u64_counter("messaging.consumer.breaker.transitions")
            .with_description("Circuit breaker state changes, by the state entered")
            .build(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32) -> Breaker {
        Breaker::new(BreakerSettings {
            failure_threshold: threshold,
            probe_initial: Duration::from_millis(100),
            probe_max: Duration::from_millis(350),
        })
    }

    #[test]
    fn opens_after_the_threshold_of_failures_in_a_row_and_closes_on_success() {
        let b = breaker(3);
        assert_eq!(b.record_failure(), BreakerState::Closed);
        assert_eq!(b.record_failure(), BreakerState::Closed);
        assert_eq!(b.record_failure(), BreakerState::Open);
        b.record_success();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_success_in_between_resets_the_count() {
        let b = breaker(3);
        b.record_failure();
        b.record_failure();
        b.record_success();
        b.record_failure();
        assert_eq!(b.record_failure(), BreakerState::Closed, "only two in a row since the success");
    }

    #[test]
    fn trip_opens_at_once_and_subscribers_see_it() {
        let b = breaker(100);
        let mut rx = b.subscribe();
        b.trip();
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), BreakerState::Open);
    }

    #[test]
    fn probe_delays_double_up_to_the_cap_and_reset_on_success() {
        let b = breaker(1);
        let delays: Vec<u64> = (0..4).map(|_| b.next_probe_delay().as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 350, 350]);
        b.record_success();
        assert_eq!(b.next_probe_delay(), Duration::from_millis(100));
    }

    #[tokio::test]
    async fn one_prober_at_a_time() {
        let b = breaker(1);
        let first = b.probe_turn().await;
        assert!(tokio::time::timeout(Duration::from_millis(50), b.probe_turn()).await.is_err());
        drop(first);
        assert!(tokio::time::timeout(Duration::from_millis(50), b.probe_turn()).await.is_ok());
    }
}
