//! Steps about telemetry across processes: one trace from the client to the third party, logs, dashboards.

use crate::one::valid_body;
use crate::world::*;
use cruncan_testkit::{OtlpReceiver, brokers, unique_name};
use cucumber::{given, then, when};
use std::collections::BTreeSet;
use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) fn binary(name: &str) -> PathBuf {
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

pub(crate) fn spawn_process(mut cmd: Command, ready: &str) -> (Process, serde_json::Value) {
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

pub(crate) fn otel_env(cmd: &mut Command, endpoint: &str) {
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env("OTEL_BLRP_SCHEDULE_DELAY", "200")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "1000")
        .env_remove("DATABASE_URL");
}

#[given("service one and service two run as processes exporting telemetry")]
pub(crate) async fn processes(w: &mut FlowWorld) {
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
pub(crate) async fn post_to_processes(w: &mut FlowWorld) {
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
pub(crate) async fn one_trace(w: &mut FlowWorld, a: String, b: String, c: String, d: String, e: String) {
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
pub(crate) async fn logs_carry_trace(w: &mut FlowWorld) {
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
pub(crate) async fn dashboards_query_real_metrics(w: &mut FlowWorld) {
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
