//! A relay's instruments: pending rows and the oldest one's age (the broker-outage signal),
//! publish latency, published rows and failed attempts. Every series carries `outbox.table`, so
//! the relays of one process (the saga runs four) stay apart.

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// One relay's metrics.
pub(crate) struct RelayMetrics {
    pub(crate) pending: Arc<AtomicI64>,
    pub(crate) oldest_ms: Arc<AtomicI64>,
    pub(crate) latency: Histogram<f64>,
    pub(crate) published: Counter<u64>,
    pub(crate) failed: Counter<u64>,
    /// `outbox.table`, on every series.
    pub(crate) table: KeyValue,
}

impl RelayMetrics {
    pub(crate) fn new(table: &str) -> Self {
        let meter = cruncan_telemetry::meter("cruncan-outbox");
        let table = KeyValue::new("outbox.table", table.to_owned());
        let pending = Arc::new(AtomicI64::new(0));
        let (observed, attrs) = (Arc::clone(&pending), [table.clone()]);
        let _gauge = meter
            .i64_observable_gauge("outbox.pending")
            .with_description("Outbox rows not yet published")
            .with_callback(move |obs| obs.observe(observed.load(Ordering::Relaxed), &attrs))
            .build();
        let oldest_ms = Arc::new(AtomicI64::new(0));
        let (observed, attrs) = (Arc::clone(&oldest_ms), [table.clone()]);
        let _age = meter
            .f64_observable_gauge("outbox.oldest_pending_age")
            .with_unit("s")
            .with_description(
                "Age of the oldest unpublished outbox row (0 when none): the broker-outage signal",
            )
            .with_callback(move |obs| obs.observe(observed.load(Ordering::Relaxed) as f64 / 1000.0, &attrs))
            .build();
        let failed =
            meter.u64_counter("outbox.publish.errors").with_description("Failed publish attempts").build();
        // Export the series from the start, so rate() shows 0, not "no data".
        failed.add(0, std::slice::from_ref(&table));
        Self {
            pending,
            oldest_ms,
            latency: meter
                .f64_histogram("outbox.publish.latency")
                .with_unit("s")
                .with_description("From the row's created_at to the broker's acknowledgement")
                .with_boundaries(cruncan_telemetry::SECONDS_BOUNDARIES.to_vec())
                .build(),
            published: meter
                .u64_counter("outbox.published")
                .with_description("Outbox rows published")
                .build(),
            failed,
            table,
        }
    }
}
