//! A circuit breaker per dependency (tower-resilience), its state as a metric, and a short
//! history of its transitions for tests and logs.

use crate::config::CallSettings;
use opentelemetry::KeyValue;
use opentelemetry::metrics::ObservableGauge;
use std::sync::{Arc, Mutex};
use tower_resilience_circuitbreaker::{CircuitBreakerHandle, CircuitBreakerLayer, CircuitState};

/// Observes one dependency's breaker.
#[derive(Clone)]
pub struct Breaker {
    handle: CircuitBreakerHandle,
    transitions: Arc<Mutex<Vec<CircuitState>>>,
    _gauge: Arc<ObservableGauge<u64>>,
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker").field("state", &self.state()).finish()
    }
}

impl Breaker {
    /// The current state.
    pub fn state(&self) -> CircuitState {
        self.handle.state()
    }

    /// Every state entered so far, oldest first (the first is `Closed`).
    pub fn transitions(&self) -> Vec<CircuitState> {
        self.transitions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

// ANCHOR: breaker
/// The breaker layer for `dependency` and its observer. The breaker counts attempts: timeouts,
/// refused connections and 5xx are failures; 4xx are answers.
pub fn breaker(dependency: &'static str, s: &CallSettings) -> anyhow::Result<(CircuitBreakerLayer, Breaker)> {
    let transitions = Arc::new(Mutex::new(vec![CircuitState::Closed]));
    let log = transitions.clone();
    let (layer, handle) = CircuitBreakerLayer::builder()
        .name(dependency)
        .failure_rate_threshold(s.breaker_failure_rate)
        .sliding_window_size(s.breaker_window)
        .minimum_number_of_calls(s.breaker_min_calls)
        .wait_duration_in_open(s.breaker_open)
        .permitted_calls_in_half_open(s.breaker_half_open_calls)
        .on_state_transition(move |from, to| {
            tracing::warn!(dependency, ?from, ?to, "circuit breaker changed state");
            log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(to);
        })
        .build_with_handle()?;
    let observed = handle.clone();
    let gauge = cruncan_telemetry::meter("services")
        .u64_observable_gauge("services.breaker.state")
        .with_description("Circuit breaker state per dependency: 0 closed, 1 open, 2 half-open")
        .with_callback(move |g| {
            g.observe(observed.state() as u64, &[KeyValue::new("dependency", dependency)])
        })
        .build();
    Ok((layer, Breaker { handle, transitions, _gauge: Arc::new(gauge) }))
}
// ANCHOR_END: breaker
