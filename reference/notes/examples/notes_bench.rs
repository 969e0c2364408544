//! `make bench-notes` (`cargo run --release --example notes_bench`): the gateway's fan-out under
//! load, beside its limit. It starts the notes system in a child process (so the gateway's
//! memory is measured alone), signs in `--clients` users, opens one WebSocket each, then
//! publishes note events addressed to all of them at `--rate` per second for `--seconds`, and
//! reports the event → socket latency (publish to JetStream until the client read the frame),
//! the gateway's RSS per connected client, and, as the limit, the same fan-out through plain
//! NATS core subscriptions (no JetStream, no gateway). Bounded: loopback only, fixed counts.
//! Report: stdout and target/notes-bench/report.md.

use anyhow::Context as _;
use clap::Parser;
use futures::{SinkExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use std::io::{BufRead as _, Write as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Parser)]
struct Args {
    /// Connected clients (one user each).
    #[arg(long, default_value_t = 500)]
    clients: usize,
    /// Events per second (each addressed to every client).
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// Extra clients that never read (a 4 KiB receive buffer): the gateway must cut them and
    /// keep its memory bounded while the others carry on.
    #[arg(long, default_value_t = 0)]
    slow: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Internal: run the system and print its addresses (the parent measures this process).
    #[arg(long, hide = true)]
    serve: bool,
}

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).context("VmRSS value")?.parse()?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.serve {
        return serve().await;
    }
    anyhow::ensure!(args.clients > 0 && args.rate > 0 && args.seconds > 0, "counts must be positive");
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .arg("--serve")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting the system")?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().context("child stdout")?).read_line(&mut line)?;
    let info: serde_json::Value = serde_json::from_str(&line).context("reading the child's addresses")?;
    let result = run(&args, &info, child.id()).await;
    drop(child.stdin.take()); // the child stops when its stdin closes
    let _ = child.wait();
    let report = result?;
    println!("{report}");
    let dir = cruncan_config::workspace_dir().join("target/notes-bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("report.md"), &report)?;
    Ok(())
}

/// The child: the whole system on free ports, fresh databases and an own stream.
async fn serve() -> anyhow::Result<()> {
    let mut s = notes::Settings::load(&notes::Cli::parse_from(["notes"]))?;
    let base = cruncan_db::local_test_settings()?;
    s.database = base.clone();
    s.users.database = cruncan_db::create_test_database(&base).await?.name;
    s.notes.database = cruncan_db::create_test_database(&base).await?.name;
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    s.nats.stream = format!("NOTES_BENCH_{tag}");
    s.nats.subject_prefix = format!("bench{tag}.");
    s.nats.max_age_hours = 1;
    s.users.port = 0;
    s.notes.port = 0;
    s.gateway.port = 0;
    s.gateway.grpc_port = 0;
    let app = notes::build(s.clone()).await?;
    println!(
        "{}",
        serde_json::json!({
            "users": format!("http://{}", app.users_addr()?), "gateway": app.gateway_addr()?.to_string(),
            "stream": s.nats.stream, "subject": s.nats.subject("note.updated"), "nats": s.nats.url,
        })
    );
    std::io::stdout().flush()?;
    let stop = cruncan_shutdown::Shutdown::new();
    let trigger = stop.clone();
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = std::io::stdin().read_line(&mut sink); // EOF: the parent is done
        trigger.trigger();
    });
    app.run_until_stopped(stop).await
}

struct Measured {
    hist: Histogram<u64>,
    delivered: u64,
}

