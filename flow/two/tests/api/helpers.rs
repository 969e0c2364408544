//! `spawn_two()`: the real consumer with wiremock for the outside world.

use chrono::Utc;
use cruncan_kafka::{Headers, Producer, ProducerSettings};
use cruncan_model::{DataEntry, OneRequestEvent};
use cruncan_shutdown::Shutdown;
pub use cruncan_testkit::{brokers, committed_offset, read_topic, unique_name, wait_until};
use std::time::Duration;
use two::Settings;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub fn telemetry() -> &'static cruncan_testkit::TestTelemetry {
    cruncan_testkit::global_telemetry("two")
}

pub use flow_bdd::CLIENT_SECRET as SECRET;

pub struct TestTwo {
    pub settings: Settings,
    pub shutdown: Shutdown,
    pub handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub token_server: MockServer,
    pub three: MockServer,
    pub producer: Producer,
    pub admin: std::net::SocketAddr,
}

/// The harness's settings for two: a fresh database, a unique topic and group, the two mock
/// servers.
pub async fn settings(token_server: &MockServer, three: &MockServer) -> Settings {
    flow_bdd::two_settings(&flow_bdd::test_database().await, &token_server.uri(), &three.uri())
}

/// Mock servers, settings (adjusted by `customize`), and the running service.
pub async fn spawn_two(customize: impl FnOnce(&mut Settings)) -> TestTwo {
    let token_server = MockServer::start().await;
    let three = MockServer::start().await;
    let mut s = settings(&token_server, &three).await;
    customize(&mut s);
    start(s, token_server, three).await
}

pub async fn start(settings: Settings, token_server: MockServer, three: MockServer) -> TestTwo {
    telemetry();
    let app = two::build(settings.clone()).await.unwrap();
    let admin = app.admin_addr().unwrap();
    let shutdown = Shutdown::new();
    let handle = Some(tokio::spawn(app.run_until_stopped(shutdown.clone())));
    let producer = Producer::new(&brokers(), &ProducerSettings::new("two-test-producer")).unwrap();
    TestTwo { settings, shutdown, handle, token_server, three, producer, admin }
}

impl TestTwo {
    /// A request event as service one publishes it.
    pub async fn publish_event(&self, request_id: &str) {
        self.publish(request_id, &event_bytes(request_id, "summarise this"), &[]).await;
    }

    pub async fn publish(&self, key: &str, payload: &[u8], headers: &[(&str, &str)]) {
        let headers: Headers = headers.iter().map(|(k, v)| (*k, *v)).collect();
        self.producer.send(&self.settings.kafka.topic, key.as_bytes(), payload, &headers).await.unwrap();
    }

    pub async fn stop(mut self) {
        self.shutdown.trigger();
        self.handle.take().unwrap().await.unwrap().unwrap();
    }

    pub fn dlq(&self) -> String {
        self.settings.kafka.consumer.dead_letter_topic(&self.settings.kafka.topic)
    }

    pub async fn processed(&self, request_id: &str) -> bool {
        flow_bdd::delivered(&self.settings, request_id).await
    }
}

pub fn event_bytes(request_id: &str, prompt: &str) -> Vec<u8> {
    serde_json::to_vec(&OneRequestEvent {
        request_id: request_id.to_owned(),
        request: cruncan_model::OneRequest {
            user_id: "user-1".into(),
            prompt: prompt.to_owned(),
            data: vec![DataEntry { key: "lang".into(), value: "en".into() }],
        },
        created_at: Utc::now(),
    })
    .unwrap()
}

/// The token server answers `token` (valid for an hour) `times` times at most.
pub async fn mount_token(server: &MockServer, token: &str, expect: u64) {
    Mock::given(method("POST"))
        .and(path("/v2/oauth/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600}),
        ))
        .expect(expect)
        .mount(server)
        .await;
}

/// Waits until `server` has received `n` requests to `path_suffix`; returns them.
pub async fn wait_calls(
    server: &MockServer,
    path_suffix: &str,
    n: usize,
    timeout: Duration,
) -> Vec<wiremock::Request> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let calls: Vec<_> = server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path().ends_with(path_suffix))
            .collect();
        if calls.len() >= n {
            return calls;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {n} calls to {path_suffix}, got {}",
            calls.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn header<'a>(r: &'a wiremock::Request, name: &str) -> Option<&'a str> {
    r.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Mounts `/three` on `two`'s third party answering `503` with `Retry-After: retry_after` to the
/// first `failures` calls and `200` after; returns the instants of every call.
pub async fn three_failing_with_retry_after(
    two: &TestTwo,
    failures: usize,
    retry_after: &str,
) -> std::sync::Arc<std::sync::Mutex<Vec<std::time::Instant>>> {
    let times = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&times);
    let retry_after = retry_after.to_owned();
    Mock::given(wiremock::matchers::path("/three"))
        .respond_with(move |_: &wiremock::Request| {
            let mut t = seen.lock().unwrap();
            t.push(std::time::Instant::now());
            if t.len() <= failures {
                ResponseTemplate::new(503).insert_header("retry-after", retry_after.as_str())
            } else {
                ResponseTemplate::new(200)
            }
        })
        .mount(&two.three)
        .await;
    times
}
