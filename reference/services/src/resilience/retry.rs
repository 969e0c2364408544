//! Retries for idempotent calls only, bounded three ways: a retry budget shared by every call to
//! the dependency (tower's `TpsBudget`), a most-attempts cap, and the caller's deadline; waits
//! are jittered exponential backoffs (tower's `ExponentialBackoff`).

use super::call::{Call, Reply};
use std::sync::Arc;
use std::time::Duration;
use tower::retry::Policy;
use tower::retry::backoff::{Backoff as _, ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff as _};
use tower::retry::budget::{Budget as _, TpsBudget};
use tower::util::rng::HasherRng;
use tower_resilience_circuitbreaker::CircuitBreakerError;

// ANCHOR: policy
/// The retry policy of one dependency; tower clones it for every call, so `attempt` and the
/// backoff start afresh while the budget is shared.
#[derive(Clone)]
pub struct BudgetedRetry {
    budget: Arc<TpsBudget>,
    backoff: ExponentialBackoff,
    max_backoff: Duration,
    max_attempts: u32,
    attempt: u32,
}

impl<E> Policy<Call, Reply, CircuitBreakerError<E>> for BudgetedRetry {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        call: &mut Call,
        result: &mut Result<Reply, CircuitBreakerError<E>>,
    ) -> Option<Self::Future> {
        self.attempt += 1;
        if self.attempt == 1 {
            // Every call earns the budget a fraction of a retry, whatever its outcome.
            self.budget.deposit();
        }
        match result {
            Ok(_) => None,
            // The breaker is open: retrying would only be refused again.
            Err(CircuitBreakerError::OpenCircuit) => None,
            Err(CircuitBreakerError::Inner(_)) => {
                let worth_it = call.idempotent
                    && self.attempt < self.max_attempts
                    && call.deadline.remaining() > self.max_backoff;
                // Withdraw last: a retry we would not make must not spend the budget.
                (worth_it && self.budget.withdraw()).then(|| self.backoff.next_backoff())
            }
        }
    }

    fn clone_request(&mut self, call: &Call) -> Option<Call> {
        call.idempotent.then(|| call.clone())
    }
}
// ANCHOR_END: policy

impl BudgetedRetry {
    /// A policy allowing `percent` retries per call (plus `min_per_sec`) over a 10 s window,
    /// at most `max_attempts` attempts, waiting `min..=max` with jitter between them.
    pub fn new(
        percent: f32,
        min_per_sec: u32,
        max_attempts: u32,
        min: Duration,
        max: Duration,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!((0.0..=10.0).contains(&percent), "retry_budget_percent must be 0 to 10");
        let backoff = ExponentialBackoffMaker::new(min, max, 1.0, HasherRng::default())
            .map_err(|e| anyhow::anyhow!("backoff: {e}"))?
            .make_backoff();
        Ok(Self {
            budget: Arc::new(TpsBudget::new(Duration::from_secs(10), min_per_sec, percent)),
            backoff,
            max_backoff: max,
            max_attempts: max_attempts.max(1),
            attempt: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deadline::Deadline;
    use crate::resilience::call::AttemptError;
    use std::sync::atomic::{AtomicU32, Ordering};
    use tower::{ServiceExt as _, service_fn};

    /// A dependency that always fails, counting the attempts it sees.
    async fn attempts(policy: BudgetedRetry, call: Call) -> u32 {
        let seen = Arc::new(AtomicU32::new(0));
        let s = seen.clone();
        let failing = service_fn(move |_c: Call| {
            s.fetch_add(1, Ordering::SeqCst);
            async {
                Err::<Reply, _>(CircuitBreakerError::Inner(AttemptError::Status(
                    http::StatusCode::BAD_GATEWAY,
                )))
            }
        });
        let _ = tower::retry::Retry::new(policy, failing).oneshot(call).await;
        seen.load(Ordering::SeqCst)
    }

    fn policy() -> BudgetedRetry {
        BudgetedRetry::new(0.1, 10, 3, Duration::from_millis(1), Duration::from_millis(2)).unwrap()
    }

    #[tokio::test]
    async fn idempotent_calls_are_retried_up_to_the_cap() {
        let call = Call::get("/x", Deadline::after(Duration::from_secs(5)));
        assert_eq!(attempts(policy(), call).await, 3);
    }

    #[tokio::test]
    async fn a_non_idempotent_call_is_sent_once() {
        let call = Call::post("/x", serde_json::json!({}), Deadline::after(Duration::from_secs(5)), false);
        assert_eq!(attempts(policy(), call).await, 1);
    }

    #[tokio::test]
    async fn no_retry_when_the_deadline_cannot_fit_a_backoff() {
        let call = Call::get("/x", Deadline::after(Duration::from_millis(1)));
        assert_eq!(attempts(policy(), call).await, 1);
    }

    #[tokio::test]
    async fn an_empty_budget_stops_retries() {
        let p = BudgetedRetry::new(0.0, 0, 3, Duration::from_millis(1), Duration::from_millis(2)).unwrap();
        assert_eq!(attempts(p, Call::get("/x", Deadline::after(Duration::from_secs(5)))).await, 1);
    }
}
