//! The use cases both edges (REST and gRPC) call: accept an email, read one through the cache,
//! search. Plain async functions over the store, the cache and the relay: no HTTP, no protobuf.

use chrono::Utc;
use sha2::{Digest as _, Sha256};
use std::time::Duration;

use crate::cache::Cache;
use crate::domain::{Email, EmailId, NewEmail, ValidationError};
use crate::jetstream::SendEmail;
use crate::search::{SearchPage, SearchQuery, search};
use crate::store::{Created, IdempotencyKey, OutboxEvent, Store, StoreError};
use cruncan_jetstream::Relay;

/// Why a use case failed; each edge maps it to its status codes.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A field failed validation (400 / `INVALID_ARGUMENT`).
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// The `Idempotency-Key` was used with another request (422 / `ALREADY_EXISTS`).
    #[error("Idempotency-Key was already used with a different request")]
    KeyReused,
    /// The database did not answer in time (503 / `UNAVAILABLE`).
    #[error("the service is temporarily unavailable; retry later")]
    Unavailable(#[source] anyhow::Error),
    /// A bug or an unexpected failure (500 / `INTERNAL`); details are logged, never sent.
    #[error("internal error")]
    Unexpected(#[source] anyhow::Error),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => Self::Unavailable(cause),
            StoreError::Other(cause) => Self::Unexpected(cause),
        }
    }
}

/// The result of an accepted create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The email's id.
    pub email_id: EmailId,
    /// Whether this repeats an earlier request with the same key.
    pub replayed: bool,
}

/// What the use cases share.
#[derive(Debug, Clone)]
pub struct Emails {
    store: Store,
    cache: Cache,
    relay: Relay,
    send_subject: String,
    timeout: Duration,
}

impl Emails {
    /// The use cases over these dependencies; events go to `send_subject`; `timeout` bounds each
    /// one's database work.
    pub fn new(store: Store, cache: Cache, relay: Relay, send_subject: String, timeout: Duration) -> Self {
        Self { store, cache, relay, send_subject, timeout }
    }

    async fn bounded<T>(&self, call: impl Future<Output = Result<T, StoreError>>) -> Result<T, ServiceError> {
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| {
                ServiceError::Unavailable(anyhow::anyhow!("database work exceeded {:?}", self.timeout))
            })?
            .map_err(ServiceError::from)
    }

    // ANCHOR: accept
    /// Accepts a validated email: stores it with its `email.send` event in one transaction
    /// (carrying the caller's trace), then wakes the relay. With a key, a repeat of the same
    /// request returns the first email id and stores nothing.
    pub async fn accept(&self, email: NewEmail, key: Option<String>) -> Result<Accepted, ServiceError> {
        let id = EmailId::new();
        let now = Utc::now();
        let event = SendEmail {
            email_id: id,
            from: email.sender(),
            to: email.recipients(),
            subject: email.subject().to_owned(),
            created_at: now,
        };
        let outbox = OutboxEvent {
            subject: self.send_subject.clone(),
            payload: serde_json::to_value(&event).map_err(|e| ServiceError::Unexpected(e.into()))?,
            headers: cruncan_jetstream::trace_headers(),
        };
        let key = key.map(|key| IdempotencyKey { key, request_hash: request_hash(&email) });
        match self.bounded(self.store.create(id, &email, now, &outbox, key.as_ref())).await? {
            Created::New => {
                self.relay.wake();
                tracing::info!(email_id = %id, "email accepted");
                Ok(Accepted { email_id: id, replayed: false })
            }
            Created::Replay(earlier) => Ok(Accepted { email_id: earlier, replayed: true }),
            Created::KeyReused => Err(ServiceError::KeyReused),
        }
    }
    // ANCHOR_END: accept

    // ANCHOR: get
    /// Cache-aside read: the cache, else PostgreSQL (then the cache is filled).
    pub async fn get(&self, id: EmailId) -> Result<Option<Email>, ServiceError> {
        if let Some(email) = self.cache.get(id).await {
            return Ok(Some(email));
        }
        let email = self.bounded(self.store.get(id)).await?;
        if let Some(email) = &email {
            self.cache.put(email).await;
        }
        Ok(email)
    }
    // ANCHOR_END: get

    /// One page of search results.
    pub async fn search(&self, query: &SearchQuery) -> Result<SearchPage, ServiceError> {
        self.bounded(search(&self.store, query)).await
    }
}

/// SHA-256 of the validated email: the same email in another key order is the same request.
fn request_hash(email: &NewEmail) -> String {
    let mut h = Sha256::new();
    for part in [email.sender().as_str(), &email.recipients().join(","), email.subject(), email.message()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
