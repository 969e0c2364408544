//! The test harness: a service per test on its own database, stream, consumer, subject prefix and
//! cache prefix (parallel-safe against the shared stack), and clients for its edges and for the
//! SMTP sink's HTTP API.

use async_nats::jetstream;
use cruncan_jetstream::RelaySettings;
use cruncan_shutdown::Shutdown;
use email::config::*;
use email::mailer::Mailer;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

pub use crate::sink::MESSAGE_ID_DOMAIN;

pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:14222".into())
}
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:16379".into())
}
pub fn stack_smtp_url() -> String {
    std::env::var("SMTP_URL").unwrap_or_else(|_| "smtp://127.0.0.1:11025".into())
}

/// Knobs a test changes.
#[derive(Debug, Clone)]
pub struct Options {
    pub workers: usize,
    pub smtp_url: String,
    pub redis_url: String,
    pub ack_wait: Duration,
    pub max_deliver: i64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            workers: 2,
            smtp_url: stack_smtp_url(),
            redis_url: redis_url(),
            ack_wait: Duration::from_millis(10_000),
            max_deliver: 5,
        }
    }
}

/// Settings for a fresh, isolated service.
pub async fn settings(opts: &Options) -> Settings {
    let base = cruncan_db::local_test_settings().unwrap();
    let database = cruncan_db::create_test_database(&base).await.unwrap();
    let tag = cruncan_testkit::unique_name("t").replace('-', "");
    Settings {
        http: HttpSettings {
            host: "127.0.0.1".into(),
            port: 0,
            body_limit_bytes: 1 << 20,
            request_timeout: Duration::from_millis(5_000),
        },
        grpc: GrpcSettings {
            host: "127.0.0.1".into(),
            port: 0,
            cert_path: None,
            key_path: None,
            dev_ca_out: None,
            keepalive_interval: Duration::from_millis(30_000),
            keepalive_timeout: Duration::from_millis(10_000),
            max_connection_age: Duration::from_millis(600_000),
        },
        admin: AdminSettings { host: "127.0.0.1".into(), port: 0 },
        database,
        nats: NatsSettings {
            url: nats_url(),
            stream: format!("EMAILS_{}", tag.to_uppercase()),
            consumer: "sender".into(),
            subject_prefix: format!("{tag}."),
            ack_wait: opts.ack_wait,
            max_deliver: opts.max_deliver,
            max_ack_pending: 16,
            max_age: Duration::from_secs(3600),
        },
        redis: RedisSettings {
            url: opts.redis_url.clone(),
            ttl: Duration::from_secs(60),
            timeout: Duration::from_millis(200),
            key_prefix: format!("{tag}:"),
        },
        smtp: SmtpSettings {
            url: opts.smtp_url.clone().into(),
            timeout: Duration::from_millis(3_000),
            pool_size: 2,
            message_id_domain: MESSAGE_ID_DOMAIN.into(),
        },
        workers: WorkerSettings {
            count: opts.workers,
            pull_wait: Duration::from_millis(300),
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_millis(1_000),
        },
        outbox: RelaySettings { batch_size: 100, poll_interval: Duration::from_millis(200) },
        telemetry: TelemetrySettings { log_filter: "info".into() },
        shutdown: ShutdownSettings { drain_timeout: Duration::from_millis(5_000) },
    }
}

