//! The innermost service of a dependency's stack: one HTTP attempt.

use crate::deadline::{DEADLINE_HEADER, Deadline};
use bytes::Bytes;
use http::{Method, StatusCode};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// One call to a dependency, as the layers see it (cloned for every attempt).
#[derive(Debug, Clone)]
pub struct Call {
    /// Method.
    pub method: Method,
    /// Path and query, e.g. `/products/42`.
    pub path: String,
    /// JSON body.
    pub body: Option<serde_json::Value>,
    /// The caller's deadline; each attempt sends what is left of it.
    pub deadline: Deadline,
    /// Safe to send twice (a GET, or a POST carrying its own idempotency key).
    pub idempotent: bool,
}

impl Call {
    /// `GET path`.
    pub fn get(path: impl Into<String>, deadline: Deadline) -> Self {
        Self { method: Method::GET, path: path.into(), body: None, deadline, idempotent: true }
    }

    /// `POST path` with a JSON body; say whether it is idempotent.
    pub fn post(
        path: impl Into<String>,
        body: serde_json::Value,
        deadline: Deadline,
        idempotent: bool,
    ) -> Self {
        Self { method: Method::POST, path: path.into(), body: Some(body), deadline, idempotent }
    }
}

/// An answer the dependency gave on purpose (2xx and 4xx: 404 and 409 are answers, not faults).
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Body.
    pub body: Bytes,
}

/// Why an attempt failed (what the breaker counts and the retry policy may retry).
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// The caller's deadline has passed; no attempt was made.
    #[error("deadline exceeded")]
    Deadline,
    /// No answer: connection refused or reset, or the deadline ran out mid-call.
    #[error("unreachable: {0}")]
    Transport(String),
    /// The dependency answered 5xx or 429.
    #[error("answered {0}")]
    Status(StatusCode),
}

/// One HTTP attempt against `base`, carrying the remaining deadline in a header.
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
    base: String,
}

impl Http {
    /// Calls to `base` (`http://127.0.0.1:8502`) with `client`.
    pub fn new(client: reqwest::Client, base: impl Into<String>) -> Self {
        Self { client, base: base.into().trim_end_matches('/').to_owned() }
    }
}

impl tower::Service<Call> for Http {
    type Response = Reply;
    type Error = AttemptError;
    type Future = Pin<Box<dyn Future<Output = Result<Reply, AttemptError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let (client, url) = (self.client.clone(), format!("{}{}", self.base, call.path));
        Box::pin(async move {
            let remaining = call.deadline.remaining();
            if remaining.is_zero() {
                return Err(AttemptError::Deadline);
            }
            let mut builder = client
                .request(call.method.clone(), url)
                .timeout(remaining)
                .header(DEADLINE_HEADER, call.deadline.header_value());
            if let Some(body) = &call.body {
                builder = builder.json(body);
            }
            let request = builder.build().map_err(|e| AttemptError::Transport(e.to_string()))?;
            let response = cruncan_http::client::send_traced(&client, request)
                .await
                .map_err(|e| AttemptError::Transport(e.to_string()))?;
            let status = response.status();
            if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                return Err(AttemptError::Status(status));
            }
            let body = response.bytes().await.map_err(|e| AttemptError::Transport(e.to_string()))?;
            Ok(Reply { status, body })
        })
    }
}
