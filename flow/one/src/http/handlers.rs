//! The handlers: typed input in (extractors did the checking), a response out.

use super::extract::ValidRequest;
use super::{AcceptedId, ApiError, AppState};
use crate::domain::CreatedBody;
use crate::intake::Accepted;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use cruncan_http::{ErrorBody, IdempotencyKeyHeader, InvalidIdempotencyKey};
use cruncan_id::Id;
use cruncan_model::OneRequest;
use serde::Serialize;

/// `GET /one/{id}` body.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct StoredBody {
    /// The Snowflake id.
    #[schema(pattern = "^0[0-9]{19}$")]
    pub request_id: String,
    /// The request as accepted.
    #[serde(flatten)]
    pub request: OneRequest,
    /// When it was accepted.
    pub created_at: chrono::DateTime<Utc>,
    /// Last change.
    pub updated_at: chrono::DateTime<Utc>,
}

// ANCHOR: create_handler
/// Accepts a request: stores it with its outbox record in one transaction and answers `201`
/// with its id (or, for a key seen before with the same body, the first answer again).
// ANCHOR: openapi_path
#[utoipa::path(
    post,
    path = "/one",
    request_body(content = OneRequest, content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Same key and body: the first response again",
        min_length = 1, max_length = 255, pattern = "^[\\x21-\\x7e]+$")),
    responses(
        (status = 201, description = "Accepted (or replayed: header idempotent-replayed)",
            body = CreatedBody, headers(("Location" = String))),
        (status = 400, description = "Malformed JSON, a field failed validation, or a bad Idempotency-Key",
            body = ErrorBody, content_type = "application/problem+json"),
        (status = 413, description = "Body over the limit",
            body = ErrorBody, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json",
            body = ErrorBody, content_type = "application/problem+json"),
        (status = 422, description = "Idempotency-Key reused with another body",
            body = ErrorBody, content_type = "application/problem+json"),
        (status = 503, description = "Database unreachable; retry after Retry-After",
            body = ErrorBody, content_type = "application/problem+json"),
    )
)]
// ANCHOR_END: openapi_path
pub async fn create_request(
    State(state): State<AppState>,
    key: Result<IdempotencyKeyHeader, InvalidIdempotencyKey>,
    ValidRequest(request): ValidRequest,
) -> Result<Response, ApiError> {
    let IdempotencyKeyHeader(key) = key?;
    let accepted = state.intake.accept(request, key).await?;
    Ok(created_response(accepted))
}
// ANCHOR_END: create_handler

fn created_response(Accepted { status, body, replayed }: Accepted) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::CREATED);
    let location = HeaderValue::from_str(&format!("/one/{}", body.request_id)).ok();
    let id = AcceptedId(body.request_id.clone());
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response.extensions_mut().insert(id);
    response
}

/// Returns a stored request.
#[utoipa::path(
    get,
    path = "/one/{id}",
    params(("id" = String, Path, description = "The request id (20 digits)", pattern = "^0[0-9]{19}$")),
    responses(
        (status = 200, description = "The stored request", body = StoredBody),
        (status = 400, description = "Not a request id",
            body = ErrorBody, content_type = "application/problem+json"),
        (status = 404, description = "Unknown id",
            body = ErrorBody, content_type = "application/problem+json"),
        (status = 503, description = "Database unreachable",
            body = ErrorBody, content_type = "application/problem+json"),
    )
)]
pub async fn get_request(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let id: Id = raw.parse().map_err(|_| ApiError::InvalidId(raw.clone()))?;
    let timeout = state.intake.timeout;
    let stored = tokio::time::timeout(timeout, state.intake.repo.get(id))
        .await
        .map_err(|_| ApiError::Unavailable(anyhow::anyhow!("database work exceeded {timeout:?}")))??
        .ok_or_else(|| ApiError::NotFound(raw))?;
    let body = StoredBody {
        request_id: stored.id.to_string(),
        request: stored.request,
        created_at: stored.created_at,
        updated_at: stored.updated_at,
    };
    Ok(axum::Json(body).into_response())
}

#[cfg(test)]
mod tests {
    //! Handler logic with a fake repository: status mapping without a database.
    use super::*;
    use crate::config::Limits;
    use crate::http::{AppState, router};
    use crate::intake::Intake;
    use crate::repo::{Created, OutboxRecord, RepoError, RequestRepository, StoredRequest, Submission};
    use axum::Router;
    use axum::body::Body;
    use axum::http::Request;
    use cruncan_id::Generator;
    use cruncan_model::OneRequestEvent;
    use std::sync::Arc;
    use std::sync::Mutex;
    use std::time::Duration;
    use tower::ServiceExt as _;

    /// Answers every `create` with the next scripted outcome and records what it was given.
    struct FakeRepo {
        outcomes: Mutex<Vec<Result<Created, RepoError>>>,
        seen: Mutex<Vec<(OneRequest, OutboxRecord, Option<String>)>>,
    }

    #[async_trait::async_trait]
    impl RequestRepository for FakeRepo {
        async fn create(&self, s: &Submission) -> Result<Created, RepoError> {
            self.seen.lock().unwrap().push((
                s.request.as_request().clone(),
                s.outbox.clone(),
                s.idempotency.as_ref().map(|k| k.request_hash.clone()),
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
            intake: Intake {
                repo: repo.clone(),
                ids: Arc::new(Generator::new(1)),
                topic: "t".into(),
                timeout: Duration::from_secs(1),
            },
            limits: Arc::new(Limits {
                max_user_id_len: 10,
                max_prompt_len: 10,
                max_data_entries: 1,
                max_data_key_len: 5,
                max_data_value_len: 5,
            }),
            body_limit: 1024,
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
                assert_eq!(body["code"], code);
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
        let stored = CreatedBody { request_id: "00000000000000000007".into() };
        let (app, _) = app(vec![Ok(Created::Replay { status: 201, body: stored.clone() })]);
        let (status, body) = post(app, OK, Some("k")).await;
        assert_eq!((status, body), (StatusCode::CREATED, serde_json::to_value(stored).unwrap()));
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
}
