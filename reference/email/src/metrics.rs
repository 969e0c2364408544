//! The service's metrics, exported over OTLP by the pkg telemetry: created, sent, failed,
//! dead-lettered, send duration, worker in-flight, consumer pending, cache outcomes.

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, UpDownCounter};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Every instrument, cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    created: Counter<u64>,
    sent: Counter<u64>,
    failed: Counter<u64>,
    dead_lettered: Counter<u64>,
    send_duration: Histogram<f64>,
    in_flight: UpDownCounter<i64>,
    cache: Counter<u64>,
    /// Last `num_pending` read from the consumer (an observable gauge reads it).
    pub consumer_pending: Arc<AtomicU64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Registers the instruments on the global meter provider.
    pub fn new() -> Self {
        let meter = cruncan_telemetry::meter("email");
        let consumer_pending = Arc::new(AtomicU64::new(0));
        let pending = Arc::clone(&consumer_pending);
        let _gauge = meter
            .u64_observable_gauge("email.consumer.pending")
            .with_description("Messages in the stream not yet delivered to the workers")
            .with_callback(move |o| o.observe(pending.load(Ordering::Relaxed), &[]))
            .build();
        Self {
            created: meter
                .u64_counter("email.created")
                .with_description("Emails accepted, by edge and outcome")
                .build(),
            sent: meter.u64_counter("email.sent").with_description("Emails the SMTP server accepted").build(),
            failed: meter
                .u64_counter("email.failed")
                .with_description("Failed send attempts, by kind")
                .build(),
            dead_lettered: meter
                .u64_counter("email.dlq")
                .with_description("Messages dead-lettered, by cause")
                .build(),
            send_duration: meter
                .f64_histogram("email.send.duration")
                .with_unit("s")
                .with_description("SMTP send time")
                .with_boundaries(cruncan_telemetry::SECONDS_BOUNDARIES.to_vec())
                .build(),
            in_flight: meter
                .i64_up_down_counter("email.worker.in_flight")
                .with_description("Messages being processed")
                .build(),
            cache: meter
                .u64_counter("email.cache")
                .with_description("Cache lookups by result: hit, miss, error")
                .build(),
            consumer_pending,
        }
    }

    /// One create request's outcome on `edge` (`rest`, `grpc`).
    pub fn created(&self, edge: &'static str, outcome: &'static str) {
        self.created.add(1, &[KeyValue::new("edge", edge), KeyValue::new("outcome", outcome)]);
    }
    /// One email sent, in `secs`.
    pub fn sent(&self, secs: f64) {
        self.sent.add(1, &[]);
        self.send_duration.record(secs, &[KeyValue::new("outcome", "sent")]);
    }
    /// One failed attempt of `kind` (`transient`, `permanent`).
    pub fn failed(&self, kind: &'static str, secs: f64) {
        self.failed.add(1, &[KeyValue::new("kind", kind)]);
        self.send_duration.record(secs, &[KeyValue::new("outcome", kind)]);
    }
    /// One message dead-lettered for `cause`.
    pub fn dead_lettered(&self, cause: &'static str) {
        self.dead_lettered.add(1, &[KeyValue::new("cause", cause)]);
    }
    /// A worker took (+1) or finished (-1) a message.
    pub fn in_flight(&self, delta: i64) {
        self.in_flight.add(delta, &[]);
    }
    /// One cache lookup's result.
    pub fn cache(&self, result: &'static str) {
        self.cache.add(1, &[KeyValue::new("result", result)]);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
