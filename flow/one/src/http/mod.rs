//! The HTTP edge of service one: the state handlers share, the routes, and the one log line and
//! outcome count per request ([`observe`]). Errors are in [`error`], extractors in [`extract`],
//! handlers in [`handlers`], the OpenAPI document in [`openapi`].

pub mod error;
pub mod extract;
pub mod handlers;
pub mod openapi;

pub use error::{ApiError, Failure};
pub use handlers::{create_request, get_request};
pub use openapi::ApiDoc;

use crate::config::Limits;
use crate::intake::Intake;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use cruncan_http::ReadinessCheck;
use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;
use std::sync::Arc;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The "accept a request" use case (storage, ids, outbox topic, time budget).
    pub intake: Intake,
    /// Input limits.
    pub limits: Arc<Limits>,
    /// Largest accepted body.
    pub body_limit: usize,
    /// Dependencies answer?
    pub ready: ReadinessCheck,
    /// `one.requests{outcome}`.
    pub requests: Counter<u64>,
}

/// The id of the request a `201` accepted, for [`observe`]'s log line.
#[derive(Debug, Clone)]
pub struct AcceptedId(pub String);

// ANCHOR: router
/// All routes of service one.
pub fn router(state: AppState) -> Router {
    let body_limit = state.body_limit;
    let doc = openapi::document(&state.limits);
    Router::new()
        .route("/one", post(create_request))
        .route("/one/{id}", get(get_request))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state.clone())
        .merge(cruncan_http::health_routes(state.ready))
        .merge(utoipa_swagger_ui::SwaggerUi::new("/docs").url("/openapi.json", doc))
        .fallback(cruncan_http::not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(cruncan_http::json_method_not_allowed))
        .layer(axum::middleware::from_fn(cruncan_http::telemetry_middleware))
}
// ANCHOR_END: router

// ANCHOR: observe
/// One log line per request, inside its server span, and the `one.requests{outcome}` count for
/// `POST /one`: accepted, replayed, rejected (4xx), failed (5xx). Handlers and error conversions
/// only describe what happened (response extensions); this is the one place that logs it.
pub async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let create = req.method() == Method::POST;
    let response = next.run(req).await;
    let status = response.status();
    let replayed = response.headers().contains_key("idempotent-replayed");
    if let Some(f) = response.extensions().get::<Failure>() {
        let (code, cause) = (f.code, &*f.cause);
        if status.is_server_error() && code == "unavailable" {
            tracing::warn!(error = cause, code, "request failed: unavailable");
        } else if status.is_server_error() {
            tracing::error!(error = cause, code, "request failed: internal error");
        } else {
            tracing::info!(error = cause, code, "request rejected");
        }
    } else if let Some(AcceptedId(id)) = response.extensions().get::<AcceptedId>() {
        tracing::info!(request_id = %id, replayed, "request accepted");
    }
    if create {
        let outcome = match status.as_u16() {
            200..=299 if replayed => "replayed",
            200..=299 => "accepted",
            400..=499 => "rejected",
            _ => "failed",
        };
        state.requests.add(1, &[KeyValue::new("outcome", outcome)]);
    }
    response
}
// ANCHOR_END: observe
