//! The workers: a pool sharing one durable JetStream pull consumer. Each worker pulls one message
//! when it is free (the pull is the backpressure), decides what it deserves ([`Worker::process`]:
//! send, skip, retry or dead-letter) and then settles it ([`Worker::settle`]: ack, nak with a
//! delay, or publish to the dead-letter subject and terminate). Deciding and settling are two
//! steps so the crash between them — the redelivery case — can be tested.

use async_nats::HeaderMap;
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::jetstream::{self, consumer::PullConsumer};
use chrono::Utc;
use cruncan_shutdown::Shutdown;
use futures::StreamExt as _;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::cache::Cache;
use crate::config::{NatsSettings, WorkerSettings};
use crate::domain::{EmailId, Status};
use crate::jetstream::{DLQ_REASON, DLQ_SUBJECT, SendEmail};
use crate::mailer::{Mailer, SendError};
use crate::metrics::Metrics;
use crate::store::Store;

// ANCHOR: disposition
/// What a message deserves after processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Done: sent now, or already sent or failed before (a redelivery sends nothing twice).
    Ack(&'static str),
    /// Try again after `delay` (transient SMTP or database error).
    Retry {
        /// How long JetStream holds the message back.
        delay: Duration,
        /// What went wrong.
        error: String,
        /// Whether an SMTP attempt was made this time (counted in `attempts`).
        attempted: bool,
    },
    /// Give up: publish to the dead-letter subject with the reason, mark the email failed, `Term`.
    DeadLetter {
        /// `malformed`, `unknown_email`, `permanent` or `max_deliver`.
        cause: &'static str,
        /// Why, for the `Email-Dlq-Reason` header and the row's `last_error`.
        reason: String,
        /// The email to mark failed, when the payload named one that exists.
        email: Option<EmailId>,
        /// Whether an SMTP attempt was made this time.
        attempted: bool,
    },
}
// ANCHOR_END: disposition

/// One worker's dependencies; the pool shares it.
pub struct Worker {
    store: Store,
    cache: Cache,
    mailer: Arc<dyn Mailer>,
    js: jetstream::Context,
    dlq_subject: String,
    max_deliver: i64,
    settings: WorkerSettings,
    metrics: Metrics,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("dlq_subject", &self.dlq_subject).finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker over these dependencies.
    pub fn new(
        store: Store,
        cache: Cache,
        mailer: Arc<dyn Mailer>,
        js: jetstream::Context,
        nats: &NatsSettings,
        settings: WorkerSettings,
        metrics: Metrics,
    ) -> Self {
        Self {
            store,
            cache,
            mailer,
            js,
            dlq_subject: nats.subject(DLQ_SUBJECT),
            max_deliver: nats.max_deliver,
            settings,
            metrics,
        }
    }

