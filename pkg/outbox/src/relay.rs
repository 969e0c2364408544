//! The relay: publishes committed outbox rows to Kafka, in order, marks them sent only after the
//! broker acknowledged them, and starts the table's [`retention`](crate::retention) task beside
//! it. See the crate docs for the guarantees.
//!
//! Longer than 350 lines because the loop, the claim and the publish share the relay's state and
//! the book shows them side by side; its settings, table name, metrics, wake-up and retention are
//! in files of their own.

use crate::metrics::RelayMetrics;
use crate::{OutboxSettings, OutboxWaker, Table};
use anyhow::Context as _;
use backon::{BackoffBuilder as _, ExponentialBuilder};
use chrono::{DateTime, Utc};
use cruncan_db::KeptConnection;
use cruncan_kafka::{Headers, Producer};
use cruncan_shutdown::Shutdown;
use opentelemetry::KeyValue;
use sqlx::{PgPool, Postgres, Transaction};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The longest wait between relay rounds while publishing fails.
const FAILURE_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Waits between relay rounds while publishing fails: 200 ms, doubling, at most 5 s (backon).
fn failure_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(FAILURE_BACKOFF_MAX)
        .without_max_times()
        .build()
}

/// A claimed outbox row.
#[derive(Debug, sqlx::FromRow)]
struct Row {
    id: i64,
    topic: String,
    key: String,
    payload: Vec<u8>,
    headers: sqlx::types::Json<Headers>,
    created_at: DateTime<Utc>,
}

/// What one claim did: the ids the broker acknowledged, and the first failure if any send failed.
#[derive(Debug)]
pub struct Claimed {
    /// Rows the broker acknowledged, in id order.
    pub acked: Vec<i64>,
    /// The first send error of the batch.
    pub error: Option<anyhow::Error>,
}

/// A topic the relay creates, unless it exists, before its first round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// Topic name.
    pub topic: String,
    /// Partitions when it is created.
    pub partitions: i32,
    /// Replication factor when it is created.
    pub replication: i32,
}

/// Publishes one outbox table; see the crate docs.
pub struct Relay {
    pool: PgPool,
    producer: Producer,
    table: Table,
    cfg: OutboxSettings,
    topic: Option<TopicSpec>,
    topic_ready: AtomicBool,
    span_name_header: Option<&'static str>,
    correlation_header: Option<&'static str>,
    metrics: RelayMetrics,
    pending_counted: std::sync::Mutex<Option<Instant>>,
    wake: OutboxWaker,
    kept: tokio::sync::Mutex<KeptConnection>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("table", &self.table).field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

impl Relay {
    /// A relay of `table` over `pool`, publishing with `producer`. Make one relay per table and
    /// process: its gauges are registered with the process's meter for good.
    pub fn new(pool: PgPool, producer: Producer, table: Table, cfg: OutboxSettings) -> Self {
        Self {
            pool,
            producer,
            metrics: RelayMetrics::new(table.as_str()),
            table,
            cfg,
            topic: None,
            topic_ready: AtomicBool::new(true),
            span_name_header: None,
            correlation_header: None,
            pending_counted: std::sync::Mutex::new(None),
            wake: OutboxWaker::default(),
            kept: tokio::sync::Mutex::default(),
        }
    }

    /// Creates `topic` (unless it exists) before publishing; until that succeeds, rounds fail
    /// and are retried with the failure backoff.
    pub fn ensuring_topic(mut self, topic: TopicSpec) -> Self {
        self.topic = Some(topic);
        self.topic_ready = AtomicBool::new(false);
        self
    }

    /// Woken by `waker` (made before the relay, e.g. for the writers) instead of its own.
    pub fn with_waker(mut self, waker: OutboxWaker) -> Self {
        self.wake = waker;
        self
    }

    /// Names each publish span `publish <value of header>` (e.g. the event type) when the row
    /// has that header, instead of `publish <topic>`.
    pub fn naming_spans_by(mut self, header: &'static str) -> Self {
        self.span_name_header = Some(header);
        self
    }

    /// Records the value of `header` as each publish span's `correlation_id` (e.g. the saga id),
    /// so a trace search by it finds the publishes too.
    pub fn correlating_spans_by(mut self, header: &'static str) -> Self {
        self.correlation_header = Some(header);
        self
    }

    /// The handle the request path uses to wake this relay after a commit.
    pub fn waker(&self) -> OutboxWaker {
        self.wake.clone()
    }

