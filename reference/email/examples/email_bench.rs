//! `cargo run --example email_bench`: how fast the email service accepts and sends, beside lettre
//! sending alone to the same SMTP sink (the limit). Bounded and loopback only: a maildev of its
//! own on free ports, a fresh database and stream, the flow bench's closed and open loops.
//! Prints one JSON line:
//! creates/s accepted (p50, p99), create p99 at half that rate, sends/s completed at the sink,
//! lettre's sends/s, and the ratio of the two. Needs `make up`.

use anyhow::Context as _;
use clap::Parser;
use email::config::Settings;
use flow_bench::{Op, closed_loop, open_loop, percentiles_ms};
use lettre::AsyncTransport as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[allow(dead_code, clippy::unwrap_used, clippy::expect_used)]
#[path = "../tests/api/sink.rs"]
mod sink;

/// Bench knobs.
#[derive(Debug, Parser)]
struct Args {
    /// Seconds of each load phase
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent REST clients in the closed loop
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Sending workers (and lettre's concurrency for the limit)
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Emails lettre sends alone for the limit
    #[arg(long, default_value_t = 1000)]
    limit_emails: usize,
}

fn email_body(i: usize) -> serde_json::Value {
    serde_json::json!({"from": "bench@example.com", "to": ["sink@example.com"],
        "subject": format!("bench {i}"), "message": "A short benchmark message.\n"})
}

/// lettre alone, `concurrency` sends at a time through one pooled transport.
async fn lettre_limit(smtp_url: &str, emails: usize, concurrency: usize) -> anyhow::Result<f64> {
    let transport = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(smtp_url)?
        .pool_config(lettre::transport::smtp::PoolConfig::new().max_size(concurrency as u32))
        .build();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (transport, next) = (transport.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < emails {
                    let message = lettre::Message::builder()
                        .from("bench@example.com".parse()?)
                        .to("sink@example.com".parse()?)
                        .subject("lettre alone")
                        .body("A short benchmark message.\n".to_owned())?;
                    transport.send(message).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(emails as f64 / started.elapsed().as_secs_f64())
}

async fn settings(smtp_url: String, workers: usize) -> anyhow::Result<Settings> {
    let dir = cruncan_config::workspace_dir().join("reference/email/config");
    let mut s: Settings = cruncan_config::load(&cruncan_config::Sources::new(dir, "bench"))?;
    s.database = cruncan_db::create_test_database(&cruncan_db::local_test_settings()?).await?;
    let tag = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    (s.http.port, s.grpc.port, s.admin.port) = (0, 0, 0);
    s.nats.stream = tag.to_uppercase();
    s.nats.subject_prefix = format!("{tag}.");
    s.nats.max_ack_pending = (workers * 4) as i64;
    s.nats.max_age = std::time::Duration::from_secs(3600);
    if let Ok(url) = std::env::var("NATS_URL") {
        s.nats.url = url;
    }
    s.redis.key_prefix = format!("{tag}:");
    s.smtp.url = smtp_url.into();
    s.smtp.pool_size = workers as u32;
    s.workers.count = workers;
    s.outbox.poll_interval = std::time::Duration::from_millis(50);
    Ok(s)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let phase = Duration::from_secs(args.seconds.clamp(1, 60));
    let mut own = sink::OwnSink::start().await;

    let lettre_per_s = lettre_limit(&own.smtp_url(), args.limit_emails.min(20_000), args.workers).await?;

    let s = settings(own.smtp_url(), args.workers).await?;
    let stream = s.nats.stream.clone();
    let app = email::build(s).await?;
    let base = format!("http://{}/api/v1/email", app.http_addr()?);
    let pool = app.pool().clone();
    let shutdown = cruncan_shutdown::Shutdown::new();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));

    let http = reqwest::Client::new();
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let op: Op = Arc::new(move || {
        let (http, base, counter) = (http.clone(), base.clone(), Arc::clone(&counter));
        Box::pin(async move {
            let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let r = http.post(&base).json(&email_body(i)).send().await?;
            anyhow::ensure!(r.status() == 202, "status {}", r.status());
            Ok(None)
        })
    });

    let closed = closed_loop(op.clone(), args.connections, phase).await?;
    let creates_per_s = closed.throughput();
    let half = open_loop(op, (creates_per_s / 2.0).max(1.0), phase, args.connections * 4).await?;
    let accepted = closed.ok + half.ok;

    // Sends complete when every accepted email is `sent`; the rate is over the whole run.
    let deadline = Instant::now() + Duration::from_secs(120);
    let sent = loop {
        let sent: i64 =
            sqlx::query_scalar("SELECT count(*) FROM email WHERE status = 'sent'").fetch_one(&pool).await?;
        if sent as u64 >= accepted || Instant::now() > deadline {
            break sent;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let span: f64 = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM max(sent_at) - min(created_at))::float8 FROM email WHERE status = 'sent'",
    )
    .fetch_one(&pool)
    .await
    .context("send span")?;
    let at_sink = own.api().count().await;
    shutdown.trigger();
    running.await??;
    own.stop().await;
    if let Ok(client) =
        async_nats::connect(std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:14222".into()))
            .await
    {
        let _ = async_nats::jetstream::new(client).delete_stream(&stream).await;
    }

    let sends_per_s = sent as f64 / span.max(1e-9);
    let [c50, _, c99, _] = percentiles_ms(&closed.latency);
    let [_, _, h99, _] = percentiles_ms(&half.latency);
    println!(
        "{}",
        serde_json::json!({
            "bench": "email",
            "connections": args.connections,
            "workers": args.workers,
            "creates_per_s": creates_per_s.round(),
            "create_p50_ms": c50,
            "create_p99_ms": c99,
            "half_rate_per_s": (creates_per_s / 2.0).round(),
            "create_p99_ms_at_half_rate": h99,
            "create_errors": closed.failed + half.failed,
            "accepted": accepted,
            "sent": sent,
            "sink_received": at_sink,
            "sends_per_s": sends_per_s.round(),
            "lettre_sends_per_s": lettre_per_s.round(),
            "sends_vs_lettre": (sends_per_s / lettre_per_s * 100.0).round() / 100.0,
        })
    );
    Ok(())
}
