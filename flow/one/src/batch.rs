//! Group commit at the edge: `POST /one` requests that arrive while earlier writes are in flight
//! are stored together, by one statement in one transaction, instead of one transaction each.
//!
//! Why: on a busy service most of a request's database cost is per statement and per commit
//! (the round trip, parse/bind, the commit record, the pool's check on release), not per row.
//! A request still gets its `201` only after the transaction holding its rows has committed, so
//! nothing is acknowledged that could be lost; a quiet service writes batches of one, so latency
//! does not grow at low load. At most `concurrency` batches are in flight; while they are, new
//! requests queue and form the next batch.
//!
//! Each of the `concurrency` writers keeps its own connection between batches instead of taking
//! one from the pool per batch: sqlx pings every connection handed back to its pool (a round
//! trip and a wake-up per batch). What the pool's checks protect against is kept: a writer's
//! connection unused for a second goes back (where a checkout after a second idle is pinged), a
//! connection held for the pool's `max_lifetime` is renewed like pooled ones, and one that met
//! an unreachable database is closed, not reused.
//!
//! Requests with an `Idempotency-Key` do not come here: their statement must see the key row
//! of a concurrent duplicate, and a batch would make one conflict fail the others.

use crate::outbox::OutboxWaker;
use crate::repo::RepoError;
use chrono::{DateTime, Utc};
use futures::FutureExt as _;
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// One request's rows, ready to insert.
#[derive(Debug, Clone)]
pub struct NewRow {
    /// `request.req_id` (the Snowflake id).
    pub req_id: String,
    /// `request.user_id`.
    pub user_id: String,
    /// `created_at` of both rows.
    pub created_at: DateTime<Utc>,
    /// `request.req`.
    pub req: serde_json::Value,
    /// `outbox.topic`.
    pub topic: String,
    /// `outbox.key`.
    pub key: String,
    /// `outbox.payload`.
    pub payload: Vec<u8>,
    /// `outbox.headers`.
    pub headers: serde_json::Value,
}

/// How the batch holding a row ended, as told to the request that sent it.
#[derive(Debug)]
enum Outcome {
    Stored { batch_size: usize },
    Unavailable(String),
    Failed(String),
}

type Job = (NewRow, oneshot::Sender<Outcome>);

// ANCHOR: batcher
/// The handle requests write through; cheap to clone. The writer task ends when the last handle
/// is dropped, after finishing the batches in flight.
#[derive(Debug, Clone)]
pub struct Batcher {
    jobs: mpsc::Sender<Job>,
}

impl Batcher {
    /// Starts the writer: batches of at most `max_batch` rows, at most `concurrency` in flight.
    pub fn spawn(pool: PgPool, relay: OutboxWaker, max_batch: usize, concurrency: usize) -> Self {
        let (jobs, rx) = mpsc::channel(max_batch.max(1) * concurrency.max(1) * 4);
        tokio::spawn(collect(rx, pool, relay, max_batch.max(1), concurrency.max(1)));
        Self { jobs }
    }

    /// Stores `row` (its request row and its outbox row) and returns once they are committed,
    /// with the size of the batch they were committed in.
    pub async fn insert(&self, row: NewRow) -> Result<usize, RepoError> {
        let (reply, answer) = oneshot::channel();
        let gone = || RepoError::Other(anyhow::anyhow!("the batch writer has stopped"));
        self.jobs.send((row, reply)).await.map_err(|_| gone())?;
        match answer.await.map_err(|_| gone())? {
            Outcome::Stored { batch_size } => Ok(batch_size),
            Outcome::Unavailable(e) => Err(RepoError::Unavailable(anyhow::anyhow!(e))),
            Outcome::Failed(e) => Err(RepoError::Other(anyhow::anyhow!(e))),
        }
    }
}

/// A writer's connection between batches; `None` until its first batch, after an unreachable
/// database, and after sitting idle.
type Slot = Option<Held>;

/// A connection a writer holds, with when it was checked out and last used.
#[derive(Debug)]
struct Held {
    conn: PoolConnection<Postgres>,
    checked_out: Instant,
    used: Instant,
}

/// Writers idle this long hand their connections back to the pool (which pings a connection
/// idle that long before handing it out again).
const KEEP_IDLE: Duration = cruncan_db::PING_AFTER_IDLE;