    fn backoff(&self, delivered: i64) -> Duration {
        let exp = u32::try_from(delivered.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
        self.settings.backoff_base.saturating_mul(1 << exp).min(self.settings.backoff_max)
    }

    // ANCHOR: process
    /// Decides what `msg` deserves, doing the side effects that come first: the SMTP send and,
    /// when it is accepted, the `sent` status (then the cache entry is dropped).
    pub async fn process(&self, msg: &jetstream::Message) -> Disposition {
        let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
        let event: SendEmail = match serde_json::from_slice(&msg.payload) {
            Ok(event) => event,
            Err(e) => return dead("malformed", format!("malformed payload: {e}"), None, false),
        };
        let id = event.email_id;
        let email = match self.store.get(id).await {
            Ok(Some(email)) => email,
            Ok(None) => return dead("unknown_email", format!("no email {id}"), None, false),
            Err(e) => return self.retry(delivered, id, format!("reading the email: {e:#}"), false),
        };
        if email.status != Status::Queued {
            return Disposition::Ack("already handled");
        }
        let started = Instant::now();
        let sent = self.mailer.send(&email).instrument(smtp_span(id)).await;
        let secs = started.elapsed().as_secs_f64();
        match sent {
            Ok(()) => {
                self.metrics.sent(secs);
                if let Err(e) = self.mark_sent(id).await {
                    // Sent but not recorded: the redelivery sends again (the at-least-once
                    // window); the Message-ID lets the receiver drop the copy.
                    return self.retry(delivered, id, format!("recording the send: {e:#}"), false);
                }
                self.cache.invalidate(id).await;
                Disposition::Ack("sent")
            }
            Err(SendError::Permanent(reason)) => {
                self.metrics.failed("permanent", secs);
                dead("permanent", reason, Some(id), true)
            }
            Err(SendError::Transient(error)) => {
                self.metrics.failed("transient", secs);
                self.retry(delivered, id, error, true)
            }
        }
    }
    // ANCHOR_END: process

    /// A retry, or a dead letter on the last allowed delivery.
    fn retry(&self, delivered: i64, id: EmailId, error: String, attempted: bool) -> Disposition {
        if delivered >= self.max_deliver {
            let reason = format!("gave up after {delivered} deliveries: {error}");
            return dead("max_deliver", reason, Some(id), attempted);
        }
        Disposition::Retry { delay: self.backoff(delivered), error, attempted }
    }

    async fn mark_sent(&self, id: EmailId) -> anyhow::Result<()> {
        let mut last = None;
        for pause in [0, 50, 200] {
            tokio::time::sleep(Duration::from_millis(pause)).await;
            match self.store.mark_sent(id, Utc::now()).await {
                Ok(_) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or_else(|| anyhow::anyhow!("mark_sent"), anyhow::Error::from))
    }

    // ANCHOR: settle
    /// Acks, naks with a delay, or dead-letters `msg`. A dead letter is published (and
    /// acknowledged by JetStream) before the email is marked failed and the message terminated;
    /// if either fails the message is nak'ed and the next delivery tries again.
    pub async fn settle(&self, msg: &jetstream::Message, disposition: Disposition) -> anyhow::Result<()> {
        let kind = match disposition {
            Disposition::Ack(_) => AckKind::Ack,
            Disposition::Retry { delay, error, attempted } => {
                if attempted && let Some(id) = email_id_of(msg) {
                    let _ = self.store.record_attempt(id, &error).await;
                    self.cache.invalidate(id).await;
                }
                tracing::warn!(%error, ?delay, "send failed; retrying later");
                AckKind::Nak(Some(delay))
            }
            Disposition::DeadLetter { cause, reason, email, attempted } => {
                match self.dead_letter(msg, cause, &reason, email, attempted).await {
                    Ok(()) => AckKind::Term,
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "dead-lettering failed; nak");
                        AckKind::Nak(Some(self.backoff(1)))
                    }
                }
            }
        };
        msg.ack_with(kind).await.map_err(|e| anyhow::anyhow!("settling the message: {e}"))
    }

    async fn dead_letter(
        &self,
        msg: &jetstream::Message,
        cause: &'static str,
        reason: &str,
        email: Option<EmailId>,
        attempted: bool,
    ) -> anyhow::Result<()> {
        let info = msg.info().map_err(|e| anyhow::anyhow!("message info: {e}"))?;
        let mut headers = HeaderMap::new();
        // Header values are one line: control characters become spaces.
        let one_line: String =
            reason.chars().map(|c| if c.is_control() { ' ' } else { c }).take(1000).collect();
        headers.insert(DLQ_REASON, one_line.as_str());
        headers.insert("Email-Dlq-Cause", cause);
        headers.insert("Email-Dlq-Stream-Seq", info.stream_sequence.to_string().as_str());
        headers.insert("Email-Dlq-Deliveries", info.delivered.to_string().as_str());
        let publish = Publish::build()
            .payload(msg.payload.clone())
            .headers(headers)
            .message_id(format!("dlq-{}", info.stream_sequence));
        self.js.send_publish(self.dlq_subject.clone(), publish).await?.await?;
        if let Some(id) = email {
            self.store.mark_failed(id, reason, attempted).await?;
            self.cache.invalidate(id).await;
        }
        self.metrics.dead_lettered(cause);
        tracing::warn!(cause, reason, "message dead-lettered");
        Ok(())
    }
    // ANCHOR_END: settle

