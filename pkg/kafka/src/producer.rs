//! The idempotent producer.

use crate::headers::Headers;
use anyhow::Context as _;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock, TryLockError};
use std::time::{Duration, Instant};

/// Destroys a handle off the async threads: librdkafka's destroy flushes and joins its own
/// thread. Waits (up to 30 s) for the sends still holding it to finish first.
fn retire(handle: Arc<FutureProducer>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    runtime.spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Arc::strong_count(&handle) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    });
}

// ANCHOR: producer_settings
/// Producer settings: the `producer:` section of a service's Kafka config. Durations are humantime
/// strings (`5ms`, `10s`); a misspelt key is an error.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerSettings {
    /// `client.id`, shown in broker logs and metrics.
    pub client_id: String,
    /// `linger.ms`: how long to wait to fill a batch (throughput against latency).
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    /// `message.timeout.ms`: how long a send may take, retries included, before it fails.
    #[serde(with = "humantime_serde")]
    pub message_timeout: Duration,
    /// Any other librdkafka property; these win over the fields above.
    #[serde(default)]
    pub extra: BTreeMap<String, String>,
}
// ANCHOR_END: producer_settings

impl ProducerSettings {
    /// Defaults: 5 ms linger, 10 s delivery timeout (idempotence and `acks=all` are not settings).
    pub fn new(client_id: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            linger: Duration::from_millis(5),
            message_timeout: Duration::from_secs(10),
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

// ANCHOR: producer_fatal
/// An idempotent Kafka producer; cheap to clone (one librdkafka handle shared).
///
/// An idempotent producer can hit a *fatal* error (the broker lost the producer's state, or a
/// sequence gap it cannot explain): librdkafka then fails every send, forever, until the
/// application makes a new producer. It can also get stuck without saying so: after a broker
/// restart we saw every send time out for minutes while the broker answered. This one replaces
/// itself in both cases: on a fatal error, and when every send has failed with a timeout for
/// three message timeouts. The replacement serves every clone; the caller's retry goes out on it.
#[derive(Clone)]
pub struct Producer {
    current: Arc<RwLock<Current>>,
    config: Arc<ClientConfig>,
    replacing: Arc<Mutex<()>>,
    /// Since when every send on the current handle has failed (the handle's address, the time).
    failing: Arc<Mutex<Option<(usize, Instant)>>>,
    /// Replace a handle whose sends have all timed out for this long.
    stuck_after: Duration,
}
// ANCHOR_END: producer_fatal

/// The handle in use and when it was made.
struct Current {
    handle: Arc<FutureProducer>,
    made: Instant,
}

/// A handle younger than this is not replaced again: if the fatal state comes straight back (a
/// broker that refuses idempotent writes), the service must not make a client per failed send.
const MIN_HANDLE_LIFE: Duration = Duration::from_secs(1);

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").finish_non_exhaustive()
    }
}

impl Producer {
    // ANCHOR: producer_new
    /// Creates the producer for the cluster at `brokers`. Idempotence makes librdkafka's internal
    /// retries safe: a record is written once per partition even when an ack is lost and the send
    /// is retried.
    pub fn new(brokers: &str, settings: &ProducerSettings) -> anyhow::Result<Self> {
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", brokers)
            .set("client.id", &settings.client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", settings.linger.as_millis().to_string())
            .set("message.timeout.ms", settings.message_timeout.as_millis().to_string());
        for (k, v) in &settings.extra {
            cc.set(k, v);
        }
        let handle = Arc::new(cc.create::<FutureProducer>().context("creating Kafka producer")?);
        let current = Current { handle, made: Instant::now() };
        Ok(Self {
            current: Arc::new(RwLock::new(current)),
            config: Arc::new(cc),
            replacing: Arc::default(),
            failing: Arc::default(),
            stuck_after: settings.message_timeout * 3,
        })
    }
    // ANCHOR_END: producer_new

    // ANCHOR: replace_if_broken
    /// The librdkafka handle in use now. Use it for one call and let it go: a handle kept is not
    /// replaced after a fatal error.
    pub fn handle(&self) -> Arc<FutureProducer> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner).handle)
    }

    /// After a failed send on `used`: if that handle is in a fatal state, or every send on it has
    /// timed out for `stuck_after`, replaces it (once, however many sends saw the error) so the
    /// next send starts a new idempotent session.
    fn replace_if_broken(&self, used: &Arc<FutureProducer>, error: &KafkaError) {
        let failing_for = {
            let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
            let key = Arc::as_ptr(used) as usize;
            match *failing {
                Some((handle, since)) if handle == key => since.elapsed(),
                _ => {
                    *failing = Some((key, Instant::now()));
                    Duration::ZERO
                }
            }
        };
        let timed_out = matches!(error, KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut));
        let (code, reason) = match used.client().fatal_error() {
            Some(fatal) => fatal,
            None if timed_out && failing_for >= self.stuck_after => {
                (RDKafkaErrorCode::MessageTimedOut, format!("every send has timed out for {failing_for:?}"))
            }
            None => return,
        };
        // One replacement at a time: the other sends that saw the error leave it to this one.
        let _replacing = match self.replacing.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        {
            let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
            if !Arc::ptr_eq(&current.handle, used) || current.made.elapsed() < MIN_HANDLE_LIFE {
                return; // already replaced, or replaced a moment ago
            }
        }
        // Made outside the handle's lock: sends on other clones keep reading it meanwhile.
        let fresh = match self.config.create::<FutureProducer>() {
            Ok(fresh) => Arc::new(fresh),
            Err(e) => {
                tracing::error!(%code, %reason, error = %e, "Kafka producer is broken and a new one could not be made");
                return;
            }
        };
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let old = std::mem::replace(&mut *current, Current { handle: fresh, made: Instant::now() });
        drop(current);
        tracing::error!(%code, %reason, "Kafka producer is broken; replaced it with a new one");
        retire(old.handle);
    }
    // ANCHOR_END: replace_if_broken

    // ANCHOR: producer_send
    /// Sends one record and waits for the broker's acknowledgement.
    pub async fn send(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        headers: &Headers,
    ) -> anyhow::Result<Delivery> {
        let mut owned = OwnedHeaders::new_with_capacity(headers.len());
        for (key, value) in headers.iter() {
            owned = owned.insert(Header { key, value: Some(value) });
        }
        let record = FutureRecord::to(topic).key(key).payload(payload).headers(owned);
        // The queue timeout only applies when librdkafka's local queue is full; delivery itself is
        // bounded by message.timeout.ms.
        let handle = self.handle();
        let sent = handle.send(record, Timeout::After(Duration::from_secs(5))).await;
        let delivered = match sent {
            Ok(delivered) => {
                // A send got through: the handle works.
                *self.failing.lock().unwrap_or_else(PoisonError::into_inner) = None;
                delivered
            }
            Err((e, _)) => {
                self.replace_if_broken(&handle, &e);
                return Err(e).with_context(|| format!("producing to {topic}"));
            }
        };
        Ok(Delivery { partition: delivered.partition, offset: delivered.offset })
    }
    // ANCHOR_END: producer_send

    /// Asks the brokers for metadata: the readiness check of a service that produces.
    pub async fn check(&self, timeout: Duration) -> anyhow::Result<()> {
        let inner = self.handle();
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
        self.handle().flush(timeout).context("flushing Kafka producer")
    }
}
