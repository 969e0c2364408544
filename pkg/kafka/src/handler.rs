//! What a consumer hands to a handler ([`Message`]) and what a handler answers ([`HandlerError`]).

use crate::headers::Headers;
use std::future::Future;
use std::time::Duration;

/// One consumed record, owned, as a [`Handler`] sees it.
#[derive(Debug, Clone)]
pub struct Message {
    /// The record value (`None` for a tombstone).
    pub payload: Option<Vec<u8>>,
    /// The record key.
    pub key: Option<Vec<u8>>,
    /// Headers in record order.
    pub headers: Headers,
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
        self.headers.get_str(name)
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
