//! A participant as its own HTTP service, and the client the orchestrator calls it with.
//!
//! - `POST /steps/{key}` with the [`OrderSaga`] as JSON: `200 {"reference"}`, `422` when the
//!   participant refuses (the message in the error body), `503` when it cannot answer.
//! - `POST /steps/{key}/compensation`: `204` once undone (or nothing to undo), `503`.
//!
//! The client maps `422` to [`StepError::Rejected`] and everything else that is not a success —
//! timeouts, refused connections, 5xx — to [`StepError::Unavailable`]: the orchestrator cannot
//! know whether the step happened, and retries with the same key.

use super::{Participant, StepError, StepOutput};
use crate::domain::{IdempotencyKey, OrderSaga};
use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use cruncan_http::{ErrorBody, ValidJson, json_error};
use std::sync::Arc;
use std::time::Duration;

type Shared = Arc<dyn Participant>;

/// The routes of one participant served over HTTP (plus `/healthz`, `/readyz`).
pub fn router(participant: Arc<dyn Participant>, ready: cruncan_http::ReadinessCheck) -> Router {
    Router::new()
        .route("/steps/{key}", post(execute))
        .route("/steps/{key}/compensation", post(compensate))
        .with_state(participant)
        .merge(cruncan_http::health_routes(ready))
        .fallback(cruncan_http::not_found)
        .layer(axum::middleware::from_fn(cruncan_http::json_method_not_allowed))
        .layer(axum::middleware::from_fn(cruncan_http::telemetry_middleware))
}

/// What both routes take: the key from the path and the saga from the JSON body, or a 400.
struct StepCall(IdempotencyKey, OrderSaga);

impl<S: Send + Sync> FromRequest<S> for StepCall {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let Path(key) =
            Path::<String>::from_request_parts(&mut parts, state).await.map_err(|e| e.into_response())?;
        let key = IdempotencyKey::parse(&key).ok_or_else(|| {
            json_error(StatusCode::BAD_REQUEST, "invalid_key", "key must be <saga uuid>:<step name>")
        })?;
        let ValidJson(saga) = ValidJson::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|e| e.into_response())?;
        Ok(Self(key, saga))
    }
}

async fn execute(State(participant): State<Shared>, StepCall(key, saga): StepCall) -> Response {
    match participant.execute(&key, &saga).await {
        Ok(output) => axum::Json(output).into_response(),
        Err(StepError::Rejected(reason)) => json_error(StatusCode::UNPROCESSABLE_ENTITY, "rejected", reason),
        Err(StepError::Unavailable(e)) => unavailable(&e),
    }
}

async fn compensate(State(participant): State<Shared>, StepCall(key, saga): StepCall) -> Response {
    match participant.compensate(&key, &saga).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(StepError::Rejected(reason)) => json_error(StatusCode::CONFLICT, "refused", reason),
        Err(StepError::Unavailable(e)) => unavailable(&e),
    }
}

fn unavailable(e: &anyhow::Error) -> Response {
    tracing::warn!(error = %format!("{e:#}"), "participant unavailable");
    json_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "participant unavailable; retry")
}

// ANCHOR: client
/// A remote participant; every call is bounded by `timeout` and carries the trace context.
#[derive(Debug, Clone)]
pub struct HttpParticipant {
    base: String,
    client: reqwest::Client,
}

impl HttpParticipant {
    /// A client of the participant served at `base` (e.g. `http://127.0.0.1:8401`).
    pub fn new(base: impl Into<String>, timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(Self { base: base.into().trim_end_matches('/').to_owned(), client })
    }

    async fn post(&self, path: String, saga: &OrderSaga) -> Result<reqwest::Response, StepError> {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .json(saga)
            .build()
            .map_err(|e| StepError::Unavailable(e.into()))?;
        let response = cruncan_http::client::send_traced(&self.client, request)
            .await
            .map_err(|e| StepError::Unavailable(anyhow::Error::new(e).context(path.clone())))?;
        match response.status() {
            s if s.is_success() => Ok(response),
            StatusCode::UNPROCESSABLE_ENTITY | StatusCode::CONFLICT => {
                let body: Option<ErrorBody> = response.json().await.ok();
                Err(StepError::Rejected(body.map(|b| b.detail).unwrap_or_default()))
            }
            s => Err(StepError::Unavailable(anyhow::anyhow!("{path}: HTTP {s}"))),
        }
    }
}

#[async_trait::async_trait]
impl Participant for HttpParticipant {
    async fn execute(&self, key: &IdempotencyKey, saga: &OrderSaga) -> Result<StepOutput, StepError> {
        let response = self.post(format!("/steps/{key}"), saga).await?;
        response.json().await.map_err(|e| StepError::Unavailable(e.into()))
    }

    async fn compensate(&self, key: &IdempotencyKey, saga: &OrderSaga) -> Result<(), StepError> {
        self.post(format!("/steps/{key}/compensation"), saga).await.map(drop)
    }
}
// ANCHOR_END: client
