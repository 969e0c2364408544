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
//! one from the pool per batch ([`cruncan_db::KeptConnection`]): sqlx pings every connection
//! handed back to its pool, a round trip and a wake-up per batch.
//!
//! Requests with an `Idempotency-Key` do not come here: their statement must see the key row
//! of a concurrent duplicate, and a batch would make one conflict fail the others.

use crate::outbox::OutboxWaker;
use crate::repo::RepoError;
use chrono::{DateTime, Utc};
use cruncan_db::KeptConnection;
use futures::FutureExt as _;
use sqlx::{PgConnection, PgPool};
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

/// Takes the first waiting row, then every row already queued behind it (never waiting for more),
/// and hands the batch to a writer as soon as one is free. A free writer's connection unused for
/// a second goes back to the pool.
async fn collect(mut rx: mpsc::Receiver<Job>, pool: PgPool, relay: OutboxWaker, max: usize, writers: usize) {
    let (done, mut returned) = mpsc::channel::<KeptConnection>(writers);
    let mut free: Vec<KeptConnection> = (0..writers).map(|_| KeptConnection::default()).collect();
    loop {
        // When the connection of the free writer that has been unused longest turns idle.
        let expiry = free.iter().filter_map(KeptConnection::idle_at).min();
        let first = tokio::select! {
            kept = returned.recv() => {
                free.extend(kept);
                continue;
            }
            () = tokio::time::sleep_until(expiry.unwrap_or_else(std::time::Instant::now).into()), if expiry.is_some() => {
                free.iter_mut().for_each(KeptConnection::release_if_idle);
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
        let kept = free.pop().unwrap_or_default();
        let (pool, relay, done) = (pool.clone(), relay.clone(), done.clone());
        tokio::spawn(async move {
            // A panicking write must not take its writer with it: it comes back with no connection.
            let kept = std::panic::AssertUnwindSafe(write(&pool, kept, &relay, batch))
                .catch_unwind()
                .await
                .unwrap_or_default();
            let _ = done.send(kept).await;
        });
    }
}
// ANCHOR_END: batcher

// ANCHOR: batch_write
/// Writes a batch in one statement on the writer's connection and returns the connection for
/// the next batch. If it fails for a reason other than an unreachable database, the rows are
/// written one by one, so one bad row fails only its own request.
async fn write(
    pool: &PgPool,
    mut kept: KeptConnection,
    relay: &OutboxWaker,
    batch: Vec<Job>,
) -> KeptConnection {
    let (rows, replies): (Vec<NewRow>, Vec<_>) = batch.into_iter().unzip();
    let conn = match kept.get(pool).await {
        Ok(conn) => conn,
        Err(e) => {
            for reply in replies {
                let _ = reply.send(failure(&e));
            }
            return kept;
        }
    };
    let mut unreachable = false;
    match insert(conn, &rows).await {
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
                let outcome = match insert(conn, std::slice::from_ref(&row)).await {
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
        kept.discard();
    } else {
        kept.used();
    }
    kept
}

fn failure(e: &sqlx::Error) -> Outcome {
    if cruncan_db::is_unavailable(e) {
        Outcome::Unavailable(e.to_string())
    } else {
        Outcome::Failed(e.to_string())
    }
}

async fn insert(conn: &mut PgConnection, rows: &[NewRow]) -> Result<(), sqlx::Error> {
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
        .execute(conn)
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
