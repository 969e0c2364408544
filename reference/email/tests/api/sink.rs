//! SMTP sinks for the tests and the bench: the API of the stack's sink, and a maildev of one's own
//! on free ports that can be stopped and started (the same install `make up` made).

use serde_json::Value;
use std::time::Duration;

/// Domain of the `Message-ID` the tests configure.
pub const MESSAGE_ID_DOMAIN: &str = "test.email.cruncan";

/// The SMTP sink's HTTP API (maildev's `GET /email`).
#[derive(Debug, Clone)]
pub struct SinkApi {
    pub api: String,
}

impl SinkApi {
    pub fn stack() -> Self {
        Self { api: std::env::var("SMTP_API_URL").unwrap_or_else(|_| "http://127.0.0.1:18025".into()) }
    }

    /// How many messages the sink holds (the bench's check).
    #[allow(dead_code)]
    pub async fn count(&self) -> usize {
        let all: Vec<Value> =
            reqwest::get(format!("{}/email", self.api)).await.unwrap().json().await.unwrap();
        all.len()
    }

    /// Messages whose `Message-ID` is the one the service gives `email_id`.
    pub async fn messages_for(&self, email_id: &str) -> Vec<Value> {
        let all: Vec<Value> =
            reqwest::get(format!("{}/email", self.api)).await.unwrap().json().await.unwrap();
        let want = format!("{email_id}@{MESSAGE_ID_DOMAIN}");
        all.into_iter().filter(|m| m["messageId"] == want.as_str()).collect()
    }

    pub async fn wait_for(&self, email_id: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.messages_for(email_id).await;
            if let Some(m) = got.into_iter().next() {
                return m;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no message for {email_id} at the sink {}",
                self.api
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// An SMTP sink of the test's own (maildev, the same install `make up` uses) on free ports, so
/// a test can stop and start it without disturbing anyone.
pub struct OwnSink {
    pub smtp_port: u16,
    pub web_port: u16,
    child: Option<tokio::process::Child>,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn maildev_bin() -> std::path::PathBuf {
    let cache = std::env::var("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"))
        .join("cruncan");
    std::fs::read_dir(&cache)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path().join("node_modules/maildev/bin/maildev"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("maildev not installed under {}: run make up", cache.display()))
}

impl OwnSink {
    pub async fn start() -> Self {
        let mut sink = Self {
            smtp_port: free_port(),
            web_port: free_port(),
            child: None,
            _dir: tempfile::tempdir().unwrap(),
        };
        sink.resume().await;
        sink
    }

    pub fn smtp_url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.smtp_port)
    }

    pub fn api(&self) -> SinkApi {
        SinkApi { api: format!("http://127.0.0.1:{}", self.web_port) }
    }

    /// Kills the process: connections are refused until [`OwnSink::resume`].
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// Starts the process on the same ports and waits until it answers.
    pub async fn resume(&mut self) {
        let child = tokio::process::Command::new("node")
            .arg(maildev_bin())
            .args(["--ip", "127.0.0.1", "--web-ip", "127.0.0.1", "--silent"])
            .args(["-s", &self.smtp_port.to_string(), "-w", &self.web_port.to_string()])
            .arg("--mail-directory")
            .arg(self._dir.path())
            .kill_on_drop(true)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while reqwest::get(format!("http://127.0.0.1:{}/healthz", self.web_port)).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "own maildev did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
