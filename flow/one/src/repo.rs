//! The request repository: a trait, its PostgreSQL implementation (request row, outbox row and
//! idempotency key in one transaction; plain requests through the group-commit [`Batcher`]), and
//! a tracing decorator.

use crate::batch::{Batcher, NewRow};
use crate::domain::{CreatedBody, NewRequest};
use crate::outbox::OutboxWaker;
use anyhow::Context as _;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cruncan_id::Id;
use cruncan_model::OneRequest;
use sqlx::PgPool;
use tracing::Instrument as _;

/// A row of `request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRequest {
    /// The Snowflake id.
    pub id: Id,
    /// The request as accepted.
    pub request: OneRequest,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A message to publish, written to the outbox with the request: the request event, keyed by
/// the request id, with the trace context as headers.
pub use cruncan_outbox::Record as OutboxRecord;

/// An `Idempotency-Key` and the hash of the body it came with.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    /// The client's key.
    pub key: String,
    /// SHA-256 of the canonical JSON body.
    pub request_hash: String,
}

/// Everything stored for one accepted request: only a validated request gets here.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The Snowflake id.
    pub id: Id,
    /// The validated request.
    pub request: NewRequest,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// The outbox row carrying its event.
    pub outbox: OutboxRecord,
    /// The client's key, when it sent one.
    pub idempotency: Option<IdempotencyKey>,
    /// The `201` body, stored with the key so a retry gets it again.
    pub response: CreatedBody,
}

/// What `create` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// A new request was stored.
    New,
    /// The key was seen before with the same body: the first response, to send again.
    Replay {
        /// Status of the first response.
        status: u16,
        /// Body of the first response.
        body: CreatedBody,
    },
    /// The key was seen before with a different body.
    KeyReused,
}

/// Why a repository call failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The database cannot be reached (connection refused, pool timeout): the client gets 503.
    #[error("database unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Anything else.
    #[error(transparent)]
    Other(anyhow::Error),
}

impl From<sqlx::Error> for RepoError {
    fn from(e: sqlx::Error) -> Self {
        if cruncan_db::is_unavailable(&e) { Self::Unavailable(e.into()) } else { Self::Other(e.into()) }
    }
}

// ANCHOR: repository_trait
/// Storage of requests. Behind a trait so handlers are tested with a fake and the tracing
/// decorator wraps any implementation.
#[async_trait]
pub trait RequestRepository: Send + Sync + 'static {
    /// Stores the request and its outbox record in one transaction; with an idempotency key,
    /// stores the key and the response too, or reports the earlier outcome.
    async fn create(&self, submission: &Submission) -> Result<Created, RepoError>;

    /// The stored request with this id.
    async fn get(&self, id: Id) -> Result<Option<StoredRequest>, RepoError>;
}
// ANCHOR_END: repository_trait

/// The PostgreSQL repository.
#[derive(Debug, Clone)]
pub struct PgRequestRepository {
    pool: PgPool,
    relay: OutboxWaker,
    batcher: Option<Batcher>,
}

impl PgRequestRepository {
    /// A repository over `pool` that wakes `relay` after each commit that wrote an outbox row.
    /// With `batcher`, requests without an idempotency key are written through it (group commit);
    /// without, each in its own statement.
    pub fn new(pool: PgPool, relay: OutboxWaker, batcher: Option<Batcher>) -> Self {
        Self { pool, relay, batcher }
    }

    async fn earlier_outcome(&self, key: &IdempotencyKey) -> Result<Option<Created>, RepoError> {
        let row: Option<(String, i32, serde_json::Value)> = sqlx::query_as(
            "SELECT request_hash, response_status, response_body FROM idempotency_key WHERE key = $1",
        )
        .bind(&key.key)
        .fetch_optional(&self.pool)
        .await?;
        let Some((hash, status, body)) = row else { return Ok(None) };
        if hash != key.request_hash {
            return Ok(Some(Created::KeyReused));
        }
        let body =
            serde_json::from_value(body).context("stored idempotent response").map_err(RepoError::Other)?;
        Ok(Some(Created::Replay { status: u16::try_from(status).unwrap_or(201), body }))
    }
}

