//! Trace context in Kafka record headers.

use cruncan_telemetry::{Extractor, Injector};

// ANCHOR: kafka_carrier
/// Collects headers to attach to a produced record.
#[derive(Debug, Default)]
pub struct KafkaHeaderInjector(pub Vec<(String, Vec<u8>)>);

impl Injector for KafkaHeaderInjector {
    fn set(&mut self, key: &str, value: String) {
        self.0.retain(|(k, _)| k != key);
        self.0.push((key.to_owned(), value.into_bytes()));
    }
}

/// Reads trace context from a consumed record's headers.
#[derive(Debug)]
pub struct KafkaHeaderExtractor<'a>(pub &'a [(String, Vec<u8>)]);

impl Extractor for KafkaHeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// The `traceparent`/`tracestate` headers of the current span, ready to attach to a record.
pub fn trace_headers() -> Vec<(String, Vec<u8>)> {
    let mut injector = KafkaHeaderInjector::default();
    cruncan_telemetry::inject_current(&mut injector);
    injector.0
}
// ANCHOR_END: kafka_carrier
