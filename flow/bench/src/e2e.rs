//! End to end, from each `201` to the stub receiving the same id, split into where the time
//! goes: the relay (201 → the producer's timestamp on the record), the producer and the broker
//! (→ a bystander consumer sees the record), two and the third party (→ the stub has it).

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use flow_bench::{Op, open_loop, percentiles_of};
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where each record was seen by a consumer of its own group: key → (record timestamp, seen at).
pub type Seen = Arc<Mutex<HashMap<String, (DateTime<Utc>, DateTime<Utc>)>>>;

/// A consumer in a group of its own that records when each key became visible; stops when the
/// returned handle is aborted.
pub async fn watch_topic(brokers: &str, topic: &str) -> anyhow::Result<(Seen, tokio::task::JoinHandle<()>)> {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("bench-watch-{topic}"))
        .set("auto.offset.reset", "latest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .create()?;
    consumer.subscribe(&[topic])?;
    // Wait for the assignment, so the records of the measured run are not missed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while consumer.assignment()?.count() == 0 {
        let _ = tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await;
        anyhow::ensure!(Instant::now() < deadline, "the watching consumer got no partitions");
    }
    let seen: Seen = Arc::default();
    let record = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        while let Ok(m) = consumer.recv().await {
            let now = Utc::now();
            let (Some(key), Some(ms)) = (m.key(), m.timestamp().to_millis()) else { continue };
            let Some(ts) = DateTime::<Utc>::from_timestamp_millis(ms) else { continue };
            if let Ok(mut map) = record.lock() {
                map.insert(String::from_utf8_lossy(key).into_owned(), (ts, now));
            }
        }
    });
    Ok((seen, task))
}

/// Percentiles (ms) of the whole path and of each stage.
#[derive(Debug, Clone)]
pub struct Breakdown {
    /// 201 → stub received.
    pub total: [f64; 4],
    /// 201 → the producer stamped the record (relay wake-up, claim, send call).
    pub relay: [f64; 4],
    /// Producer timestamp → a bystander consumer received it (linger, broker, fetch).
    pub broker: [f64; 4],
    /// Bystander consumer → stub received (two: fetch, dedup, token, POST).
    pub two: [f64; 4],
    /// How many requests the stages were measured on.
    pub samples: usize,
}

/// How many calls the stub has received so far.
pub async fn stub_count(stub: &str) -> anyhow::Result<u64> {
    let v: serde_json::Value = reqwest::get(format!("{stub}/received/count")).await?.json().await?;
    v["count"].as_u64().context("the stub's count")
}

/// Waits until the stub received every accepted id (120 s at most), then splits the latency.
/// `count_before` is the stub's count when the measured requests started: until it has grown by
/// as many, only the count is asked (the full list is megabytes of JSON, and building it would
/// take CPU from two while it is still delivering what is being measured).
pub async fn end_to_end(
    stub: &str,
    count_before: u64,
    accepted: &[(String, DateTime<Utc>)],
    seen: &Seen,
) -> anyhow::Result<Breakdown> {
    let wanted: HashMap<&str, DateTime<Utc>> = accepted.iter().map(|(id, at)| (id.as_str(), *at)).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while stub_count(stub).await? < count_before + wanted.len() as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    loop {
        let received: Vec<serde_json::Value> = reqwest::get(format!("{stub}/received")).await?.json().await?;
        let mut arrived = HashMap::with_capacity(wanted.len());
        for r in &received {
            if let (Some(id), Some(at)) = (r["id"].as_str(), r["received_at"].as_str())
                && wanted.contains_key(id)
            {
                // The first delivery counts; a redelivery would only add the retry's delay.
                arrived.entry(id.to_owned()).or_insert(at.parse::<DateTime<Utc>>()?);
            }
        }
        if arrived.len() >= wanted.len() {
            return split(&wanted, &arrived, seen);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {} requests reached the stub",
            arrived.len(),
            wanted.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One step of [`highest_rate_within`]: the rate asked, what one completed, the split.
#[derive(Debug)]
pub struct Step {
    /// Requests/s asked of the open loop.
    pub rate: f64,
    /// Requests/s one answered with 201.
    pub completed: f64,
    /// Requests that failed (not a 201).
    pub failed: u64,
    /// End to end, by stage; `None` when not every request reached the stub in time.
    pub breakdown: Option<Breakdown>,
}

impl Step {
    /// Every request answered and delivered, with end-to-end p99 within `bound_ms`.
    pub fn held(&self, bound_ms: f64) -> bool {
        self.failed == 0 && self.breakdown.as_ref().is_some_and(|b| b.total[2] <= bound_ms)
    }
}

// ANCHOR: ladder
/// The pipeline's capacity at a latency bound: open-loop steps from `start` requests/s, each
/// 1.5× the last, until a step misses the bound (a failed request, a request not delivered
/// within two minutes, or end-to-end p99 over `bound_ms`) or the rate would pass `stop`. Each
/// step waits until two delivered all of it before the next starts. Returns every step and
/// whether one missed: if none did, the capacity is at least the last rate, not known above it.
pub async fn highest_rate_within(
    op: Op,
    stub: &str,
    seen: &Seen,
    (start, stop): (f64, f64),
    step: Duration,
    bound_ms: f64,
) -> anyhow::Result<(Vec<Step>, bool)> {
    let mut steps: Vec<Step> = Vec::new();
    let mut rate = start;
    while rate <= stop {
        eprintln!("bench: end to end at {rate:.0}/s (looking for p99 ≤ {bound_ms} ms)");
        let before = stub_count(stub).await?;
        let run = open_loop(op.clone(), rate, step, 256).await?;
        let breakdown = end_to_end(stub, before, &run.outputs, seen).await.ok();
        let this = Step { rate, completed: run.throughput(), failed: run.failed, breakdown };
        let held = this.held(bound_ms);
        steps.push(this);
        if !held {
            return Ok((steps, true));
        }
        rate *= 1.5;
    }
    Ok((steps, false))
}
// ANCHOR_END: ladder

fn split(
    wanted: &HashMap<&str, DateTime<Utc>>,
    arrived: &HashMap<String, DateTime<Utc>>,
    seen: &Seen,
) -> anyhow::Result<Breakdown> {
    let us =
        |from: DateTime<Utc>, to: DateTime<Utc>| (to - from).num_microseconds().unwrap_or(0).max(0) as u64;
    let seen = seen.lock().map_err(|_| anyhow::anyhow!("watcher poisoned"))?;
    let (mut total, mut relay, mut broker, mut two) = (vec![], vec![], vec![], vec![]);
    for (id, accepted) in wanted {
        let at_stub = *arrived.get(*id).context("arrival")?;
        total.push(us(*accepted, at_stub));
        if let Some((stamped, visible)) = seen.get(*id) {
            relay.push(us(*accepted, *stamped));
            broker.push(us(*stamped, *visible));
            two.push(us(*visible, at_stub));
        }
    }
    anyhow::ensure!(!relay.is_empty(), "the watching consumer saw none of the measured records");
    Ok(Breakdown {
        total: percentiles_of(&total)?,
        relay: percentiles_of(&relay)?,
        broker: percentiles_of(&broker)?,
        two: percentiles_of(&two)?,
        samples: relay.len(),
    })
}
