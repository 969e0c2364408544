//! `bench`: runs the benchmark scenarios against release builds of one, two and the stub, and
//! beside them the limits (pgbench, a bare axum handler, rdkafka alone). `make bench` runs it.

use anyhow::Context as _;
use clap::Parser;
use flow_bench::{Figure, Op, closed_loop, csv, markdown, open_loop, percentiles_ms, percentiles_of};
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(name = "bench", about = "Measure the flow beside the machine's limits")]
enum Cli {
    /// Run every scenario and write the report.
    Run(RunArgs),
    /// A bare axum server answering POST /one with 201 (the HTTP ceiling).
    BareServer {
        /// Port to listen on.
        #[arg(long)]
        port: u16,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Seconds per load step.
    #[arg(long, default_value_t = 8)]
    duration_secs: u64,
    /// Messages two drains in scenario 4.
    #[arg(long, default_value_t = 50_000)]
    drain_messages: usize,
    /// Lanes of the two that drains the pre-filled topic (`kafka.concurrency`).
    #[arg(long, default_value_t = 16)]
    drain_concurrency: usize,
    /// Where the release binaries are.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Where the report goes.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Kafka brokers.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:19092")]
    brokers: String,
}

const CONNECTIONS: [usize; 4] = [1, 8, 32, 128];
const ONE_PORT: u16 = 18180;
const TWO_PORT: u16 = 18181;
const STUB_PORT: u16 = 18190;
const BARE_PORT: u16 = 18199;

fn main() -> anyhow::Result<()> {
    match Cli::parse() {
        Cli::BareServer { port } => bare_server(port),
        Cli::Run(args) => {
            tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(args))
        }
    }
}

