//! The controllable stand-in: an HTTP proxy in front of a real service whose latency and
//! failures a test switches, and which counts the calls that reach the service's door.
#![allow(dead_code)]

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse as _, Response};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// What the proxy does to a request it applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Forward it.
    Pass,
    /// Wait, then forward.
    SlowRequest(Duration),
    /// Forward, then wait before answering (the work is done, the answer comes late).
    SlowReply(Duration),
    /// Answer 503 without forwarding.
    Fail,
    /// Every other request (the 1st, 3rd, ...) is answered 503; the others are forwarded.
    FailEveryOther,
    /// Hold it until the mode changes, then apply the new mode.
    Hang,
}

struct Inner {
    upstream: String,
    client: reqwest::Client,
    mode: watch::Sender<Mode>,
    only: Mutex<Option<(Method, String)>>,
    seen: Mutex<Vec<(Method, String, Option<u64>)>>,
    alternate: AtomicU64,
}

/// A proxy on 127.0.0.1 in front of `upstream`.
#[derive(Clone)]
pub struct FaultProxy {
    pub base: String,
    inner: Arc<Inner>,
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> Self {
        let (mode, _) = watch::channel(Mode::Pass);
        let inner = Arc::new(Inner {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
            mode,
            only: Mutex::new(None),
            seen: Mutex::default(),
            alternate: AtomicU64::new(0),
        });
        let app = axum::Router::new().fallback(handle).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, inner }
    }

    /// Applies `mode` to every request.
    pub fn set(&self, mode: Mode) {
        *self.inner.only.lock().unwrap() = None;
        self.inner.mode.send_replace(mode);
    }

    /// Applies `mode` to requests with `method` whose path starts with `prefix`; others pass.
    pub fn set_for(&self, method: Method, prefix: &str, mode: Mode) {
        *self.inner.only.lock().unwrap() = Some((method, prefix.to_owned()));
        self.inner.mode.send_replace(mode);
    }

    /// Requests that reached the proxy.
    pub fn hits(&self) -> usize {
        self.inner.seen.lock().unwrap().len()
    }

    /// Requests with `method` whose path starts with `prefix`.
    pub fn hits_of(&self, method: &Method, prefix: &str) -> usize {
        self.inner
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, p, _)| m == method && p.starts_with(prefix))
            .count()
    }

    /// The deadline header of every request, in arrival order.
    pub fn deadlines(&self) -> Vec<Option<u64>> {
        self.inner.seen.lock().unwrap().iter().map(|(_, _, d)| *d).collect()
    }
}

async fn handle(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let deadline =
        req.headers().get(services::deadline::DEADLINE_HEADER).and_then(|v| v.to_str().ok()?.parse().ok());
    inner.seen.lock().unwrap().push((method.clone(), path.clone(), deadline));
    let applies = match &*inner.only.lock().unwrap() {
        Some((m, prefix)) => *m == method && path.starts_with(prefix.as_str()),
        None => true,
    };
    let mut rx = inner.mode.subscribe();
    let mut mode = if applies { rx.borrow_and_update().clone() } else { Mode::Pass };
    // Bounded: a hung request waits at most 30 s for the test to change the mode.
    let mut rounds = 0;
    while mode == Mode::Hang && rounds < 300 {
        let _ = tokio::time::timeout(Duration::from_millis(100), rx.changed()).await;
        mode = rx.borrow_and_update().clone();
        rounds += 1;
    }
    match mode {
        Mode::Fail => unavailable(),
        Mode::FailEveryOther if inner.alternate.fetch_add(1, Ordering::SeqCst) % 2 == 0 => unavailable(),
        Mode::SlowRequest(d) => {
            tokio::time::sleep(d).await;
            pass(&inner, req).await
        }
        Mode::SlowReply(d) => {
            let answer = pass(&inner, req).await;
            tokio::time::sleep(d).await;
            answer
        }
        _ => pass(&inner, req).await,
    }
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "injected failure").into_response()
}

async fn pass(inner: &Inner, req: Request) -> Response {
    let url = format!("{}{}", inner.upstream, req.uri().path_and_query().map_or("/", |p| p.as_str()));
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let mut headers = parts.headers;
    headers.remove(axum::http::header::HOST);
    let answer = inner.client.request(parts.method, url).headers(headers).body(body).send().await;
    match answer {
        Ok(r) => {
            let status = r.status();
            let headers = r.headers().clone();
            let mut response = Response::new(Body::from(r.bytes().await.unwrap_or_default()));
            *response.status_mut() = status;
            if let Some(ct) = headers.get(axum::http::header::CONTENT_TYPE) {
                response.headers_mut().insert(axum::http::header::CONTENT_TYPE, ct.clone());
            }
            response
        }
        Err(_) => (StatusCode::BAD_GATEWAY, "upstream unreachable").into_response(),
    }
}
