//! PostgreSQL: the email row, its outbox event and its idempotency key in one transaction; reads;
//! the status changes the workers make. Takes domain types only.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::collections::BTreeMap;

use crate::domain::{Email, EmailId, NewEmail};

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached (connection refused, pool timeout): retry later.
    #[error("database unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Anything else.
    #[error(transparent)]
    Other(anyhow::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if cruncan_db::is_unavailable(&e) { Self::Unavailable(e.into()) } else { Self::Other(e.into()) }
    }
}

/// An `Idempotency-Key` and the hash of the request it came with.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    /// The client's key.
    pub key: String,
    /// SHA-256 of the validated request.
    pub request_hash: String,
}

/// What `create` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// A new email was stored with its event.
    New,
    /// The key was used before with the same request: its email.
    Replay(EmailId),
    /// The key was used before with another request.
    KeyReused,
}

/// The event row written with the email.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    /// Where it is published (`email.send`, with the configured prefix).
    pub subject: String,
    /// The `email.send` payload.
    pub payload: serde_json::Value,
    /// Headers to publish with it (`traceparent`).
    pub headers: BTreeMap<String, String>,
}

type EmailRow =
    (uuid::Uuid, String, Vec<String>, String, String, String, i32, DateTime<Utc>, Option<DateTime<Utc>>);

pub(crate) const EMAIL_COLUMNS: &str =
    "email_id, sender, recipients, subject, message, status, attempts, created_at, sent_at";

pub(crate) fn email_from_row(row: EmailRow) -> Result<Email, StoreError> {
    let (id, from, to, subject, message, status, attempts, created_at, sent_at) = row;
    Ok(Email {
        email_id: EmailId(id),
        from,
        to,
        subject,
        message,
        status: status.parse().map_err(StoreError::Other)?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        created_at,
        sent_at,
    })
}

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// A store over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The pool (the relay and the search share it).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn earlier(&self, key: &IdempotencyKey) -> Result<Option<Created>, StoreError> {
        let row: Option<(String, uuid::Uuid)> =
            sqlx::query_as("SELECT request_hash, email_id FROM email_idempotency_key WHERE key = $1")
                .bind(&key.key)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(
            |(hash, id)| {
                if hash == key.request_hash { Created::Replay(EmailId(id)) } else { Created::KeyReused }
            },
        ))
    }

    // ANCHOR: create_tx
    /// Stores the email, its `email.send` event (the outbox row) and the idempotency key in one
    /// transaction: the email is accepted exactly when its event will be published.
    pub async fn create(
        &self,
        id: EmailId,
        email: &NewEmail,
        now: DateTime<Utc>,
        event: &OutboxEvent,
        idempotency: Option<&IdempotencyKey>,
    ) -> Result<Created, StoreError> {
        if let Some(key) = idempotency
            && let Some(earlier) = self.earlier(key).await?
        {
            return Ok(earlier);
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO email (email_id, sender, recipients, subject, message, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(id.0)
        .bind(email.sender())
        .bind(email.recipients())
        .bind(email.subject())
        .bind(email.message())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        cruncan_jetstream::enqueue(&mut tx, &event.subject, id.0, &event.payload, &event.headers)
            .await
            .map_err(|e| e.downcast::<sqlx::Error>().map_or_else(StoreError::Other, StoreError::from))?;
        if let Some(key) = idempotency {
            // A concurrent request with the same key waits here on the primary key until the
            // first commits; then it inserts nothing, rolls back its own rows and replays.
            let inserted = sqlx::query(
                "INSERT INTO email_idempotency_key (key, request_hash, email_id) VALUES ($1, $2, $3)
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(&key.key)
            .bind(&key.request_hash)
            .bind(id.0)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                tx.rollback().await?;
                return self.earlier(key).await?.ok_or_else(|| {
                    StoreError::Other(anyhow::anyhow!("idempotency key vanished after a conflict"))
                });
            }
        }
        tx.commit().await?;
        Ok(Created::New)
    }
    // ANCHOR_END: create_tx

    /// The email with this id.
    pub async fn get(&self, id: EmailId) -> Result<Option<Email>, StoreError> {
        let row: Option<EmailRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {EMAIL_COLUMNS} FROM email WHERE email_id = $1"
        )))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        row.map(email_from_row).transpose()
    }

    /// `queued` → `sent`, counting the attempt; false when it was not `queued` any more.
    pub async fn mark_sent(&self, id: EmailId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let updated = sqlx::query(
            "UPDATE email SET status = 'sent', sent_at = $2, updated_at = $2, attempts = attempts + 1,
                    last_error = NULL
             WHERE email_id = $1 AND status = 'queued'",
        )
        .bind(id.0)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// A failed attempt that will be retried: counted, the error kept, still `queued`.
    pub async fn record_attempt(&self, id: EmailId, error: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE email SET attempts = attempts + 1, last_error = $2, updated_at = now()
             WHERE email_id = $1 AND status = 'queued'",
        )
        .bind(id.0)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// `queued` → `failed` with the reason (a permanent error, or out of attempts).
    pub async fn mark_failed(&self, id: EmailId, reason: &str, attempted: bool) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE email SET status = 'failed', attempts = attempts + $3, last_error = $2, updated_at = now()
             WHERE email_id = $1 AND status = 'queued'",
        )
        .bind(id.0)
        .bind(reason)
        .bind(i32::from(attempted))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The last error of an email (tests and operators).
    pub async fn last_error(&self, id: EmailId) -> Result<Option<String>, StoreError> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT last_error FROM email WHERE email_id = $1")
                .bind(id.0)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.and_then(|r| r.0))
    }
}