    // ANCHOR: relay_run
    /// Runs until `shutdown`, then keeps draining pending rows for up to `drain_timeout`.
    pub async fn run(self, shutdown: Shutdown) {
        let pruner = tokio::spawn(crate::retention::run(
            self.pool.clone(),
            self.table.clone(),
            self.cfg.retention,
            shutdown.clone(),
        ));
        let mut failures = 0u32;
        let mut backoff = failure_backoff();
        while !shutdown.is_triggered() {
            // Creating the topic touches no row, so it may be abandoned when shutdown comes.
            let ensured = tokio::select! {
                () = shutdown.wait() => break,
                ensured = self.ensure_topic() => ensured,
            };
            let published = match ensured {
                Ok(()) => self.publish_batch().await,
                Err(e) => Err(e),
            };
            // At most once a second, and also while the broker is away: that is when it matters.
            self.refresh_pending_gauge().await;
            let wait = match published {
                Ok(n) if n as i64 >= self.cfg.batch_size => {
                    (failures, backoff) = (0, failure_backoff());
                    continue; // a full batch: there is probably more
                }
                Ok(_) => {
                    (failures, backoff) = (0, failure_backoff());
                    self.cfg.poll_interval
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(table = %self.table, error = %format!("{e:#}"), failures, "outbox relay: publishing failed; will retry");
                    backoff.next().unwrap_or(FAILURE_BACKOFF_MAX)
                }
            };
            // Sleep until a commit wakes us, the poll interval, or shutdown. While publishing
            // fails, only the backoff ends the wait: new rows must not hammer a broken broker.
            tokio::select! {
                () = shutdown.wait() => break,
                () = tokio::time::sleep(wait) => {}
                () = self.wake.woken(), if failures == 0 => {
                    if !self.cfg.batch_window.is_zero() {
                        // Let the rows of concurrent requests gather: one claim, one produce
                        // batch and one UPDATE for many rows instead of one round per request.
                        tokio::time::sleep(self.cfg.batch_window).await;
                    }
                }
            }
        }
        self.drain().await;
        // It stops at the shutdown too, at the latest after the statement it is running.
        if let Err(e) = pruner.await {
            tracing::warn!(table = %self.table, error = %e, "outbox retention task failed");
        }
    }
    // ANCHOR_END: relay_run

    /// Publishes what is pending until nothing is or the drain deadline passes.
    async fn drain(&self) {
        let deadline = tokio::time::Instant::now() + self.cfg.drain_timeout;
        loop {
            let round = tokio::time::timeout_at(deadline, self.publish_batch()).await;
            match round {
                Ok(Ok(0)) => {
                    tracing::info!(table = %self.table, "outbox drained");
                    return;
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(table = %self.table, error = %format!("{e:#}"), "outbox drain stopped; pending rows stay for the next start");
                    return;
                }
                Err(_) => {
                    tracing::warn!(table = %self.table, "outbox drain deadline passed; pending rows stay for the next start");
                    // The cut-off round's transaction is still open on the kept connection: hand
                    // it back, which rolls it back and frees its rows for the next relay.
                    self.kept.lock().await.release();
                    return;
                }
            }
        }
    }

    /// Counts pending rows for the `outbox.pending` gauge, at most once a second (not per batch:
    /// at a thousand requests per second the count would be a query per request).
    async fn refresh_pending_gauge(&self) {
        let now = Instant::now();
        {
            let mut last = self.pending_counted.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
                return;
            }
            *last = Some(now);
        }
        if let Ok((n, oldest_ms)) = crate::backlog(&self.pool, &self.table).await {
            self.metrics.pending.store(n, Ordering::Relaxed);
            self.metrics.oldest_ms.store(oldest_ms, Ordering::Relaxed);
        }
    }

    // ANCHOR: publish_batch
    /// Claims up to `batch_size` pending rows, publishes them, marks the acknowledged ones sent
    /// and commits. Returns how many were published; an error when rows were claimed and none
    /// could be published (the failed attempts are committed all the same).
    pub async fn publish_batch(&self) -> anyhow::Result<usize> {
        self.ensure_topic().await?;
        // The relay keeps its connection while rounds find rows: no pool round trip per round.
        let mut kept = self.kept.lock().await;
        let claimed = self.transaction(&mut kept).await;
        match &claimed {
            Err(e) if e.downcast_ref::<sqlx::Error>().is_some_and(cruncan_db::is_unavailable) => {
                kept.discard()
            }
            // A failed round may leave its transaction open on the connection (sqlx sends the
            // ROLLBACK with the next use); handing it back sends it now, and frees the row locks.
            Err(_) => kept.release(),
            Ok(c) if c.acked.is_empty() && c.error.is_none() => kept.release(), // nothing pending
            Ok(_) => kept.used(),
        }
        drop(kept);
        let claimed = claimed?;
        self.metrics.published.add(claimed.acked.len() as u64, std::slice::from_ref(&self.metrics.table));
        match claimed.error {
            Some(e) if claimed.acked.is_empty() => Err(e),
            _ => Ok(claimed.acked.len()),
        }
    }

