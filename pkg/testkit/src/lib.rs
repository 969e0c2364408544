//! Test helpers shared by the workspace's test suites.
//!
//! - [`OtlpReceiver`]: an in-process OTLP/HTTP (protobuf) receiver, so a test proves that spans,
//!   logs and metrics really leave the process through the exporter, with the right trace id.
//! - [`unique_name`]: names for topics, consumer groups and databases, so tests never share state;
//!   [`delete_test_topics_older_than`] clears the topics old runs left on the broker.
//! - [`TcpProxy`]: cut a real service off and restore it; [`read_topic`], [`committed_offset`]:
//!   what really reached Kafka; [`global_telemetry`]: the test binary's telemetry pipeline.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a panic is a test failure report

mod kafka;
mod otlp;
mod proxy;
mod telemetry;

pub use kafka::{
    Record, brokers, committed_offset, delete_test_topics_older_than, delete_topics_where, read_topic,
};
pub use otlp::{MetricInfo, OtlpReceiver, ReceivedLog, ReceivedSpan};
pub use proxy::TcpProxy;
pub use telemetry::{LogCapture, TestTelemetry, global_telemetry};

use std::time::Duration;

// ANCHOR: unique_name
/// A unique, readable name for a test resource: `prefix-t<unix seconds>-<8 hex chars>`. The time
/// lets a later run tell a stale resource from one a running test still uses
/// ([`delete_test_topics_older_than`]: Kafka keeps every topic until it is deleted, and a broker
/// holding thousands restarts slowly).
pub fn unique_name(prefix: &str) -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!("{prefix}-t{secs}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}
// ANCHOR_END: unique_name

/// When [`unique_name`] made `name` (or a name derived from it, such as `<topic>.dlq`); `None`
/// for a name it did not make: the time must be `t` and ten digits, followed by eight lowercase
/// hex characters.
pub fn created_at(name: &str) -> Option<std::time::SystemTime> {
    let parts: Vec<&str> = name.split('-').collect();
    parts.windows(2).rev().find_map(|w| {
        let secs =
            w[0].strip_prefix('t').filter(|d| d.len() == 10 && d.bytes().all(|b| b.is_ascii_digit()))?;
        let hex = w[1].get(..8)?;
        let derived = w[1][8..].chars().next().is_none_or(|c| !c.is_ascii_alphanumeric());
        let is_hex = hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !is_hex || !derived {
            return None;
        }
        std::time::UNIX_EPOCH.checked_add(Duration::from_secs(secs.parse().ok()?))
    })
}

/// Polls `check` every 100 ms until it holds; panics naming `what` after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn a_unique_name_carries_the_time_it_was_made() {
        let name = unique_name("bdd-flow");
        let made = created_at(&name).unwrap();
        let age = std::time::SystemTime::now().duration_since(made).unwrap();
        assert!(age < Duration::from_secs(5), "{name}: {age:?}");
        assert_ne!(unique_name("x"), unique_name("x"));
    }

    #[test]
    fn derived_names_keep_the_time_and_other_names_have_none() {
        let at = |n| created_at(n).map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs());
        assert_eq!(at("two-test-t1764000000-0a1b2c3d"), Some(1_764_000_000));
        assert_eq!(at("two-test-t1764000000-0a1b2c3d.dlq"), Some(1_764_000_000));
        assert_eq!(at("kt-dlq-t1764000000-0a1b2c3d-group"), Some(1_764_000_000));
        // Names the stack's users choose, and the older `prefix-<hex>` form, are never stale.
        for name in [
            "flow.requests",
            "saga.events",
            "two-test-0a1b2c3d",
            "backup-1700000000-cafebabe",
            "orders-t1764000000-report",
            "x-t1764000000-0A1B2C3D",
            "a-t12-0a1b2c3d",
            "a-t176400000012-0a1b2c3d",
            "x-t9999999999999999999-0a1b2c3d",
        ] {
            assert_eq!(at(name), None, "{name}");
        }
    }
}
