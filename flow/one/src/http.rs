//! The HTTP edge: routes, handlers, the error type and its status mapping, and the OpenAPI
//! document.

use crate::config::Limits;
use crate::domain::{CreateRequestBody, ValidationError};
use crate::repo::{Created, IdempotencyKey, OutboxRecord, RepoError, RequestRepository};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use cruncan_http::{ErrorBody, ReadinessCheck, json_error};
use cruncan_id::{Generator, Id};
use cruncan_model::{OneRequest, OneRequestEvent};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::sync::Arc;
use std::time::Duration;
use utoipa::OpenApi as _;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Request storage (the traced PostgreSQL repository in production, a fake in unit tests).
    pub repo: Arc<dyn RequestRepository>,
    /// Snowflake ids.
    pub ids: Arc<Generator>,
    /// Input limits.
    pub limits: Arc<Limits>,
    /// Topic the outbox rows are for.
    pub topic: Arc<str>,
    /// Largest accepted body.
    pub body_limit: usize,
    /// Time budget of one request's database work.
    pub request_timeout: Duration,
    /// Dependencies answer?
    pub ready: ReadinessCheck,
    /// `one.requests{outcome}`.
    pub requests: Counter<u64>,
}

// ANCHOR: api_error
/// Every way a request can fail, each with its status and a message fit for the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON at all.
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    /// JSON of the wrong shape or values out of bounds.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// Body over the limit.
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    /// Not `Content-Type: application/json`.
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    /// No such request.
    #[error("no request with id {0}")]
    NotFound(String),
    /// A path id that is not a Snowflake id.
    #[error("{0} is not a request id (20 decimal digits)")]
    InvalidId(String),
    /// A bad `Idempotency-Key` header.
    #[error("Idempotency-Key must be 1 to 255 visible ASCII characters")]
    InvalidIdempotencyKey,
    /// The key was used before with another body.
    #[error("Idempotency-Key was already used with a different request body")]
    KeyReused,
    /// The database cannot be reached; retry later.
    #[error("the service is temporarily unavailable; retry later")]
    Unavailable(#[source] anyhow::Error),
    /// A bug or an unexpected failure; details are logged, never sent.
    #[error("internal error")]
    Unexpected(#[source] anyhow::Error),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            Self::Validation(_) => (StatusCode::BAD_REQUEST, "validation_failed"),
            Self::InvalidId(_) => (StatusCode::BAD_REQUEST, "invalid_id"),
            Self::InvalidIdempotencyKey => (StatusCode::BAD_REQUEST, "invalid_idempotency_key"),
            Self::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::KeyReused => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Unexpected(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        // The cause chain is logged once, here, inside the request's span; the client gets only
        // the message of the variant.
        match &self {
            Self::Unavailable(cause) => {
                tracing::warn!(error = %format!("{cause:#}"), "request failed: unavailable")
            }
            Self::Unexpected(cause) => {
                tracing::error!(error = %format!("{cause:#}"), "request failed: internal error")
            }
            other => tracing::info!(error = %other, code, "request rejected"),
        }
        let mut response = json_error(status, code, self.to_string());
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<RepoError> for ApiError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::Unavailable(cause) => Self::Unavailable(cause),
            RepoError::Other(cause) => Self::Unexpected(cause),
        }
    }
}
// ANCHOR_END: api_error

/// `201` body.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct CreatedBody {
    /// The Snowflake id, 20 zero-padded digits.
    pub request_id: String,
}

/// `GET /one/{id}` body.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct StoredBody {
    /// The Snowflake id.
    pub request_id: String,
    /// The request as accepted.
    #[serde(flatten)]
    pub request: OneRequest,
    /// When it was accepted.
    pub created_at: chrono::DateTime<Utc>,
    /// Last change.
    pub updated_at: chrono::DateTime<Utc>,
}

