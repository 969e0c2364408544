//! The consumer's metrics: messages by outcome, handling time, lag, paused partitions.

use crate::breaker::{Breaker, BreakerState};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

/// Consumer lag per (topic, partition), as librdkafka's statistics last reported it.
pub(crate) type Lag = Arc<Mutex<HashMap<(String, i32), i64>>>;

/// The consumer's instruments.
pub(crate) struct Metrics {
    pub(crate) processed: Counter<u64>,
    pub(crate) duration: Histogram<f64>,
    pub(crate) paused: Arc<AtomicI64>,
}

impl Metrics {
    pub(crate) fn new(lag: Lag, group: String, breaker: Breaker) -> Self {
        let meter = cruncan_telemetry::meter("cruncan-kafka");
        let paused = Arc::new(AtomicI64::new(0));
        let observed = Arc::clone(&paused);
        let _paused = meter
            .i64_observable_gauge("messaging.consumer.paused_partitions")
            .with_description("Partitions paused because the circuit breaker is open")
            .with_callback(move |obs| obs.observe(observed.load(Ordering::Relaxed), &[]))
            .build();
        let _state = meter
            .i64_observable_gauge("messaging.consumer.breaker.open")
            .with_description("1 while the consumer's circuit breaker is open (a dependency is down), else 0")
            .with_callback(move |obs| obs.observe(i64::from(breaker.state() == BreakerState::Open), &[]))
            .build();
        // Observed when metrics are collected: the lag librdkafka last reported per partition.
        let _gauge = meter
            .i64_observable_gauge("messaging.kafka.consumer.lag")
            .with_description("Messages between the committed position and the end of the partition")
            .with_callback(move |obs| {
                for ((topic, partition), lag) in
                    lag.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter()
                {
                    obs.observe(
                        *lag,
                        &[
                            KeyValue::new("messaging.destination.name", topic.clone()),
                            KeyValue::new("messaging.destination.partition.id", partition.to_string()),
                            KeyValue::new("messaging.consumer.group.name", group.clone()),
                        ],
                    );
                }
            })
            .build();
        Self {
            processed: meter
                .u64_counter("messaging.process.messages")
                .with_description("Messages handled, by outcome: success, retry (an attempt failed and will be retried), dead_letter")
                .build(),
            duration: meter
                .f64_histogram("messaging.process.duration")
                .with_unit("s")
                .with_description("Time to handle one message, retries included")
                .with_boundaries(cruncan_telemetry::SECONDS_BOUNDARIES.to_vec())
                .build(),
            paused,
        }
    }
}
