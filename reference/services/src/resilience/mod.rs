//! How the order service calls another service: one tower stack per dependency.
//!
//! ```text
//! bulkhead (load_shed + concurrency_limit)   fail at once when N calls are in flight
//!   retry (budget, backoff, idempotent only)  each attempt below is one try
//!     circuit breaker (tower-resilience)      refuse at once while the dependency is failing
//!       timeout per attempt                   never wait longer than this for one answer
//!         HTTP (remaining deadline in a header)
//! ```

mod breaker;
mod call;
mod retry;

pub use breaker::{Breaker, breaker};
pub use call::{AttemptError, Call, Http, Reply};
pub use retry::BudgetedRetry;
pub use tower_resilience_circuitbreaker::CircuitState;

use crate::config::CallSettings;
use http::StatusCode;
use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder, ServiceExt as _};
use tower_resilience_circuitbreaker::CircuitBreakerError;

/// Why a call to a dependency gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// An attempt took longer than its timeout.
    #[error("timed out")]
    Timeout,
    /// The breaker is open: the dependency failed recently and is left alone for a while.
    #[error("circuit open")]
    CircuitOpen,
    /// The bulkhead is full: too many calls to it are in flight already.
    #[error("too many calls in flight")]
    Saturated,
    /// The caller's deadline passed.
    #[error("deadline exceeded")]
    Deadline,
    /// It answered 5xx or 429.
    #[error("answered {0}")]
    Status(StatusCode),
    /// It could not be reached.
    #[error("unreachable")]
    Unreachable(String),
    /// It answered something we do not understand.
    #[error("unexpected answer: {0}")]
    Protocol(String),
}

/// A failed call, naming the dependency.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{dependency}: {failure}")]
pub struct DependencyError {
    /// `users` or `products`.
    pub dependency: &'static str,
    /// What happened.
    pub failure: Failure,
}

/// One dependency: its layered client and the observer of its breaker.
#[derive(Clone)]
pub struct Dependency {
    name: &'static str,
    stack: BoxCloneSyncService<Call, Reply, BoxError>,
    breaker: Breaker,
    calls: Counter<u64>,
}

impl std::fmt::Debug for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dependency").field("name", &self.name).field("breaker", &self.breaker).finish()
    }
}

impl Dependency {
    // ANCHOR: stack
    /// The layered client of `name` at `base`.
    pub fn new(
        name: &'static str,
        base: &str,
        client: reqwest::Client,
        s: &CallSettings,
    ) -> anyhow::Result<Self> {
        let (breaker_layer, breaker) = breaker(name, s)?;
        let retry = BudgetedRetry::new(
            s.retry_budget_percent,
            s.retry_budget_min_per_sec,
            s.max_attempts,
            s.backoff_min,
            s.backoff_max,
        )?;
        let stack = ServiceBuilder::new()
            .load_shed()
            .concurrency_limit(s.max_concurrent.max(1))
            .retry(retry)
            .layer(breaker_layer)
            .timeout(s.attempt_timeout)
            .service(Http::new(client, base));
        let calls = cruncan_telemetry::meter("services")
            .u64_counter("services.dependency.calls")
            .with_description("Calls to a dependency by outcome (after retries)")
            .build();
        Ok(Self { name, stack: BoxCloneSyncService::new(stack), breaker, calls })
    }
    // ANCHOR_END: stack

    /// Sends `call` through the layers.
    pub async fn send(&self, call: Call) -> Result<Reply, DependencyError> {
        let result = self
            .stack
            .clone()
            .oneshot(call)
            .await
            .map_err(|e| DependencyError { dependency: self.name, failure: classify(&e) });
        let outcome = match &result {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.failure.to_string(),
        };
        self.calls.add(1, &[KeyValue::new("dependency", self.name), KeyValue::new("outcome", outcome)]);
        result
    }

    /// A `Protocol` failure of this dependency.
    pub fn protocol(&self, what: impl Into<String>) -> DependencyError {
        DependencyError { dependency: self.name, failure: Failure::Protocol(what.into()) }
    }

    /// Its breaker.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }
}

/// The layer that refused, or the attempt's own failure.
fn classify(e: &BoxError) -> Failure {
    if e.is::<tower::load_shed::error::Overloaded>() {
        return Failure::Saturated;
    }
    match e.downcast_ref::<CircuitBreakerError<BoxError>>() {
        Some(CircuitBreakerError::OpenCircuit) => Failure::CircuitOpen,
        Some(CircuitBreakerError::Inner(inner)) => attempt(inner),
        None => attempt(e),
    }
}

fn attempt(e: &BoxError) -> Failure {
    if e.is::<tower::timeout::error::Elapsed>() {
        return Failure::Timeout;
    }
    match e.downcast_ref::<AttemptError>() {
        Some(AttemptError::Deadline) => Failure::Deadline,
        Some(AttemptError::Status(s)) => Failure::Status(*s),
        Some(AttemptError::Transport(t)) => Failure::Unreachable(t.clone()),
        None => Failure::Unreachable(e.to_string()),
    }
}