/// Publishes `count` events at `rate`, each stamped with its publish time in the title.
async fn publish(
    js: &async_nats::jetstream::Context,
    subject: &str,
    audience: &[String],
    rate: u64,
    count: u64,
) -> anyhow::Result<()> {
    let owner = &audience[0];
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    let mut acks = Vec::new();
    for _ in 0..count {
        tick.tick().await;
        let stamp = now_micros();
        let event = serde_json::json!({
            "event_id": uuid::Uuid::now_v7(), "kind": "updated", "by": owner, "at": chrono::Utc::now(), "audience": audience,
            "note": {"id": uuid::Uuid::now_v7(), "owner_id": owner, "title": format!("t={stamp}"), "body": "x".repeat(100),
                     "version": 2, "shared_with": [], "updated_at": chrono::Utc::now()},
        });
        acks.push(js.publish(subject.to_owned(), serde_json::to_vec(&event)?.into()).await?);
    }
    for a in acks {
        a.await?;
    }
    Ok(())
}

fn stamp_of(text: &str) -> Option<u64> {
    let at = text.find("\"title\":\"t=")? + 11;
    text[at..].split('"').next()?.parse().ok()
}

async fn run(args: &Args, info: &serde_json::Value, pid: u32) -> anyhow::Result<String> {
    let str_of = |k: &str| info[k].as_str().map(str::to_owned).context("child info");
    let (users_url, gateway, stream, subject, nats_url) =
        (str_of("users")?, str_of("gateway")?, str_of("stream")?, str_of("subject")?, str_of("nats")?);
    let http = reqwest::Client::new();
    eprintln!("bench: signing in {} users", args.clients + args.slow);
    let mut users = Vec::new();
    for i in 0..args.clients + args.slow {
        let name = format!("b{i}");
        let post = |path: &'static str| {
            let request = http.post(format!("{users_url}/{path}")).json(&serde_json::json!({"name": name}));
            async move { request.send().await?.error_for_status()?.json::<serde_json::Value>().await }
        };
        let (u, s) = (post("users").await?, post("sessions").await?);
        users.push((
            u["id"].as_str().context("id")?.to_owned(),
            s["token"].as_str().context("token")?.to_owned(),
        ));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = rss_kib(pid)?;
    eprintln!("bench: connecting {} WebSockets", args.clients);
    let expected = args.rate * args.seconds;
    let measured =
        Arc::new(Mutex::new(Measured { hist: Histogram::new_with_bounds(1, 60_000_000, 3)?, delivered: 0 }));
    let mut readers = Vec::new();
    let (readers_users, slow_users) = users.split_at(args.clients);
    let mut parked = Vec::new();
    for (_, token) in slow_users {
        let sock = tokio::net::TcpSocket::new_v4()?;
        sock.set_recv_buffer_size(4096)?;
        let tcp = sock.connect(gateway.parse()?).await?;
        let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{gateway}/ws"), tcp).await?;
        ws.send(Message::Text(serde_json::json!({"token": token}).to_string().into())).await?;
        ws.next().await.context("no hello")??;
        parked.push(ws); // never read again
    }
    for (_, token) in readers_users {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{gateway}/ws")).await?;
        ws.send(Message::Text(serde_json::json!({"token": token}).to_string().into())).await?;
        let hello = ws.next().await.context("no hello")??;
        anyhow::ensure!(hello.to_text()?.contains("hello"), "unexpected first frame {hello:?}");
        let measured = Arc::clone(&measured);
        readers.push(tokio::spawn(async move {
            let mut got = 0;
            let mut local = Vec::with_capacity(expected as usize);
            while got < expected {
                match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) => {
                        if let Some(stamp) = stamp_of(&t) {
                            local.push(now_micros().saturating_sub(stamp).max(1));
                            got += 1;
                        }
                    }
                    Ok(Some(Ok(_))) => {}
                    _ => break,
                }
            }
            let mut m = measured.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for v in local {
                let _ = m.hist.record(v);
            }
            m.delivered += got;
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_connected = rss_kib(pid)?;
    let audience: Vec<String> = users.iter().map(|u| u.0.clone()).collect();
    let nats = async_nats::connect(&nats_url).await?;
    let js = async_nats::jetstream::new(nats.clone());
    eprintln!("bench: {} events/s for {} s to {} sockets", args.rate, args.seconds, args.clients);
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(rss_connected));
    let sampler = {
        let peak = Arc::clone(&peak);
        tokio::spawn(async move {
            loop {
                if let Ok(r) = rss_kib(pid) {
                    peak.fetch_max(r, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    publish(&js, &subject, &audience, args.rate, expected).await?;
    for r in readers {
        r.await?;
    }
    sampler.abort();
    drop(parked);
    let stats: serde_json::Value = http.get(format!("http://{gateway}/stats")).send().await?.json().await?;
    let gw = Arc::try_unwrap(measured)
        .map_err(|_| anyhow::anyhow!("readers still running"))?
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let _ = js.delete_stream(&stream).await;

    eprintln!("bench: the limit — NATS core fan-out to {} subscriptions", args.clients);
    let core = core_fanout(&nats_url, args.clients, args.rate, expected).await?;

    let connected = args.clients + args.slow;
    let per_client = |rss: u64| (rss.saturating_sub(rss_before) as f64) / connected as f64;
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    Ok(format!(
        "## notes gateway fan-out ({} clients, {} events/s, {} s)\n\n\
         Machine: {} × {cpu}; {}\n\n\
         | path | delivered | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|\n\
         | JetStream → gateway → WebSocket | {}/{} | {:.1} | {:.1} | {:.1} |\n\
         | NATS core fan-out alone (the limit) | {}/{} | {:.1} | {:.1} | {:.1} |\n\n\
         Gateway RSS: {} KiB before the clients, {} KiB with {} connected, {} KiB peak under load →\n\
         {:.1} KiB per connected client, {:.1} KiB per client at peak.\n\
         Clients that never read: {}; cut by the gateway: {}.\n",
        args.clients,
        args.rate,
        args.seconds,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        gw.delivered,
        expected * args.clients as u64,
        ms(&gw.hist, 0.5),
        ms(&gw.hist, 0.99),
        gw.hist.max() as f64 / 1000.0,
        core.delivered,
        expected * args.clients as u64,
        ms(&core.hist, 0.5),
        ms(&core.hist, 0.99),
        core.hist.max() as f64 / 1000.0,
        rss_before,
        rss_connected,
        connected,
        peak,
        per_client(rss_connected),
        per_client(peak),
        args.slow,
        stats["slow_dropped"],
    ))
}

/// The same fan-out with nothing but NATS core: `clients` subscriptions (over `clients / 10`
/// connections), `count` messages at `rate`.
async fn core_fanout(url: &str, clients: usize, rate: u64, count: u64) -> anyhow::Result<Measured> {
    let subject = format!("bench.core.{}", uuid::Uuid::new_v4().simple());
    let measured =
        Arc::new(Mutex::new(Measured { hist: Histogram::new_with_bounds(1, 60_000_000, 3)?, delivered: 0 }));
    let mut readers = Vec::new();
    let mut conns = Vec::new();
    for i in 0..clients {
        if i % 10 == 0 {
            conns.push(async_nats::connect(url).await?);
        }
        let conn = conns.last().context("a connection")?;
        let mut sub = conn.subscribe(subject.clone()).await?;
        let measured = Arc::clone(&measured);
        readers.push(tokio::spawn(async move {
            let mut local = Vec::with_capacity(count as usize);
            while (local.len() as u64) < count {
                match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
                    Ok(Some(m)) => {
                        let stamp: u64 =
                            std::str::from_utf8(&m.payload).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
                        local.push(now_micros().saturating_sub(stamp).max(1));
                    }
                    _ => break,
                }
            }
            let mut m = measured.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            m.delivered += local.len() as u64;
            for v in local {
                let _ = m.hist.record(v);
            }
        }));
    }
    for c in &conns {
        c.flush().await?;
    }
    let publisher = async_nats::connect(url).await?;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    for _ in 0..count {
        tick.tick().await;
        publisher.publish(subject.clone(), now_micros().to_string().into()).await?;
    }
    publisher.flush().await?;
    for r in readers {
        r.await?;
    }
    Arc::try_unwrap(measured)
        .map_err(|_| anyhow::anyhow!("readers still running"))
        .map(|m| m.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner))
}