// ANCHOR: bare_server
/// The HTTP ceiling: the same body read and parsed, no database, no Kafka.
fn bare_server(port: u16) -> anyhow::Result<()> {
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

/// A child process killed (SIGTERM, then wait) when dropped.
struct Proc(Child, &'static str);

impl Proc {
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
        eprintln!("bench: stopped {}", self.1);
    }
}

fn spawn(name: &'static str, mut cmd: Command, log: &std::path::Path) -> anyhow::Result<Proc> {
    let file = std::fs::File::create(log)?;
    let child = cmd
        .stdout(file.try_clone()?)
        .stderr(file)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    Ok(Proc(child, name))
}

async fn wait_http(url: &str, what: &str) -> anyhow::Result<()> {
    for _ in 0..300 {
        if reqwest::get(url).await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("{what} did not become ready at {url}")
}

fn body() -> String {
    serde_json::json!({"user_id": "bench-user", "prompt": "measure me", "data": [{"key": "k", "value": "v"}]})
        .to_string()
}

fn post_op(client: reqwest::Client, url: String) -> Op {
    let body = Arc::new(body());
    Arc::new(move || {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        Box::pin(async move {
            let r = client
                .post(&url)
                .header("content-type", "application/json")
                .body((*body).clone())
                .send()
                .await?;
            anyhow::ensure!(r.status() == 201, "status {}", r.status());
            let v: serde_json::Value = r.json().await?;
            Ok(v["request_id"].as_str().map(str::to_owned))
        })
    })
}

fn client(connections: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().pool_max_idle_per_host(connections).build()?)
}

/// Samples the RSS of `procs` every 200 ms until stopped; returns the peak per process.
fn sample_rss(
    procs: Vec<(&'static str, u32)>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<(&'static str, u64)>> {
    tokio::spawn(async move {
        let mut peak = vec![0u64; procs.len()];
        while !stop.load(Ordering::Relaxed) {
            for (i, (_, pid)) in procs.iter().enumerate() {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let kib = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                    .unwrap_or(0);
                peak[i] = peak[i].max(kib);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        procs.iter().map(|(n, _)| *n).zip(peak).collect()
    })
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let d = Duration::from_secs(args.duration_secs);
    std::fs::create_dir_all(args.out.join("logs"))?;
    let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
    let topic = format!("bench-{stamp}");
    let bin = |name: &str| args.bin_dir.join(name);
    let logs = args.out.join("logs");
    let mut figures = Vec::new();

    // The system under test.
    let stub = spawn(
        "stub",
        {
            let mut c = Command::new(bin("stub"));
            c.args(["--port", &STUB_PORT.to_string()]);
            c
        },
        &logs.join("stub.log"),
    )?;
    let one = spawn(
        "one",
        {
            let mut c = Command::new(bin("one"));
            c.args([
                "--port",
                &ONE_PORT.to_string(),
                "--node-id",
                "1",
                "--topic",
                &topic,
                "--brokers",
                &args.brokers,
            ])
            .env("APP_DATABASE__NAME", format!("bench_one_{stamp}"))
            .env("APP_DATABASE__CREATE_IF_MISSING", "true")
            .env_remove("DATABASE_URL");
            c
        },
        &logs.join("one.log"),
    )?;
    let stub_url = format!("http://127.0.0.1:{STUB_PORT}");
    let two = spawn(
        "two",
        {
            let mut c = Command::new(bin("two"));
            c.args([
                "--admin-port",
                &TWO_PORT.to_string(),
                "--topic",
                &topic,
                "--group-id",
                &format!("bench-{stamp}"),
            ])
            .args(["--brokers", &args.brokers, "--token-url", &stub_url, "--three-url", &stub_url])
            .env("APP_DATABASE__NAME", format!("bench_two_{stamp}"))
            .env("APP_DATABASE__CREATE_IF_MISSING", "true")
            .env_remove("DATABASE_URL");
            c
        },
        &logs.join("two.log"),
    )?;
    let bare = spawn(
        "bare axum",
        {
            let mut c = Command::new(bin("bench"));
            c.args(["bare-server", "--port", &BARE_PORT.to_string()]);
            c
        },
        &logs.join("bare.log"),
    )?;
    wait_http(&format!("{stub_url}/healthz"), "stub").await?;
    wait_http(&format!("http://127.0.0.1:{ONE_PORT}/readyz"), "one").await?;
    wait_http(&format!("http://127.0.0.1:{TWO_PORT}/readyz"), "two").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle_one, idle_two) = (one.rss_kib(), two.rss_kib());
    let stop_rss = Arc::new(AtomicBool::new(false));
    let rss = sample_rss(vec![("one", one.0.id()), ("two", two.0.id())], stop_rss.clone());

    // 1. Closed loop, with the bare-axum and pgbench limits at the same concurrency.
    let one_url = format!("http://127.0.0.1:{ONE_PORT}/one");
    let bare_url = format!("http://127.0.0.1:{BARE_PORT}/one");
    let pg = pgbench_setup(&stamp)?;
    let mut best = 0.0f64;
    for conns in CONNECTIONS {
        eprintln!("bench: POST /one closed loop, {conns} connections");
        let ours = closed_loop(post_op(client(conns)?, one_url.clone()), conns, d).await?;
        let bare_run = closed_loop(post_op(client(conns)?, bare_url.clone()), conns, d).await?;
        let pg_run = pgbench(&pg, conns, args.duration_secs, &args.out)?;
        best = best.max(ours.throughput());
        let load = format!("{conns} conns");
        figures.push(Figure {
            scenario: "1. POST /one (closed loop)".into(),
            load: load.clone(),
            throughput: ours.throughput(),
            latency_ms: Some(percentiles_ms(&ours.latency)),
            limit: Some(("bare axum 201".into(), bare_run.throughput())),
        });
        figures.push(Figure {
            scenario: "   same, against pgbench INSERT".into(),
            load: load.clone(),
            throughput: ours.throughput(),
            latency_ms: None,
            limit: Some(("pgbench single-row INSERT".into(), pg_run.0)),
        });
        figures.push(Figure {
            scenario: "   limit: bare axum 201".into(),
            load: load.clone(),
            throughput: bare_run.throughput(),
            latency_ms: Some(percentiles_ms(&bare_run.latency)),
            limit: None,
        });
        figures.push(Figure {
            scenario: "   limit: pgbench INSERT".into(),
            load,
            throughput: pg_run.0,
            latency_ms: Some(pg_run.1),
            limit: None,
        });
    }

    // 2. and 3. Half the best rate, open loop; end to end from the 201 to the stub.
    let rate = (best / 2.0).max(1.0);
    eprintln!("bench: POST /one open loop at {rate:.0}/s");
    let open = open_loop(post_op(client(256)?, one_url.clone()), rate, d, 256).await?;
    figures.push(Figure {
        scenario: "2. POST /one (open loop, half the best rate)".into(),
        load: format!("{rate:.0}/s"),
        throughput: open.throughput(),
        latency_ms: Some(percentiles_ms(&open.latency)),
        limit: None,
    });
    let e2e = end_to_end(&stub_url, &open.outputs).await?;
    figures.push(Figure {
        scenario: "3. end to end: 201 → stub received".into(),
        load: format!("{rate:.0}/s"),
        throughput: open.throughput(),
        latency_ms: Some(e2e),
        limit: None,
    });

    // 4. Two draining a pre-filled topic; the rdkafka limits on the same messages.
    let drain_topic = format!("bench-drain-{stamp}");
    cruncan_kafka::ensure_topic(&args.brokers, &drain_topic, 3, 1).await?;
    eprintln!("bench: producing {} messages with rdkafka alone", args.drain_messages);
    let produce_tp = produce(&args.brokers, &drain_topic, args.drain_messages).await?;
    eprintln!("bench: consuming them with rdkafka alone");
    let consume_tp = consume(&args.brokers, &drain_topic, args.drain_messages).await?;
    let before: u64 = stub_count(&stub_url).await?;
    eprintln!("bench: two draining {} messages", args.drain_messages);
    let started = Instant::now();
    let drainer = spawn(
        "two (drain)",
        {
            let mut c = Command::new(bin("two"));
            c.args([
                "--admin-port",
                "18182",
                "--topic",
                &drain_topic,
                "--group-id",
                &format!("bench-drain-{stamp}"),
            ])
            .args(["--brokers", &args.brokers, "--token-url", &stub_url, "--three-url", &stub_url])
            .env("APP_DATABASE__NAME", format!("bench_two_{stamp}"))
            .env_remove("DATABASE_URL");
            c
        },
        &logs.join("two-drain.log"),
    )?;
    let drain_rss = sample_rss(vec![("two (drain)", drainer.0.id())], stop_rss.clone());
    let mut first: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let n = stub_count(&stub_url).await? - before;
        if n > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if n as usize >= args.drain_messages {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "two drained only {n} of {} in 10 minutes",
            args.drain_messages
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let total = started.elapsed();
    let steady = first.map_or(total, |f| f.elapsed());
    figures.push(Figure {
        scenario: "4. two draining a pre-filled topic (incl. start-up)".into(),
        load: format!("{} msgs, {} lanes", args.drain_messages, args.drain_concurrency),
        throughput: args.drain_messages as f64 / total.as_secs_f64(),
        latency_ms: None,
        limit: Some(("rdkafka consume alone".into(), consume_tp)),
    });
    figures.push(Figure {
        scenario: "   two draining, from the first delivery".into(),
        load: format!("{} msgs", args.drain_messages),
        throughput: args.drain_messages as f64 / steady.as_secs_f64(),
        latency_ms: None,
        limit: Some(("rdkafka consume alone".into(), consume_tp)),
    });
    figures.push(Figure {
        scenario: "   limit: rdkafka produce alone (idempotent, acks=all)".into(),
        load: format!("{} msgs", args.drain_messages),
        throughput: produce_tp,
        latency_ms: None,
        limit: None,
    });
    figures.push(Figure {
        scenario: "   limit: rdkafka consume alone".into(),
        load: format!("{} msgs", args.drain_messages),
        throughput: consume_tp,
        latency_ms: None,
        limit: None,
    });

    // 5. Memory.
    stop_rss.store(true, Ordering::Relaxed);
    let mut peaks = rss.await?;
    peaks.extend(drain_rss.await?);
    drop(drainer);
    drop((one, two, stub, bare));

    let machine = machine();
    let mut report = format!(
        "# Benchmark report\n\n{}\n\nRun: {stamp} UTC, {}s per step, {} messages drained.\n\n{}\n## Memory (RSS)\n\n| process | idle | peak |\n|---|---:|---:|\n",
        machine,
        args.duration_secs,
        args.drain_messages,
        markdown(&figures)
    );
    for (name, peak) in &peaks {
        let idle = match *name {
            "one" => format!("{:.1} MiB", idle_one as f64 / 1024.0),
            "two" => format!("{:.1} MiB", idle_two as f64 / 1024.0),
            _ => "—".into(),
        };
        report.push_str(&format!("| {name} | {idle} | {:.1} MiB |\n", *peak as f64 / 1024.0));
    }
    report.push_str(KNOBS);
    std::fs::write(args.out.join("report.md"), &report)?;
    std::fs::write(args.out.join("report.csv"), csv(&figures))?;
    println!("{report}");
    eprintln!("bench: wrote {} and report.csv", args.out.join("report.md").display());
    Ok(())
}

/// What each tuning knob does, appended to every report.
const KNOBS: &str = "
## Knobs

| knob | what it does |
|---|---|
| `database.max_connections` (one, two) | pool size; beyond what the cores can serve it only adds queueing |
| `outbox.batch_size` (one) | rows claimed and published per relay transaction |
| `outbox.batch_window_ms` (one) | after a NOTIFY, wait this long so concurrent requests share one relay round |
| `kafka.linger_ms` (one) | producer batching: more records per broker request, at that much added latency |
| `kafka.concurrency` (two) | lanes handling messages at once (per-key order kept); helps when the third party is slow |
| `telemetry.log_filter` (both) | `info` writes a line per request or message; `warn` saves CPU on hot paths |
";

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0.0, |kib| kib as f64 / 1024.0 / 1024.0);
    format!(
        "Machine: {cores} cores ({}), {mem:.0} GiB RAM; everything (load generator included) on this one machine, over loopback.",
        model.unwrap_or_else(|| "unknown CPU".into())
    )
}

async fn stub_count(stub: &str) -> anyhow::Result<u64> {
    let v: serde_json::Value = reqwest::get(format!("{stub}/received/count")).await?.json().await?;
    v["count"].as_u64().context("count")
}

/// Milliseconds from each 201 to the stub's receipt of the same id.
async fn end_to_end(
    stub: &str,
    accepted: &[(String, chrono::DateTime<chrono::Utc>)],
) -> anyhow::Result<[f64; 4]> {
    let wanted: std::collections::HashMap<&str, chrono::DateTime<chrono::Utc>> =
        accepted.iter().map(|(id, at)| (id.as_str(), *at)).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let received: Vec<serde_json::Value> = reqwest::get(format!("{stub}/received")).await?.json().await?;
        let mut samples = Vec::with_capacity(wanted.len());
        for r in &received {
            if let (Some(id), Some(at)) = (r["id"].as_str(), r["received_at"].as_str())
                && let Some(accepted_at) = wanted.get(id)
            {
                let at: chrono::DateTime<chrono::Utc> = at.parse()?;
                samples.push((at - *accepted_at).num_microseconds().unwrap_or(0).max(0) as u64);
            }
        }
        if samples.len() >= wanted.len() {
            return percentiles_of(&samples);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {} requests reached the stub",
            samples.len(),
            wanted.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn produce(brokers: &str, topic: &str, n: usize) -> anyhow::Result<f64> {
    let producer = cruncan_kafka::Producer::new(&cruncan_kafka::ProducerConfig::new(brokers, "bench"))?;
    let started = Instant::now();
    let sent = AtomicU64::new(0);
    let sends = (0..n).map(|i| {
        let id = format!("{:020}", 1_000_000_000 + i);
        let event = cruncan_model::OneRequestEvent {
            request_id: id.clone(),
            user_id: "bench-user".into(),
            prompt: "measure me".into(),
            data: vec![],
            created_at: chrono::Utc::now(),
        };
        let producer = producer.clone();
        let sent = &sent;
        async move {
            let payload = serde_json::to_vec(&event)?;
            producer.send(topic, id.as_bytes(), &payload, &[]).await?;
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

async fn consume(brokers: &str, topic: &str, n: usize) -> anyhow::Result<f64> {
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

struct PgBench {
    db: String,
    script: PathBuf,
}

fn psql(db: &str, sql: &str) -> anyhow::Result<()> {
    let status = Command::new("psql")
        .args(["-q", "-h", "127.0.0.1", "-p", "15432", "-U", "postgres", "-d", db, "-c", sql])
        .env("PGPASSWORD", "postgres")
        .status()
        .context("psql")?;
    anyhow::ensure!(status.success(), "psql failed: {sql}");
    Ok(())
}

/// A database with the same `request` table as one, and a script doing one's single-row INSERT.
fn pgbench_setup(stamp: &str) -> anyhow::Result<PgBench> {
    let db = format!("bench_pg_{stamp}");
    psql("postgres", &format!("CREATE DATABASE {db}"))?;
    psql(
        &db,
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../one/migrations/0001_request.sql"))?,
    )?;
    let script = std::env::temp_dir().join(format!("cruncan-insert-{stamp}.sql"));
    std::fs::write(
        &script,
        "INSERT INTO request (req_id, user_id, created_at, updated_at, req) VALUES (gen_random_uuid()::text, 'bench-user', now(), now(), \
         '{\"user_id\":\"bench-user\",\"prompt\":\"measure me\",\"data\":[{\"key\":\"k\",\"value\":\"v\"}]}'::jsonb);\n",
    )?;
    Ok(PgBench { db, script })
}

/// Runs pgbench; returns (transactions per second, [p50, p90, p99, max] ms from its per-transaction log).
fn pgbench(
    pg: &PgBench,
    clients: usize,
    secs: u64,
    out: &std::path::Path,
) -> anyhow::Result<(f64, [f64; 4])> {
    let prefix = out.join(format!("pgbench-{clients}"));
    let output = Command::new("pgbench")
        .args(["-n", "-h", "127.0.0.1", "-p", "15432", "-U", "postgres"])
        .args(["-c", &clients.to_string(), "-j", &clients.min(2).to_string(), "-T", &secs.to_string()])
        .arg("-f")
        .arg(&pg.script)
        .args(["--log", "--log-prefix"])
        .arg(&prefix)
        .arg(&pg.db)
        .env("PGPASSWORD", "postgres")
        .output()
        .context("running pgbench")?;
    let text = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "pgbench failed: {}{}",
        text,
        String::from_utf8_lossy(&output.stderr)
    );
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps ="))
        .and_then(|l| l.split_whitespace().nth(2)?.parse::<f64>().ok())
        .context("no tps in pgbench output")?;
    // Per-transaction log lines: client_id transaction_no latency_us script_no epoch epoch_us.
    let mut samples = Vec::new();
    for entry in std::fs::read_dir(out)? {
        let path = entry?.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&format!("pgbench-{clients}.")))
        {
            for line in std::fs::read_to_string(&path)?.lines() {
                if let Some(us) = line.split_whitespace().nth(2).and_then(|v| v.parse::<u64>().ok()) {
                    samples.push(us);
                }
            }
            std::fs::remove_file(&path)?;
        }
    }
    Ok((tps, percentiles_of(&samples)?))
}
