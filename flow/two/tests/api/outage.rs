//! Outages of what two depends on: the third party, the token server (refused credentials) and
//! two's own database. None of them may turn into dead letters: the circuit breaker pauses
//! consumption, probes one message at a time, and resumes when the dependency answers.

use crate::helpers::{
    brokers, mount_token, settings, spawn_two, start, three_failing_with_retry_after, wait_until,
};
use cruncan_testkit::TcpProxy;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use std::collections::HashMap;
use std::net::ToSocketAddrs as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Records in `topic` (all partitions), from the broker's watermarks.
async fn records_in(topic: &str) -> i64 {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let c: BaseConsumer =
            rdkafka::ClientConfig::new().set("bootstrap.servers", brokers()).create().unwrap();
        let md = c.fetch_metadata(Some(&topic), Duration::from_secs(5)).unwrap();
        let partitions = md.topics().first().map_or(0, |t| t.partitions().len() as i32);
        (0..partitions).map(|p| c.fetch_watermarks(&topic, p, Duration::from_secs(5)).unwrap().1).sum()
    })
    .await
    .unwrap()
}

/// A third party that answers 503 while `down`, else 200, and counts the calls per request id.
fn switchable_three(down: Arc<AtomicBool>, calls: Arc<Mutex<HashMap<String, (u32, u32)>>>) -> Mock {
    Mock::given(path("/three")).respond_with(move |r: &wiremock::Request| {
        let id =
            r.headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let failing = down.load(Ordering::SeqCst);
        let mut calls = calls.lock().unwrap();
        let entry = calls.entry(id).or_default();
        if failing {
            entry.0 += 1;
            ResponseTemplate::new(503)
        } else {
            entry.1 += 1;
            ResponseTemplate::new(200)
        }
    })
}

fn breaker_for_tests(s: &mut two::Settings) {
    s.kafka.consumer.breaker.failure_threshold = 6; // above max_attempts (4): one bad message alone still dead-letters
    s.kafka.consumer.breaker.probe_initial = Duration::from_millis(100);
    s.kafka.consumer.breaker.probe_max = Duration::from_millis(400);
}

