//! Timeouts and retry policies, as code next to the workflows that use them. The server keeps the
//! retry schedule: a retry happens even if the worker that ran the failed attempt is gone.

use std::time::Duration;
use temporalio_common::RetryPolicy;
use temporalio_sdk::ActivityOptions;

/// A short database step (record, close, refund, saga participant calls): retried until it
/// works, backing off to at most 5s between attempts. Infrastructure failures are waited out,
/// not turned into business failures.
pub fn quick_step() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(10))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_millis(200))
                .maximum_interval(Duration::from_secs(5))
                .build(),
        )
        .build()
}

// ANCHOR: charging
/// Charging a card: a processor timeout is retried (200ms, 400ms, 800ms, ...) up to 5
/// attempts; a decline is non-retryable and ends the retries at once.
pub fn charging() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(10))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_millis(200))
                .backoff_coefficient(2.0)
                .maximum_attempts(5)
                .build(),
        )
        .build()
}
// ANCHOR_END: charging

// ANCHOR: brewing
/// Brewing takes a while, so the worker heartbeats: a worker that stops heartbeating
/// for 2s is taken for dead and the attempt is retried elsewhere, long before the 60s
/// start-to-close timeout. After 5 failed attempts the order is refunded.
pub fn brewing() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(60))
        .heartbeat_timeout(Duration::from_secs(2))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_millis(200))
                .backoff_coefficient(2.0)
                .maximum_attempts(5)
                .build(),
        )
        .build()
}
// ANCHOR_END: brewing

// ANCHOR: saga_step
/// A saga step: an answer within 3s, retried with the same idempotency key up to 4
/// times; a refusal is final. After that the saga compensates (the step too: it may
/// have happened).
pub fn saga_step() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(3))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_millis(100))
                .maximum_interval(Duration::from_secs(1))
                .maximum_attempts(4)
                .build(),
        )
        .build()
}

/// A compensation must not give up: retried until it works, backing off to 10s.
pub fn compensation() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(3))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_millis(100))
                .maximum_interval(Duration::from_secs(10))
                .build(),
        )
        .build()
}
// ANCHOR_END: saga_step
