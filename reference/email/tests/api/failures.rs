//! The failure paths: a crash between send and ack, a sink that is down, permanent SMTP errors,
//! malformed payloads, running out of deliveries.

use crate::helpers::*;
use async_nats::jetstream::consumer::PullConsumer;
use email::worker::Disposition;
use futures::StreamExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

async fn pull_one(consumer: &PullConsumer) -> async_nats::jetstream::Message {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut batch = consumer.fetch().max_messages(1).messages().await.unwrap();
        if let Some(Ok(m)) = batch.next().await {
            return m;
        }
        assert!(tokio::time::Instant::now() < deadline, "no message to pull");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_worker_dying_after_the_send_before_the_ack_never_sends_twice() {
    let opts = Options { workers: 0, ack_wait: Duration::from_secs(1), ..Options::default() };
    let first = spawn_app(opts).await;
    let id = first.create(&new_email(&cruncan_testkit::unique_name("redelivered"))).await;

    // A worker takes the message, sends it (the sink accepts, the row says sent) and dies
    // before acking: the message is simply never settled.
    let consumer = first.consumer().await;
    let msg = pull_one(&consumer).await;
    assert_eq!(first.worker.process(&msg).await, Disposition::Ack("sent"));
    drop(msg);
    let sink = SinkApi::stack();
    sink.wait_for(&id, Duration::from_secs(5)).await;

    // A replica with workers on the same consumer gets the redelivery after ack_wait and acks
    // it without sending.
    let mut settings = first.settings.clone();
    settings.workers.count = 1;
    let second = spawn_with(settings, None).await;
    let mut consumer = first.consumer().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let info = consumer.info().await.unwrap();
        // Delivered twice (the consumer sequence counts redeliveries) and nothing unacked.
        if info.delivered.consumer_sequence >= 2 && info.num_ack_pending == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the redelivery was not acked: {info:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(sink.messages_for(&id).await.len(), 1, "the redelivery sent nothing");
    assert_eq!(first.status(&id).await, ("sent".to_owned(), 1));
    second.stop().await;
    first.stop().await;
}

#[tokio::test]
async fn a_stopped_sink_means_retries_and_the_email_goes_out_when_it_is_back() {
    let mut sink = OwnSink::start().await;
    // Deliveries to spare: restarting node on a busy machine can take a few retry delays.
    let opts = Options { workers: 1, smtp_url: sink.smtp_url(), max_deliver: 50, ..Options::default() };
    let app = spawn_app(opts).await;
    sink.stop().await;
    let id = app.create(&new_email("while the sink is down")).await;

    // Transient failures: attempts counted, still queued, the error kept.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, attempts) = app.status(&id).await;
        assert_eq!(status, "queued");
        if attempts >= 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no retries seen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let store = email::store::Store::new(app.pool.clone());
    let last_error = store.last_error(id.parse().unwrap()).await.unwrap().unwrap();
    assert!(last_error.to_lowercase().contains("connect") || last_error.contains("refused"), "{last_error}");

    sink.resume().await;
    let (_, attempts) = app.wait_for_status(&id, "sent", Duration::from_secs(20)).await;
    assert!(attempts >= 3, "failed attempts plus the good one: {attempts}");
    let m = sink.api().wait_for(&id, Duration::from_secs(5)).await;
    assert_eq!(m["subject"], "while the sink is down");
    assert_eq!(sink.api().messages_for(&id).await.len(), 1);
    assert!(app.dead_letters().await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn running_out_of_deliveries_dead_letters_and_marks_failed() {
    let mut sink = OwnSink::start().await;
    let app =
        spawn_app(Options { workers: 1, smtp_url: sink.smtp_url(), max_deliver: 2, ..Options::default() })
            .await;
    sink.stop().await;
    let id = app.create(&new_email("never delivered")).await;
    let (_, attempts) = app.wait_for_status(&id, "failed", Duration::from_secs(15)).await;
    assert_eq!(attempts, 2);
    let dead = app.dead_letters().await;
    assert_eq!(dead.len(), 1);
    let (headers, payload) = &dead[0];
    assert_eq!(headers.get("Email-Dlq-Cause").unwrap().as_str(), "max_deliver");
    assert!(headers.get("Email-Dlq-Reason").unwrap().as_str().starts_with("gave up after 2 deliveries"));
    let event: serde_json::Value = serde_json::from_slice(payload).unwrap();
    assert_eq!(event["email_id"], id.as_str());
    app.stop().await;
}

/// A scripted SMTP stand-in: the n-th `RCPT TO` (over all connections) gets `rcpt[n]` (the last
/// one repeats); an accepted message is counted in `delivered`.
async fn scripted_smtp(rcpt: Vec<&'static str>) -> (String, Arc<AtomicUsize>) {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen, delivered) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let counted = Arc::clone(&delivered);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (rcpt, seen, delivered) = (rcpt.clone(), Arc::clone(&seen), Arc::clone(&counted));
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 stand-in.test ESMTP\r\n").await.ok();
                let mut in_data = false;
                while let Ok(Some(line)) = lines.next_line().await {
                    if in_data {
                        if line == "." {
                            in_data = false;
                            delivered.fetch_add(1, Ordering::SeqCst);
                            write.write_all(b"250 queued\r\n").await.ok();
                        }
                        continue;
                    }
                    let cmd = line.to_ascii_uppercase();
                    let reply = if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
                        "250 stand-in.test".to_owned()
                    } else if cmd.starts_with("RCPT") {
                        let n = seen.fetch_add(1, Ordering::SeqCst);
                        rcpt[n.min(rcpt.len() - 1)].to_owned()
                    } else if cmd.starts_with("DATA") {
                        in_data = true;
                        "354 go ahead".to_owned()
                    } else if cmd.starts_with("QUIT") {
                        write.write_all(b"221 bye\r\n").await.ok();
                        return;
                    } else {
                        "250 OK".to_owned()
                    };
                    if write.write_all(format!("{reply}\r\n").as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("smtp://{addr}"), delivered)
}

#[tokio::test]
async fn an_smtp_4xx_reply_is_retried_and_then_sent() {
    let (url, delivered) =
        scripted_smtp(vec!["451 4.3.0 try again later", "451 4.3.0 try again later", "250 OK"]).await;
    let app = spawn_app(Options { workers: 1, smtp_url: url, ..Options::default() }).await;
    let id = app.create(&new_email("greylisted")).await;
    let (_, attempts) = app.wait_for_status(&id, "sent", Duration::from_secs(15)).await;
    assert_eq!(attempts, 3, "two 451s, then accepted");
    assert_eq!(delivered.load(Ordering::SeqCst), 1);
    assert!(app.dead_letters().await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_permanent_smtp_error_dead_letters_at_once_with_the_reason() {
    let (url, delivered) = scripted_smtp(vec!["550 5.1.1 mailbox unavailable"]).await;
    let app = spawn_app(Options { workers: 1, smtp_url: url, ..Options::default() }).await;
    let id = app.create(&new_email("refused")).await;
    let (_, attempts) = app.wait_for_status(&id, "failed", Duration::from_secs(15)).await;
    assert_eq!(attempts, 1, "no retry of a permanent error");
    assert_eq!(delivered.load(Ordering::SeqCst), 0);
    let dead = app.dead_letters().await;
    assert_eq!(dead.len(), 1);
    let headers = &dead[0].0;
    assert_eq!(headers.get("Email-Dlq-Cause").unwrap().as_str(), "permanent");
    let reason = headers.get("Email-Dlq-Reason").unwrap().as_str();
    assert!(reason.contains("550") || reason.contains("mailbox unavailable"), "{reason}");
    assert_eq!(app.get_json(&id).await["status"], "failed");
    // What `email_replay --dead-letters` prints.
    let dlq = app.settings.nats.subject(email::jetstream::DLQ_SUBJECT);
    let start = email::replay::StartAt::FromStart;
    let replayed = email::replay::replay(&app.js, &app.settings.nats.stream, &dlq, &start, 10).await.unwrap();
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].event.as_ref().unwrap().email_id.to_string(), id);
    assert!(replayed[0].dlq_reason.as_deref().unwrap().contains("550"));
    app.stop().await;
}

#[tokio::test]
async fn a_malformed_payload_is_dead_lettered_and_the_workers_keep_going() {
    let app = spawn_app(Options { workers: 2, ..Options::default() }).await;
    let subject = app.settings.nats.subject(email::jetstream::SEND_SUBJECT);
    app.js.publish(subject.clone(), "{not json".into()).await.unwrap().await.unwrap();
    app.js
        .publish(
            subject,
            serde_json::json!({"email_id": uuid::Uuid::now_v7(), "from": "a@b.c", "to": [],
            "subject": "", "created_at": "2026-01-01T00:00:00Z"})
            .to_string()
            .into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let id = app.create(&new_email(&cruncan_testkit::unique_name("after garbage"))).await;
    app.wait_for_status(&id, "sent", Duration::from_secs(15)).await;
    SinkApi::stack().wait_for(&id, Duration::from_secs(5)).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let dead = app.dead_letters().await;
        if dead.len() >= 2 {
            break dead;
        }
        assert!(tokio::time::Instant::now() < deadline, "dead letters: {}", dead.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut causes: Vec<&str> =
        dead.iter().map(|(h, _)| h.get("Email-Dlq-Cause").unwrap().as_str()).collect();
    causes.sort_unstable();
    assert_eq!(causes, ["malformed", "unknown_email"]);
    assert_eq!(
        &dead.iter().find(|(h, _)| h.get("Email-Dlq-Cause").unwrap().as_str() == "malformed").unwrap().1[..],
        b"{not json"
    );
    app.stop().await;
}
