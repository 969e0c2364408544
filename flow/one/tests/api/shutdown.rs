//! SIGTERM to the real binary in the middle of a burst of requests.

use crate::helpers::{brokers, test_database, valid_body};
use cruncan_testkit::unique_name;
use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_burst_loses_nothing_and_exits_zero() {
    let db = test_database().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_one"))
        .args([
            "--config-dir",
            cruncan_config::crate_dir!().join("config").to_str().unwrap(),
            "--environment",
            "test",
        ])
        .args([
            "--port",
            "0",
            "--node-id",
            "3",
            "--brokers",
            &brokers(),
            "--topic",
            &unique_name("one-sigterm"),
        ])
        .env("APP_DATABASE__NAME", &db.name)
        .env("APP_DATABASE__HOST", &db.host)
        .env("APP_DATABASE__PORT", db.port.to_string())
        .env_remove("DATABASE_URL")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let log_thread = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["message"] == "service one listening"
            {
                let _ = addr_tx.send(v["addr"].as_str().unwrap_or_default().to_owned());
            }
            lines.push(line);
        }
        lines
    });
    let addr = addr_rx.recv_timeout(Duration::from_secs(60)).expect("the binary should log its address");
    let url = format!("http://{addr}/one");

    let client = reqwest::Client::new();
    let done = Arc::new(AtomicUsize::new(0));
    let burst: Vec<_> = (0..400)
        .map(|_| {
            let (client, url, done) = (client.clone(), url.clone(), Arc::clone(&done));
            tokio::spawn(async move {
                let r = client.post(&url).json(&valid_body()).send().await;
                done.fetch_add(1, Ordering::SeqCst);
                match r {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let body: serde_json::Value = r.json().await.unwrap_or_default();
                        Some((status, body))
                    }
                    Err(_) => None, // no response: the listener was already closed
                }
            })
        })
        .collect();
    while done.load(Ordering::SeqCst) < 50 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());

    let mut accepted = Vec::new();
    for task in burst {
        if let Some((status, body)) = task.await.unwrap() {
            assert!(status == 201 || status == 503, "only 201 or a clean 503, got {status}: {body}");
            if status == 201 {
                accepted.push(body["request_id"].as_str().unwrap().to_owned());
            } else {
                assert_eq!(body["code"], "unavailable");
            }
        }
    }
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    let logs = log_thread.join().unwrap();
    assert_eq!(status.code(), Some(0), "exit code 0; logs:\n{}", logs.join("\n"));
    assert!(accepted.len() >= 50, "the burst was under way: {} accepted", accepted.len());
    assert!(logs.iter().any(|l| l.contains("service one stopped")), "clean stop logged");

    // Every accepted request is stored with its outbox row (published or still pending).
    let pool = db.lazy_pool();
    for id in &accepted {
        let (rows, outbox): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM request WHERE req_id = $1), (SELECT count(*) FROM outbox WHERE key = $1)",
        )
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!((rows, outbox), (1, 1), "request {id} lost");
    }
}

// ANCHOR: lame_duck_test
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigterm_keep_alive_clients_are_told_to_close_before_the_server_stops() {
    let mut s = crate::helpers::settings(&test_database().await);
    s.shutdown.lame_duck = Duration::from_millis(1_500);
    let app = crate::helpers::spawn_with(s).await;
    let first = app.post_one(&valid_body()).await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("connection").is_none(), "keep-alive while running");

    app.shutdown.trigger();
    // The same keep-alive client, during the lame-duck period: served, and told to go away.
    let during = app.post_one(&valid_body()).await;
    assert_eq!(during.status(), 201, "still serving during the lame-duck period");
    assert_eq!(during.headers().get("connection").and_then(|v| v.to_str().ok()), Some("close"));
    app.handle.await.unwrap().unwrap();
}
// ANCHOR_END: lame_duck_test
