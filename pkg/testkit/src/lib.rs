//! Test helpers shared by the workspace's test suites.
//!
//! - [`OtlpReceiver`]: an in-process OTLP/HTTP (protobuf) receiver, so a test proves that spans,
//!   logs and metrics really leave the process through the exporter, with the right trace id.
//! - [`unique_name`]: names for topics, consumer groups and databases, so tests never share state.
//! - [`TcpProxy`]: cut a real service off and restore it; [`read_topic`], [`committed_offset`]:
//!   what really reached Kafka; [`global_telemetry`]: the test binary's telemetry pipeline.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a panic is a test failure report

mod kafka;
mod otlp;
mod proxy;
mod telemetry;

pub use kafka::{Record, brokers, committed_offset, read_topic};
pub use otlp::{MetricInfo, OtlpReceiver, ReceivedLog, ReceivedSpan};
pub use proxy::TcpProxy;
pub use telemetry::{LogCapture, TestTelemetry, global_telemetry};

use std::time::Duration;

// ANCHOR: unique_name
/// A unique, readable name for a test resource: `prefix-<8 hex chars>`.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}
// ANCHOR_END: unique_name

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
