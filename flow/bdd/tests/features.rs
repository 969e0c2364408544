//! The BDD suite of the whole flow (cucumber). Every scenario gets its own World: its own
//! databases, topic and consumer group, and its own instances of one, two and the stub, so
//! scenarios run concurrently (except `@serial` ones, which restart shared infrastructure).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing step panics with what it saw

use clap::Parser as _;
use cruncan_kafka::{DeadLetterHeaders, Headers, Producer, ProducerSettings};
use cruncan_model::{DataEntry, OneRequestEvent};
use cruncan_shutdown::Shutdown;
use cruncan_testkit::{OtlpReceiver, brokers, read_topic, unique_name};
use cucumber::{World as _, given, then, when};
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// The running pieces

#[derive(Debug)]
struct RunningOne {
    settings: one::Settings,
    base: String,
    pool: sqlx::PgPool,
    shutdown: Shutdown,
}

impl Drop for RunningOne {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

#[derive(Debug)]
struct RunningTwo {
    settings: two::Settings,
    shutdown: Shutdown,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for RunningTwo {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

#[derive(Debug)]
struct RunningStub {
    base: String,
    stub: stub::Stub,
    shutdown: Shutdown,
}

impl Drop for RunningStub {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// A service started as its own process, with its stdout lines collected.
#[derive(Debug)]
struct Process {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Default, cucumber::World)]
struct FlowWorld {
    one: Option<RunningOne>,
    two: Option<RunningTwo>,
    stub: Option<RunningStub>,
    producer: Option<Producer>,
    responses: Vec<(u16, serde_json::Value)>,
    request_ids: Vec<String>,
    accepted: Vec<String>,
    poison_key: Option<String>,
    processes: Vec<(String, Process)>,
    process_one_addr: Option<String>,
    receiver: Option<OtlpReceiver>,
    trace_id: Option<String>,
}

async fn test_db() -> cruncan_db::DatabaseSettings {
    let mut db = flow_bdd::test_database().await;
    // Scenarios run side by side on two cores: give connections room.
    db.acquire_timeout = Duration::from_secs(10);
    db
}

/// A fresh 20-digit request id.
fn new_request_id() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64;
    format!("{:020}", (t % 10u64.pow(15)) * 1000 + N.fetch_add(1, Ordering::Relaxed) % 1000)
}

impl FlowWorld {
    async fn start_one(&mut self, topic: &str) {
        let mut s = flow_bdd::one_settings(&test_db().await);
        s.kafka.topic = topic.to_owned();
        let app = one::build(s.clone()).await.unwrap();
        let base = format!("http://{}", app.local_addr().unwrap());
        let pool = app.pool().clone();
        let shutdown = Shutdown::new();
        tokio::spawn(app.run_until_stopped(shutdown.clone()));
        self.one = Some(RunningOne { settings: s, base, pool, shutdown });
    }

    async fn start_stub(&mut self) {
        let cfg =
            stub::Settings::parse_from(["stub", "--port", "0", "--client-secret", flow_bdd::CLIENT_SECRET]);
        let app = stub::build(cfg).await.unwrap();
        let base = format!("http://{}", app.local_addr().unwrap());
        let handle = app.stub();
        let shutdown = Shutdown::new();
        tokio::spawn(app.run_until_stopped(shutdown.clone()));
        self.stub = Some(RunningStub { base, stub: handle, shutdown });
    }