    /// One relay transaction on the kept connection: claim and publish, mark the acknowledged
    /// rows sent, commit.
    async fn transaction(&self, kept: &mut KeptConnection) -> anyhow::Result<Claimed> {
        let conn = kept.get(&self.pool).await.context("taking a connection for the outbox")?;
        let mut tx = sqlx::Connection::begin(conn).await.context("starting outbox transaction")?;
        let claimed = self.claim_and_publish(&mut tx).await?;
        if !claimed.acked.is_empty() {
            // Planned each time, not cached: a plan cached while the table was small is a
            // sequential scan, and it stays one as the table grows (see `outbox_growth` tests).
            sqlx::query(
                self.table
                    .sql("UPDATE {outbox} SET sent_at = now(), attempts = attempts + 1 WHERE id = ANY($1)"),
            )
            .bind(&claimed.acked)
            .persistent(false)
            .execute(&mut *tx)
            .await
            .context("marking outbox rows sent")?;
        }
        // Committed even when every send failed: `attempts` and `last_error` must survive for
        // the operator, and the rows stay pending either way.
        tx.commit().await.context("committing outbox transaction")?;
        Ok(claimed)
    }

    /// Claims pending rows inside `tx` (`FOR UPDATE SKIP LOCKED`) and publishes them in id order;
    /// records each failed send on its row inside `tx`. The rows stay locked, and pending, until
    /// the caller marks them and commits — dropping `tx` instead is what a crash after publishing
    /// looks like, and the rows are published again by the next relay.
    pub async fn claim_and_publish(&self, tx: &mut Transaction<'_, Postgres>) -> anyhow::Result<Claimed> {
        let rows: Vec<Row> = sqlx::query_as(self.table.sql(
            "SELECT id, topic, key, payload, headers, created_at FROM {outbox}
             WHERE sent_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        ))
        .bind(self.cfg.batch_size)
        .fetch_all(&mut **tx)
        .await
        .context("claiming outbox rows")?;
        // Sends are enqueued in id order; the idempotent producer keeps that order per partition.
        let sends = rows.iter().map(|row| self.publish(row));
        let results = futures::future::join_all(sends).await;
        let mut claimed = Claimed { acked: Vec::with_capacity(rows.len()), error: None };
        let (mut failed_ids, mut failed_errors) = (Vec::new(), Vec::new());
        for (row, result) in rows.iter().zip(results) {
            match result {
                Ok(()) => claimed.acked.push(row.id),
                Err(e) => {
                    failed_ids.push(row.id);
                    failed_errors.push(format!("{e:#}"));
                    claimed.error.get_or_insert(e);
                }
            }
        }
        if !failed_ids.is_empty() {
            self.metrics.failed.add(failed_ids.len() as u64, std::slice::from_ref(&self.metrics.table));
            sqlx::query(self.table.sql(
                "UPDATE {outbox} AS o SET attempts = o.attempts + 1, last_error = f.error
                 FROM unnest($1::bigint[], $2::text[]) AS f(id, error) WHERE o.id = f.id",
            ))
            .bind(&failed_ids)
            .bind(&failed_errors)
            .execute(&mut **tx)
            .await
            .context("recording failed sends")?;
        }
        Ok(claimed)
    }
    // ANCHOR_END: publish_batch

    // ANCHOR: publish_span
    /// One row to Kafka, in a producer span that continues the trace of the transaction that
    /// wrote it (the HTTP request's, the consumed event's).
    async fn publish(&self, row: &Row) -> anyhow::Result<()> {
        let headers = &row.headers.0;
        let named = self.span_name_header.and_then(|h| headers.get_str(h)).unwrap_or(&row.topic);
        let span = tracing::info_span!(
            "publish",
            otel.name = format!("publish {named}"),
            otel.kind = "producer",
            messaging.system = "kafka",
            messaging.operation.type = "send",
            messaging.destination.name = %row.topic,
            messaging.kafka.message.key = %row.key,
            otel.status_code = tracing::field::Empty,
            correlation_id = tracing::field::Empty,
        );
        if let Some(id) = self.correlation_header.and_then(|h| headers.get_str(h)) {
            span.record("correlation_id", id);
        }
        let parent = cruncan_telemetry::extract_context(headers);
        let _ = span.set_parent(parent);
        // ANCHOR_END: publish_span
        let sent = self
            .producer
            .send(&row.topic, row.key.as_bytes(), &row.payload, headers)
            .instrument(span.clone())
            .await;
        match sent {
            Ok(_) => {
                let latency = (Utc::now() - row.created_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
                self.metrics.latency.record(
                    latency.max(0.0),
                    &[
                        KeyValue::new("messaging.destination.name", row.topic.clone()),
                        self.metrics.table.clone(),
                    ],
                );
                Ok(())
            }
            Err(e) => {
                span.record("otel.status_code", "ERROR");
                Err(e)
            }
        }
    }

    async fn ensure_topic(&self) -> anyhow::Result<()> {
        if self.topic_ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        if let Some(t) = &self.topic {
            cruncan_kafka::ensure_topic(&t.brokers, &t.topic, t.partitions, t.replication).await?;
        }
        self.topic_ready.store(true, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_backoff_doubles_from_200_ms_to_5_s() {
        let delays: Vec<u128> = failure_backoff().take(8).map(|d| d.as_millis()).collect();
        assert_eq!(delays, [200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    }
}
