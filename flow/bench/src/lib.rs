//! The measuring parts of `make bench`: latency histograms (hdrhistogram), the load generators
//! (closed loop with a fixed number of connections, open loop at a fixed rate), and the report.

pub mod pgbench;

use anyhow::Context as _;
use hdrhistogram::Histogram;
use std::time::{Duration, Instant};

/// One measured figure.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Scenario, e.g. `POST /one closed loop`.
    pub scenario: String,
    /// Connections or rate, e.g. `32 conns`.
    pub load: String,
    /// Operations per second.
    pub throughput: f64,
    /// Latency percentiles in milliseconds: p50, p90, p99, max (`None` when not measured).
    pub latency_ms: Option<[f64; 4]>,
    /// The limit it is compared with, and the limit's throughput.
    pub limit: Option<(String, f64)>,
}

impl Figure {
    /// Throughput as a share of the limit's.
    pub fn ratio(&self) -> Option<f64> {
        self.limit.as_ref().filter(|(_, l)| *l > 0.0).map(|(_, l)| self.throughput / l)
    }
}

/// A latency histogram in microseconds, 1 µs to 60 s, 3 significant figures.
pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 60_000_000, 3).context("creating histogram")
}

/// p50, p90, p99 and max of `h`, in milliseconds.
pub fn percentiles_ms(h: &Histogram<u64>) -> [f64; 4] {
    let ms = |us: u64| us as f64 / 1000.0;
    [ms(h.value_at_quantile(0.5)), ms(h.value_at_quantile(0.9)), ms(h.value_at_quantile(0.99)), ms(h.max())]
}

/// The result of one load run.
#[derive(Debug)]
pub struct Run {
    /// Successful operations.
    pub ok: u64,
    /// Failed operations.
    pub failed: u64,
    /// How long the run took.
    pub elapsed: Duration,
    /// Latencies of the successful operations.
    pub latency: Histogram<u64>,
    /// What each successful operation returned (e.g. request ids), with when it completed.
    pub outputs: Vec<(String, chrono::DateTime<chrono::Utc>)>,
}

impl Run {
    /// Successful operations per second.
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// One operation: returns `Ok(Some(output))` on success.
pub type Op = std::sync::Arc<
    dyn Fn() -> futures::future::BoxFuture<'static, anyhow::Result<Option<String>>> + Send + Sync,
>;

// ANCHOR: closed_loop
/// Closed loop: `connections` workers, each sending its next request as soon as the previous one
/// answered, for `duration`. Throughput is what the system sustains at that concurrency.
pub async fn closed_loop(op: Op, connections: usize, duration: Duration) -> anyhow::Result<Run> {
    let started = Instant::now();
    let deadline = started + duration;
    let workers = (0..connections).map(|_| {
        let op = op.clone();
        tokio::spawn(async move {
            let mut h = histogram()?;
            let (mut ok, mut failed, mut outputs) = (0u64, 0u64, Vec::new());
            while Instant::now() < deadline {
                let t = Instant::now();
                match op().await {
                    Ok(out) => {
                        h.saturating_record(t.elapsed().as_micros() as u64);
                        ok += 1;
                        if let Some(o) = out {
                            outputs.push((o, chrono::Utc::now()));
                        }
                    }
                    Err(_) => failed += 1,
                }
            }
            anyhow::Ok((h, ok, failed, outputs))
        })
    });
    collect(futures::future::join_all(workers).await, started.elapsed())
}
// ANCHOR_END: closed_loop

// ANCHOR: open_loop
/// Open loop: requests start at a fixed `rate` whatever the answers, for `duration`; latency is
/// measured from when a request *should* have started, so a stall is not hidden (no coordinated
/// omission). At most `max_in_flight` requests are outstanding.
pub async fn open_loop(op: Op, rate: f64, duration: Duration, max_in_flight: usize) -> anyhow::Result<Run> {
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let total = (duration.as_secs_f64() * rate) as u64;
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(max_in_flight));
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let scheduled = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let permit = permits.clone().acquire_owned().await?;
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let result = op().await;
            // One sample per request; one histogram for the run (a histogram per request would
            // allocate and zero ~256 KiB each, CPU the measured services need more).
            (scheduled.elapsed().as_micros() as u64, result.map(|o| o.map(|o| (o, chrono::Utc::now()))))
        }));
    }
    let mut run =
        Run { ok: 0, failed: 0, elapsed: Duration::ZERO, latency: histogram()?, outputs: Vec::new() };
    for task in futures::future::join_all(tasks).await {
        match task? {
            (latency_us, Ok(output)) => {
                run.latency.saturating_record(latency_us);
                run.ok += 1;
                run.outputs.extend(output);
            }
            (_, Err(_)) => run.failed += 1,
        }
    }
    run.elapsed = started.elapsed();
    Ok(run)
}
// ANCHOR_END: open_loop

type Part = anyhow::Result<(Histogram<u64>, u64, u64, Vec<(String, chrono::DateTime<chrono::Utc>)>)>;

fn collect(parts: Vec<Result<Part, tokio::task::JoinError>>, elapsed: Duration) -> anyhow::Result<Run> {
    let mut run = Run { ok: 0, failed: 0, elapsed, latency: histogram()?, outputs: Vec::new() };
    for part in parts {
        let (h, ok, failed, outputs) = part??;
        run.latency.add(&h).context("merging histograms")?;
        run.ok += ok;
        run.failed += failed;
        run.outputs.extend(outputs);
    }
    Ok(run)
}