    async fn two_settings(&self, topic: &str) -> two::Settings {
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

    async fn start_two(&mut self, settings: two::Settings) {
        let app = two::build(settings.clone()).await.unwrap();
        let shutdown = Shutdown::new();
        let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        self.two = Some(RunningTwo { settings, shutdown, task: Some(task) });
    }

    fn one(&self) -> &RunningOne {
        self.one.as_ref().expect("service one is running")
    }

    fn stub(&self) -> &stub::Stub {
        &self.stub.as_ref().expect("the stub is running").stub
    }

    fn two_topic(&self) -> String {
        self.two.as_ref().expect("service two is running").settings.kafka.topic.clone()
    }

    async fn post(
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

    async fn publish_event(&mut self, id: &str) {
        let producer = self
            .producer
            .get_or_insert_with(|| Producer::new(&brokers(), &ProducerSettings::new("bdd")).unwrap())
            .clone();
        let event = OneRequestEvent {
            request_id: id.to_owned(),
            user_id: "bdd-user".into(),
            prompt: "from a feature".into(),
            data: vec![DataEntry { key: "k".into(), value: "v".into() }],
            created_at: chrono::Utc::now(),
        };
        producer
            .send(&self.two_topic(), id.as_bytes(), &serde_json::to_vec(&event).unwrap(), &Headers::new())
            .await
            .unwrap();
        self.request_ids.push(id.to_owned());
    }

    /// Waits until the stub has received every id in `ids`; panics naming the missing ones.
    async fn wait_received(&self, ids: &[String], timeout: Duration) -> BTreeMap<String, usize> {
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
                    "expected the third party to receive {} request ids within {timeout:?}; {} never arrived, e.g. {:?}",
                    ids.len(),
                    missing.len(),
                    missing.iter().take(5).collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn count(&self, sql: &'static str, id: Option<&str>) -> i64 {
        let q = sqlx::query_scalar(sql);
        let q = if let Some(id) = id { q.bind(id.to_owned()) } else { q };
        q.fetch_one(&self.one().pool).await.unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// Service one

#[given("service one is running")]
async fn one_running(w: &mut FlowWorld) {
    w.start_one(&unique_name("bdd-one")).await;
}

#[when("a client posts a valid request")]
async fn post_valid(w: &mut FlowWorld) {
    w.post("application/json", valid_body().to_string(), None).await;
}

fn valid_body() -> serde_json::Value {
    serde_json::json!({"user_id": "bdd-user", "prompt": "hello from cucumber", "data": [{"key": "lang", "value": "en"}]})
}

#[then("the response is 201 with a request id and its location")]
async fn created(w: &mut FlowWorld) {
    let (status, body) = w.responses.last().cloned().unwrap();
    assert_eq!(status, 201, "expected 201, saw {status}: {body}");
    let id = body["request_id"].as_str().unwrap_or_else(|| panic!("no request_id in {body}"));
    assert!(id.len() == 20 && id.bytes().all(|b| b.is_ascii_digit()), "expected a 20-digit id, saw {id:?}");
    assert_eq!(body["__location"], format!("/one/{id}"), "expected Location /one/{id}");
}

#[then("the request is stored in PostgreSQL")]
async fn stored(w: &mut FlowWorld) {
    let id = w.request_ids.last().cloned().unwrap();
    let n = w.count("SELECT count(*) FROM request WHERE req_id = $1", Some(&id)).await;
    assert_eq!(n, 1, "expected one row for {id}, saw {n}");
}

#[then("exactly one message keyed by the request id is published")]
async fn published_once(w: &mut FlowWorld) {
    let id = w.request_ids.last().cloned().unwrap();
    let records =
        read_topic(&w.one().settings.kafka.topic, 1, Duration::from_secs(30), Duration::from_secs(1)).await;
    let keys: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, [id.as_str()], "expected exactly one message keyed {id}, saw {keys:?}");
}

#[when(expr = "a client posts the {string} body")]
async fn post_case(w: &mut FlowWorld, case: String) {
    let long = |n: usize| "x".repeat(n);
    let (ct, body) = match case.as_str() {
        "malformed JSON" => ("application/json", "{\"user_id\":".to_owned()),
        "wrong type" => ("application/json", serde_json::json!({"user_id": 42, "prompt": "p"}).to_string()),
        "missing prompt" => ("application/json", serde_json::json!({"user_id": "u"}).to_string()),
        "empty user_id" => {
            ("application/json", serde_json::json!({"user_id": "", "prompt": "p"}).to_string())
        }
        "user_id too long" => {
            ("application/json", serde_json::json!({"user_id": long(200), "prompt": "p"}).to_string())
        }
        "too many data entries" => {
            let data: Vec<_> =
                (0..101).map(|i| serde_json::json!({"key": format!("k{i}"), "value": "v"})).collect();
            ("application/json", serde_json::json!({"user_id": "u", "prompt": "p", "data": data}).to_string())
        }
        "body over the limit" => {
            ("application/json", serde_json::json!({"user_id": "u", "prompt": long(1 << 21)}).to_string())
        }
        "text/plain" => ("text/plain", valid_body().to_string()),
        other => panic!("no body defined for case {other:?}"),
    };
    w.post(ct, body, None).await;
}

#[then(expr = "the response is {int} with error code {string}")]
async fn error_response(w: &mut FlowWorld, status: u16, code: String) {
    let (got, body) = w.responses.last().cloned().unwrap();
    assert_eq!(got, status, "expected status {status}, saw {got}: {body}");
    assert_eq!(body["error"]["code"], code.as_str(), "expected error code {code:?}, saw {body}");
    assert!(
        body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "expected a message, saw {body}"
    );
}

#[then("nothing is stored or published")]
async fn nothing_written(w: &mut FlowWorld) {
    let rows = w.count("SELECT count(*) FROM request", None).await;
    let outbox = w.count("SELECT count(*) FROM outbox", None).await;
    assert_eq!((rows, outbox), (0, 0), "expected no request and no outbox row, saw {rows} and {outbox}");
}

#[when(expr = "a client posts a valid request with idempotency key {string}")]
async fn post_with_key(w: &mut FlowWorld, key: String) {
    w.post("application/json", valid_body().to_string(), Some(&key)).await;
}

#[when(expr = "the client posts the same request with idempotency key {string} again")]
async fn post_again(w: &mut FlowWorld, key: String) {
    w.post("application/json", valid_body().to_string(), Some(&key)).await;
}

#[then("both responses carry the same request id")]
async fn same_id(w: &mut FlowWorld) {
    let statuses: Vec<u16> = w.responses.iter().map(|r| r.0).collect();
    assert_eq!(statuses, [201, 201], "expected two 201s, saw {statuses:?}");
    let ids: BTreeSet<&String> = w.request_ids.iter().collect();
    assert_eq!(ids.len(), 1, "expected one id for both, saw {ids:?}");
}

#[then("exactly one request is stored")]
async fn one_stored(w: &mut FlowWorld) {
    let rows = w.count("SELECT count(*) FROM request", None).await;
    assert_eq!(rows, 1, "expected one row, saw {rows}");
}

// ---------------------------------------------------------------------------------------------
// Service two

#[given("service two is running against the stub")]
async fn two_running(w: &mut FlowWorld) {
    w.start_stub().await;
    let s = w.two_settings(&unique_name("bdd-two")).await;
    w.start_two(s).await;
}

#[when("a request event is published")]
async fn publish_one(w: &mut FlowWorld) {
    w.publish_event(&new_request_id()).await;
}

#[when(expr = "{int} request events are published")]
async fn publish_many(w: &mut FlowWorld, n: usize) {
    for _ in 0..n {
        w.publish_event(&new_request_id()).await;
    }
}

#[then("the third party receives it exactly once with a bearer token")]
async fn received_once(w: &mut FlowWorld) {
    let id = w.request_ids.last().cloned().unwrap();
    w.wait_received(std::slice::from_ref(&id), Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // room for a duplicate to show up
    let calls: Vec<_> = w.stub().received().into_iter().filter(|r| r.id == id).collect();
    // The stub answers 401 to a call without a token it issued, so a recorded call had one.
    assert_eq!(calls.len(), 1, "expected one accepted call for {id}, saw {}", calls.len());
    assert_eq!(calls[0].language.as_deref(), Some("en"));
    assert_eq!(calls[0].idempotency_key.as_deref(), Some(id.as_str()));
}

#[then(expr = "the third party receives all {int} of them")]
async fn received_all(w: &mut FlowWorld, n: usize) {
    assert_eq!(w.request_ids.len(), n);
    let counts = w.wait_received(&w.request_ids.clone(), Duration::from_secs(60)).await;
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "expected each once, saw duplicates {twice:?}");
}

#[then(expr = "the stub issued exactly {int} token")]
async fn tokens_issued(w: &mut FlowWorld, n: usize) {
    assert_eq!(w.stub().tokens_issued(), n, "expected {n} token fetch(es)");
}

#[given(expr = "the third party will fail the next {int} call with 503")]
async fn fail_next(w: &mut FlowWorld, n: u32) {
    w.stub().set_control(stub::Control { fail_next: n, ..Default::default() });
}

#[then(expr = "the third party saw {int} attempts for it")]
async fn attempts(w: &mut FlowWorld, n: u32) {
    let id = w.request_ids.last().cloned().unwrap();
    assert_eq!(w.stub().attempts(&id), n, "expected {n} attempts for {id}");
}

#[when("an undecodable message is published")]
async fn publish_poison(w: &mut FlowWorld) {
    let key = unique_name("poison");
    let producer = w
        .producer
        .get_or_insert_with(|| Producer::new(&brokers(), &ProducerSettings::new("bdd")).unwrap())
        .clone();
    producer.send(&w.two_topic(), key.as_bytes(), b"{not json at all", &Headers::new()).await.unwrap();
    w.poison_key = Some(key);
}

#[then(expr = "the undecodable message is in the dead-letter topic with reason {string}")]
async fn poison_dead_lettered(w: &mut FlowWorld, reason: String) {
    let key = w.poison_key.clone().unwrap();
    let two = &w.two.as_ref().expect("service two is running").settings.kafka;
    let dlq = two.consumer.dead_letter_topic(&two.topic);
    let records = read_topic(&dlq, 1, Duration::from_secs(30), Duration::from_millis(500)).await;
    let record = records
        .iter()
        .find(|r| r.key == key)
        .unwrap_or_else(|| panic!("expected {key} in {dlq}, saw {records:?}"));
    assert_eq!(
        record.header(DeadLetterHeaders::REASON),
        Some(reason.as_str()),
        "headers: {:?}",
        record.headers
    );
}

// ---------------------------------------------------------------------------------------------
// The whole flow

#[given("the whole flow is running")]
async fn flow_running(w: &mut FlowWorld) {
    let topic = unique_name("bdd-flow");
    w.start_stub().await;
    w.start_one(&topic).await;
    let s = w.two_settings(&topic).await;
    w.start_two(s).await;
}

#[then("the third party receives that request id exactly once")]
async fn flow_once(w: &mut FlowWorld) {
    received_once(w).await;
}

async fn post_accepted(w: &mut FlowWorld, n: usize) {
    for _ in 0..n {
        let (status, body) = w.post("application/json", valid_body().to_string(), None).await;
        match status {
            201 => w.accepted.push(body["request_id"].as_str().unwrap().to_owned()),
            503 => {} // not accepted: the client was told to retry
            other => panic!("expected 201 or 503, saw {other}: {body}"),
        }
    }
}

#[when(expr = "{int} requests are posted while the Kafka broker restarts")]
async fn post_during_broker_restart(w: &mut FlowWorld, n: usize) {
    post_accepted(w, n / 4).await;
    let script = format!("{}/../../scripts/stack.sh", env!("CARGO_MANIFEST_DIR"));
    let restart = tokio::task::spawn_blocking(move || {
        Command::new("bash").args([script.as_str(), "restart-kafka"]).status()
    });
    post_accepted(w, n - n / 4).await;
    let status = restart.await.unwrap().unwrap();
    assert!(status.success(), "restarting the broker failed");
}

#[when(expr = "{int} requests are posted while service two restarts")]
async fn post_during_two_restart(w: &mut FlowWorld, n: usize) {
    post_accepted(w, n / 2).await;
    // A crash, not a polite stop: whatever two had not committed comes again.
    let mut old = w.two.take().unwrap();
    old.task.take().unwrap().abort();
    let settings = old.settings.clone();
    drop(old);
    w.start_two(settings).await;
    post_accepted(w, n - n / 2).await;
}

#[then("every accepted request id reaches the third party")]
async fn none_lost(w: &mut FlowWorld) {
    assert!(w.accepted.len() >= 150, "expected most requests accepted, saw {}", w.accepted.len());
    let counts = w.wait_received(&w.accepted.clone(), Duration::from_secs(180)).await;
    let duplicates = counts.values().filter(|c| **c > 1).count();
    eprintln!(
        "  {} accepted, all delivered; {duplicates} delivered more than once (at-least-once)",
        w.accepted.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Telemetry across processes

fn binary(name: &str) -> PathBuf {
    // target/<profile>/deps/features-<hash> → target/<profile>/<name>
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(|deps| deps.parent()).unwrap().join(name);
    assert!(
        path.is_file(),
        "{} not built: run `cargo build -p one -p two` (make test builds it)",
        path.display()
    );
    path
}

fn spawn_process(mut cmd: Command, ready: &str) -> (Process, serde_json::Value) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let (sink, wanted) = (Arc::clone(&lines), ready.to_owned());
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["message"] == wanted.as_str()
            {
                let _ = tx.send(v);
            }
            sink.lock().unwrap().push(line);
        }
    });
    let first =
        rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("process never logged {ready:?}"));
    (Process { child, lines }, first)
}

fn otel_env(cmd: &mut Command, endpoint: &str) {
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env("OTEL_BLRP_SCHEDULE_DELAY", "200")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "1000")
        .env_remove("DATABASE_URL");
}

#[given("service one and service two run as processes exporting telemetry")]
async fn processes(w: &mut FlowWorld) {
    let receiver = OtlpReceiver::start_background().unwrap();
    w.start_stub().await;
    let stub_base = w.stub.as_ref().unwrap().base.clone();
    let topic = unique_name("bdd-otel");
    let (db_one, db_two) = (test_db().await, test_db().await);

    let mut one = Command::new(binary("one"));
    one.args([
        "--config-dir",
        &flow_bdd::config_dir("one"),
        "--environment",
        "test",
        "--port",
        "0",
        "--node-id",
        "9",
    ])
    .args(["--brokers", &brokers(), "--topic", &topic])
    .env("APP_DATABASE__NAME", &db_one.name)
    .env("APP_DATABASE__HOST", &db_one.host)
    .env("APP_DATABASE__PORT", db_one.port.to_string());
    otel_env(&mut one, &receiver.endpoint());
    let (one, listening) = spawn_process(one, "service one listening");
    w.process_one_addr = Some(format!("http://{}", listening["addr"].as_str().unwrap()));

    let mut two = Command::new(binary("two"));
    two.args(["--config-dir", &flow_bdd::config_dir("two"), "--environment", "test", "--admin-port", "0"])
        .args(["--brokers", &brokers(), "--topic", &topic, "--group-id", &unique_name("bdd-otel")])
        .args(["--token-url", &stub_base, "--three-url", &stub_base])
        .env("APP_DATABASE__NAME", &db_two.name)
        .env("APP_DATABASE__HOST", &db_two.host)
        .env("APP_DATABASE__PORT", db_two.port.to_string())
        .env("APP_TOKEN__CLIENT_SECRET", flow_bdd::CLIENT_SECRET);
    otel_env(&mut two, &receiver.endpoint());
    let (two, _) = spawn_process(two, "partitions assigned");
    w.processes = vec![("one".into(), one), ("two".into(), two)];
    w.receiver = Some(receiver);
}

#[when("a client posts a valid request to the running processes")]
async fn post_to_processes(w: &mut FlowWorld) {
    let (status, body) = w.post("application/json", valid_body().to_string(), None).await;
    assert_eq!(status, 201, "expected 201, saw {status}: {body}");
    let id = w.request_ids.last().cloned().unwrap();
    w.wait_received(std::slice::from_ref(&id), Duration::from_secs(60)).await;
    let call = w.stub().received().into_iter().find(|r| r.id == id).unwrap();
    let tp = call.traceparent.unwrap_or_default();
    let trace =
        tp.split('-').nth(1).unwrap_or_else(|| panic!("the call to /three carried no traceparent: {tp:?}"));
    w.trace_id = Some(trace.to_owned());
}

#[then(expr = "one trace contains the spans {string}, {string}, {string}, {string} and {string}")]
async fn one_trace(w: &mut FlowWorld, a: String, b: String, c: String, d: String, e: String) {
    let trace = w.trace_id.clone().unwrap();
    let wanted = [a, b, c, d, e];
    let receiver = w.receiver.as_ref().unwrap();
    let spans = receiver
        .wait_for_spans(Duration::from_secs(30), &format!("{wanted:?} in trace {trace}"), |spans| {
            let names: Vec<&str> =
                spans.iter().filter(|s| s.trace_id == trace).map(|s| s.name.as_str()).collect();
            wanted.iter().all(|w| names.iter().any(|n| n == w || n.starts_with(&format!("{w} "))))
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let service_of = |prefix: &str| {
        spans
            .iter()
            .find(|s| s.trace_id == trace && s.name.starts_with(prefix))
            .map(|s| s.service.clone())
            .unwrap()
    };
    assert_eq!(service_of("POST /one"), "one");
    assert_eq!(service_of("publish"), "one");
    assert_eq!(service_of("process"), "two");
    assert_eq!(service_of("POST /three"), "two");
}

#[then("the JSON logs of one and two carry that trace id")]
async fn logs_carry_trace(w: &mut FlowWorld) {
    let trace = w.trace_id.clone().unwrap();
    for (name, p) in &w.processes {
        let lines = p.lines.lock().unwrap().clone();
        let hit = lines
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|v| v["trace_id"] == trace.as_str());
        assert!(hit, "expected a JSON log line of {name} with trace_id {trace}; saw {} lines", lines.len());
    }
}

#[then("every metric the dashboards query is one the services emit")]
async fn dashboards_query_real_metrics(w: &mut FlowWorld) {
    let wanted: BTreeSet<String> = grafanastack_check::dashboard_queries()
        .unwrap()
        .iter()
        .flat_map(|(_, expr)| grafanastack_check::metric_selectors(expr))
        .collect();
    let receiver = w.receiver.as_ref().unwrap();
    // Consumer lag is reported by librdkafka every 5 s: give the exports time.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    loop {
        let emitted: BTreeSet<String> = receiver
            .metrics()
            .iter()
            .flat_map(|(name, m)| grafanastack_check::prometheus_names(name, &m.unit, &m.kind))
            .collect();
        let missing: Vec<&String> = wanted.difference(&emitted).collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "dashboards query metrics nobody emits: {missing:?}\nemitted (as Prometheus names): {emitted:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::main]
async fn main() {
    let features = concat!(env!("CARGO_MANIFEST_DIR"), "/features");
    FlowWorld::cucumber().max_concurrent_scenarios(4).fail_on_skipped().run_and_exit(features).await;
}
