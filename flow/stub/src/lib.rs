//! The stub: what service two talks to when it runs locally — an OAuth2 client-credentials token
//! endpoint and the third party's `POST /three` — with knobs to make it fail or slow, and a record
//! of everything it received, for the demo and the tests.
//!
//! | route | what |
//! |---|---|
//! | `POST /v2/oauth/token` | HTTP Basic `client_id:client_secret`, form `grant_type=client_credentials` → a token |
//! | `POST /three` | needs a token it issued (else 401); fails a share of calls with 503; records the call |
//! | `GET /received` | every call to `/three` so far |
//! | `GET /received/{id}` | the calls for one request id (404 when none) |
//! | `GET /received/count` | how many calls were accepted |
//! | `PUT /control` | change `fail_rate` and `delay_ms` at run time |

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Form, Json, Router};
use base64::Engine as _;
use clap::Parser;
use cruncan_http::json_error;
use cruncan_model::ThreeRequest;
use cruncan_shutdown::Shutdown;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Flags of the stub.
#[derive(Debug, Clone, Parser)]
#[command(name = "stub", version, about = "Local stand-in for the token server and the third party")]
pub struct Settings {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port)
    #[arg(long, default_value_t = 8090)]
    pub port: u16,
    /// Client id the token endpoint accepts
    #[arg(long, default_value = "two")]
    pub client_id: String,
    /// Client secret the token endpoint accepts
    #[arg(long, default_value = "local-secret", hide_default_value = true)]
    pub client_secret: String,
    /// Lifetime of issued tokens, in seconds
    #[arg(long, default_value_t = 3600)]
    pub token_ttl_secs: u64,
    /// Share of /three calls answered 503 (0.0 to 1.0)
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Delay before answering /three, in milliseconds
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
}

/// One call to `/three` as the stub saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Received {
    /// The request id of the body.
    pub id: String,
    /// The `Idempotency-Key` header.
    pub idempotency_key: Option<String>,
    /// The `traceparent` header.
    pub traceparent: Option<String>,
    /// The `language` header.
    pub language: Option<String>,
    /// The body.
    pub body: ThreeRequest,
    /// When it arrived.
    pub received_at: chrono::DateTime<chrono::Utc>,
    /// Whether the same `Idempotency-Key` was accepted before.
    pub duplicate: bool,
}

/// Run-time knobs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Control {
    /// Share of calls answered 503.
    #[serde(default)]
    pub fail_rate: f64,
    /// Delay before answering, in milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
    /// Answer the next this-many calls 503, whatever the rate.
    #[serde(default)]
    pub fail_next: u32,
}

#[derive(Debug)]
struct Inner {
    cfg: Settings,
    control: Mutex<Control>,
    tokens: Mutex<HashSet<String>>,
    received: Mutex<Vec<Received>>,
    accepted_keys: Mutex<HashSet<String>>,
    attempts: Mutex<std::collections::HashMap<String, u32>>,
}

/// Shared state of the stub; clone it to read what was received.
#[derive(Debug, Clone)]
pub struct Stub(Arc<Inner>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Stub {
    /// Every call received so far.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.0.received).clone()
    }

    /// How many calls were accepted so far.
    pub fn received_count(&self) -> usize {
        lock(&self.0.received).len()
    }

    /// Calls to `/three` for `id`, failed ones included.
    pub fn attempts(&self, id: &str) -> u32 {
        lock(&self.0.attempts).get(id).copied().unwrap_or(0)
    }

    /// Tokens issued so far.
    pub fn tokens_issued(&self) -> usize {
        lock(&self.0.tokens).len()
    }

    /// Changes the failure rate and delay.
    pub fn set_control(&self, control: Control) {
        *lock(&self.0.control) = control;
    }
}

/// A bound, not yet running stub.
#[derive(Debug)]
pub struct App {
    listener: tokio::net::TcpListener,
    stub: Stub,
}

/// Binds the stub.
pub async fn build(cfg: Settings) -> anyhow::Result<App> {
    let listener = tokio::net::TcpListener::bind((cfg.host.as_str(), cfg.port)).await?;
    let control = Control { fail_rate: cfg.fail_rate.clamp(0.0, 1.0), delay_ms: cfg.delay_ms, fail_next: 0 };
    let stub = Stub(Arc::new(Inner {
        cfg,
        control: Mutex::new(control),
        tokens: Mutex::default(),
        received: Mutex::default(),
        accepted_keys: Mutex::default(),
        attempts: Mutex::default(),
    }));
    Ok(App { listener, stub })
}

