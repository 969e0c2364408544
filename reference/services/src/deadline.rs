//! The caller's deadline, carried between services as the remaining budget in milliseconds.
//!
//! A relative budget (like gRPC's `grpc-timeout`) needs no synchronised clocks. Every service
//! reads it at the edge, never grants itself more than its own cap, refuses work whose budget is
//! already spent, and passes what is left to its own dependencies.

use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use std::time::Duration;
use tokio::time::Instant;

/// The header holding the remaining budget in milliseconds.
pub const DEADLINE_HEADER: &str = "x-request-deadline-ms";

// ANCHOR: deadline
/// The moment by which the caller needs an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(Instant);

impl Deadline {
    /// A deadline `budget` from now.
    pub fn after(budget: Duration) -> Self {
        Self(Instant::now() + budget)
    }

    /// The caller's deadline from `headers`, never later than `cap` from now.
    pub fn from_headers(headers: &HeaderMap, cap: Duration) -> Self {
        let asked = headers
            .get(DEADLINE_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_millis);
        Self::after(asked.map_or(cap, |a| a.min(cap)))
    }

    /// Time left (zero once passed).
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// The instant itself.
    pub fn instant(&self) -> Instant {
        self.0
    }

    /// The header value for a downstream call: what is left, in whole milliseconds.
    pub fn header_value(&self) -> String {
        self.remaining().as_millis().to_string()
    }
}

/// Middleware: puts the [`Deadline`] in the request's extensions, refuses a spent budget with
/// 504 and answers 504 when the handler runs past it.
pub async fn enforce(State(cap): State<Duration>, mut req: Request, next: Next) -> Response {
    let deadline = Deadline::from_headers(req.headers(), cap);
    if deadline.remaining().is_zero() {
        return ApiError::DeadlineExceeded.into_response();
    }
    req.extensions_mut().insert(deadline);
    match tokio::time::timeout_at(deadline.instant(), next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::DeadlineExceeded.into_response(),
    }
}
// ANCHOR_END: deadline

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callers_budget_is_capped_and_garbage_is_ignored() {
        let cap = Duration::from_secs(2);
        let mut h = HeaderMap::new();
        assert!(Deadline::from_headers(&h, cap).remaining() > Duration::from_millis(1900));
        h.insert(DEADLINE_HEADER, "300".parse().unwrap());
        let d = Deadline::from_headers(&h, cap).remaining();
        assert!(d <= Duration::from_millis(300) && d > Duration::from_millis(200), "{d:?}");
        h.insert(DEADLINE_HEADER, "999999".parse().unwrap());
        assert!(Deadline::from_headers(&h, cap).remaining() <= cap);
        h.insert(DEADLINE_HEADER, "0".parse().unwrap());
        assert!(Deadline::from_headers(&h, cap).remaining().is_zero());
        h.insert(DEADLINE_HEADER, "soon".parse().unwrap());
        assert!(Deadline::from_headers(&h, cap).remaining() > Duration::from_millis(1900));
    }
}