/// Takes the first waiting row, then every row already queued behind it (never waiting for more),
/// and hands the batch to a writer as soon as one is free. A free writer's connection unused for
/// `KEEP_IDLE` goes back to the pool.
async fn collect(mut rx: mpsc::Receiver<Job>, pool: PgPool, relay: OutboxWaker, max: usize, writers: usize) {
    let (done, mut returned) = mpsc::channel::<Slot>(writers);
    let mut free: Vec<Slot> = (0..writers).map(|_| None).collect();
    loop {
        // When the connection of a free writer that has been unused longest turns a second idle.
        let expiry = free.iter().flatten().map(|held| held.used + KEEP_IDLE).min();
        let first = tokio::select! {
            slot = returned.recv() => {
                free.extend(slot);
                continue;
            }
            () = tokio::time::sleep_until(expiry.unwrap_or_else(Instant::now).into()), if expiry.is_some() => {
                for slot in &mut free {
                    if slot.as_ref().is_some_and(|held| held.used.elapsed() >= KEEP_IDLE) {
                        *slot = None; // back to the pool
                    }
                }
                continue;
            }
            job = rx.recv(), if !free.is_empty() => match job {
                Some(job) => job,
                None => return,
            },
        };
        let mut batch = Vec::with_capacity(max);
        batch.push(first);
        while batch.len() < max {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let slot = free.pop().flatten();
        let (pool, relay, done) = (pool.clone(), relay.clone(), done.clone());
        tokio::spawn(async move {
            // A panicking write must not take its writer with it: the slot comes back empty.
            let slot = std::panic::AssertUnwindSafe(write(&pool, slot, &relay, batch))
                .catch_unwind()
                .await
                .unwrap_or(None);
            let _ = done.send(slot).await;
        });
    }
}
// ANCHOR_END: batcher

// ANCHOR: batch_write
/// Writes a batch in one statement on the writer's connection and returns the connection for
/// the next batch. If it fails for a reason other than an unreachable database, the rows are
/// written one by one, so one bad row fails only its own request.
async fn write(pool: &PgPool, slot: Slot, relay: &OutboxWaker, batch: Vec<Job>) -> Slot {
    let (rows, replies): (Vec<NewRow>, Vec<_>) = batch.into_iter().unzip();
    let mut held = match connection(pool, slot).await {
        Ok(held) => held,
        Err(e) => {
            for reply in replies {
                let _ = reply.send(failure(&e));
            }
            return None;
        }
    };
    let mut unreachable = false;
    match insert(&mut held.conn, &rows).await {
        Ok(()) => {
            relay.wake();
            let batch_size = rows.len();
            for reply in replies {
                let _ = reply.send(Outcome::Stored { batch_size });
            }
        }
        Err(e) if rows.len() > 1 && !cruncan_db::is_unavailable(&e) => {
            tracing::warn!(error = %e, rows = rows.len(), "batch insert failed; writing its rows one by one");
            for (row, reply) in rows.into_iter().zip(replies) {
                let outcome = match insert(&mut held.conn, std::slice::from_ref(&row)).await {
                    Ok(()) => {
                        relay.wake();
                        Outcome::Stored { batch_size: 1 }
                    }
                    Err(e) => {
                        unreachable |= cruncan_db::is_unavailable(&e);
                        failure(&e)
                    }
                };
                let _ = reply.send(outcome);
            }
        }
        Err(e) => {
            unreachable = cruncan_db::is_unavailable(&e);
            for reply in replies {
                let _ = reply.send(failure(&e));
            }
        }
    }
    if unreachable {
        // The connection may be broken: close it rather than trust it with the next batch.
        held.conn.close_on_drop();
        return None;
    }
    held.used = Instant::now();
    Some(held)
}

/// The writer's own connection if it was used within `KEEP_IDLE` and has not been held for the
/// pool's `max_lifetime`, else one from the pool (dropping the old one hands it back).
async fn connection(pool: &PgPool, slot: Slot) -> Result<Held, sqlx::Error> {
    if let Some(held) = slot {
        let lifetime = pool.options().get_max_lifetime();
        if held.used.elapsed() < KEEP_IDLE && lifetime.is_none_or(|l| held.checked_out.elapsed() < l) {
            return Ok(held);
        }
        drop(held);
    }
    let conn = pool.acquire().await?;
    let now = Instant::now();
    Ok(Held { conn, checked_out: now, used: now })
}

fn failure(e: &sqlx::Error) -> Outcome {
    if cruncan_db::is_unavailable(e) {
        Outcome::Unavailable(e.to_string())
    } else {
        Outcome::Failed(e.to_string())
    }
}

async fn insert(conn: &mut PoolConnection<Postgres>, rows: &[NewRow]) -> Result<(), sqlx::Error> {
    fn column<T>(rows: &[NewRow], f: impl Fn(&NewRow) -> T) -> Vec<T> {
        rows.iter().map(f).collect()
    }
    sqlx::query(INSERT_BATCH)
        .bind(column(rows, |r| r.req_id.clone()))
        .bind(column(rows, |r| r.user_id.clone()))
        .bind(column(rows, |r| r.created_at))
        .bind(column(rows, |r| r.req.clone()))
        .bind(column(rows, |r| r.topic.clone()))
        .bind(column(rows, |r| r.key.clone()))
        .bind(column(rows, |r| r.payload.clone()))
        .bind(column(rows, |r| r.headers.clone()))
        .execute(&mut **conn)
        .await?;
    Ok(())
}

/// Every row of the batch as a column array (`$1…$8`: req_id, user_id, created_at, req, topic,
/// key, payload, headers); the outbox rows keep the order the requests arrived in.
const INSERT_BATCH: &str = "
    WITH input AS (
        SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::jsonb[],
                             $5::text[], $6::text[], $7::bytea[], $8::jsonb[])
            WITH ORDINALITY AS t(req_id, user_id, created_at, req, topic, key, payload, headers, n)),
    request_rows AS (
        INSERT INTO request (req_id, user_id, created_at, updated_at, req)
        SELECT req_id, user_id, created_at, created_at, req FROM input)
    INSERT INTO outbox (topic, key, payload, headers, created_at)
    SELECT topic, key, payload, headers, created_at FROM input ORDER BY n";
// ANCHOR_END: batch_write
