//! The running pieces: each scenario's World, the services it starts, and what steps share.

use clap::Parser as _;
use cruncan_kafka::{Headers, Producer, ProducerSettings};
use cruncan_model::{DataEntry, OneRequestEvent};
use cruncan_shutdown::Shutdown;
use cruncan_testkit::{OtlpReceiver, brokers, unique_name};
use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug)]
pub(crate) struct RunningOne {
    pub(crate) settings: one::Settings,
    pub(crate) base: String,
    pub(crate) pool: sqlx::PgPool,
    pub(crate) shutdown: Shutdown,
}

impl Drop for RunningOne {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

#[derive(Debug)]
pub(crate) struct RunningTwo {
    pub(crate) settings: two::Settings,
    pub(crate) shutdown: Shutdown,
    pub(crate) task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for RunningTwo {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

#[derive(Debug)]
pub(crate) struct RunningStub {
    pub(crate) base: String,
    pub(crate) stub: stub::Stub,
    pub(crate) shutdown: Shutdown,
}

impl Drop for RunningStub {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// A service started as its own process, with its stdout lines collected.
#[derive(Debug)]
pub(crate) struct Process {
    pub(crate) child: Child,
    pub(crate) lines: Arc<Mutex<Vec<String>>>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Default, cucumber::World)]
pub(crate) struct FlowWorld {
    pub(crate) one: Option<RunningOne>,
    pub(crate) two: Option<RunningTwo>,
    pub(crate) stub: Option<RunningStub>,
    pub(crate) producer: Option<Producer>,
    pub(crate) responses: Vec<(u16, serde_json::Value)>,
    pub(crate) request_ids: Vec<String>,
    pub(crate) accepted: Vec<String>,
    pub(crate) poison_key: Option<String>,
    pub(crate) processes: Vec<(String, Process)>,
    pub(crate) process_one_addr: Option<String>,
    pub(crate) receiver: Option<OtlpReceiver>,
    pub(crate) trace_id: Option<String>,
}

pub(crate) async fn test_db() -> cruncan_db::DatabaseSettings {
    let mut db = flow_bdd::test_database().await;
    // Scenarios run side by side on two cores: give connections room.
    db.acquire_timeout = Duration::from_secs(10);
    db
}

/// A fresh 20-digit request id.
pub(crate) fn new_request_id() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64;
    format!("{:020}", (t % 10u64.pow(15)) * 1000 + N.fetch_add(1, Ordering::Relaxed) % 1000)
}

impl FlowWorld {
    pub(crate) async fn start_one(&mut self, topic: &str) {
        let mut s = flow_bdd::one_settings(&test_db().await);
        s.kafka.topic = topic.to_owned();
        let app = one::build(s.clone()).await.unwrap();
        let base = format!("http://{}", app.local_addr().unwrap());
        let pool = app.pool().clone();
        let shutdown = Shutdown::new();
        tokio::spawn(app.run_until_stopped(shutdown.clone()));
        self.one = Some(RunningOne { settings: s, base, pool, shutdown });
    }

    pub(crate) async fn start_stub(&mut self) {
        let cfg =
            stub::Settings::parse_from(["stub", "--port", "0", "--client-secret", flow_bdd::CLIENT_SECRET]);
        let app = stub::build(cfg).await.unwrap();
        let base = format!("http://{}", app.local_addr().unwrap());
        let handle = app.stub();
        let shutdown = Shutdown::new();
        tokio::spawn(app.run_until_stopped(shutdown.clone()));
        self.stub = Some(RunningStub { base, stub: handle, shutdown });
    }

    pub(crate) async fn two_settings(&self, topic: &str) -> two::Settings {
        let stub = self.stub.as_ref().expect("the stub runs before two");
        let mut s = flow_bdd::two_settings(&test_db().await, &stub.base, &stub.base);
        s.kafka.topic = topic.to_owned();
        // Slower and more patient than the service tests: scenarios share two cores.
        s.kafka.consumer.group_id = unique_name("bdd-two");
        s.kafka.consumer.backoff_initial = Duration::from_millis(50);
        s.kafka.consumer.backoff_max = Duration::from_secs(1);
        s.kafka.consumer.max_attempts = 10;
        s.three.timeout = Duration::from_secs(5);
        s
    }

    pub(crate) async fn start_two(&mut self, settings: two::Settings) {
        let app = two::build(settings.clone()).await.unwrap();
        let shutdown = Shutdown::new();
        let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        self.two = Some(RunningTwo { settings, shutdown, task: Some(task) });
    }

    pub(crate) fn one(&self) -> &RunningOne {
        self.one.as_ref().expect("service one is running")
    }

    pub(crate) fn stub(&self) -> &stub::Stub {
        &self.stub.as_ref().expect("the stub is running").stub
    }

