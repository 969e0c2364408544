//! When a failing row is tried again, and when the job gives up on it.

use backon::{BackoffBuilder as _, ExponentialBuilder};
use std::time::Duration;

// ANCHOR: policy
/// Backoff between attempts of one row and the cap on attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait after the first failed retry; doubles after each further one (plus jitter).
    pub first_backoff: Duration,
    /// The doubling stops here (jitter may add up to as much again).
    pub max_backoff: Duration,
    /// Retries before a row is parked.
    pub max_attempts: u32,
}

impl RetryPolicy {
    /// How long after attempt number `attempt` (1-based) the row is due again: backon's
    /// exponential backoff with jitter, so rows that failed together do not all come back in the
    /// same instant when the downstream recovers.
    pub fn backoff_after(&self, attempt: u32) -> Duration {
        let steps = usize::try_from(attempt.clamp(1, 64) - 1).unwrap_or(0);
        let delay = ExponentialBuilder::default()
            .with_min_delay(self.first_backoff)
            .with_max_delay(self.max_backoff)
            .with_jitter()
            .without_max_times()
            .build()
            .nth(steps)
            .unwrap_or(self.max_backoff);
        // A PostgreSQL interval holds microseconds; sqlx refuses to round a finer duration.
        Duration::from_micros(u64::try_from(delay.as_micros()).unwrap_or(u64::MAX))
    }

    /// Whether a row that has had `attempts` attempts is given up on.
    pub fn exhausted(&self, attempts: u32) -> bool {
        attempts >= self.max_attempts
    }
}
// ANCHOR_END: policy

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        first_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(8),
        max_attempts: 5,
    };

    #[test]
    fn the_backoff_doubles_up_to_the_cap_with_at_most_as_much_again_as_jitter() {
        for _ in 0..50 {
            for (attempt, floor) in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 8), (40, 8)] {
                let d = POLICY.backoff_after(attempt);
                let floor = Duration::from_secs(floor);
                assert!(d >= floor && d < floor * 2, "attempt {attempt}: {d:?}");
                assert_eq!(d.subsec_nanos() % 1_000, 0, "whole microseconds, as PostgreSQL stores them");
            }
        }
        // Attempt 0 does not exist; it is read as the first.
        assert!(POLICY.backoff_after(0) >= Duration::from_secs(1));
    }

    #[test]
    fn a_row_is_exhausted_after_max_attempts() {
        assert!(!POLICY.exhausted(4));
        assert!(POLICY.exhausted(5));
        assert!(POLICY.exhausted(6));
    }
}