// ANCHOR: router
/// All routes of service one.
pub fn router(state: AppState) -> Router {
    let body_limit = state.body_limit;
    Router::new()
        .route("/one", post(create_request))
        .route("/one/{id}", get(get_request))
        .with_state(state.clone())
        .merge(cruncan_http::health_routes(state.ready))
        .merge(utoipa_swagger_ui::SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
        .fallback(cruncan_http::not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(cruncan_http::json_method_not_allowed))
        .layer(axum::middleware::from_fn(cruncan_http::telemetry_middleware))
}
// ANCHOR_END: router

// ANCHOR: create_handler
/// Accepts a request: validates it, stores it with its outbox record in one transaction and
/// answers `201` with its id.
// ANCHOR: openapi_path
#[utoipa::path(
    post,
    path = "/one",
    request_body(content = CreateRequestBody, content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key and body: the first response again")),
    responses(
        (status = 201, description = "Accepted", body = CreatedBody, headers(("Location" = String))),
        (status = 400, description = "Malformed JSON or a field failed validation", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Idempotency-Key reused with another body", body = ErrorBody),
        (status = 503, description = "Database unreachable", body = ErrorBody),
    )
)]
// ANCHOR_END: openapi_path
pub async fn create_request(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let result = create(&state, &headers, body).await;
    let outcome = match &result {
        Ok((_, true)) => "replayed",
        Ok(_) => "accepted",
        Err(e) if e.status_and_code().0.is_client_error() => "rejected",
        Err(_) => "failed",
    };
    state.requests.add(1, &[KeyValue::new("outcome", outcome)]);
    result.map(|(response, _)| response)
}

async fn create(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Response, bool), ApiError> {
    require_json(headers)?;
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(state.body_limit),
        _ => ApiError::MalformedJson(rejection.body_text()),
    })?;
    let idempotency_key = idempotency_key(headers)?;
    // Syntax first (no allocation), so a body that is not JSON at all is reported as such even
    // when a field before the syntax error has the wrong type; then straight into the typed body.
    serde_json::from_slice::<serde::de::IgnoredAny>(&body)
        .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    // serde accepts a JSON array for a struct (its fields in order); the API's body is an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ValidationError { field: "body".into(), message: "must be a JSON object".into() }.into());
    }
    let mut json = serde_json::Deserializer::from_slice(&body);
    let parsed: CreateRequestBody = serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let field = e.path().to_string();
        ValidationError {
            field: if field == "." { "body".into() } else { field },
            message: e.inner().to_string(),
        }
    })?;
    let request = parsed.validate(&state.limits)?;
    let request = request.as_request();

    let id = state.ids.next_id().await.map_err(|e| ApiError::Unexpected(e.into()))?;
    let now = Utc::now();
    let event = OneRequestEvent {
        request_id: id.to_string(),
        user_id: request.user_id.clone(),
        prompt: request.prompt.clone(),
        data: request.data.clone(),
        created_at: now,
    };
    // ANCHOR: outbox_record
    let outbox = OutboxRecord {
        topic: state.topic.to_string(),
        key: id.to_string(),
        payload: serde_json::to_vec(&event).map_err(|e| ApiError::Unexpected(e.into()))?,
        // The trace of this request travels with the message.
        headers: trace_headers(),
    };
    // ANCHOR_END: outbox_record
    let key = idempotency_key.map(|key| IdempotencyKey { key, request_hash: request_hash(request) });
    let created = bounded(state, state.repo.create(id, request, now, &outbox, key.as_ref())).await?;
    match created {
        Created::New => {
            tracing::info!(request_id = %id, "request accepted");
            Ok((
                created_response(
                    StatusCode::CREATED,
                    &serde_json::json!({ "request_id": id.to_string() }),
                    false,
                ),
                false,
            ))
        }
        Created::Replay { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::CREATED);
            Ok((created_response(status, &body, true), true))
        }
        Created::KeyReused => Err(ApiError::KeyReused),
    }
}
// ANCHOR_END: create_handler