/// A running service and clients for it.
pub struct TestApp {
    pub base: String,
    pub grpc_addr: std::net::SocketAddr,
    pub admin: String,
    pub ca_pem: String,
    pub settings: Settings,
    pub pool: sqlx::PgPool,
    pub worker: Arc<email::worker::Worker>,
    pub js: jetstream::Context,
    pub http: reqwest::Client,
    pub shutdown: Shutdown,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub async fn spawn_app(opts: Options) -> TestApp {
    let s = settings(&opts).await;
    spawn_with(s, None).await
}

/// Starts a service with `settings` (a second replica shares the first's), optionally with a
/// mailer of the test's own.
pub async fn spawn_with(settings: Settings, mailer: Option<Arc<dyn Mailer>>) -> TestApp {
    drop_old_test_streams().await;
    let app = match mailer {
        Some(m) => email::build_with_mailer(settings.clone(), m).await,
        None => email::build(settings.clone()).await,
    }
    .unwrap();
    let base = format!("http://{}", app.http_addr().unwrap());
    let admin = format!("http://{}", app.admin_addr().unwrap());
    let grpc_addr = app.grpc_addr().unwrap();
    let ca_pem = app.dev_ca_pem().unwrap().to_owned();
    let pool = app.pool().clone();
    let worker = app.worker();
    let shutdown = Shutdown::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let client = async_nats::connect(nats_url()).await.unwrap();
    TestApp {
        base,
        grpc_addr,
        admin,
        ca_pem,
        settings,
        pool,
        worker,
        js: jetstream::new(client),
        http: reqwest::Client::new(),
        shutdown,
        task,
    }
}

/// Streams of test runs older than an hour: deleted, so the server does not fill up.
async fn drop_old_test_streams() {
    use futures::TryStreamExt as _;
    static ONCE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    ONCE.get_or_init(|| async {
        let Ok(client) = async_nats::connect(nats_url()).await else { return };
        let js = jetstream::new(client);
        let Ok(infos) = js.streams().try_collect::<Vec<_>>().await else { return };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let hour_ago = i64::try_from(now).unwrap() - 3600;
        for info in infos {
            if info.config.name.starts_with("EMAILS_T") && info.created.timestamp() < hour_ago {
                let _ = js.delete_stream(&info.config.name).await;
            }
        }
    })
    .await;
}

pub fn new_email(subject: &str) -> Value {
    serde_json::json!({
        "from": "sender@example.com",
        "to": ["alice@example.com", "bob@example.org"],
        "subject": subject,
        "message": format!("Body of {subject}\nsecond line"),
    })
}

impl TestApp {
    pub async fn post(&self, body: &Value) -> reqwest::Response {
        self.http.post(format!("{}/api/v1/email", self.base)).json(body).send().await.unwrap()
    }

    /// Creates an email and returns its id.
    pub async fn create(&self, body: &Value) -> String {
        let r = self.post(body).await;
        assert_eq!(r.status(), 202, "{:?}", r.text().await);
        r.json::<Value>().await.unwrap()["email_id"].as_str().unwrap().to_owned()
    }

    pub async fn get(&self, id: &str) -> reqwest::Response {
        self.http.get(format!("{}/api/v1/email/{id}", self.base)).send().await.unwrap()
    }

    pub async fn get_json(&self, id: &str) -> Value {
        let r = self.get(id).await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// Reads the row straight from PostgreSQL (no cache).
    pub async fn status(&self, id: &str) -> (String, i32) {
        sqlx::query_as("SELECT status, attempts FROM email WHERE email_id = $1::uuid")
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    pub async fn wait_for_status(&self, id: &str, want: &str, timeout: Duration) -> (String, i32) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.status(id).await;
            if got.0 == want {
                return got;
            }
            assert!(tokio::time::Instant::now() < deadline, "email {id}: status {got:?}, wanted {want}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn consumer(&self) -> jetstream::consumer::PullConsumer {
        let stream = self.js.get_stream(&self.settings.nats.stream).await.unwrap();
        stream.get_consumer(&self.settings.nats.consumer).await.unwrap()
    }

    /// Every dead letter so far: (headers, payload).
    pub async fn dead_letters(&self) -> Vec<(async_nats::HeaderMap, bytes::Bytes)> {
        use futures::StreamExt as _;
        let stream = self.js.get_stream(&self.settings.nats.stream).await.unwrap();
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::Config {
                filter_subject: self.settings.nats.subject(email::jetstream::DLQ_SUBJECT),
                ack_policy: jetstream::consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut out = Vec::new();
        let mut batch = consumer.fetch().max_messages(100).messages().await.unwrap();
        while let Some(Ok(m)) = batch.next().await {
            out.push((m.headers.clone().unwrap_or_default(), m.payload.clone()));
        }
        out
    }

    pub async fn stop(self) {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(15), self.task).await.unwrap().unwrap().unwrap();
    }
}

pub use crate::sink::{OwnSink, SinkApi};
