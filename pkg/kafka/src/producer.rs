//! The idempotent producer.

use anyhow::Context as _;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use std::collections::BTreeMap;
use std::time::Duration;

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// `client.id`, shown in broker logs and metrics.
    pub client_id: String,
    /// `linger.ms`: how long to wait to fill a batch (throughput against latency).
    pub linger_ms: u32,
    /// `message.timeout.ms`: how long a send may take, retries included, before it fails.
    pub message_timeout_ms: u32,
    /// Any other librdkafka property; these win over the fields above.
    pub extra: BTreeMap<String, String>,
}

impl ProducerConfig {
    /// Defaults: idempotent, `acks=all`, 5 ms linger, 10 s delivery timeout.
    pub fn new(brokers: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            client_id: client_id.into(),
            linger_ms: 5,
            message_timeout_ms: 10_000,
            extra: BTreeMap::new(),
        }
    }
}

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Partition of the record.
    pub partition: i32,
    /// Offset of the record in its partition.
    pub offset: i64,
}

/// An idempotent Kafka producer; cheap to clone (one librdkafka handle shared).
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").finish_non_exhaustive()
    }
}

impl Producer {
    // ANCHOR: producer_new
    /// Creates the producer. Idempotence makes librdkafka's internal retries safe: a record is
    /// written once per partition even when an ack is lost and the send is retried.
    pub fn new(cfg: &ProducerConfig) -> anyhow::Result<Self> {
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", &cfg.brokers)
            .set("client.id", &cfg.client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", cfg.linger_ms.to_string())
            .set("message.timeout.ms", cfg.message_timeout_ms.to_string());
        for (k, v) in &cfg.extra {
            cc.set(k, v);
        }
        let inner: FutureProducer = cc.create().context("creating Kafka producer")?;
        Ok(Self { inner })
    }
    // ANCHOR_END: producer_new

    // ANCHOR: producer_send
    /// Sends one record and waits for the broker's acknowledgement.
    pub async fn send(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        headers: &[(String, Vec<u8>)],
    ) -> anyhow::Result<Delivery> {
        let mut owned = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in headers {
            owned = owned.insert(Header { key: k, value: Some(v) });
        }
        let record = FutureRecord::to(topic).key(key).payload(payload).headers(owned);
        // The queue timeout only applies when librdkafka's local queue is full; delivery itself is
        // bounded by message.timeout.ms.
        let delivered = self
            .inner
            .send(record, Timeout::After(Duration::from_secs(5)))
            .await
            .map_err(|(e, _)| e)
            .with_context(|| format!("producing to {topic}"))?;
        Ok(Delivery { partition: delivered.partition, offset: delivered.offset })
    }
    // ANCHOR_END: producer_send

    /// Asks the brokers for metadata: the readiness check of a service that produces.
    pub async fn check(&self, timeout: Duration) -> anyhow::Result<()> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let md = inner.client().fetch_metadata(None, timeout).context("Kafka metadata request")?;
            anyhow::ensure!(!md.brokers().is_empty(), "Kafka metadata lists no broker");
            Ok(())
        })
        .await
        .context("metadata task")?
    }

    /// Waits until every queued record is delivered (or `timeout` passes).
    pub fn flush(&self, timeout: Duration) -> anyhow::Result<()> {
        self.inner.flush(timeout).context("flushing Kafka producer")
    }
}
