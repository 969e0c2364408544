//! SIGTERM to the real binary while messages are in flight.

use crate::helpers::{SECRET, committed_offset, event_bytes, mount_token, settings, wait_calls};
use cruncan_kafka::{Headers, Producer, ProducerSettings};
use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::Duration;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_messages_commits_and_exits_zero() {
    let token_server = MockServer::start().await;
    let three = MockServer::start().await;
    mount_token(&token_server, "tok-sigterm-value", 1).await;
    Mock::given(path("/three"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(1500)))
        .expect(3)
        .mount(&three)
        .await;
    let s = settings(&token_server, &three).await;
    cruncan_kafka::ensure_topic(&s.kafka.brokers, &s.kafka.topic, 1, 1).await.unwrap();
    let producer = Producer::new(&s.kafka.brokers, &ProducerSettings::new("sigterm-test")).unwrap();
    for i in 0..3 {
        let id = format!("{:020}", 900 + i);
        producer.send(&s.kafka.topic, id.as_bytes(), &event_bytes(&id, "p"), &Headers::new()).await.unwrap();
    }

    let mut child = Command::new(env!("CARGO_BIN_EXE_two"))
        .args([
            "--config-dir",
            cruncan_config::crate_dir!().join("config").to_str().unwrap(),
            "--environment",
            "test",
        ])
        .args(["--admin-port", "0", "--brokers", &s.kafka.brokers, "--topic", &s.kafka.topic])
        .args([
            "--group-id",
            &s.kafka.consumer.group_id,
            "--token-url",
            &s.token.url,
            "--three-url",
            &s.three.url,
        ])
        .env("APP_DATABASE__NAME", &s.database.name)
        .env("APP_DATABASE__HOST", &s.database.host)
        .env("APP_DATABASE__PORT", s.database.port.to_string())
        .env("APP_TOKEN__CLIENT_SECRET", SECRET)
        .env_remove("DATABASE_URL")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let logs = std::thread::spawn(move || {
        std::io::BufReader::new(stdout).lines().map_while(Result::ok).collect::<Vec<_>>()
    });

    // All three are in flight (each call takes 1.5 s) when SIGTERM arrives.
    wait_calls(&three, "/three", 3, Duration::from_secs(60)).await;
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    let logs = logs.join().unwrap();
    assert_eq!(status.code(), Some(0), "exit 0; logs:\n{}", logs.join("\n"));

    let delivered = logs.iter().filter(|l| l.contains("request delivered to the third party")).count();
    assert_eq!(delivered, 3, "in-flight messages finished:\n{}", logs.join("\n"));
    let (g, t) = (s.kafka.consumer.group_id.clone(), s.kafka.topic.clone());
    let committed = tokio::task::spawn_blocking(move || committed_offset(&g, &t, 0)).await.unwrap();
    assert_eq!(committed, Some(3), "offsets committed on the way out");
    let all = logs.join("\n");
    for secret in [SECRET, "tok-sigterm-value", "Bearer"] {
        assert!(!all.contains(secret), "{secret:?} must never be logged");
    }
}