/// A repository call within the request's time budget; running over it is a 503.
async fn bounded<T>(
    state: &AppState,
    call: impl std::future::Future<Output = Result<T, RepoError>>,
) -> Result<T, ApiError> {
    tokio::time::timeout(state.request_timeout, call)
        .await
        .map_err(|_| {
            ApiError::Unavailable(anyhow::anyhow!("database work exceeded {:?}", state.request_timeout))
        })?
        .map_err(ApiError::from)
}

fn created_response(status: StatusCode, body: &serde_json::Value, replayed: bool) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(id) = body.get("request_id").and_then(|v| v.as_str())
        && let Ok(location) = HeaderValue::from_str(&format!("/one/{id}"))
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let mime = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let json = mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"));
    if json { Ok(()) } else { Err(ApiError::UnsupportedMediaType) }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(raw) = headers.get("idempotency-key") else { return Ok(None) };
    let key = raw.to_str().map_err(|_| ApiError::InvalidIdempotencyKey)?;
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::InvalidIdempotencyKey);
    }
    Ok(Some(key.to_owned()))
}

/// SHA-256 of the validated request: the same request in another key order or with extra unknown
/// fields is the same request.
fn request_hash(request: &OneRequest) -> String {
    let bytes = serde_json::to_vec(request).unwrap_or_default();
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn trace_headers() -> cruncan_kafka::Headers {
    cruncan_kafka::Headers::current_trace()
}

/// Returns a stored request.
#[utoipa::path(
    get,
    path = "/one/{id}",
    params(("id" = String, Path, description = "The request id (20 digits)")),
    responses(
        (status = 200, description = "The stored request", body = StoredBody),
        (status = 400, description = "Not a request id", body = ErrorBody),
        (status = 404, description = "Unknown id", body = ErrorBody),
        (status = 503, description = "Database unreachable", body = ErrorBody),
    )
)]
pub async fn get_request(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let id: Id = raw.parse().map_err(|_| ApiError::InvalidId(raw.clone()))?;
    let stored = bounded(&state, state.repo.get(id)).await?.ok_or_else(|| ApiError::NotFound(raw))?;
    let body = StoredBody {
        request_id: stored.id.to_string(),
        request: stored.request,
        created_at: stored.created_at,
        updated_at: stored.updated_at,
    };
    Ok(axum::Json(body).into_response())
}

// ANCHOR: api_doc
/// The OpenAPI document served at `/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "cruncan service one", description = "Accepts requests and publishes them to Kafka."),
    paths(create_request, get_request),
    components(schemas(CreateRequestBody, CreatedBody, StoredBody, ErrorBody, cruncan_http::ErrorDetail))
)]
pub struct ApiDoc;
// ANCHOR_END: api_doc

#[cfg(test)]
mod tests {
    //! Handler logic with a fake repository: status mapping without a database.
    use super::*;
    use crate::repo::StoredRequest;
    use axum::body::Body;
    use axum::http::Request;
    use std::sync::Mutex;
    use tower::ServiceExt as _;

    /// Answers every `create` with the next scripted outcome and records what it was given.
    struct FakeRepo {
        outcomes: Mutex<Vec<Result<Created, RepoError>>>,
        seen: Mutex<Vec<(OneRequest, OutboxRecord, Option<String>)>>,
    }

    #[async_trait::async_trait]
    impl RequestRepository for FakeRepo {
        async fn create(
            &self,
            _id: Id,
            request: &OneRequest,
            _now: chrono::DateTime<Utc>,
            outbox: &OutboxRecord,
            key: Option<&IdempotencyKey>,
        ) -> Result<Created, RepoError> {
            self.seen.lock().unwrap().push((
                request.clone(),
                outbox.clone(),
                key.map(|k| k.request_hash.clone()),
            ));
            self.outcomes.lock().unwrap().remove(0)
        }
        async fn get(&self, _id: Id) -> Result<Option<StoredRequest>, RepoError> {
            Ok(None)
        }
    }

