//! The test binary's telemetry pipeline, exporting to an in-process [`OtlpReceiver`], and the
//! capture of its JSON log lines.

use crate::otlp::OtlpReceiver;
use std::sync::{Arc, Mutex};

/// The test binary's one telemetry pipeline (the subscriber is process-global), exporting to an
/// in-process receiver and writing JSON logs to a capture.
#[derive(Debug)]
pub struct TestTelemetry {
    /// Where spans, logs and metrics arrive.
    pub receiver: OtlpReceiver,
    /// Flush with `guard.force_flush()` (from `spawn_blocking`) before asserting.
    pub guard: cruncan_telemetry::TelemetryGuard,
    /// The JSON log lines.
    pub logs: LogCapture,
}

/// Installs (once) and returns the test binary's telemetry, with `service` as `service.name`.
pub fn global_telemetry(service: &str) -> &'static TestTelemetry {
    static T: std::sync::OnceLock<TestTelemetry> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let receiver = OtlpReceiver::start_background().unwrap_or_else(|e| panic!("OTLP receiver: {e:#}"));
        let logs = LogCapture::default();
        let cfg = cruncan_telemetry::TelemetrySettings {
            otlp: cruncan_telemetry::Otlp::HttpEndpoint(receiver.endpoint()),
            log_filter: "info,sqlx=warn".into(),
            ..cruncan_telemetry::TelemetrySettings::new(service, "test")
        };
        let guard = cruncan_telemetry::init_telemetry_with_writer(&cfg, logs.clone())
            .unwrap_or_else(|e| panic!("telemetry: {e:#}"));
        TestTelemetry { receiver, guard, logs }
    })
}

/// An in-memory log sink: give it to `init_telemetry_with_writer` and search what was written.
#[derive(Debug, Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Everything written so far, as text.
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
            .into_owned()
    }

    /// Every line written so far, parsed as JSON (lines that are not JSON are skipped).
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.contents().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