impl App {
    /// The bound address.
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// A handle on what the stub receives.
    pub fn stub(&self) -> Stub {
        self.stub.clone()
    }

    /// Serves until `shutdown`.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        tracing::info!(addr = %self.listener.local_addr()?, "stub listening");
        cruncan_http::serve(self.listener, router(self.stub), shutdown).await
    }
}

/// The stub's routes.
pub fn router(stub: Stub) -> Router {
    Router::new()
        .route("/v2/oauth/token", post(token))
        .route("/three", post(three))
        .route("/received", get(|State(s): State<Stub>| async move { Json(s.received()) }))
        .route(
            "/received/count",
            get(
                |State(s): State<Stub>| async move { Json(serde_json::json!({"count": s.received_count()})) },
            ),
        )
        .route("/received/{id}", get(received_for))
        .route("/control", put(control))
        .route("/healthz", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
        .fallback(cruncan_http::not_found)
        .with_state(stub)
        .layer(axum::middleware::from_fn(cruncan_http::telemetry_middleware))
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    #[serde(default)]
    scope: Option<String>,
}

// ANCHOR: token_endpoint
async fn token(State(stub): State<Stub>, headers: HeaderMap, Form(form): Form<TokenForm>) -> Response {
    let cfg = &stub.0.cfg;
    let expected =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", cfg.client_id, cfg.client_secret));
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .is_some_and(|b| b == expected);
    if !authorized {
        return (StatusCode::UNAUTHORIZED, Json(serde_json::json!({"error": "invalid_client"})))
            .into_response();
    }
    if form.grant_type != "client_credentials" {
        return (StatusCode::BAD_REQUEST, Json(serde_json::json!({"error": "unsupported_grant_type"})))
            .into_response();
    }
    let token = format!("stub-{}", uuid::Uuid::new_v4().simple());
    lock(&stub.0.tokens).insert(token.clone());
    tracing::info!(scope = form.scope.as_deref().unwrap_or_default(), "token issued");
    // Like many real servers, expires_in is a string here (two accepts both).
    Json(serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": cfg.token_ttl_secs.to_string()}))
        .into_response()
}
// ANCHOR_END: token_endpoint

async fn three(State(stub): State<Stub>, headers: HeaderMap, Json(body): Json<ThreeRequest>) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !bearer.is_some_and(|t| lock(&stub.0.tokens).contains(t)) {
        return json_error(StatusCode::UNAUTHORIZED, "invalid_token", "unknown or missing bearer token");
    }
    *lock(&stub.0.attempts).entry(body.id.clone()).or_default() += 1;
    let (delay, fail) = {
        let mut control = lock(&stub.0.control);
        let fail = if control.fail_next > 0 {
            control.fail_next -= 1;
            true
        } else {
            control.fail_rate > 0.0 && rand::random::<f64>() < control.fail_rate
        };
        (control.delay_ms, fail)
    };
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if fail {
        tracing::info!(id = %body.id, "failing on purpose (fail rate)");
        let mut r = json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the stub failed this call on purpose",
        );
        r.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        return r;
    }
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let key = text("idempotency-key");
    let duplicate = key.as_ref().is_some_and(|k| !lock(&stub.0.accepted_keys).insert(k.clone()));
    let received = Received {
        id: body.id.clone(),
        idempotency_key: key,
        traceparent: text("traceparent"),
        language: text("language"),
        body,
        received_at: chrono::Utc::now(),
        duplicate,
    };
    tracing::info!(id = %received.id, duplicate, prompt = %received.body.one_request.prompt, "POST /three received");
    lock(&stub.0.received).push(received);
    (StatusCode::OK, Json(serde_json::json!({"status": "accepted", "duplicate": duplicate}))).into_response()
}

async fn received_for(State(stub): State<Stub>, Path(id): Path<String>) -> Response {
    let calls: Vec<Received> = stub.received().into_iter().filter(|r| r.id == id).collect();
    if calls.is_empty() {
        return json_error(StatusCode::NOT_FOUND, "not_found", format!("no call for {id} yet"));
    }
    Json(calls).into_response()
}

async fn control(State(stub): State<Stub>, Json(control): Json<Control>) -> Response {
    if !(0.0..=1.0).contains(&control.fail_rate) {
        return json_error(StatusCode::BAD_REQUEST, "validation_failed", "fail_rate must be between 0 and 1");
    }
    stub.set_control(control.clone());
    Json(control).into_response()
}
