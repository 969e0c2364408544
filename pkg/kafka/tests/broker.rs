//! Against the real broker of the local stack (`make up`): round trip with headers, commit and
//! resume exactly after the committed offset, retries and dead letters. Every test uses its own
//! topic and group names.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic: that is its failure report

use cruncan_kafka::{
    Consumer, ConsumerSettings, DeadLetterHeaders, Handler, HandlerError, Headers, Message, Producer,
    ProducerSettings, ensure_topic,
};
use cruncan_shutdown::Shutdown;
use cruncan_testkit::{brokers, unique_name};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn producer() -> Producer {
    Producer::new(&brokers(), &ProducerSettings::new("kafka-test")).unwrap()
}

fn consumer_settings(group: &str) -> ConsumerSettings {
    ConsumerSettings {
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
        drain_timeout: Duration::from_secs(5),
        ..ConsumerSettings::new(group)
    }
}

fn subscribe(topic: &str, settings: ConsumerSettings, dead_letters: Producer) -> Consumer {
    Consumer::new(&brokers(), &[topic.to_owned()], settings, dead_letters).unwrap()
}

type Rule = dyn Fn(&Message, u32) -> Result<(), HandlerError> + Send + Sync;

/// Records every message it finishes; `rule` decides the outcome from the message and attempt.
struct Recorder {
    seen: Mutex<Vec<Message>>,
    attempts: Mutex<BTreeMap<i64, u32>>,
    rule: Box<Rule>,
}

