//! End to end, from each `201` to the stub receiving the same id, split into where the time
//! goes: the relay (201 → the producer's timestamp on the record), the producer and the broker
//! (→ a bystander consumer sees the record), two and the third party (→ the stub has it).

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use flow_bench::percentiles_of;
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

/// Waits until the stub received every accepted id (120 s at most), then splits the latency.
pub async fn end_to_end(
    stub: &str,
    accepted: &[(String, DateTime<Utc>)],
    seen: &Seen,
) -> anyhow::Result<Breakdown> {
    let wanted: HashMap<&str, DateTime<Utc>> = accepted.iter().map(|(id, at)| (id.as_str(), *at)).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let received: Vec<serde_json::Value> = reqwest::get(format!("{stub}/received")).await?.json().await?;
        let mut arrived = HashMap::with_capacity(wanted.len());
        for r in &received {
            if let (Some(id), Some(at)) = (r["id"].as_str(), r["received_at"].as_str())
                && wanted.contains_key(id)
            {
                arrived.insert(id.to_owned(), at.parse::<DateTime<Utc>>()?);
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