#[async_trait]
impl RequestRepository for PgRequestRepository {
    // ANCHOR: create_tx
    async fn create(&self, submission: &Submission) -> Result<Created, RepoError> {
        let Submission { id, request, created_at: now, outbox, idempotency, response } = submission;
        let (request, now, idempotency) = (request.as_request(), *now, idempotency.as_ref());
        // Fast path for a plain retry: the key is already stored.
        if let Some(key) = idempotency
            && let Some(earlier) = self.earlier_outcome(key).await?
        {
            return Ok(earlier);
        }
        let req_id = id.to_string();
        if let (None, Some(batcher)) = (idempotency, &self.batcher) {
            let batch_size = batcher
                .insert(NewRow {
                    req_id,
                    user_id: request.user_id.clone(),
                    created_at: now,
                    req: serde_json::to_value(request).map_err(|e| RepoError::Other(e.into()))?,
                    topic: outbox.topic.clone(),
                    key: outbox.key.clone(),
                    payload: outbox.payload.clone(),
                    headers: serde_json::to_value(&outbox.headers).map_err(|e| RepoError::Other(e.into()))?,
                })
                .await?;
            tracing::Span::current().record("db.operation.batch.size", batch_size);
            return Ok(Created::New);
        }
        // One statement, so one round trip and its own transaction: the request row, its outbox
        // row and (with a key) the idempotency row commit together or not at all.
        let query = match idempotency {
            None => sqlx::query(INSERT_REQUEST_AND_OUTBOX),
            Some(key) => sqlx::query(INSERT_WITH_IDEMPOTENCY_KEY)
                .bind(&key.key)
                .bind(&key.request_hash)
                .bind(sqlx::types::Json(response)),
        };
        let inserted = query
            .bind(&req_id)
            .bind(&request.user_id)
            .bind(now)
            .bind(sqlx::types::Json(request))
            .bind(&outbox.topic)
            .bind(&outbox.key)
            .bind(&outbox.payload)
            .bind(sqlx::types::Json(&outbox.headers))
            .execute(&self.pool)
            .await?
            .rows_affected();
        if inserted == 0 {
            // Another request with the same key committed first (we waited for it on the key's
            // primary key, then inserted nothing): answer what it answered.
            let key =
                idempotency.ok_or_else(|| RepoError::Other(anyhow::anyhow!("outbox row not written")))?;
            return self.earlier_outcome(key).await?.ok_or_else(|| {
                RepoError::Other(anyhow::anyhow!("idempotency key vanished after a conflict"))
            });
        }
        self.relay.wake();
        Ok(Created::New)
    }
    // ANCHOR_END: create_tx

    async fn get(&self, id: Id) -> Result<Option<StoredRequest>, RepoError> {
        let row: Option<(sqlx::types::Json<OneRequest>, DateTime<Utc>, DateTime<Utc>)> =
            sqlx::query_as("SELECT req, created_at, updated_at FROM request WHERE req_id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(req, created_at, updated_at)| StoredRequest {
            id,
            request: req.0,
            created_at,
            updated_at,
        }))
    }
}

// ANCHOR: create_sql
/// The request row and its outbox row. `$1…$8`: req_id, user_id, now, req, topic, key,
/// payload, headers. Reports one row affected (the outbox row).
const INSERT_REQUEST_AND_OUTBOX: &str = "
    WITH request_row AS (
        INSERT INTO request (req_id, user_id, created_at, updated_at, req)
        VALUES ($1, $2, $3, $3, $4))
    INSERT INTO outbox (topic, key, payload, headers, created_at)
    VALUES ($5, $6, $7, $8, $3)";

/// The same with an idempotency key (`$1…$3`: key, request hash, response body; then as above
/// from `$4`). A concurrent request with the same key waits on the key's primary key until the
/// first one commits, then inserts nothing at all: zero rows affected.
const INSERT_WITH_IDEMPOTENCY_KEY: &str = "
    WITH key_row AS (
        INSERT INTO idempotency_key (key, request_hash, response_status, response_body, req_id)
        VALUES ($1, $2, 201, $3, $4) ON CONFLICT (key) DO NOTHING
        RETURNING req_id),
    request_row AS (
        INSERT INTO request (req_id, user_id, created_at, updated_at, req)
        SELECT $4, $5, $6, $6, $7 FROM key_row)
    INSERT INTO outbox (topic, key, payload, headers, created_at)
    SELECT $8, $9, $10, $11, $6 FROM key_row";
// ANCHOR_END: create_sql

// ANCHOR: traced_repository
/// Wraps any repository in client spans (`one_request.create`, `one_request.get`) with database
/// semantic-convention attributes; errors mark the span failed.
#[derive(Debug, Clone)]
pub struct TracedRepository<R>(pub R);

#[async_trait]
impl<R: RequestRepository> RequestRepository for TracedRepository<R> {
    async fn create(&self, submission: &Submission) -> Result<Created, RepoError> {
        let span = db_span("one_request.create", "INSERT", submission.id);
        let result = self.0.create(submission).instrument(span.clone()).await;
        record_outcome(&span, &result);
        result
    }

    async fn get(&self, id: Id) -> Result<Option<StoredRequest>, RepoError> {
        let span = db_span("one_request.get", "SELECT", id);
        let result = self.0.get(id).instrument(span.clone()).await;
        record_outcome(&span, &result);
        result
    }
}

fn db_span(name: &'static str, operation: &'static str, id: Id) -> tracing::Span {
    tracing::info_span!(
        "db",
        otel.name = name,
        otel.kind = "client",
        db.system.name = "postgresql",
        db.operation.name = operation,
        db.collection.name = "request",
        request_id = %id,
        db.operation.batch.size = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

fn record_outcome<T>(span: &tracing::Span, result: &Result<T, RepoError>) {
    if let Err(e) = result {
        span.record("otel.status_code", "ERROR");
        span.record(
            "error.type",
            if matches!(e, RepoError::Unavailable(_)) { "unavailable" } else { "other" },
        );
    }
}
// ANCHOR_END: traced_repository
