//! The test harness: the whole system per test on its own two databases, its own stream and
//! subject prefix (parallel-safe against the shared stack), and clients for its edges.

use async_nats::jetstream;
use cruncan_shutdown::Shutdown;
use notes::config::*;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:14222".into())
}

/// Settings for a fresh, isolated system on free ports.
pub async fn settings() -> Settings {
    let base = cruncan_db::local_test_settings().unwrap();
    let users_db = cruncan_db::create_test_database(&base).await.unwrap();
    let notes_db = cruncan_db::create_test_database(&base).await.unwrap();
    let tag = cruncan_testkit::unique_name("t").replace('-', "");
    let service = |database: String| ServiceSettings {
        host: "127.0.0.1".into(),
        port: 0,
        database,
        cors_origins: vec![],
    };
    Settings {
        database: base,
        users: service(users_db.name),
        notes: service(notes_db.name),
        gateway: GatewaySettings {
            host: "127.0.0.1".into(),
            port: 0,
            grpc_port: 0,
            web_dir: String::new(),
            queue_capacity: 256,
            ping_interval: Duration::from_millis(15_000),
            idle_timeout: Duration::from_millis(45_000),
            write_timeout: Duration::from_millis(5_000),
            socket_send_buffer_bytes: 65_536,
            auth_timeout: Duration::from_millis(2_000),
            max_replay: 10_000,
        },
        nats: NatsSettings {
            url: nats_url(),
            stream: format!("NOTES_{}", tag.to_uppercase()),
            users_consumer: "notes-users".into(),
            subject_prefix: format!("{tag}."),
            ack_wait: Duration::from_millis(5_000),
            max_deliver: 5,
            max_age_hours: 1,
        },
        auth: AuthSettings {
            issuer: "test-users".into(),
            audience: "test-notes".into(),
            token_ttl: Duration::from_secs(600),
        },
        outbox: cruncan_jetstream::RelaySettings {
            batch_size: 100,
            poll_interval: Duration::from_millis(200),
        },
        telemetry: TelemetrySettings { log_filter: "info".into() },
    }
}

/// A running system and clients for it.
pub struct TestApp {
    pub users: String,
    pub notes: String,
    pub gateway: SocketAddr,
    pub grpc: SocketAddr,
    pub settings: Settings,
    pub hub: Arc<notes::gateway::hub::Hub>,
    pub notes_pool: sqlx::PgPool,
    pub js: jetstream::Context,
    pub http: reqwest::Client,
    pub shutdown: Shutdown,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let mut s = settings().await;
    tweak(&mut s);
    let app = notes::build(s.clone()).await.unwrap();
    let shutdown = Shutdown::new();
    TestApp {
        users: format!("http://{}", app.users_addr().unwrap()),
        notes: format!("http://{}", app.notes_addr().unwrap()),
        gateway: app.gateway_addr().unwrap(),
        grpc: app.grpc_addr().unwrap(),
        hub: app.hub(),
        notes_pool: app.notes_pool().clone(),
        js: jetstream::new(async_nats::connect(nats_url()).await.unwrap()),
        http: reqwest::Client::new(),
        settings: s,
        shutdown: shutdown.clone(),
        task: tokio::spawn(app.run_until_stopped(shutdown)),
    }
}

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub token: String,
}

impl TestApp {
    /// Stops the system and deletes its stream.
    pub async fn stop(self) {
        self.shutdown.trigger();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        let _ = self.js.delete_stream(&self.settings.nats.stream).await;
    }

    pub fn subject(&self, s: &str) -> String {
        self.settings.nats.subject(s)
    }

    pub async fn post(&self, url: String, token: Option<&str>, body: Value) -> reqwest::Response {
        let mut r = self.http.post(url).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.unwrap()
    }

    /// Creates a user and signs them in; waits until the notes service knows them.
    pub async fn user(&self, name: &str) -> User {
        let r = self.post(format!("{}/users", self.users), None, json!({"name": name})).await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        let r = self.post(format!("{}/sessions", self.users), None, json!({"name": name})).await;
        assert_eq!(r.status(), 200);
        let token = r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
        self.wait_known(&id).await;
        User { id, token }
    }

