//! How a relay runs: batch size, wake-ups, shutdown drain, retention of sent rows.

use serde::Deserialize;
use std::time::Duration;

/// Relay settings (the `outbox` section of a service's configuration).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSettings {
    /// Rows claimed and published per transaction.
    pub batch_size: i64,
    /// Poll for rows no wake-up announced (other replicas' rows, a missed wake-up).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// After a wake-up, wait this long for more rows before claiming (0: claim at once).
    #[serde(default, with = "humantime_serde")]
    pub batch_window: Duration,
    /// On shutdown, how long the relay keeps draining pending rows.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Sent rows are deleted this long after they were written; pending rows never are.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for OutboxSettings {
    /// 100 rows a round, a poll every 500 ms, no batch window, 5 s of drain, a day of retention.
    fn default() -> Self {
        Self {
            batch_size: 100,
            poll_interval: Duration::from_millis(500),
            batch_window: Duration::ZERO,
            drain_timeout: Duration::from_secs(5),
            retention: Duration::from_secs(24 * 3600),
        }
    }
}
