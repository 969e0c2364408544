//! Saga state in PostgreSQL: inserted when the order is accepted, written before each
//! participant call and after each answer, claimed by one orchestrator replica at a time.
//!
//! Claims take a *lease*: `lease_owner` and `lease_until`. A replica renews it with every write,
//! and every write is conditional on still owning it (`WHERE lease_owner = $me`), so a replica that
//! paused past its lease and lost the saga to another one cannot overwrite the newer state.

use crate::domain::OrderSaga;
use crate::state::{SagaRecord, SagaStatus, StepRecord};
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::types::Json;
use std::time::Duration;
use uuid::Uuid;

/// The row as read.
#[derive(Debug, sqlx::FromRow)]
struct Row {
    status: String,
    input: Json<OrderSaga>,
    steps: Json<Vec<StepRecord>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    request_hash: Option<Vec<u8>>,
}

impl TryFrom<Row> for SagaRecord {
    type Error = anyhow::Error;
    fn try_from(row: Row) -> anyhow::Result<Self> {
        Ok(SagaRecord {
            status: SagaStatus::parse(&row.status).context("unknown saga status")?,
            input: row.input.0,
            steps: row.steps.0,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

const COLUMNS: &str = "status, input, steps, created_at, updated_at, request_hash";

/// A client's `Idempotency-Key` and the fingerprint of the order it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKey {
    /// The header's value.
    pub key: String,
    /// [`NewOrder::fingerprint`](crate::domain::NewOrder::fingerprint) of the order.
    pub request_hash: Vec<u8>,
}

/// What [`SagaStore::insert`] did.
#[derive(Debug)]
pub enum Inserted {
    /// The saga is stored.
    New,
    /// A saga with the same client key exists: it, and the fingerprint of the order it came with.
    Existing(Box<SagaRecord>, Vec<u8>),
}

/// A write found the lease taken by another replica: stop driving this saga.
#[derive(Debug, thiserror::Error)]
#[error("saga {0}: lease lost to another orchestrator")]
pub struct LeaseLost(pub Uuid);

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Saga rows; see the module docs.
#[derive(Debug, Clone)]
pub struct SagaStore {
    pool: PgPool,
}

impl SagaStore {
    /// A store over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    // ANCHOR: insert
    /// Inserts a new saga, leased to `owner` for `lease` when given (the replica that accepted
    /// it drives it at once), else left for any replica to claim. With a client key already
    /// used, inserts nothing and returns the saga that key started (the unique index decides,
    /// so two concurrent requests with one key cannot both start a saga).
    pub async fn insert(
        &self,
        record: &SagaRecord,
        owner: Option<(&str, Duration)>,
        client_key: Option<&ClientKey>,
    ) -> anyhow::Result<Inserted> {
        let inserted = sqlx::query(
            "INSERT INTO saga.sagas (id, order_id, status, input, steps, lease_owner, lease_until,
                                     client_key, request_hash)
             VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7), $8, $9)
             ON CONFLICT (client_key) DO NOTHING",
        )
        .bind(record.id())
        .bind(record.input.order_id)
        .bind(record.status.as_str())
        .bind(Json(&record.input))
        .bind(Json(&record.steps))
        .bind(owner.map(|(o, _)| o))
        .bind(owner.map(|(_, l)| secs(l)))
        .bind(client_key.map(|k| k.key.as_str()))
        .bind(client_key.map(|k| k.request_hash.as_slice()))
        .execute(&self.pool)
        .await
        .context("inserting saga")?
        .rows_affected();
        let Some(key) = client_key.filter(|_| inserted == 0) else { return Ok(Inserted::New) };
        let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM saga.sagas WHERE client_key = $1"
        )))
        .bind(&key.key)
        .fetch_one(&self.pool)
        .await
        .context("reading the saga of an idempotency key")?;
        let hash = row.request_hash.clone().unwrap_or_default();
        Ok(Inserted::Existing(Box::new(SagaRecord::try_from(row)?), hash))
    }
    // ANCHOR_END: insert

    // ANCHOR: claim
    /// Claims up to `limit` unfinished sagas whose lease is free or expired (their replica died),
    /// oldest first. `SKIP LOCKED`: replicas claiming at once never wait on, or get, the same row.
    pub async fn claim(&self, owner: &str, lease: Duration, limit: i64) -> anyhow::Result<Vec<SagaRecord>> {
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE saga.sagas SET lease_owner = $1, lease_until = now() + make_interval(secs => $2)
             WHERE id IN (
                 SELECT id FROM saga.sagas
                 WHERE status IN ('pending', 'running', 'compensating')
                   AND (lease_until IS NULL OR lease_until < now())
                 ORDER BY created_at LIMIT $3
                 FOR UPDATE SKIP LOCKED)
             RETURNING {COLUMNS}"
        )))
        .bind(owner)
        .bind(secs(lease))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("claiming sagas")?;
        rows.into_iter().map(SagaRecord::try_from).collect()
    }
    // ANCHOR_END: claim

    // ANCHOR: save
    /// Writes the saga's status and steps and renews the lease, if `owner` still holds it.
    pub async fn save(&self, record: &SagaRecord, owner: &str, lease: Duration) -> anyhow::Result<()> {
        let updated = sqlx::query(
            "UPDATE saga.sagas SET status = $3, steps = $4, updated_at = now(), version = version + 1,
                    lease_until = now() + make_interval(secs => $5)
             WHERE id = $1 AND lease_owner = $2",
        )
        .bind(record.id())
        .bind(owner)
        .bind(record.status.as_str())
        .bind(Json(&record.steps))
        .bind(secs(lease))
        .execute(&self.pool)
        .await
        .context("saving saga state")?
        .rows_affected();
        anyhow::ensure!(updated == 1, LeaseLost(record.id()));
        Ok(())
    }
    // ANCHOR_END: save

    /// Gives up `owner`'s leases on unfinished sagas (a graceful stop), so another replica can
    /// take them at once instead of after the lease runs out.
    pub async fn release(&self, owner: &str) -> anyhow::Result<u64> {
        Ok(sqlx::query("UPDATE saga.sagas SET lease_until = NULL WHERE lease_owner = $1 AND status IN ('pending', 'running', 'compensating')")
            .bind(owner)
            .execute(&self.pool)
            .await
            .context("releasing leases")?
            .rows_affected())
    }

    // ANCHOR: requeue
    /// Puts a parked (`failed`) saga back to `compensating`, its stuck compensation with a fresh
    /// set of attempts, for any replica to claim: what an operator does once the cause is fixed.
    /// `false` when the saga is not parked.
    pub async fn requeue_parked(&self, id: Uuid) -> anyhow::Result<bool> {
        let updated = sqlx::query(
            "UPDATE saga.sagas SET status = 'compensating', lease_owner = NULL, lease_until = NULL,
                    updated_at = now(), version = version + 1,
                    steps = (SELECT jsonb_agg(CASE WHEN s->>'state' = 'compensation_failed'
                                 THEN s || '{\"state\": \"compensating\", \"compensation_attempts\": 0}'::jsonb
                                 ELSE s END ORDER BY n)
                             FROM jsonb_array_elements(steps) WITH ORDINALITY AS t(s, n))
             WHERE id = $1 AND status = 'failed'",
        )
        .bind(id)
        .execute(&self.pool)
        .await
        .context("requeueing saga")?
        .rows_affected();
        Ok(updated == 1)
    }
    // ANCHOR_END: requeue

    /// The saga `id`, if any.
    pub async fn get(&self, id: Uuid) -> anyhow::Result<Option<SagaRecord>> {
        self.get_where("id", id).await
    }

    /// The saga that created order `order_id`, if any.
    pub async fn get_by_order(&self, order_id: Uuid) -> anyhow::Result<Option<SagaRecord>> {
        self.get_where("order_id", order_id).await
    }

    async fn get_where(&self, column: &'static str, id: Uuid) -> anyhow::Result<Option<SagaRecord>> {
        let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM saga.sagas WHERE {column} = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .context("reading saga")?;
        row.map(SagaRecord::try_from).transpose()
    }
}