    fn app(outcomes: Vec<Result<Created, RepoError>>) -> (Router, Arc<FakeRepo>) {
        let repo = Arc::new(FakeRepo { outcomes: Mutex::new(outcomes), seen: Mutex::default() });
        let state = AppState {
            repo: repo.clone(),
            ids: Arc::new(Generator::new(1)),
            limits: Arc::new(Limits {
                max_user_id_len: 10,
                max_prompt_len: 10,
                max_data_entries: 1,
                max_data_key_len: 5,
                max_data_value_len: 5,
            }),
            topic: "t".into(),
            body_limit: 1024,
            request_timeout: Duration::from_secs(1),
            ready: Arc::new(|| Box::pin(async { Ok(()) })),
            requests: cruncan_telemetry::meter("test").u64_counter("t").build(),
        };
        (router(state), repo)
    }

    async fn post(app: Router, body: &str, key: Option<&str>) -> (StatusCode, serde_json::Value) {
        let mut req = Request::post("/one").header("content-type", "application/json");
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        let resp = app.oneshot(req.body(Body::from(body.to_owned())).unwrap()).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    const OK: &str = r#"{"user_id":"u","prompt":"p"}"#;

    #[tokio::test]
    async fn repository_outcomes_map_to_statuses() {
        let unavailable = RepoError::Unavailable(anyhow::anyhow!("connection refused at 10.0.0.5:5432"));
        let broken = RepoError::Other(anyhow::anyhow!("relation \"request\" does not exist"));
        let cases: Vec<(Result<Created, RepoError>, StatusCode, &str)> = vec![
            (Ok(Created::New), StatusCode::CREATED, ""),
            (Ok(Created::KeyReused), StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
            (Err(unavailable), StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            (Err(broken), StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        ];
        for (outcome, status, code) in cases {
            let (app, _) = app(vec![outcome]);
            let (got, body) = post(app, OK, Some("k")).await;
            assert_eq!(got, status);
            if !code.is_empty() {
                assert_eq!(body["error"]["code"], code);
                let text = body.to_string();
                assert!(
                    !text.contains("10.0.0.5") && !text.contains("relation"),
                    "no internals leak: {text}"
                );
            }
        }
    }

    #[tokio::test]
    async fn replay_returns_the_stored_response() {
        let stored = serde_json::json!({"request_id": "00000000000000000007"});
        let (app, _) = app(vec![Ok(Created::Replay { status: 201, body: stored.clone() })]);
        let (status, body) = post(app, OK, Some("k")).await;
        assert_eq!((status, body), (StatusCode::CREATED, stored));
    }

    #[tokio::test]
    async fn the_outbox_record_is_the_event_keyed_by_the_id() {
        let (app, repo) = app(vec![Ok(Created::New)]);
        let (status, body) = post(app, r#"{"user_id":"u","prompt":"p","extra":1}"#, None).await;
        assert_eq!(status, StatusCode::CREATED);
        let seen = repo.seen.lock().unwrap();
        let (request, outbox, key) = &seen[0];
        assert_eq!(request, &OneRequest { user_id: "u".into(), prompt: "p".into(), data: vec![] });
        assert_eq!(outbox.key, body["request_id"].as_str().unwrap());
        let event: OneRequestEvent = serde_json::from_slice(&outbox.payload).unwrap();
        assert_eq!(event.request_id, outbox.key);
        assert!(key.is_none());
    }

    #[test]
    fn the_hash_ignores_key_order_and_unknown_fields() {
        let a: CreateRequestBody = serde_json::from_str(r#"{"user_id":"u","prompt":"p","x":1}"#).unwrap();
        let b: CreateRequestBody = serde_json::from_str(r#"{"prompt":"p","user_id":"u"}"#).unwrap();
        let c: CreateRequestBody = serde_json::from_str(r#"{"prompt":"q","user_id":"u"}"#).unwrap();
        let limits = Limits {
            max_user_id_len: 9,
            max_prompt_len: 9,
            max_data_entries: 1,
            max_data_key_len: 1,
            max_data_value_len: 1,
        };
        let h = |b: CreateRequestBody| request_hash(b.validate(&limits).unwrap().as_request());
        assert_eq!(h(a.clone()), h(b));
        assert_ne!(h(a), h(c));
    }
}
