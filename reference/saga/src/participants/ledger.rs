//! Exactly-once effects per idempotency key, for participants whose state is in PostgreSQL.
//!
//! The key row is inserted in the same transaction as the effect. A second call with the key
//! blocks on the first one's insert until it commits, then reads its outcome; so two calls never
//! both apply, even at the same instant. A compensation that finds no row inserts a
//! `compensated` tombstone: a step that arrives late (the orchestrator timed out and moved on)
//! finds it and does nothing.

use super::{Participant, StepError, StepOutput};
use crate::domain::{IdempotencyKey, OrderSaga};
use sqlx::{PgConnection, PgPool};

/// A step whose effect is a local PostgreSQL transaction. Implementing it gives a
/// [`Participant`] with idempotency keys and tombstones for free.
#[async_trait::async_trait]
pub trait LocalStep: Send + Sync + 'static {
    /// The participant's schema (which holds its `idempotency` table).
    const SCHEMA: &'static str;
    /// The pool of the participant's database.
    fn pool(&self) -> &PgPool;
    /// Applies the step inside the caller's transaction. `Ok(Err(reason))` is a business
    /// refusal, and the implementation must then have changed nothing.
    async fn apply(&self, conn: &mut PgConnection, saga: &OrderSaga) -> sqlx::Result<Result<String, String>>;
    /// Undoes the effect recorded as `reference`, inside the caller's transaction.
    async fn undo(&self, conn: &mut PgConnection, reference: &str, saga: &OrderSaga) -> sqlx::Result<()>;
}

/// What one call of a step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `true` when this call applied (or refused) the step; `false` for a replay of the first
    /// call's answer (or a step already compensated).
    pub fresh: bool,
    /// The reference of what was created, or the refusal.
    pub result: Result<String, String>,
}

fn sql(template: &str, schema: &str) -> sqlx::AssertSqlSafe<String> {
    // The schema is a `&'static str` constant of the participant, never input.
    sqlx::AssertSqlSafe(template.replace("{schema}", schema))
}

/// Records `key` in state `state` unless it has a record already; `true` when this call wrote it.
async fn first_record<S: LocalStep>(
    conn: &mut PgConnection,
    key: &IdempotencyKey,
    state: &str,
) -> sqlx::Result<bool> {
    let written = sqlx::query(sql(
        "INSERT INTO {schema}.idempotency (key, state) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        S::SCHEMA,
    ))
    .bind(key.as_str())
    .bind(state)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(written == 1)
}

// ANCHOR: execute_once
/// Runs `step` under `key` inside the caller's transaction, unless the key has an outcome
/// already (then returns it, `fresh: false`).
pub async fn execute_once<S: LocalStep>(
    step: &S,
    conn: &mut PgConnection,
    key: &IdempotencyKey,
    saga: &OrderSaga,
) -> sqlx::Result<Outcome> {
    if !first_record::<S>(conn, key, "done").await? {
        let (state, reference, error): (String, Option<String>, Option<String>) = sqlx::query_as(sql(
            "SELECT state, reference, error FROM {schema}.idempotency WHERE key = $1",
            S::SCHEMA,
        ))
        .bind(key.as_str())
        .fetch_one(&mut *conn)
        .await?;
        let result = match state.as_str() {
            "done" => Ok(reference.unwrap_or_default()),
            "compensated" => Err("the step was compensated before it ran".to_owned()),
            _ => Err(error.unwrap_or_default()),
        };
        return Ok(Outcome { fresh: false, result });
    }
    let result = step.apply(conn, saga).await?;
    let (state, reference, error) = match &result {
        Ok(r) => ("done", Some(r.as_str()), None),
        Err(e) => ("rejected", None, Some(e.as_str())),
    };
    sqlx::query(sql(
        "UPDATE {schema}.idempotency SET state = $2, reference = $3, error = $4 WHERE key = $1",
        S::SCHEMA,
    ))
    .bind(key.as_str())
    .bind(state)
    .bind(reference)
    .bind(error)
    .execute(&mut *conn)
    .await?;
    Ok(Outcome { fresh: true, result })
}
// ANCHOR_END: execute_once

// ANCHOR: compensate_once
/// Undoes what `key` did, once, inside the caller's transaction. Returns `true` when this call
/// undid something; `false` when there was nothing to undo (never ran, refused, or already
/// compensated). A key never seen gets a tombstone.
pub async fn compensate_once<S: LocalStep>(
    step: &S,
    conn: &mut PgConnection,
    key: &IdempotencyKey,
    saga: &OrderSaga,
) -> sqlx::Result<bool> {
    if first_record::<S>(conn, key, "compensated").await? {
        // A key never seen: the tombstone is written, so the step can no longer apply.
        return Ok(false);
    }
    let (state, reference): (String, Option<String>) = sqlx::query_as(sql(
        "SELECT state, reference FROM {schema}.idempotency WHERE key = $1 FOR UPDATE",
        S::SCHEMA,
    ))
    .bind(key.as_str())
    .fetch_one(&mut *conn)
    .await?;
    if state != "done" {
        return Ok(false);
    }
    step.undo(conn, reference.as_deref().unwrap_or_default(), saga).await?;
    sqlx::query(sql(
        "UPDATE {schema}.idempotency SET state = 'compensated', updated_at = now() WHERE key = $1",
        S::SCHEMA,
    ))
    .bind(key.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(true)
}
// ANCHOR_END: compensate_once

fn unavailable(e: sqlx::Error) -> StepError {
    StepError::Unavailable(anyhow::Error::new(e).context("participant database"))
}

#[async_trait::async_trait]
impl<S: LocalStep> Participant for S {
    async fn execute(&self, key: &IdempotencyKey, saga: &OrderSaga) -> Result<StepOutput, StepError> {
        let mut tx = self.pool().begin().await.map_err(unavailable)?;
        let outcome = execute_once(self, &mut tx, key, saga).await.map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        outcome.result.map(|reference| StepOutput { reference }).map_err(StepError::Rejected)
    }

    async fn compensate(&self, key: &IdempotencyKey, saga: &OrderSaga) -> Result<(), StepError> {
        let mut tx = self.pool().begin().await.map_err(unavailable)?;
        compensate_once(self, &mut tx, key, saga).await.map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(())
    }
}
