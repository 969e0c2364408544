//! Which request ids two has delivered: the de-duplication of an at-least-once consumer.
//!
//! Every message asks "delivered before?" and, once delivered, records it. Asked one message at a
//! time that is two round trips to PostgreSQL per message, which capped two's rate. Here the lanes'
//! questions and records are gathered while the previous batch is in flight and answered by one
//! `= ANY($1)` query and one multi-row `INSERT` per batch: under load a batch holds as many
//! messages as there are lanes waiting, when idle it holds one and adds no delay. The batching
//! task keeps its connection between batches ([`cruncan_db::KeptConnection`]) instead of taking
//! one from the pool per query, which sqlx pings when it is handed back.
//!
//! The question is planned afresh each time (an unnamed statement, `persistent(false)`). A
//! prepared statement's plan is cached for the connection's life, and after five runs
//! PostgreSQL keeps a *generic* plan when it looks no dearer than the custom ones, which it does
//! when batches hold many ids. Built while the table held about a thousand rows (a new
//! deployment, every benchmark), that generic plan is a sequential scan, and it stays one while
//! the table grows, until an `ANALYZE` or a new connection. Measured in `make bench-quick`:
//! 2,462 sequential scans reading 107 million rows in one run, end-to-end p99 over 50 ms from
//! 750 requests/s; planned afresh, 93 scans of the still-small table (0.1 million rows) and p99
//! within 50 ms up to 1,688/s. Test: `a_grown_table_is_searched_by_its_index_not_scanned`.

use anyhow::Context as _;
use cruncan_db::KeptConnection;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

/// Most questions or records answered by one query.
const MAX_BATCH: usize = 256;

/// Processed request ids in two's own database.
#[derive(Debug, Clone)]
pub struct ProcessedStore {
    jobs: mpsc::Sender<Job>,
}

#[derive(Debug)]
enum Job {
    Check { id: String, reply: oneshot::Sender<Result<bool, String>> },
    Mark { id: String, status: i32, reply: oneshot::Sender<Result<(), String>> },
}

impl ProcessedStore {
    /// A store over `pool`; starts its batching task on the current runtime (it ends when the
    /// last handle is dropped).
    pub fn new(pool: PgPool) -> Self {
        let (jobs, queue) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run_batches(pool, queue));
        Self { jobs }
    }

    // ANCHOR: is_processed
    /// Whether `request_id` was delivered before.
    pub async fn is_processed(&self, request_id: &str) -> anyhow::Result<bool> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Check { id: request_id.to_owned(), reply })
            .await
            .map_err(|_| anyhow::anyhow!("the processed-id store has stopped"))?;
        answer.await.context("the processed-id store dropped a question")?.map_err(anyhow::Error::msg)
    }
    // ANCHOR_END: is_processed

    /// Records that `request_id` was delivered (idempotent).
    pub async fn mark(&self, request_id: &str, status: u16) -> anyhow::Result<()> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Mark { id: request_id.to_owned(), status: i32::from(status), reply })
            .await
            .map_err(|_| anyhow::anyhow!("the processed-id store has stopped"))?;
        answer.await.context("the processed-id store dropped a record")?.map_err(anyhow::Error::msg)
    }
}

// ANCHOR: batches
/// Takes what is queued (at least one job, at most `MAX_BATCH`), answers it with one query per
/// kind on the task's kept connection, and repeats; the connection goes back to the pool after a
/// second without work.
async fn run_batches(pool: PgPool, mut queue: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut kept = KeptConnection::default();
    loop {
        let idle_at = kept.idle_at();
        tokio::select! {
            n = queue.recv_many(&mut batch, MAX_BATCH) => if n == 0 { return },
            () = tokio::time::sleep_until(idle_at.unwrap_or_else(std::time::Instant::now).into()), if idle_at.is_some() => {
                kept.release_if_idle();
                continue;
            }
        }
        let (mut checks, mut marks) = (Vec::new(), Vec::new());
        for job in batch.drain(..) {
            match job {
                Job::Check { id, reply } => checks.push((id, reply)),
                Job::Mark { id, status, reply } => marks.push((id, status, reply)),
            }
        }
        // Records first: a question in the same batch about the same id then sees it.
        if !marks.is_empty() {
            let ids: Vec<&str> = marks.iter().map(|(id, _, _)| id.as_str()).collect();
            let statuses: Vec<i32> = marks.iter().map(|(_, s, _)| *s).collect();
            let done = kept
                .run(&pool, async |conn| {
                    sqlx::query(
                        "INSERT INTO processed_request (request_id, third_party_status)
                         SELECT * FROM unnest($1::text[], $2::int[]) ON CONFLICT DO NOTHING",
                    )
                    .bind(&ids)
                    .bind(&statuses)
                    .execute(conn)
                    .await
                })
                .await
                .map(|_| ())
                .map_err(|e| format!("recording processed ids: {e}"));
            for (_, _, reply) in marks {
                let _ = reply.send(done.clone());
            }
        }
        if !checks.is_empty() {
            let ids: Vec<&str> = checks.iter().map(|(id, _)| id.as_str()).collect();
            let found: Result<std::collections::HashSet<String>, String> = kept
                .run(&pool, async |conn| {
                    sqlx::query_scalar("SELECT request_id FROM processed_request WHERE request_id = ANY($1)")
                        .persistent(false)
                        .bind(&ids)
                        .fetch_all(conn)
                        .await
                })
                .await
                .map(|found| found.into_iter().collect())
                .map_err(|e| format!("reading processed ids: {e}"));
            for (id, reply) in checks {
                let _ = reply.send(found.as_ref().map(|f| f.contains(&id)).map_err(Clone::clone));
            }
        }
    }
}
// ANCHOR_END: batches