    /// Processes and settles one message inside a consumer span that continues the trace of
    /// the request that created the email (carried in the message headers).
    pub async fn handle(&self, msg: &jetstream::Message) {
        let span = tracing::info_span!(
            "email.process",
            otel.name = "email.send process",
            otel.kind = "consumer",
            messaging.system = "nats",
            messaging.destination.name = %msg.subject,
            outcome = tracing::field::Empty,
        );
        if let Some(headers) = &msg.headers {
            let _ = span.set_parent(cruncan_telemetry::extract_context(&NatsHeaders(headers)));
        }
        self.metrics.in_flight(1);
        async {
            let disposition = self.process(msg).await;
            let outcome = match &disposition {
                Disposition::Ack(why) => *why,
                Disposition::Retry { .. } => "retry",
                Disposition::DeadLetter { cause, .. } => cause,
            };
            tracing::Span::current().record("outcome", outcome);
            if let Err(e) = self.settle(msg, disposition).await {
                tracing::warn!(error = %format!("{e:#}"), "could not settle; JetStream redelivers after ack_wait");
            }
        }
        .instrument(span)
        .await;
        self.metrics.in_flight(-1);
    }
}

fn dead(cause: &'static str, reason: String, email: Option<EmailId>, attempted: bool) -> Disposition {
    Disposition::DeadLetter { cause, reason, email, attempted }
}

fn email_id_of(msg: &jetstream::Message) -> Option<EmailId> {
    serde_json::from_slice::<SendEmail>(&msg.payload).ok().map(|e| e.email_id)
}

fn smtp_span(id: EmailId) -> tracing::Span {
    tracing::info_span!("smtp.send", otel.name = "smtp send", otel.kind = "client", email_id = %id)
}

/// Trace context in NATS message headers.
struct NatsHeaders<'a>(&'a HeaderMap);

impl cruncan_telemetry::Extractor for NatsHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

// ANCHOR: pool
/// Runs `count` workers on `consumer` until `shutdown`. Each pulls one message at a time, so a
/// busy worker holds nothing another could take. On shutdown a worker stops pulling, finishes the
/// send it is in, and naks a message its last pull still brings, so another replica takes it.
pub async fn run_pool(worker: Arc<Worker>, consumer: PullConsumer, count: usize, shutdown: Shutdown) {
    let pull_wait = worker.settings.pull_wait;
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            tokio::spawn(worker_loop(Arc::clone(&worker), consumer.clone(), pull_wait, shutdown.clone()))
        })
        .collect();
    let gauge = tokio::spawn(pending_gauge(consumer, worker.metrics.clone(), shutdown));
    for task in tasks {
        let _ = task.await;
    }
    gauge.abort();
}

async fn worker_loop(worker: Arc<Worker>, consumer: PullConsumer, pull_wait: Duration, shutdown: Shutdown) {
    while !shutdown.is_triggered() {
        let batch = consumer.batch().max_messages(1).expires(pull_wait).messages().await;
        let mut batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(error = %e, "pull failed; retrying");
                tokio::select! {
                    () = shutdown.wait() => break,
                    () = tokio::time::sleep(pull_wait) => continue,
                }
            }
        };
        // Ends after one message or when the pull expires (at most `pull_wait`).
        while let Some(next) = batch.next().await {
            match next {
                Ok(msg) if shutdown.is_triggered() => {
                    let _ = msg.ack_with(AckKind::Nak(None)).await;
                }
                Ok(msg) => worker.handle(&msg).await,
                Err(e) => tracing::debug!(error = %e, "pull ended"),
            }
        }
    }
}
// ANCHOR_END: pool

async fn pending_gauge(consumer: PullConsumer, metrics: Metrics, shutdown: Shutdown) {
    loop {
        if let Ok(info) = consumer.get_info().await {
            metrics.consumer_pending.store(info.num_pending, std::sync::atomic::Ordering::Relaxed);
        }
        tokio::select! {
            () = shutdown.wait() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}
