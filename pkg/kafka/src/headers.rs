//! Record headers: one type from the HTTP request that starts a trace, through the outbox row, to
//! the produced record and the consumer that continues the trace.

use cruncan_telemetry::{Extractor, Injector};
use serde::de::{MapAccess, Visitor};
use serde::ser::{Error as _, SerializeMap as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

// ANCHOR: kafka_carrier
/// Kafka record headers, in record order (a key may repeat; values are bytes on the wire).
///
/// It is the trace-context carrier too: [`Injector`] writes `traceparent`/`tracestate` into it,
/// [`Extractor`] reads them back. Stored (the outbox's `headers` column) it is a JSON object of
/// UTF-8 values, `{"traceparent": "00-…"}`; a non-UTF-8 value is a serialisation error, not a
/// silent replacement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, Vec<u8>)>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// The `traceparent`/`tracestate` headers of the current span, ready to attach to a record.
    pub fn current_trace() -> Self {
        let mut headers = Self::new();
        cruncan_telemetry::inject_current(&mut headers);
        headers
    }

    /// Appends a header (a key may repeat, as on the wire).
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) {
        self.0.push((key.into(), value.into()));
    }

    /// Sets `key` to `value`, replacing every earlier header of that name.
    pub fn set(&mut self, key: &str, value: impl Into<Vec<u8>>) {
        self.0.retain(|(k, _)| k != key);
        self.0.push((key.to_owned(), value.into()));
    }

    /// The first header named `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_slice())
    }

    /// The first header named `key`, as UTF-8 text.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every header, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// How many headers there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Keeps only the headers `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &[u8]) -> bool) {
        self.0.retain(|(k, v)| keep(k, v));
    }
}

impl<K: Into<String>, V: Into<Vec<u8>>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

impl<K: Into<String>, V: Into<Vec<u8>>> Extend<(K, V)> for Headers {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        self.0.extend(iter.into_iter().map(|(k, v)| (k.into(), v.into())));
    }
}

impl Injector for Headers {
    fn set(&mut self, key: &str, value: String) {
        Headers::set(self, key, value);
    }
}

impl Extractor for Headers {
    fn get(&self, key: &str) -> Option<&str> {
        self.get_str(key)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}
// ANCHOR_END: kafka_carrier

impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            let text = std::str::from_utf8(v)
                .map_err(|_| S::Error::custom(format!("header {k:?} is not UTF-8 text")))?;
            map.serialize_entry(k, text)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeadersVisitor;
        impl<'de> Visitor<'de> for HeadersVisitor {
            type Value = Headers;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of header names to text values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Headers, A::Error> {
                let mut headers = Headers::new();
                while let Some((k, v)) = access.next_entry::<String, String>()? {
                    headers.push(k, v);
                }
                Ok(headers)
            }
        }
        deserializer.deserialize_map(HeadersVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json_in_order() {
        let mut h = Headers::new();
        h.push("traceparent", "00-abc-def-01");
        h.push("tracestate", "k=v");
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, r#"{"traceparent":"00-abc-def-01","tracestate":"k=v"}"#);
        let back: Headers = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
    }

    #[test]
    fn binary_values_do_not_serialise_silently() {
        let h: Headers = [("bin", vec![0xff, 0xfe])].into_iter().collect();
        assert!(serde_json::to_string(&h).is_err());
        assert_eq!(h.get("bin"), Some(&[0xff, 0xfe][..]));
        assert_eq!(h.get_str("bin"), None);
    }

    #[test]
    fn the_injector_replaces_and_the_extractor_reads() {
        let mut h = Headers::new();
        Injector::set(&mut h, "traceparent", "one".into());
        Injector::set(&mut h, "traceparent", "two".into());
        assert_eq!(h.len(), 1);
        assert_eq!(Extractor::get(&h, "traceparent"), Some("two"));
        assert_eq!(Extractor::keys(&h), ["traceparent"]);
    }
}