    pub(crate) fn two_topic(&self) -> String {
        self.two.as_ref().expect("service two is running").settings.kafka.topic.clone()
    }

    pub(crate) async fn post(
        &mut self,
        content_type: &str,
        body: String,
        key: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let base =
            self.one.as_ref().map(|o| o.base.clone()).or_else(|| self.process_one_addr.clone()).unwrap();
        let mut req = reqwest::Client::new()
            .post(format!("{base}/one"))
            .header("content-type", content_type)
            .body(body);
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let location = resp.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut json: serde_json::Value = resp.json().await.unwrap_or_default();
        if let (Some(loc), Some(obj)) = (location, json.as_object_mut()) {
            obj.insert("__location".into(), loc.into());
        }
        if let Some(id) = json["request_id"].as_str() {
            self.request_ids.push(id.to_owned());
        }
        self.responses.push((status, json.clone()));
        (status, json)
    }

    pub(crate) async fn publish_event(&mut self, id: &str) {
        let producer = self
            .producer
            .get_or_insert_with(|| Producer::new(&brokers(), &ProducerSettings::new("bdd")).unwrap())
            .clone();
        let event = OneRequestEvent {
            request_id: id.to_owned(),
            request: cruncan_model::OneRequest {
                user_id: "bdd-user".into(),
                prompt: "from a feature".into(),
                data: vec![DataEntry { key: "k".into(), value: "v".into() }],
            },
            created_at: chrono::Utc::now(),
        };
        producer
            .send(&self.two_topic(), id.as_bytes(), &serde_json::to_vec(&event).unwrap(), &Headers::new())
            .await
            .unwrap();
        self.request_ids.push(id.to_owned());
    }

    /// Waits until the stub has received every id in `ids`; panics naming the missing ones.
    pub(crate) async fn wait_received(&self, ids: &[String], timeout: Duration) -> BTreeMap<String, usize> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            for r in self.stub().received() {
                *counts.entry(r.id).or_default() += 1;
            }
            let missing: Vec<&String> = ids.iter().filter(|id| !counts.contains_key(*id)).collect();
            if missing.is_empty() {
                return counts;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "expected the third party to receive {} request ids within {timeout:?}; {} never arrived, e.g. {:?}; {}",
                    ids.len(),
                    missing.len(),
                    missing.iter().take(5).collect::<Vec<_>>(),
                    self.where_stuck(&missing).await
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Where undelivered ids stopped, for a failure message: still in one's outbox (the relay or
    /// the broker), or published (two or the third party).
    async fn where_stuck(&self, missing: &[&String]) -> String {
        let Some(one) = &self.one else { return "service one is not running".into() };
        let missing: Vec<String> = missing.iter().map(|id| (*id).clone()).collect();
        /// Unsent, sent, most attempts, last error, seconds since the last was sent.
        type Outbox = (i64, i64, Option<i32>, Option<String>, Option<f64>);
        let row: Result<Outbox, _> = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE sent_at IS NULL), count(*) FILTER (WHERE sent_at IS NOT NULL),
                    max(attempts), max(last_error), extract(epoch FROM now() - max(sent_at))::float8
             FROM outbox WHERE key = ANY($1)",
        )
        .bind(&missing)
        .fetch_one(&one.pool)
        .await;
        let mut report = match row {
            Ok((unsent, sent, attempts, error, last_sent)) => format!(
                "of those, {unsent} are unsent in one's outbox (most attempts {attempts:?}, last error {error:?}) \
                 and {sent} were published, the last {last_sent:.1?} s ago"
            ),
            Err(e) => format!("one's outbox could not be read: {e}"),
        };
        if let Some(two) = &self.two {
            // Did two get them (recorded as delivered: then the stub lost them), and how far did
            // its consumer group commit?
            let pool = two.settings.database.lazy_pool();
            let processed: Result<i64, _> =
                sqlx::query_scalar("SELECT count(*) FROM processed_request WHERE request_id = ANY($1)")
                    .bind(&missing)
                    .fetch_one(&pool)
                    .await;
            pool.close().await;
            let k = &two.settings.kafka;
            let committed: Vec<Option<i64>> = (0..k.partitions)
                .map(|p| cruncan_testkit::committed_offset(&k.consumer.group_id, &k.topic, p))
                .collect();
            report.push_str(&format!(
                "; two recorded {processed:?} of them as delivered; its group's committed offsets per partition: {committed:?}"
            ));
        }
        report
    }

    pub(crate) async fn count(&self, sql: &'static str, id: Option<&str>) -> i64 {
        let q = sqlx::query_scalar(sql);
        let q = if let Some(id) = id { q.bind(id.to_owned()) } else { q };
        q.fetch_one(&self.one().pool).await.unwrap()
    }
}
