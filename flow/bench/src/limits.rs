//! The limits each figure is compared with, measured by the same run on the same machine:
//! a bare axum handler (the HTTP ceiling), pgbench running service one's own transaction (the
//! database ceiling), rdkafka producing and consuming alone (the broker ceiling) and the load
//! generator posting two's bodies straight to the stub (the third party's HTTP ceiling).

use crate::procs::wait_http;
use anyhow::Context as _;
use flow_bench::{Op, Run, closed_loop, pgbench};
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

// ANCHOR: bare_server
/// The HTTP ceiling: the same body read and parsed, no database, no Kafka.
pub fn bare_server(port: u16) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async move {
        let app = axum::Router::new().route(
            "/one",
            axum::routing::post(|axum::Json(_): axum::Json<serde_json::Value>| async {
                (
                    axum::http::StatusCode::CREATED,
                    axum::Json(serde_json::json!({"request_id": "00000000000000000001"})),
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        axum::serve(listener, app).await?;
        anyhow::Ok(())
    })
}
// ANCHOR_END: bare_server

/// A database with service one's schema and a pgbench script running one's transaction.
pub struct PgBench {
    db: String,
    script: PathBuf,
}

fn psql(db: &str, sql: &str) -> anyhow::Result<String> {
    let output = Command::new("psql")
        .args(["-qtA", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", "15432", "-U", "postgres", "-d", db])
        .args(["-c", sql])
        .env("PGPASSWORD", "postgres")
        .output()
        .context("psql")?;
    anyhow::ensure!(output.status.success(), "psql failed: {}", String::from_utf8_lossy(&output.stderr));
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Drops the databases bench runs older than an hour left (`bench_one_*`, `bench_two_*`,
/// `bench_pg_*`, named by their start time; each run makes its own) and returns how many
/// databases the server still has.
pub fn drop_earlier_runs() -> anyhow::Result<(usize, usize)> {
    let names = psql(
        "postgres",
        r"SELECT datname FROM pg_database
          WHERE datname ~ '^bench_(one|two|pg)_[0-9]{14}$'
            AND to_timestamp(right(datname, 14), 'YYYYMMDDHH24MISS')::timestamp
                < now() AT TIME ZONE 'UTC' - interval '1 hour'",
    )?;
    let names: Vec<&str> = names.lines().filter(|n| !n.is_empty()).collect();
    for name in &names {
        psql("postgres", &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
    }
    let left: usize = psql("postgres", "SELECT count(*) FROM pg_database")?.parse()?;
    Ok((names.len(), left))
}

/// `on` when the stack's PostgreSQL really flushes commits (`CRUNCAN_PG_DURABLE=1 make up`).
pub fn pg_durability() -> anyhow::Result<String> {
    let fsync = psql("postgres", "SHOW fsync")?;
    let sync = psql("postgres", "SHOW synchronous_commit")?;
    Ok(format!("fsync={fsync}, synchronous_commit={sync}"))
}

// ANCHOR: own_transaction
/// Service one's transaction as pgbench runs it: the request row and its outbox row, in one
/// transaction, on a database migrated with one's own migrations (indexes, triggers and all).
const ONE_TRANSACTION: &str = r#"BEGIN;
INSERT INTO request (req_id, user_id, created_at, updated_at, req)
  VALUES (gen_random_uuid()::text, 'bench-user', now(), now(),
  '{"user_id":"bench-user","prompt":"measure me","data":[{"key":"k","value":"v"}]}'::jsonb);
INSERT INTO outbox (topic, key, payload, headers, created_at)
  VALUES ('bench', gen_random_uuid()::text,
  convert_to('{"request_id":"00000000000000000001","user_id":"bench-user",'
    '"prompt":"measure me","data":[{"key":"k","value":"v"}],"created_at":"2026-01-01T00:00:00Z"}',
    'UTF8'),
  '{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}'::jsonb, now());
COMMIT;
"#;
// ANCHOR_END: own_transaction

/// Creates the pgbench database and script.
pub fn pgbench_setup(stamp: &str) -> anyhow::Result<PgBench> {
    let db = format!("bench_pg_{stamp}");
    psql("postgres", &format!("CREATE DATABASE {db}"))?;
    let dir = cruncan_config::workspace_dir().join("flow/one/migrations");
    let mut migrations: Vec<PathBuf> =
        std::fs::read_dir(&dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    migrations.sort();
    for m in migrations {
        psql(&db, &std::fs::read_to_string(&m)?).with_context(|| format!("applying {}", m.display()))?;
    }
    let script = std::env::temp_dir().join(format!("cruncan-one-tx-{stamp}.sql"));
    std::fs::write(&script, ONE_TRANSACTION)?;
    Ok(PgBench { db, script })
}

/// Runs pgbench; returns (transactions per second, [p50, p90, p99, max] ms from its log).
pub fn pgbench(pg: &PgBench, clients: usize, secs: u64, out: &Path) -> anyhow::Result<(f64, [f64; 4])> {
    let target = pgbench::Target {
        host: "127.0.0.1".into(),
        port: 15432,
        user: "postgres".into(),
        password: "postgres".into(),
        database: pg.db.clone(),
    };
    let run = pgbench::run(&target, &pg.script, clients, secs, out)?;
    Ok((run.per_second, run.latency_ms))
}

/// Produces `n` one-request events with rdkafka alone; returns messages per second.
pub async fn produce(brokers: &str, topic: &str, n: usize) -> anyhow::Result<f64> {
    let producer = cruncan_kafka::Producer::new(brokers, &cruncan_kafka::ProducerSettings::new("bench"))?;
    let started = Instant::now();
    let sent = AtomicU64::new(0);
    let sends = (0..n).map(|i| {
        let id = format!("{:020}", 1_000_000_000 + i);
        let event = cruncan_model::OneRequestEvent {
            request_id: id.clone(),
            request: cruncan_model::OneRequest {
                user_id: "bench-user".into(),
                prompt: "measure me".into(),
                data: vec![],
            },
            created_at: chrono::Utc::now(),
        };
        let producer = producer.clone();
        let sent = &sent;
        async move {
            let payload = serde_json::to_vec(&event)?;
            producer.send(topic, id.as_bytes(), &payload, &cruncan_kafka::Headers::new()).await?;
            sent.fetch_add(1, Ordering::Relaxed);
            anyhow::Ok(())
        }
    });
    // Bounded concurrency: at most 10,000 records in flight.
    use futures::StreamExt as _;
    let results: Vec<_> = futures::stream::iter(sends).buffer_unordered(10_000).collect().await;
    results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    Ok(sent.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// Consumes `n` messages of `topic` with rdkafka alone; returns messages per second.
pub async fn consume(brokers: &str, topic: &str, n: usize) -> anyhow::Result<f64> {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("bench-raw-{topic}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut got = 0usize;
    let mut started = None;
    while got < n {
        tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .context("consume timed out")??;
        started.get_or_insert_with(Instant::now);
        got += 1;
    }
    Ok(n as f64 / started.map_or(1.0, |s| s.elapsed().as_secs_f64()))
}

// ANCHOR: http_limit
/// The third party's HTTP ceiling for two: the load generator posts two's body to the stub's
/// `/three` with a token, at two's concurrency, with nothing else in between.
pub async fn stub_http_limit(stub: &str, connections: usize, duration: Duration) -> anyhow::Result<Run> {
    wait_http(&format!("{stub}/healthz"), "stub").await?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(connections).build()?;
    let token: serde_json::Value = client
        .post(format!("{stub}/v2/oauth/token"))
        .basic_auth("two", Some("local-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = Arc::new(token["access_token"].as_str().context("no access_token")?.to_owned());
    let counter = Arc::new(AtomicU64::new(0));
    let url = Arc::new(format!("{stub}/three"));
    let op: Op = Arc::new(move || {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        let id = format!("{:020}", 9_000_000_000u64 + counter.fetch_add(1, Ordering::Relaxed));
        Box::pin(async move {
            let body = cruncan_model::ThreeRequest {
                id: id.clone(),
                metadata: "bench-http-limit/0/0".into(),
                one_request: cruncan_model::OneRequest {
                    user_id: "bench-user".into(),
                    prompt: "measure me".into(),
                    data: vec![],
                },
            };
            let r = client
                .post(url.as_str())
                .bearer_auth(token.as_str())
                .header("idempotency-key", &id)
                .json(&body)
                .send()
                .await?;
            anyhow::ensure!(r.status().is_success(), "status {}", r.status());
            Ok(None)
        })
    });
    closed_loop(op, connections, duration).await
}
// ANCHOR_END: http_limit
