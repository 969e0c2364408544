//! What really reached Kafka: records read back from a topic, a group's committed offset.

use crate::unique_name;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::{Headers as _, Message as _};
use std::time::Duration;

/// Kafka brokers of the local stack, or `KAFKA_BROKERS`.
pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| cruncan_kafka::LOCAL_BROKERS.to_owned())
}

/// A record read back from Kafka.
#[derive(Debug, Clone)]
pub struct Record {
    /// The key, as text.
    pub key: String,
    /// The value parsed as JSON (`null` when it is not JSON).
    pub payload: serde_json::Value,
    /// The headers in record order, values as text.
    pub headers: Vec<(String, String)>,
}

impl Record {
    /// The first header named `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Reads `topic` from the beginning until `want` records arrived, then `settle` longer to catch
/// duplicates; panics with what it saw after `timeout`.
pub async fn read_topic(topic: &str, want: usize, timeout: Duration, settle: Duration) -> Vec<Record> {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique_name("one-test-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut settle_until: Option<tokio::time::Instant> = None;
    loop {
        let until = settle_until.unwrap_or(deadline);
        match tokio::time::timeout_at(until, consumer.recv()).await {
            Ok(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| {
                                (
                                    h.key.to_owned(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Record {
                    key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                    payload: serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or_default(),
                    headers,
                });
                if out.len() >= want && settle_until.is_none() {
                    settle_until = Some(tokio::time::Instant::now() + settle);
                }
            }
            // The topic appears when the relay first publishes.
            Ok(Err(e)) if e.to_string().contains("UnknownTopicOrPartition") => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(Err(e)) => panic!("kafka error reading {topic}: {e}"),
            Err(_) if settle_until.is_some() => return out,
            Err(_) => panic!("expected {want} records on {topic} within {timeout:?}, got {}", out.len()),
        }
    }
}

/// The offset committed by `group` for partition `partition` of `topic` (`None`: nothing yet).
pub fn committed_offset(group: &str, topic: &str, partition: i32) -> Option<i64> {
    use rdkafka::consumer::Consumer as _;
    let probe: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .create()
        .ok()?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let committed = probe.committed_offsets(tpl, Duration::from_secs(10)).ok()?;
    match committed.find_partition(topic, partition)?.offset() {
        rdkafka::Offset::Offset(o) => Some(o),
        _ => None,
    }
}

// ANCHOR: delete_test_topics
/// Deletes the topics on `brokers` that [`unique_name`] made more than `age` ago (and the topics
/// derived from them, such as dead letters) and returns their names. Topics anyone else named are
/// never touched. Kafka keeps a topic until it is deleted: a broker holding the thousands that
/// test runs leave behind loads them all on every restart (21 s with 4,700 partitions, 12 s
/// without them), which is what the fault tests do.
pub async fn delete_test_topics_older_than(brokers: &str, age: Duration) -> anyhow::Result<Vec<String>> {
    let cutoff = std::time::SystemTime::now() - age;
    delete_topics_where(brokers, |name| crate::created_at(name).is_some_and(|made| made < cutoff)).await
}
// ANCHOR_END: delete_test_topics

/// Deletes every topic on `brokers` whose name `stale` accepts and returns their names.
pub async fn delete_topics_where(brokers: &str, stale: impl Fn(&str) -> bool) -> anyhow::Result<Vec<String>> {
    use anyhow::Context as _;
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let config = rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).clone();
    let lister = config.clone();
    let topics = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        let client: rdkafka::consumer::BaseConsumer = lister.create().context("creating Kafka client")?;
        let metadata = client.fetch_metadata(None, Duration::from_secs(10)).context("listing topics")?;
        Ok(metadata.topics().iter().map(|t| t.name().to_owned()).collect())
    })
    .await
    .context("listing task")??;
    let stale: Vec<String> = topics.into_iter().filter(|name| stale(name)).collect();
    let admin: AdminClient<DefaultClientContext> = config.create().context("creating Kafka admin client")?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let mut deleted = Vec::with_capacity(stale.len());
    for chunk in stale.chunks(100) {
        let names: Vec<&str> = chunk.iter().map(String::as_str).collect();
        for result in admin.delete_topics(&names, &opts).await.context("deleting topics")? {
            match result {
                Ok(name) => deleted.push(name),
                Err((name, code)) => eprintln!("could not delete topic {name}: {code}"),
            }
        }
    }
    Ok(deleted)
}
