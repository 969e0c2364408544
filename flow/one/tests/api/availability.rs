//! The database goes away and comes back: 503 and a failing /readyz meanwhile, recovery without a
//! restart. A TCP proxy in front of the shared PostgreSQL plays the outage.

use crate::helpers::{settings, spawn_with, test_database, valid_body, wait_until};
use cruncan_testkit::TcpProxy;
use std::net::SocketAddr;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_gives_503_and_recovers_without_restart() {
    let db = test_database().await;
    let upstream: SocketAddr = format!("{}:{}", db.host, db.port).parse().unwrap();
    let proxy = TcpProxy::start(upstream).unwrap();
    let mut s = settings(&db);
    s.database.host = proxy.addr().ip().to_string();
    s.database.port = proxy.addr().port();
    s.database.acquire_timeout = Duration::from_millis(500);
    let app = spawn_with(s).await;
    assert_eq!(app.post_one(&valid_body()).await.status(), 201);
    assert_eq!(app.get("/readyz").await.status(), 200);

    proxy.cut();
    let down = app.post_one(&valid_body()).await;
    assert_eq!(down.status(), 503);
    assert_eq!(down.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = down.json().await.unwrap();
    assert_eq!(body["code"], "unavailable");
    let text = body["detail"].as_str().unwrap();
    assert!(!text.contains("Connection") && !text.contains("pool"), "no internal error text: {text}");
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    assert!(ready.text().await.unwrap().contains("database"));
    assert_eq!(app.get("/healthz").await.status(), 200, "alive while not ready");

    proxy.restore();
    wait_until(Duration::from_secs(15), "POST /one succeeding again", || async {
        app.post_one(&valid_body()).await.status() == 201
    })
    .await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    app.stop().await;
}