    /// Waits until the notes service's copy of the users has `id`.
    pub async fn wait_known(&self, id: &str) {
        let id = uuid::Uuid::parse_str(id).unwrap();
        let pool = self.notes_pool.clone();
        cruncan_testkit::wait_until(Duration::from_secs(10), "the notes service knows the user", || {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM known_users WHERE id = $1)")
                    .bind(id)
                    .fetch_one(&pool)
                    .await
                    .unwrap_or(false)
            }
        })
        .await;
    }

    pub async fn create_note(&self, u: &User, title: &str, body: &str) -> Value {
        let r = self
            .post(format!("{}/notes", self.notes), Some(&u.token), json!({"title": title, "body": body}))
            .await;
        assert_eq!(r.status(), 201);
        r.json().await.unwrap()
    }

    pub async fn update_note(
        &self,
        u: &User,
        id: &str,
        version: i64,
        title: &str,
        body: &str,
    ) -> reqwest::Response {
        self.http
            .put(format!("{}/notes/{id}", self.notes))
            .bearer_auth(&u.token)
            .json(&json!({"title": title, "body": body, "version": version}))
            .send()
            .await
            .unwrap()
    }

    pub async fn share(&self, u: &User, id: &str, with: &str) -> reqwest::Response {
        self.post(format!("{}/notes/{id}/shares", self.notes), Some(&u.token), json!({"user_id": with})).await
    }

    pub async fn list(&self, u: &User) -> Vec<Value> {
        let r = self.http.get(format!("{}/notes", self.notes)).bearer_auth(&u.token).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    pub async fn list_users(&self) -> Vec<(String, String)> {
        let users: Vec<Value> =
            self.http.get(format!("{}/users", self.users)).send().await.unwrap().json().await.unwrap();
        users
            .iter()
            .map(|u| (u["id"].as_str().unwrap().to_owned(), u["name"].as_str().unwrap().to_owned()))
            .collect()
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.gateway)
    }
}

/// Polls `check` until it is true (panics naming `what` after `timeout`).
pub use cruncan_testkit::wait_until;

use futures::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;

pub type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What a test WebSocket client reads.
#[derive(Debug)]
pub enum Frame {
    Event(Value),
    Closed(Option<u16>),
}

/// A browser-like WebSocket client.
pub struct Ws {
    pub inner: WsStream,
    pub hello: Value,
    pub last_seq: u64,
}

/// Connects, sends the token (and `since`) as the first message, reads the hello.
pub async fn ws_connect(app: &TestApp, token: &str, since: Option<u64>) -> Ws {
    let (inner, _) = tokio_tungstenite::connect_async(app.ws_url()).await.unwrap();
    ws_hello(inner, token, since).await
}

pub async fn ws_hello(mut inner: WsStream, token: &str, since: Option<u64>) -> Ws {
    let first = json!({"token": token, "since": since}).to_string();
    inner.send(Message::Text(first.into())).await.unwrap();
    let mut ws = Ws { inner, hello: Value::Null, last_seq: 0 };
    match ws.read(Duration::from_secs(10)).await {
        Some(Frame::Event(v)) if v["type"] == "hello" => {
            ws.last_seq = v["seq"].as_u64().unwrap();
            ws.hello = v;
        }
        other => panic!("expected hello, got {other:?}"),
    }
    ws
}

impl Ws {
    /// The next text frame or the close, skipping pings; `None` when nothing came in time.
    pub async fn read(&mut self, within: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.inner.next()).await.ok()?;
            match msg {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == "event" {
                        self.last_seq = v["seq"].as_u64().unwrap();
                    }
                    return Some(Frame::Event(v));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Some(Frame::Closed(frame.map(|f| u16::from(f.code))));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Some(Frame::Closed(None)),
            }
        }
    }

    /// The next event (panics on a close or after `within`).
    pub async fn event(&mut self, within: Duration) -> Value {
        match self.read(within).await {
            Some(Frame::Event(v)) => v,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// Asserts nothing arrives for `quiet`.
    pub async fn expect_quiet(&mut self, quiet: Duration) {
        if let Some(f) = self.read(quiet).await {
            panic!("expected nothing, got {f:?}");
        }
    }
}

/// Publishes a note event straight to the stream (the gateway tests need no notes service),
/// addressed to `audience`, with a body of `body_len` bytes; returns its stream sequence.
pub async fn publish_event(app: &TestApp, audience: &[&str], body_len: usize, marker: &str) -> u64 {
    let owner = audience[0];
    let event = json!({
        "event_id": uuid::Uuid::now_v7(),
        "kind": "updated",
        "note": {"id": uuid::Uuid::now_v7(), "owner_id": owner, "title": marker, "body": "x".repeat(body_len),
                 "version": 2, "shared_with": &audience[1..], "updated_at": chrono::Utc::now()},
        "audience": audience,
        "by": owner,
        "at": chrono::Utc::now(),
    });
    let ack = app
        .js
        .publish(app.subject("note.updated"), serde_json::to_vec(&event).unwrap().into())
        .await
        .unwrap()
        .await
        .unwrap();
    ack.sequence
}
