//! One trace from the create through NATS to the SMTP send; a graceful stop mid-send.

use crate::helpers::*;
use email::domain::Email;
use email::mailer::{Mailer, SendError, SmtpMailer};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn one_trace_runs_from_the_create_through_nats_to_the_smtp_send() {
    let telemetry = cruncan_testkit::global_telemetry("email");
    let app = spawn_app(Options::default()).await;
    let id = app.create(&new_email(&cruncan_testkit::unique_name("traced"))).await;
    app.wait_for_status(&id, "sent", Duration::from_secs(15)).await;
    tokio::task::spawn_blocking(move || telemetry.guard.force_flush()).await.unwrap();

    let spans = telemetry
        .receiver
        .wait_for_spans(Duration::from_secs(10), "the smtp send span", |spans| {
            spans.iter().any(|s| s.name == "smtp send" && s.attributes.get("email_id") == Some(&id))
        })
        .await
        .unwrap();
    let smtp =
        spans.iter().find(|s| s.name == "smtp send" && s.attributes.get("email_id") == Some(&id)).unwrap();
    let trace: Vec<_> = spans.iter().filter(|s| s.trace_id == smtp.trace_id).collect();
    let names: Vec<&str> = trace.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"POST /api/v1/email"), "{names:?}");
    let process = trace.iter().find(|s| s.name == "email.send process").expect("consumer span in the trace");
    assert_eq!(process.kind, 5, "a consumer span");
    assert_eq!(smtp.parent_span_id, process.span_id, "the send is a child of the processing");

    let metrics = telemetry
        .receiver
        .wait_for_metrics(
            Duration::from_secs(15),
            &[
                "email.created",
                "email.sent",
                "email.send.duration",
                "email.worker.in_flight",
                "email.consumer.pending",
            ],
        )
        .await
        .unwrap();
    assert_eq!(metrics["email.send.duration"].kind, "histogram");
    assert_eq!(metrics["email.send.duration"].unit, "s");
    assert_eq!(metrics["email.created"].kind, "counter");
    app.stop().await;
}

/// The real mailer, slowed down, announcing when a send starts.
struct SlowMailer {
    inner: SmtpMailer,
    started: Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl Mailer for SlowMailer {
    async fn send(&self, email: &Email) -> Result<(), SendError> {
        self.started.notify_one();
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        self.inner.send(email).await
    }
}

#[tokio::test]
async fn a_graceful_stop_finishes_the_send_in_flight_and_acks_it() {
    let settings = settings(&Options { workers: 1, ..Options::default() }).await;
    let started = Arc::new(tokio::sync::Notify::new());
    let mailer =
        SlowMailer { inner: SmtpMailer::new(&settings.smtp).unwrap(), started: Arc::clone(&started) };
    let app = spawn_with(settings, Some(Arc::new(mailer))).await;
    let id = app.create(&new_email(&cruncan_testkit::unique_name("in flight at shutdown"))).await;
    tokio::time::timeout(Duration::from_secs(10), started.notified()).await.expect("the send started");

    // SIGTERM arrives mid-send: the worker finishes, records and acks before the service exits.
    let mut consumer = app.consumer().await;
    // The service closes its pool on the way out: read with a pool of the test's own.
    let (pool, id2) = (app.settings.database.lazy_pool(), id.clone());
    app.stop().await;
    let (status, attempts): (String, i32) =
        sqlx::query_as("SELECT status, attempts FROM email WHERE email_id = $1::uuid")
            .bind(&id2)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), attempts), ("sent", 1));
    let info = consumer.info().await.unwrap();
    assert_eq!(info.num_ack_pending, 0, "acked before exit: {info:?}");
    assert_eq!(SinkApi::stack().messages_for(&id).await.len(), 1);
}
