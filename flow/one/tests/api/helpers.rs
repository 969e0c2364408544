//! `spawn_app()` and friends: the real service on port 0, a fresh database, a unique topic.

use clap::Parser as _;
use cruncan_db::DatabaseSettings;
use cruncan_kafka::LOCAL_BROKERS;
use cruncan_shutdown::Shutdown;
use cruncan_telemetry::{Otlp, TelemetryConfig, TelemetryGuard};
use cruncan_testkit::{LogCapture, OtlpReceiver, unique_name};
use one::{Cli, Settings};
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::{Headers as _, Message as _};
use sqlx::PgPool;
use std::sync::OnceLock;
use std::time::Duration;

/// The test binary's one telemetry pipeline, exporting to an in-process receiver.
pub struct Telemetry {
    pub receiver: OtlpReceiver,
    pub guard: TelemetryGuard,
    pub logs: LogCapture,
}

pub fn telemetry() -> &'static Telemetry {
    static T: OnceLock<Telemetry> = OnceLock::new();
    T.get_or_init(|| {
        let receiver = OtlpReceiver::start_background().unwrap();
        let logs = LogCapture::default();
        let cfg = TelemetryConfig {
            otlp: Otlp::HttpEndpoint(receiver.endpoint()),
            log_filter: "info,sqlx=warn".into(),
            ..TelemetryConfig::new("one", "test")
        };
        let guard = cruncan_telemetry::init_telemetry_with_writer(&cfg, logs.clone()).unwrap();
        Telemetry { receiver, guard, logs }
    })
}

pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| LOCAL_BROKERS.to_owned())
}

pub async fn test_database() -> DatabaseSettings {
    let base = cruncan_db::local_test_settings().unwrap();
    cruncan_db::create_test_database(&base).await.unwrap()
}

/// Settings from the crate's config files, pointed at `db` and a unique topic.
pub fn settings(db: &DatabaseSettings) -> Settings {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
    let cli = Cli::parse_from(["one", "--config-dir", dir, "--environment", "test", "--port", "0"]);
    let mut s = Settings::load(&cli).unwrap();
    s.database = db.clone();
    s.kafka.brokers = brokers();
    s.kafka.topic = unique_name("one-test");
    s.outbox.poll_interval_ms = 500;
    s.snowflake.node_id = Some(1);
    s
}

pub struct TestApp {
    pub base: String,
    pub pool: PgPool,
    pub settings: Settings,
    pub shutdown: Shutdown,
    pub handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub client: reqwest::Client,
}

pub async fn spawn_app() -> TestApp {
    spawn_with(settings(&test_database().await)).await
}

pub async fn spawn_with(settings: Settings) -> TestApp {
    telemetry();
    let app = one::build(settings.clone()).await.unwrap();
    let addr = app.local_addr().unwrap();
    let pool = app.pool().clone();
    let shutdown = Shutdown::new();
    let handle = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    TestApp {
        base: format!("http://{addr}"),
        pool,
        settings,
        shutdown,
        handle,
        client: reqwest::Client::new(),
    }
}

impl TestApp {
    pub async fn post_one(&self, body: &serde_json::Value) -> reqwest::Response {
        self.post_raw("application/json", body.to_string(), &[]).await
    }

    pub async fn post_raw(
        &self,
        content_type: &str,
        body: String,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req =
            self.client.post(format!("{}/one", self.base)).header("content-type", content_type).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.base)).send().await.unwrap()
    }

    pub async fn count(&self, table: &str) -> i64 {
        let sql = sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}"));
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }

    pub async fn pending(&self) -> i64 {
        one::repo::pending_outbox(&self.pool).await.unwrap()
    }

    /// Stops the app the way SIGTERM would and waits for it.
    pub async fn stop(self) {
        self.shutdown.trigger();
        self.handle.await.unwrap().unwrap();
    }
}

pub fn valid_body() -> serde_json::Value {
    serde_json::json!({"user_id": "user-1", "prompt": "summarise this", "data": [{"key": "lang", "value": "en"}]})
}

/// A record read back from Kafka.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: String,
    pub payload: serde_json::Value,
    pub headers: Vec<(String, String)>,
}

impl Record {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Reads `topic` from the beginning until `want` records arrived, then `settle` longer to catch
/// duplicates; panics with what it saw after `timeout`.
pub async fn read_topic(topic: &str, want: usize, timeout: Duration, settle: Duration) -> Vec<Record> {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique_name("one-test-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut settle_until: Option<tokio::time::Instant> = None;
    loop {
        let until = settle_until.unwrap_or(deadline);
        match tokio::time::timeout_at(until, consumer.recv()).await {
            Ok(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| {
                                (
                                    h.key.to_owned(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Record {
                    key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                    payload: serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or_default(),
                    headers,
                });
                if out.len() >= want && settle_until.is_none() {
                    settle_until = Some(tokio::time::Instant::now() + settle);
                }
            }
            // The topic appears when the relay first publishes.
            Ok(Err(e)) if e.to_string().contains("UnknownTopicOrPartition") => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(Err(e)) => panic!("kafka error reading {topic}: {e}"),
            Err(_) if settle_until.is_some() => return out,
            Err(_) => panic!("expected {want} records on {topic} within {timeout:?}, got {}", out.len()),
        }
    }
}

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
