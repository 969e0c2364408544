//! Accepting a request: the use case behind `POST /one`, free of HTTP. A validated request gets
//! its Snowflake id and its event; the request row, the outbox row carrying the event and (with
//! an `Idempotency-Key`) the key and the response are stored together; a key seen before gives
//! the first response again.

use crate::domain::{CreatedBody, NewRequest};
use crate::repo::{Created, IdempotencyKey, OutboxRecord, RepoError, RequestRepository, Submission};
use chrono::Utc;
use cruncan_id::Generator;
use cruncan_model::OneRequestEvent;
use sha2::{Digest as _, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// Why a request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The key was used before with another body.
    #[error("Idempotency-Key was already used with a different request body")]
    KeyReused,
    /// The database cannot be reached, or did not answer within the time budget.
    #[error("database unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Anything else.
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

impl From<RepoError> for IntakeError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::Unavailable(cause) => Self::Unavailable(cause),
            RepoError::Other(cause) => Self::Unexpected(cause),
        }
    }
}

/// What the client is told: the `201` body, and whether it is a replay of an earlier answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The status of the (first) response.
    pub status: u16,
    /// The body of the (first) response.
    pub body: CreatedBody,
    /// `true` when an earlier request with the same key and body got this answer.
    pub replayed: bool,
}

// ANCHOR: intake
/// Accepts validated requests into storage.
#[derive(Clone)]
pub struct Intake {
    /// Request storage (the traced PostgreSQL repository in production, a fake in unit tests).
    pub repo: Arc<dyn RequestRepository>,
    /// Snowflake ids.
    pub ids: Arc<Generator>,
    /// Topic the outbox rows are for.
    pub topic: Arc<str>,
    /// Time budget of one request's database work; over it the request is `Unavailable`.
    pub timeout: Duration,
}

impl Intake {
    /// Stores `request` with its outbox event, once per idempotency key.
    pub async fn accept(&self, request: NewRequest, key: Option<String>) -> Result<Accepted, IntakeError> {
        let id = self.ids.next_id().await.map_err(|e| IntakeError::Unexpected(e.into()))?;
        let created_at = Utc::now();
        let event =
            OneRequestEvent { request_id: id.to_string(), request: request.as_request().clone(), created_at };
        // ANCHOR: outbox_record
        let outbox = OutboxRecord {
            topic: self.topic.to_string(),
            key: event.request_id.clone(),
            payload: serde_json::to_vec(&event).map_err(|e| IntakeError::Unexpected(e.into()))?,
            // The trace of this request travels with the message.
            headers: trace_headers(),
        };
        // ANCHOR_END: outbox_record
        let body = CreatedBody { request_id: event.request_id };
        let idempotency = key.map(|key| IdempotencyKey { key, request_hash: request_hash(&request) });
        let submission = Submission { id, request, created_at, outbox, idempotency, response: body.clone() };
        let stored =
            tokio::time::timeout(self.timeout, self.repo.create(&submission)).await.map_err(|_| {
                IntakeError::Unavailable(anyhow::anyhow!("database work exceeded {:?}", self.timeout))
            })??;
        match stored {
            Created::New => Ok(Accepted { status: 201, body, replayed: false }),
            Created::Replay { status, body } => Ok(Accepted { status, body, replayed: true }),
            Created::KeyReused => Err(IntakeError::KeyReused),
        }
    }
}
// ANCHOR_END: intake

/// SHA-256 of the validated request: the same request in another key order or with extra unknown
/// fields is the same request.
fn request_hash(request: &NewRequest) -> String {
    let bytes = serde_json::to_vec(request.as_request()).unwrap_or_default();
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn trace_headers() -> cruncan_kafka::Headers {
    cruncan_kafka::Headers::current_trace()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use cruncan_model::OneRequest;

    fn parse(json: &str) -> NewRequest {
        let limits = Limits {
            max_user_id_len: 9,
            max_prompt_len: 9,
            max_data_entries: 1,
            max_data_key_len: 1,
            max_data_value_len: 1,
        };
        NewRequest::parse(serde_json::from_str::<OneRequest>(json).unwrap(), &limits).unwrap()
    }

    #[test]
    fn the_hash_ignores_key_order_and_unknown_fields() {
        let a = parse(r#"{"user_id":"u","prompt":"p","x":1}"#);
        let b = parse(r#"{"prompt":"p","user_id":"u"}"#);
        let c = parse(r#"{"prompt":"q","user_id":"u"}"#);
        assert_eq!(request_hash(&a), request_hash(&b));
        assert_ne!(request_hash(&a), request_hash(&c));
    }
}