impl Recorder {
    fn new(rule: impl Fn(&Message, u32) -> Result<(), HandlerError> + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self { seen: Mutex::default(), attempts: Mutex::default(), rule: Box::new(rule) })
    }
    fn ok() -> Arc<Self> {
        Self::new(|_, _| Ok(()))
    }
    fn seen(&self) -> Vec<Message> {
        self.seen.lock().unwrap().clone()
    }
    async fn wait_for(&self, n: usize) -> Vec<Message> {
        for _ in 0..600 {
            if self.seen.lock().unwrap().len() >= n {
                return self.seen();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {n} messages within 30 s, saw {}", self.seen.lock().unwrap().len());
    }
}

impl Handler for Recorder {
    async fn handle(&self, msg: &Message) -> Result<(), HandlerError> {
        let attempt = {
            let mut a = self.attempts.lock().unwrap();
            let n = a.entry(msg.offset * 1000 + i64::from(msg.partition)).or_default();
            *n += 1;
            *n
        };
        (self.rule)(msg, attempt)?;
        self.seen.lock().unwrap().push(msg.clone());
        Ok(())
    }
}

async fn produce(p: &Producer, topic: &str, n: usize, key: impl Fn(usize) -> String) {
    for i in 0..n {
        let headers: Headers = [
            ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned()),
            ("seq", i.to_string()),
        ]
        .into_iter()
        .collect();
        p.send(topic, key(i).as_bytes(), format!("payload-{i}").as_bytes(), &headers).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_with_headers_round_trip() {
    let topic = unique_name("kt-roundtrip");
    ensure_topic(&brokers(), &topic, 3, 1).await.unwrap();
    ensure_topic(&brokers(), &topic, 3, 1).await.expect("ensure_topic is idempotent");
    let p = producer();
    produce(&p, &topic, 30, |i| format!("key-{}", i % 5)).await;

    let recorder = Recorder::ok();
    let shutdown = Shutdown::new();
    let consumer = subscribe(&topic, consumer_settings(&unique_name("kt-group")), p.clone());
    let task = tokio::spawn(consumer.run(Arc::clone(&recorder), shutdown.clone()));
    let seen = recorder.wait_for(30).await;
    shutdown.trigger();
    task.await.unwrap().unwrap();

    assert_eq!(seen.len(), 30, "each message exactly once");
    for m in &seen {
        let seq: usize = m.header_str("seq").unwrap().parse().unwrap();
        assert_eq!(m.payload.as_deref(), Some(format!("payload-{seq}").as_bytes()));
        assert_eq!(m.key_str(), format!("key-{}", seq % 5));
        assert!(m.header_str("traceparent").is_some());
    }
    // Order within a key is kept.
    for k in 0..5 {
        let seqs: Vec<usize> = seen
            .iter()
            .filter(|m| m.key_str() == format!("key-{k}"))
            .map(|m| m.header_str("seq").unwrap().parse().unwrap())
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "key-{k} out of order: {seqs:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_consumer_resumes_exactly_after_the_committed_offset() {
    let topic = unique_name("kt-resume");
    let group = unique_name("kt-group");
    ensure_topic(&brokers(), &topic, 1, 1).await.unwrap();
    let p = producer();
    produce(&p, &topic, 20, |i| format!("k{i}")).await;

    // First consumer: finishes offsets 0..=9; at offset 10 it asks to stop and reports a
    // retryable failure, so offset 10 is never finished by it.
    let shutdown = Shutdown::new();
    let stop = shutdown.clone();
    let first = Recorder::new(move |m, _| {
        if m.offset >= 10 {
            stop.trigger();
            return Err(HandlerError::retryable(anyhow::anyhow!("stopping")));
        }
        Ok(())
    });
    let consumer =
        subscribe(&topic, ConsumerSettings { concurrency: 1, ..consumer_settings(&group) }, p.clone());
    tokio::time::timeout(Duration::from_secs(60), consumer.run(Arc::clone(&first), shutdown))
        .await
        .unwrap()
        .unwrap();
    let first_offsets: Vec<i64> = first.seen().iter().map(|m| m.offset).collect();
    assert_eq!(first_offsets, (0..10).collect::<Vec<_>>());

    // The group's committed offset is exactly 10.
    let probe: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", brokers()).set("group.id", &group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&topic, 0);
    let committed = probe.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    assert_eq!(committed.find_partition(&topic, 0).unwrap().offset(), Offset::Offset(10));
    drop(probe);

    // A new consumer in the group starts exactly there.
    let second = Recorder::ok();
    let shutdown = Shutdown::new();
    let consumer = subscribe(&topic, consumer_settings(&group), p.clone());
    let task = tokio::spawn(consumer.run(Arc::clone(&second), shutdown.clone()));
    let seen = second.wait_for(10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown.trigger();
    task.await.unwrap().unwrap();
    // Distinct keys run in parallel lanes, so compare as a set.
    let mut offsets: Vec<i64> = seen.iter().map(|m| m.offset).collect();
    offsets.sort_unstable();
    assert_eq!(offsets, (10..20).collect::<Vec<_>>());
    assert_eq!(second.seen().len(), 10, "nothing twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_errors_are_retried_and_permanent_ones_dead_lettered() {
    let topic = unique_name("kt-dlq");
    ensure_topic(&brokers(), &topic, 1, 1).await.unwrap();
    ensure_topic(&brokers(), &format!("{topic}.dlq"), 1, 1).await.unwrap();
    let p = producer();
    produce(&p, &topic, 3, |i| ["good", "flaky", "bad"][i].to_owned()).await;

    let recorder = Recorder::new(|m, attempt| match m.key_str().as_str() {
        "flaky" if attempt < 3 => Err(HandlerError::retryable(anyhow::anyhow!("try again"))),
        "bad" => Err(HandlerError::permanent(anyhow::anyhow!("cannot parse"))),
        _ => Ok(()),
    });
    let shutdown = Shutdown::new();
    let consumer = subscribe(&topic, consumer_settings(&unique_name("kt-group")), p.clone());
    let task = tokio::spawn(consumer.run(Arc::clone(&recorder), shutdown.clone()));

    let dlq = Recorder::ok();
    let dlq_shutdown = Shutdown::new();
    let dlq_consumer = subscribe(&format!("{topic}.dlq"), consumer_settings(&unique_name("kt-dlq-group")), p);
    let dlq_task = tokio::spawn(dlq_consumer.run(Arc::clone(&dlq), dlq_shutdown.clone()));

    let seen = recorder.wait_for(2).await;
    let dead = dlq.wait_for(1).await;
    shutdown.trigger();
    dlq_shutdown.trigger();
    task.await.unwrap().unwrap();
    dlq_task.await.unwrap().unwrap();

    let keys: Vec<String> = seen.iter().map(Message::key_str).collect();
    assert_eq!(keys, ["good", "flaky"]);
    assert_eq!(recorder.attempts.lock().unwrap().get(&1000), Some(&3), "flaky took three attempts");
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(d.key_str(), "bad");
    assert_eq!(d.payload.as_deref(), Some(&b"payload-2"[..]));
    assert_eq!(d.header_str("seq"), Some("2"), "original headers are kept");
    assert_eq!(d.header_str(DeadLetterHeaders::REASON), Some("permanent"));
    assert_eq!(d.header_str(DeadLetterHeaders::ERROR), Some("cannot parse"));
    assert_eq!(d.header_str(DeadLetterHeaders::ATTEMPTS), Some("1"));
    assert_eq!(d.header_str(DeadLetterHeaders::TOPIC), Some(topic.as_str()));
    assert_eq!(d.header_str(DeadLetterHeaders::PARTITION), Some("0"));
    assert_eq!(d.header_str(DeadLetterHeaders::OFFSET), Some("2"));
}
