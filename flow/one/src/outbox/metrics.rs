//! The relay's instruments: pending rows and the oldest one's age (the broker-outage signal),
//! publish latency, published rows and failed attempts.

use opentelemetry::metrics::{Counter, Histogram};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// The relay's metrics.
pub(super) struct RelayMetrics {
    pub(super) pending: Arc<AtomicI64>,
    pub(super) oldest_ms: Arc<AtomicI64>,
    pub(super) latency: Histogram<f64>,
    pub(super) published: Counter<u64>,
    pub(super) failed: Counter<u64>,
}

impl RelayMetrics {
    pub(super) fn new() -> Self {
        let meter = cruncan_telemetry::meter("one");
        let pending = Arc::new(AtomicI64::new(0));
        let observed = Arc::clone(&pending);
        let _gauge = meter
            .i64_observable_gauge("outbox.pending")
            .with_description("Outbox rows not yet published")
            .with_callback(move |obs| obs.observe(observed.load(Ordering::Relaxed), &[]))
            .build();
        let oldest_ms = Arc::new(AtomicI64::new(0));
        let observed = Arc::clone(&oldest_ms);
        let _age = meter
            .f64_observable_gauge("outbox.oldest_pending_age")
            .with_unit("s")
            .with_description(
                "Age of the oldest unpublished outbox row (0 when none): the broker-outage signal",
            )
            .with_callback(move |obs| obs.observe(observed.load(Ordering::Relaxed) as f64 / 1000.0, &[]))
            .build();
        Self {
            pending,
            oldest_ms,
            latency: meter
                .f64_histogram("outbox.publish.latency")
                .with_unit("s")
                .with_description("From the request's commit to the broker's acknowledgement")
                .with_boundaries(cruncan_telemetry::SECONDS_BOUNDARIES.to_vec())
                .build(),
            published: meter
                .u64_counter("outbox.published")
                .with_description("Outbox rows published")
                .build(),
            failed: {
                let c = meter
                    .u64_counter("outbox.publish.errors")
                    .with_description("Failed publish attempts")
                    .build();
                c.add(0, &[]); // export the series from the start, so rate() shows 0, not "no data"
                c
            },
        }
    }
}
