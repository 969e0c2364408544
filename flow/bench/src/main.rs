//! `bench`: runs the benchmark scenarios against release builds of one, two and the stub, and
//! beside them the limits (pgbench running one's transaction, a bare axum handler, rdkafka alone,
//! the stub's own HTTP rate). `make bench` runs it; `make bench-quick` in about two minutes.
//!
//! Why this file is long (~450 lines): `run` is the benchmark's script, the scenarios in the order
//! they run, sharing the processes they start and the figures they collect; read top to bottom it
//! is one story, and cutting it into files would make a reader jump between them to follow one
//! run. The pieces that stand alone live in `e2e`, `limits`, `procs` and `report`.

mod e2e;
mod limits;
mod procs;
mod report;

use clap::Parser;
use flow_bench::{Figure, Op, closed_loop, open_loop, percentiles_ms};
use procs::{Proc, sample_rss, wait_http};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(name = "bench", about = "Measure the flow beside the machine's limits")]
enum Cli {
    /// Run every scenario and write the report.
    Run(RunArgs),
    /// Closed-loop POST /one load against a running one, for profiling it (`perf record -p PID`
    /// while this runs); prints throughput and latency percentiles.
    Load {
        /// The endpoint.
        #[arg(long, default_value = "http://127.0.0.1:8080/one")]
        url: String,
        /// Concurrent connections.
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Seconds of load (at most 120).
        #[arg(long, default_value_t = 10)]
        secs: u64,
    },
    /// A bare axum server answering POST /one with 201 (the HTTP ceiling).
    BareServer {
        /// Port to listen on.
        #[arg(long)]
        port: u16,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// About two minutes: 8 and 32 connections only, 3 s steps, 10,000 messages drained.
    #[arg(long)]
    quick: bool,
    /// Seconds per load step (default 8, quick 3).
    #[arg(long)]
    duration_secs: Option<u64>,
    /// Messages two drains in scenario 4 (default 50,000, quick 10,000).
    #[arg(long)]
    drain_messages: Option<usize>,
    /// Lanes of the two that drains the pre-filled topic (passed as its `--concurrency`).
    #[arg(long, default_value_t = 16)]
    drain_concurrency: usize,
    /// Rate (requests/s) of the open-loop and end-to-end scenarios instead of half the best
    /// closed-loop rate (the target's), to see what the whole pipeline does at a rate it can carry.
    #[arg(long)]
    e2e_rate: Option<f64>,
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

const ONE_PORT: u16 = 18180;
const TWO_PORT: u16 = 18181;
const DRAIN_PORT: u16 = 18182;
const STUB_PORT: u16 = 18190;
const BARE_PORT: u16 = 18199;
/// The end-to-end latency target (p99, ms) of issue #12.
const E2E_BOUND_MS: f64 = 50.0;
/// The first rate of the end-to-end capacity search (requests/s).
const LADDER_START: f64 = 500.0;

fn main() -> anyhow::Result<()> {
    match Cli::parse() {
        Cli::BareServer { port } => limits::bare_server(port),
        Cli::Load { url, connections, secs } => {
            tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async move {
                let d = Duration::from_secs(secs.min(120));
                let run = closed_loop(post_op(client(connections)?, url), connections, d).await?;
                let [p50, p90, p99, max] = percentiles_ms(&run.latency);
                println!(
                    "{:.0} req/s ok {} errors {} p50 {p50:.2} ms p90 {p90:.2} p99 {p99:.2} max {max:.2}",
                    run.throughput(),
                    run.ok,
                    run.failed
                );
                Ok(())
            })
        }
        Cli::Run(args) => {
            tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(args))
        }
    }
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

/// Service two as the bench starts it: its own database, the stub as token server and third party.
fn two_command(
    bin: &std::path::Path,
    args: &RunArgs,
    port: u16,
    topic: &str,
    group: &str,
    db: &str,
) -> Command {
    let stub_url = format!("http://127.0.0.1:{STUB_PORT}");
    let mut c = Command::new(bin);
    let config = cruncan_config::workspace_dir().join("flow/two/config");
    c.arg("--config-dir").arg(config);
    c.args(["--admin-port", &port.to_string(), "--topic", topic, "--group-id", group])
        .args(["--brokers", &args.brokers, "--token-url", &stub_url, "--three-url", &stub_url])
        .env("APP_DATABASE__NAME", db)
        .env("APP_DATABASE__CREATE_IF_MISSING", "true")
        .env_remove("DATABASE_URL");
    c
}

/// Waits until the stub has received `n` calls (two caught up), `secs` at most.
async fn wait_stub_count(stub: &str, n: u64, secs: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let got = e2e::stub_count(stub).await?;
        if got >= n {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the stub has {got} of {n} calls after {secs} s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[allow(clippy::too_many_lines)] // one scenario after the other, in the order of the report
async fn run(args: RunArgs) -> anyhow::Result<()> {
    let mode = if args.quick { "quick" } else { "full" };
    let d = Duration::from_secs(args.duration_secs.unwrap_or(if args.quick { 3 } else { 8 }));
    let drain_messages = args.drain_messages.unwrap_or(if args.quick { 10_000 } else { 50_000 });
    let connections: &[usize] = if args.quick { &[8, 32] } else { &[1, 8, 32, 128] };
    std::fs::create_dir_all(args.out.join("logs"))?;
    let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
    let topic = format!("bench-{stamp}");
    let bin = |name: &str| args.bin_dir.join(name);
    let logs = args.out.join("logs");
    let postgres = limits::pg_durability()?;
    // Test databases older than ten minutes too: `make test` leaves ~1,000 that autovacuum visits
    // every minute, which cost c8 a quarter and the end-to-end capacity half in quick runs.
    let tests = cruncan_db::drop_test_databases_older_than(
        &cruncan_db::local_test_settings()?,
        Duration::from_secs(600),
    )
    .await?;
    let (runs, databases) = limits::drop_earlier_runs()?;
    eprintln!("bench: dropped {tests} test and {runs} earlier bench databases; the server has {databases}");
    if databases > 100 {
        eprintln!(
            "bench: tests ran in the last ten minutes: autovacuum visiting their databases takes CPU from this run"
        );
    }
    let mut figures = Vec::new();

    // The system under test.
    let stub = Proc::spawn(
        "stub",
        {
            let mut c = Command::new(bin("stub"));
            // The stub stands in for a third party on another machine: its request log and spans
            // would take CPU from the services measured here (a log line per call), so it logs
            // warnings only. one and two keep their default telemetry.
            c.args(["--port", &STUB_PORT.to_string()]).env("RUST_LOG", "warn");
            c
        },
        &logs.join("stub.log"),
    )?;
    let one = Proc::spawn(
        "one",
        {
            let mut c = Command::new(bin("one"));
            c.arg("--config-dir").arg(cruncan_config::workspace_dir().join("flow/one/config"));
            c.args(["--port", &ONE_PORT.to_string(), "--node-id", "1", "--topic", &topic])
                .args(["--brokers", &args.brokers])
                .env("APP_DATABASE__NAME", format!("bench_one_{stamp}"))
                .env("APP_DATABASE__CREATE_IF_MISSING", "true")
                .env_remove("DATABASE_URL");
            c
        },
        &logs.join("one.log"),
    )?;
    let stub_url = format!("http://127.0.0.1:{STUB_PORT}");
    let bare = Proc::spawn(
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
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_one = one.rss_kib();
    let stop_rss = Arc::new(AtomicBool::new(false));
    let rss = sample_rss(vec![("one", one.pid())], stop_rss.clone());

    // 1. Closed loop, beside pgbench running one's transaction and the bare-axum ceiling.
    let one_url = format!("http://127.0.0.1:{ONE_PORT}/one");
    let bare_url = format!("http://127.0.0.1:{BARE_PORT}/one");
    let pg = limits::pgbench_setup(&stamp)?;
    let (mut best, mut accepted) = (0.0f64, 0u64);
    let (mut one_rps, mut own_tx) = (std::collections::HashMap::new(), std::collections::HashMap::new());
    for &conns in connections {
        eprintln!("bench: POST /one closed loop, {conns} connections");
        let ours = closed_loop(post_op(client(conns)?, one_url.clone()), conns, d).await?;
        accepted += ours.ok;
        let pg_run = limits::pgbench(&pg, conns, d.as_secs(), &args.out)?;
        let bare_run = closed_loop(post_op(client(conns)?, bare_url.clone()), conns, d).await?;
        best = best.max(ours.throughput());
        one_rps.insert(conns, ours.throughput());
        own_tx.insert(conns, pg_run.0);
        let load = format!("{conns} conns");
        figures.push(Figure {
            scenario: "1. POST /one (closed loop)".into(),
            load: load.clone(),
            throughput: ours.throughput(),
            latency_ms: Some(percentiles_ms(&ours.latency)),
            limit: Some(("pgbench: one's transaction".into(), pg_run.0)),
        });
        figures.push(Figure {
            scenario: "   limit: pgbench, one's transaction".into(),
            load: load.clone(),
            throughput: pg_run.0,
            latency_ms: Some(pg_run.1),
            limit: None,
        });
        figures.push(Figure {
            scenario: "   limit: bare axum 201".into(),
            load,
            throughput: bare_run.throughput(),
            latency_ms: Some(percentiles_ms(&bare_run.latency)),
            limit: None,
        });
    }

    // two starts only now: on this 2-core machine a consumer running beside scenario 1 would take
    // CPU from one and PostgreSQL that pgbench, its limit, has to itself. In production they run on
    // different machines. It first drains the backlog scenario 1 left.
    let two = Proc::spawn(
        "two",
        two_command(
            &bin("two"),
            &args,
            TWO_PORT,
            &topic,
            &format!("bench-{stamp}"),
            &format!("bench_two_{stamp}"),
        ),
        &logs.join("two.log"),
    )?;
    wait_http(&format!("http://127.0.0.1:{TWO_PORT}/readyz"), "two").await?;
    let idle_two = two.rss_kib();
    let two_rss = sample_rss(vec![("two", two.pid())], stop_rss.clone());

    // 2. and 3. Half the best rate, open loop, once two has caught up; end to end, by stage.
    eprintln!("bench: waiting for two to deliver the {accepted} closed-loop requests");
    wait_stub_count(&stub_url, accepted, 300).await?;
    let rate = args.e2e_rate.unwrap_or(best / 2.0).max(1.0);
    let rate_label = if args.e2e_rate.is_some() { "the rate asked" } else { "half the best rate" };
    let (seen, watcher) = e2e::watch_topic(&args.brokers, &topic).await?;
    eprintln!("bench: POST /one open loop at {rate:.0}/s");
    let count_before = e2e::stub_count(&stub_url).await?;
    let open = open_loop(post_op(client(256)?, one_url.clone()), rate, d, 256).await?;
    figures.push(Figure {
        scenario: format!("2. POST /one (open loop, {rate_label})"),
        load: format!("{rate:.0}/s"),
        throughput: open.throughput(),
        latency_ms: Some(percentiles_ms(&open.latency)),
        limit: None,
    });
    let e2e = e2e::end_to_end(&stub_url, count_before, &open.outputs, &seen).await?;
    figures.push(Figure {
        scenario: "3. end to end: 201 → stub received".into(),
        load: format!("{rate:.0}/s"),
        throughput: open.throughput(),
        latency_ms: Some(e2e.total),
        limit: None,
    });
    // 3b. What the whole pipeline carries within the latency target, from 500/s up in 1.5× steps.
    let ladder_step = d.min(Duration::from_secs(5));
    let (ladder, missed) = e2e::highest_rate_within(
        post_op(client(256)?, one_url.clone()),
        &stub_url,
        &seen,
        (LADDER_START, rate),
        ladder_step,
        E2E_BOUND_MS,
    )
    .await?;
    watcher.abort();
    for step in &ladder {
        figures.push(Figure {
            scenario: format!("3b. end to end, rising rate ({} s steps)", ladder_step.as_secs()),
            load: format!("{:.0}/s", step.rate),
            throughput: step.completed,
            latency_ms: step.breakdown.as_ref().map(|b| b.total),
            limit: None,
        });
    }
    let within = ladder.iter().filter(|s| s.held(E2E_BOUND_MS)).map(|s| s.rate).fold(0.0, f64::max);

    // 4. Two draining a pre-filled topic; rdkafka alone and the stub's HTTP rate as limits.
    let drain_topic = format!("bench-drain-{stamp}");
    cruncan_kafka::ensure_topic(&args.brokers, &drain_topic, 3, 1).await?;
    eprintln!("bench: producing {drain_messages} messages with rdkafka alone");
    let produce_tp = limits::produce(&args.brokers, &drain_topic, drain_messages).await?;
    eprintln!("bench: consuming them with rdkafka alone");
    let consume_tp = limits::consume(&args.brokers, &drain_topic, drain_messages).await?;
    let before = e2e::stub_count(&stub_url).await?;
    eprintln!("bench: two draining {drain_messages} messages with {} lanes", args.drain_concurrency);
    let started = Instant::now();
    let mut drain_cmd = two_command(
        &bin("two"),
        &args,
        DRAIN_PORT,
        &drain_topic,
        &format!("bench-drain-{stamp}"),
        &format!("bench_two_{stamp}"),
    );
    drain_cmd.args(["--concurrency", &args.drain_concurrency.to_string()]);
    let drainer = Proc::spawn("two (drain)", drain_cmd, &logs.join("two-drain.log"))?;
    let drain_rss = sample_rss(vec![("two (drain)", drainer.pid())], stop_rss.clone());
    let mut first: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let n = e2e::stub_count(&stub_url).await? - before;
        if n > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if n as usize >= drain_messages {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "two drained only {n} of {drain_messages} in 10 minutes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = started.elapsed();
    let steady = first.map_or(total, |f| f.elapsed());
    let drain_mps = drain_messages as f64 / steady.as_secs_f64();
    stop_rss.store(true, Ordering::Relaxed);
    drop(drainer);
    eprintln!("bench: the stub's HTTP rate at {} connections", args.drain_concurrency);
    let http = limits::stub_http_limit(&stub_url, args.drain_concurrency, d).await?;
    let load = format!("{drain_messages} msgs, {} lanes", args.drain_concurrency);
    figures.push(Figure {
        scenario: "4. two draining, from the first delivery".into(),
        load: load.clone(),
        throughput: drain_mps,
        latency_ms: None,
        limit: Some(("stub HTTP alone".into(), http.throughput())),
    });
    figures.push(Figure {
        scenario: "   same, including two's start-up".into(),
        load: load.clone(),
        throughput: drain_messages as f64 / total.as_secs_f64(),
        latency_ms: None,
        limit: Some(("rdkafka consume alone".into(), consume_tp)),
    });
    figures.push(Figure {
        scenario: "   limit: POST /three to the stub alone".into(),
        load: format!("{} conns", args.drain_concurrency),
        throughput: http.throughput(),
        latency_ms: Some(percentiles_ms(&http.latency)),
        limit: None,
    });
    figures.push(Figure {
        scenario: "   limit: rdkafka consume alone".into(),
        load: format!("{drain_messages} msgs"),
        throughput: consume_tp,
        latency_ms: None,
        limit: None,
    });
    figures.push(Figure {
        scenario: "   limit: rdkafka produce alone (idempotent, acks=all)".into(),
        load: format!("{drain_messages} msgs"),
        throughput: produce_tp,
        latency_ms: None,
        limit: None,
    });

    // 5. Memory.
    let mut peaks = rss.await?;
    peaks.extend(two_rss.await?);
    peaks.extend(drain_rss.await?);
    drop((one, two, stub, bare));
    let mib = |kib: u64| kib as f64 / 1024.0;
    let peak_of = |name: &str| {
        peaks.iter().filter(|(n, _)| n.starts_with(name)).map(|(_, p)| mib(*p)).fold(0.0, f64::max)
    };
    let memory: Vec<(String, f64, f64)> = peaks
        .iter()
        .map(|(name, peak)| {
            let idle = match *name {
                "one" => mib(idle_one),
                "two" => mib(idle_two),
                _ => 0.0,
            };
            ((*name).to_owned(), idle, mib(*peak))
        })
        .collect();

    let get = |m: &std::collections::HashMap<usize, f64>, c: usize| m.get(&c).copied().unwrap_or(0.0);
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let summary = report::Summary {
        mode,
        postgres: postgres.clone(),
        one_rps_c8: get(&one_rps, 8),
        one_rps_c32: get(&one_rps, 32),
        own_tx_rps_c8: get(&own_tx, 8),
        own_tx_rps_c32: get(&own_tx, 32),
        one_vs_own_tx_c8: ratio(get(&one_rps, 8), get(&own_tx, 8)),
        one_vs_own_tx_c32: ratio(get(&one_rps, 32), get(&own_tx, 32)),
        e2e_rate: rate,
        e2e_rate_asked: args.e2e_rate.is_some(),
        e2e_p50_ms: e2e.total[0],
        e2e_p99_ms: e2e.total[2],
        e2e_p99_relay_ms: e2e.relay[2],
        e2e_p99_broker_ms: e2e.broker[2],
        e2e_p99_two_ms: e2e.two[2],
        e2e_bound_ms: E2E_BOUND_MS,
        e2e_rate_within_bound: within,
        e2e_bound_missed: missed,
        e2e_steps: ladder
            .iter()
            .map(|s| report::E2eStep {
                rate: s.rate,
                completed: s.completed,
                failed: s.failed,
                p99_ms: s.breakdown.as_ref().map(|b| b.total[2]),
            })
            .collect(),
        two_drain_mps: drain_mps,
        two_lanes: args.drain_concurrency,
        two_http_limit_mps: http.throughput(),
        rdkafka_consume_mps: consume_tp,
        one_rss_peak_mib: peak_of("one"),
        two_rss_peak_mib: peak_of("two"),
    };
    let header = format!(
        "{}\n\nRun: {stamp} UTC, {mode} mode, {}s per load step ({}s per step of the end-to-end search), {drain_messages} messages drained; PostgreSQL {postgres}, {databases} databases on the server.",
        machine(),
        d.as_secs(),
        ladder_step.as_secs()
    );
    let text = report::write(&args.out, &header, &figures, &memory, &e2e, &summary)?;
    println!("{text}");
    eprintln!("bench: wrote {} (and report.csv, summary.json)", args.out.join("report.md").display());
    Ok(())
}

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