// ANCHOR: outage_test
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_outage_pauses_consumption_and_dead_letters_nothing() {
    let two = spawn_two(breaker_for_tests).await;
    mount_token(&two.token_server, "tok", 1).await;
    let down = Arc::new(AtomicBool::new(true));
    let calls = Arc::new(Mutex::new(HashMap::new()));
    switchable_three(Arc::clone(&down), Arc::clone(&calls)).mount(&two.three).await;

    let ids: Vec<String> = (0..200).map(|i| format!("{:020}", 7_000 + i)).collect();
    for id in &ids {
        two.publish_event(id).await;
    }
    // Five seconds of outage: without the breaker every message would burn its 4 attempts in
    // about half a second and be dead-lettered.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let failed_during_outage: u32 = calls.lock().unwrap().values().map(|(f, _)| f).sum();
    down.store(false, Ordering::SeqCst);

    wait_until(Duration::from_secs(60), "every message delivered after the outage", || async {
        calls.lock().unwrap().values().filter(|(_, ok)| *ok > 0).count() == ids.len()
    })
    .await;
    assert_eq!(records_in(&two.dlq()).await, 0, "an outage dead-letters nothing");
    let calls = calls.lock().unwrap().clone();
    assert!(ids.iter().all(|id| calls[id].1 == 1), "each message delivered exactly once");
    // Open, the breaker lets one probe through at a time (every 100–400 ms), not 16 lanes × retries.
    assert!(
        failed_during_outage < 60,
        "{failed_during_outage} calls reached the failing third party in 5 s; the breaker should hold them back"
    );
    two.stop().await;
}
// ANCHOR_END: outage_test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_pause_report_not_ready_and_deliver_after_the_fix() {
    let token_server = MockServer::start().await;
    let three = MockServer::start().await;
    let mut s = settings(&token_server, &three).await;
    breaker_for_tests(&mut s);
    Mock::given(path("/v2/oauth/token")).respond_with(ResponseTemplate::new(401)).mount(&token_server).await;
    Mock::given(path("/three")).respond_with(ResponseTemplate::new(200)).mount(&three).await;
    let two = start(s.clone(), token_server, three).await;
    let ids: Vec<String> = (0..20).map(|i| format!("{:020}", 8_000 + i)).collect();
    for id in &ids {
        two.publish_event(id).await;
    }
    let readyz = format!("http://{}/readyz", two.admin);
    wait_until(Duration::from_secs(20), "/readyz reports the configuration error", || async {
        let r = reqwest::get(&readyz).await.unwrap();
        r.status() == 503 && r.text().await.unwrap().contains("credentials")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(records_in(&two.dlq()).await, 0, "a configuration error dead-letters nothing");
    assert!(two.three.received_requests().await.unwrap().is_empty(), "nothing sent without a token");
    two.stop().await;

    // The secret is fixed (here: the token server accepts it) and two restarts in the same group.
    let token_server = MockServer::start().await;
    let three = MockServer::start().await;
    mount_token(&token_server, "tok", 1).await;
    Mock::given(path("/three")).respond_with(ResponseTemplate::new(200)).mount(&three).await;
    s.token.url = token_server.uri();
    s.three.url = three.uri();
    let fixed = start(s, token_server, three).await;
    for id in &ids {
        wait_until(Duration::from_secs(30), "the backlog delivered", || fixed.processed(id)).await;
    }
    assert_eq!(records_in(&fixed.dlq()).await, 0);
    fixed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn its_own_database_down_pauses_consumption_and_dead_letters_nothing() {
    let token_server = MockServer::start().await;
    let three = MockServer::start().await;
    let mut s = settings(&token_server, &three).await;
    breaker_for_tests(&mut s);
    // Two reaches its database through a proxy the test can cut: the shared PostgreSQL stays up.
    let upstream = (s.database.host.as_str(), s.database.port).to_socket_addrs().unwrap().next().unwrap();
    let proxy = TcpProxy::start(upstream).unwrap();
    s.database.host = proxy.addr().ip().to_string();
    s.database.port = proxy.addr().port();
    mount_token(&token_server, "tok", 1).await;
    Mock::given(path("/three")).respond_with(ResponseTemplate::new(200)).mount(&three).await;
    let two = start(s, token_server, three).await;

    proxy.cut();
    let ids: Vec<String> = (0..100).map(|i| format!("{:020}", 9_000 + i)).collect();
    for id in &ids {
        two.publish_event(id).await;
    }
    let cut_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    proxy.restore();
    for id in &ids {
        wait_until(Duration::from_secs(60), "the backlog delivered after the database is back", || {
            two.processed(id)
        })
        .await;
    }
    assert!(cut_at.elapsed() > Duration::from_secs(5));
    assert_eq!(records_in(&two.dlq()).await, 0, "a database outage dead-letters nothing");
    two.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_zero_does_not_shorten_the_backoff() {
    let two = spawn_two(|s| {
        s.kafka.consumer.backoff_initial = Duration::from_millis(200);
        s.kafka.consumer.backoff_max = Duration::from_millis(200);
    })
    .await;
    mount_token(&two.token_server, "tok", 1).await;
    let times = three_failing_with_retry_after(&two, 3, "0").await;
    let id = "00000000000000000990";
    two.publish_event(id).await;
    wait_until(Duration::from_secs(20), "delivered on the fourth call", || two.processed(id)).await;
    let t = times.lock().unwrap().clone();
    for pair in t.windows(2) {
        let gap = pair[1] - pair[0];
        // The policy's floor is half of 200 ms (equal jitter); Retry-After: 0 must not go below it.
        assert!(gap >= Duration::from_millis(95), "retried after {gap:?}: Retry-After: 0 cut the backoff");
    }
    two.stop().await;
}
