//! Redrive: the way back from a dead-letter topic. Reads the dead letters its group has not
//! handled yet (up to the end the topic had when it started), re-publishes the ones that match
//! to the topic they came from, with their original key, value and headers plus a
//! `redrive.count`, and commits its own progress. Consumers de-duplicate (two's processed-id
//! store), so redriving a message that was in fact delivered changes nothing.

use crate::handler::DeadLetterHeaders;
use crate::headers::Headers;
use crate::producer::Producer;
use anyhow::Context as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::time::Duration;

/// Header counting how often a message was redriven.
pub const REDRIVE_COUNT: &str = "redrive.count";

/// What to redrive.
#[derive(Debug, Clone)]
pub struct RedriveOptions {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// The dead-letter topic to read.
    pub from: String,
    /// Where to publish; `None`: the `dlq.original.topic` header of each message.
    pub to: Option<String>,
    /// Only dead letters whose headers have these values (e.g. `dlq.reason` = `permanent`).
    pub filters: Vec<(String, String)>,
    /// Report what would be redriven; publish and commit nothing.
    pub dry_run: bool,
    /// Stop after this many redriven messages.
    pub limit: Option<usize>,
    /// The consumer group that remembers how far redrive got.
    pub group_id: String,
}

/// What a redrive did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RedriveReport {
    /// Dead letters read.
    pub read: usize,
    /// Re-published (or, in a dry run, that would have been).
    pub redriven: usize,
    /// Not matching the filters.
    pub skipped: usize,
    /// Key and destination of each redriven message, in order.
    pub messages: Vec<(String, String)>,
}

// ANCHOR: redrive
/// Redrives the dead letters of `opts.from`; see the module docs.
pub async fn redrive(opts: &RedriveOptions, producer: &Producer) -> anyhow::Result<RedriveReport> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &opts.brokers)
        .set("group.id", &opts.group_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .context("creating the redrive consumer")?;
    let ends = assign_from_committed(&consumer, &opts.from)?;
    let mut report = RedriveReport::default();
    let mut done = TopicPartitionList::new();
    let mut remaining: Vec<(i32, i64)> = ends.into_iter().filter(|(_, end)| *end > 0).collect();
    let mut idle = 0;
    while !remaining.is_empty() && opts.limit.is_none_or(|l| report.redriven < l) {
        let Some(polled) = consumer.poll(Duration::from_secs(1)) else {
            // Nothing came: re-check positions (partitions already at their end are done).
            remaining.retain(|(p, end)| position(&consumer, &opts.from, *p).is_none_or(|pos| pos < *end));
            idle += 1;
            anyhow::ensure!(
                idle < 30,
                "no dead letter arrived for 30 s though {remaining:?} were not read to their end"
            );
            continue;
        };
        idle = 0;
        let m = polled.context("reading the dead-letter topic")?;
        let (partition, offset) = (m.partition(), m.offset());
        remaining.retain(|(p, end)| !(*p == partition && offset + 1 >= *end));
        report.read += 1;
        let mut headers: Headers = m
            .headers()
            .map(|hs| hs.iter().map(|h| (h.key, h.value.unwrap_or_default().to_vec())).collect())
            .unwrap_or_default();
        let header = |name: &str| headers.get(name).map(|v| String::from_utf8_lossy(v).into_owned());
        if opts.filters.iter().any(|(k, v)| header(k).as_deref() != Some(v.as_str())) {
            report.skipped += 1;
        } else {
            let to = match (&opts.to, header(DeadLetterHeaders::TOPIC)) {
                (Some(to), _) => to.clone(),
                (None, Some(original)) => original,
                (None, None) => anyhow::bail!(
                    "dead letter at {partition}@{offset} has no {} header; pass --to",
                    DeadLetterHeaders::TOPIC
                ),
            };
            let count = header(REDRIVE_COUNT).and_then(|c| c.parse::<u32>().ok()).unwrap_or(0) + 1;
            headers.retain(|k, _| !k.starts_with("dlq.") && k != REDRIVE_COUNT);
            headers.push(REDRIVE_COUNT, count.to_string());
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            if opts.dry_run {
                tracing::info!(%key, %to, partition, offset, "would redrive");
            } else {
                producer
                    .send(&to, m.key().unwrap_or_default(), m.payload().unwrap_or_default(), &headers)
                    .await
                    .with_context(|| format!("re-publishing {key} to {to}"))?;
                tracing::info!(%key, %to, partition, offset, redrive_count = count, "redriven");
            }
            report.redriven += 1;
            report.messages.push((key, to));
        }
        done.add_partition_offset(&opts.from, partition, Offset::Offset(offset + 1))?;
    }
    // Progress is committed after the re-publishes were acknowledged: a crash redrives again,
    // which the consumers' de-duplication absorbs.
    if !opts.dry_run && done.count() > 0 {
        consumer.commit(&done, CommitMode::Sync).context("committing redrive progress")?;
    }
    Ok(report)
}
// ANCHOR_END: redrive

/// Assigns every partition of `topic` at the group's committed offset; returns each partition's
/// end (high watermark) now, which is where this run stops.
fn assign_from_committed(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<Vec<(i32, i64)>> {
    let timeout = Duration::from_secs(10);
    let md = consumer.fetch_metadata(Some(topic), timeout).context("reading topic metadata")?;
    let partitions: Vec<i32> =
        md.topics().first().map(|t| t.partitions().iter().map(|p| p.id()).collect()).unwrap_or_default();
    anyhow::ensure!(!partitions.is_empty(), "topic {topic} has no partitions (does it exist?)");
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition(topic, *p);
    }
    let committed = consumer.committed_offsets(tpl, timeout).context("reading committed offsets")?;
    let mut assign = TopicPartitionList::new();
    let mut ends = Vec::new();
    for e in committed.elements() {
        let start = match e.offset() {
            Offset::Offset(o) => Offset::Offset(o),
            _ => Offset::Beginning,
        };
        assign.add_partition_offset(topic, e.partition(), start)?;
        let (low, high) = consumer.fetch_watermarks(topic, e.partition(), timeout)?;
        let from = if let Offset::Offset(o) = start { o } else { low };
        ends.push((e.partition(), if from >= high { 0 } else { high }));
    }
    consumer.assign(&assign).context("assigning the dead-letter partitions")?;
    Ok(ends)
}

fn position(consumer: &BaseConsumer, topic: &str, partition: i32) -> Option<i64> {
    let pos = consumer.position().ok()?;
    match pos.find_partition(topic, partition)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}
