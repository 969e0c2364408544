//! The orchestrator's HTTP edge: `POST /orders` (202 with the saga id), `GET /sagas/{id}`,
//! `GET /orders/{id}`, `/healthz`, `/readyz`.

use crate::domain::{CreateOrderBody, OrderItem, ValidationError};
use crate::orchestrator::{Orchestrator, Started};
use crate::state::{SagaRecord, SagaStatus, StepRecord};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cruncan_http::{
    IdempotencyKeyHeader, InvalidIdempotencyKey, JsonRejection, ReadinessCheck, ValidJson, json_error,
};
use serde::Serialize;
use std::sync::Arc;
use uuid::Uuid;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// This replica's orchestrator.
    pub orchestrator: Arc<Orchestrator>,
    /// Dependencies answer?
    pub ready: ReadinessCheck,
}

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Not JSON, not `application/json`, or JSON of the wrong shape (names the field).
    #[error(transparent)]
    Body(#[from] JsonRejection),
    /// A field failed validation.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// The path id is not a UUID.
    #[error("{0} is not a UUID")]
    InvalidId(String),
    /// No such saga or order.
    #[error("no {0} with id {1}")]
    NotFound(&'static str, Uuid),
    /// Only a parked (`failed`) saga can be retried.
    #[error("saga {0} is {1}, not failed: only a parked saga can be retried")]
    NotParked(Uuid, &'static str),
    /// A bad `Idempotency-Key` header.
    #[error(transparent)]
    InvalidIdempotencyKey(#[from] InvalidIdempotencyKey),
    /// The `Idempotency-Key` started a saga for another order.
    #[error("Idempotency-Key was already used with a different order")]
    KeyReused,
    /// The saga store cannot be reached; retry later (details logged, never sent).
    #[error("the service is temporarily unavailable; retry later")]
    Unavailable(#[source] anyhow::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Self::Body(rejection) => rejection.status_and_code(),
            Self::Validation(_) => (StatusCode::BAD_REQUEST, "validation_failed"),
            Self::InvalidId(_) => (StatusCode::BAD_REQUEST, "invalid_id"),
            Self::NotFound(..) => (StatusCode::NOT_FOUND, "not_found"),
            Self::NotParked(..) => (StatusCode::CONFLICT, "not_parked"),
            Self::InvalidIdempotencyKey(_) => (StatusCode::BAD_REQUEST, "invalid_idempotency_key"),
            Self::KeyReused => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        match &self {
            Self::Unavailable(cause) => tracing::error!(error = %format!("{cause:#}"), "request failed"),
            other => tracing::info!(error = %other, code, "request rejected"),
        }
        let mut response = json_error(status, code, self.to_string());
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}

/// `202` body of `POST /orders`.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Accepted {
    /// The saga, to poll at `/sagas/{saga_id}`.
    pub saga_id: Uuid,
    /// The order it creates.
    pub order_id: Uuid,
    /// `pending` (or further along already).
    pub status: SagaStatus,
}

/// `GET /sagas/{id}` body.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct SagaView {
    /// Saga id.
    pub saga_id: Uuid,
    /// Order id.
    pub order_id: Uuid,
    /// Status.
    pub status: SagaStatus,
    /// Every step with its state, attempts and error.
    pub steps: Vec<StepRecord>,
}

/// `GET /orders/{id}` body: the order as the saga knows it.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct OrderView {
    /// Order id.
    pub order_id: Uuid,
    /// The saga creating it.
    pub saga_id: Uuid,
    /// Who ordered.
    pub user_id: String,
    /// Lines; prices in minor units.
    pub items: Vec<OrderItem>,
    /// Total in minor units.
    pub total: i64,
    /// `processing`, `confirmed`, `cancelled`, or `needs_attention` (a parked saga).
    pub status: &'static str,
}

impl From<SagaRecord> for SagaView {
    fn from(r: SagaRecord) -> Self {
        Self { saga_id: r.id(), order_id: r.input.order_id, status: r.status, steps: r.steps }
    }
}

impl From<SagaRecord> for OrderView {
    fn from(r: SagaRecord) -> Self {
        let status = match r.status {
            SagaStatus::Completed => "confirmed",
            SagaStatus::Compensated => "cancelled",
            SagaStatus::Failed => "needs_attention",
            _ => "processing",
        };
        Self {
            order_id: r.input.order_id,
            saga_id: r.id(),
            user_id: r.input.user_id,
            items: r.input.items,
            total: r.input.total.0,
            status,
        }
    }
}

/// Every route of the orchestrator.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/orders", post(create_order))
        .route("/orders/{id}", get(get_order))
        .route("/sagas/{id}", get(get_saga))
        .route("/sagas/{id}/retry", post(retry_saga))
        .with_state(state.clone())
        .merge(cruncan_http::health_routes(state.ready))
        .fallback(cruncan_http::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .layer(axum::middleware::from_fn(cruncan_http::json_method_not_allowed))
        .layer(axum::middleware::from_fn(cruncan_http::telemetry_middleware))
}

/// Validates the order, stores its saga and answers `202` at once; the saga runs on. With an
/// `Idempotency-Key` used before for the same order, answers that saga (its current status, and
/// `idempotent-replayed: true`) and starts nothing.
pub async fn create_order(
    State(state): State<AppState>,
    key: Result<IdempotencyKeyHeader, InvalidIdempotencyKey>,
    body: Result<ValidJson<CreateOrderBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let IdempotencyKeyHeader(key) = key?;
    let ValidJson(parsed) = body?;
    let order = parsed.validate()?;
    let (saga, replayed) = match state.orchestrator.start(order, key).await.map_err(ApiError::Unavailable)? {
        Started::New(saga) => (saga, false),
        Started::Replayed(saga) => (saga, true),
        Started::KeyReused => return Err(ApiError::KeyReused),
    };
    let accepted = Accepted { saga_id: saga.id(), order_id: saga.input.order_id, status: saga.status };
    let mut response = (StatusCode::ACCEPTED, axum::Json(accepted)).into_response();
    if replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

fn uuid(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::InvalidId(id.chars().take(64).collect()))
}

async fn get_saga(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = uuid(&id)?;
    let saga = state.orchestrator.store().get(id).await.map_err(ApiError::Unavailable)?;
    let saga = saga.ok_or(ApiError::NotFound("saga", id))?;
    Ok(axum::Json(SagaView::from(saga)).into_response())
}

async fn get_order(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = uuid(&id)?;
    let saga = state.orchestrator.store().get_by_order(id).await.map_err(ApiError::Unavailable)?;
    let saga = saga.ok_or(ApiError::NotFound("order", id))?;
    Ok(axum::Json(OrderView::from(saga)).into_response())
}

/// `POST /sagas/{id}/retry`: the operator's button for a parked saga, once its cause is fixed.
async fn retry_saga(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = uuid(&id)?;
    let store = state.orchestrator.store();
    if store.requeue_parked(id).await.map_err(ApiError::Unavailable)? {
        tracing::warn!(saga_id = %id, "parked saga requeued by an operator");
        return Ok(StatusCode::ACCEPTED.into_response());
    }
    let saga = store.get(id).await.map_err(ApiError::Unavailable)?;
    let saga = saga.ok_or(ApiError::NotFound("saga", id))?;
    Err(ApiError::NotParked(id, saga.status.as_str()))
}