/// The report as a Markdown table.
pub fn markdown(figures: &[Figure]) -> String {
    let mut out = String::from(
        "| scenario | load | throughput /s | p50 ms | p90 ms | p99 ms | max ms | limit | limit /s | ratio |\n|---|---|---:|---:|---:|---:|---:|---|---:|---:|\n",
    );
    for f in figures {
        let lat = f.latency_ms.map_or_else(
            || " |  |  | ".to_owned(),
            |[p50, p90, p99, max]| format!("{} | {} | {} | {} ", ms(p50), ms(p90), ms(p99), ms(max)),
        );
        let (limit, limit_tp) =
            f.limit.as_ref().map_or((String::new(), String::new()), |(n, t)| (n.clone(), format!("{t:.0}")));
        let ratio = f.ratio().map_or(String::new(), |r| format!("{:.0}%", r * 100.0));
        out.push_str(&format!(
            "| {} | {} | {:.0} | {}| {} | {} | {} |\n",
            f.scenario, f.load, f.throughput, lat, limit, limit_tp, ratio
        ));
    }
    out
}

/// Milliseconds as a reader wants them: two decimals below 100 ms, whole milliseconds above
/// (seconds of queueing do not need microseconds, and the table stays inside the book's column).
fn ms(v: f64) -> String {
    if v < 100.0 { format!("{v:.2}") } else { format!("{v:.0}") }
}

/// The report as CSV.
pub fn csv(figures: &[Figure]) -> String {
    let mut out =
        String::from("scenario,load,throughput_per_s,p50_ms,p90_ms,p99_ms,max_ms,limit,limit_per_s,ratio\n");
    for f in figures {
        let [p50, p90, p99, max] =
            f.latency_ms.map_or([String::new(), String::new(), String::new(), String::new()], |l| {
                l.map(|v| format!("{v:.3}"))
            });
        let (limit, limit_tp) =
            f.limit.as_ref().map_or((String::new(), String::new()), |(n, t)| (n.clone(), format!("{t:.1}")));
        let ratio = f.ratio().map_or(String::new(), |r| format!("{r:.3}"));
        out.push_str(&format!(
            "{},{},{:.1},{p50},{p90},{p99},{max},{limit},{limit_tp},{ratio}\n",
            f.scenario, f.load, f.throughput
        ));
    }
    out
}

/// Percentiles (ms) of a list of microsecond samples.
pub fn percentiles_of(samples_us: &[u64]) -> anyhow::Result<[f64; 4]> {
    let mut h = histogram()?;
    for s in samples_us {
        h.saturating_record(*s);
    }
    Ok(percentiles_ms(&h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn sleeper(ms: u64, counter: Arc<AtomicU64>) -> Op {
        Arc::new(move || {
            let c = counter.clone();
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(Some(c.fetch_add(1, Ordering::SeqCst).to_string()))
            })
        })
    }

    #[tokio::test]
    async fn closed_loop_throughput_follows_concurrency() {
        let n = Arc::new(AtomicU64::new(0));
        let run = closed_loop(sleeper(10, n.clone()), 4, Duration::from_millis(500)).await.unwrap();
        // 4 workers × ~50 ops of 10 ms each: about 400 ops/s.
        assert!(run.ok >= 120 && run.ok <= 220, "ok = {}", run.ok);
        assert_eq!(run.ok, n.load(Ordering::SeqCst));
        let [p50, _, _, max] = percentiles_ms(&run.latency);
        assert!(p50 >= 10.0 && max < 100.0, "p50 {p50} max {max}");
        assert_eq!(run.outputs.len() as u64, run.ok);
    }

    #[tokio::test]
    async fn open_loop_keeps_the_rate_and_counts_queueing() {
        let n = Arc::new(AtomicU64::new(0));
        // 200/s for 0.5 s = 100 requests; 1 in flight at a time and 10 ms each → queueing.
        let run = open_loop(sleeper(10, n), 200.0, Duration::from_millis(500), 1).await.unwrap();
        assert_eq!(run.ok, 100);
        let [_, _, p99, _] = percentiles_ms(&run.latency);
        assert!(p99 > 100.0, "queueing delay must show in latency, p99 = {p99}");
    }

    #[test]
    fn report_rows_and_ratio() {
        let f = Figure {
            scenario: "POST /one".into(),
            load: "8 conns".into(),
            throughput: 500.0,
            latency_ms: Some([1.0, 2.0, 3.0, 4.0]),
            limit: Some(("bare axum".into(), 2000.0)),
        };
        assert_eq!(f.ratio(), Some(0.25));
        assert!(
            markdown(std::slice::from_ref(&f)).contains(
                "| POST /one | 8 conns | 500 | 1.00 | 2.00 | 3.00 | 4.00 | bare axum | 2000 | 25% |"
            )
        );
        assert!(
            csv(&[f])
                .lines()
                .nth(1)
                .unwrap()
                .starts_with("POST /one,8 conns,500.0,1.000,2.000,3.000,4.000,bare axum,2000.0,0.250")
        );
    }
}
