//! An idempotent producer in librdkafka's fatal state is replaced, against the real broker of the
//! local stack (`make up`): the send that sees the error fails, the retry is delivered, and every
//! clone of the producer uses the new handle.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic: that is its failure report
#![allow(unsafe_code)] // librdkafka's own test hook is the only way to reach the fatal state on demand

use cruncan_kafka::{Headers, Producer, ProducerSettings, ensure_topic};
use cruncan_testkit::{brokers, read_topic, unique_name};
use rdkafka::bindings::{rd_kafka_resp_err_t, rd_kafka_test_fatal_error};
use rdkafka::producer::Producer as _;
use std::sync::Arc;
use std::time::Duration;

/// What librdkafka does when, say, the broker reports a sequence gap the producer cannot explain.
fn make_fatal(producer: &Producer) {
    let handle = producer.handle();
    let reason = c"injected by the test";
    // SAFETY: the pointer comes from a live client (`handle` keeps it alive for the call) and
    // `reason` is a NUL-terminated string that outlives it; librdkafka copies it.
    let code = unsafe {
        rd_kafka_test_fatal_error(
            handle.client().native_ptr(),
            rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
            reason.as_ptr(),
        )
    };
    assert_eq!(code, rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR);
    assert!(handle.client().fatal_error().is_some(), "the producer is not in the fatal state");
}

#[tokio::test]
async fn a_producer_in_a_fatal_state_is_replaced_and_the_retry_is_delivered() {
    let topic = unique_name("kt-fatal");
    ensure_topic(&brokers(), &topic, 1, 1).await.unwrap();
    let producer = Producer::new(&brokers(), &ProducerSettings::new("kafka-fatal-test")).unwrap();
    let clone = producer.clone();
    let send = |p: &Producer, n: u32| {
        let (p, topic) = (p.clone(), topic.clone());
        async move { p.send(&topic, b"k", format!("{{\"n\":{n}}}").as_bytes(), &Headers::new()).await }
    };
    let a_second = || tokio::time::sleep(Duration::from_millis(1_100));
    send(&producer, 1).await.unwrap();
    a_second().await; // a handle younger than a second is not replaced (below)
    let first = producer.handle();

    make_fatal(&producer);
    assert!(send(&producer, 2).await.is_err(), "a send on a fatal producer must fail");
    let second = producer.handle();
    assert!(
        !Arc::ptr_eq(&first, &second) && Arc::ptr_eq(&second, &clone.handle()),
        "replaced for every clone"
    );
    drop(first);

    // The new handle fatal at once, before it sent anything: kept through its first second, so a
    // broker that keeps refusing does not get a new client per failed send; replaced after it.
    make_fatal(&producer);
    assert!(send(&clone, 3).await.is_err());
    assert!(Arc::ptr_eq(&second, &producer.handle()), "replaced again within a second");
    a_second().await;
    assert!(send(&clone, 4).await.is_err(), "the send that finds the fatal state still fails");
    assert!(!Arc::ptr_eq(&second, &producer.handle()));
    drop(second);
    send(&clone, 5).await.expect("the retry goes out on the new producer");

    let records = read_topic(&topic, 2, Duration::from_secs(20), Duration::from_secs(1)).await;
    let values: Vec<_> = records.iter().map(|r| r.payload["n"].as_u64().unwrap()).collect();
    assert_eq!(values, [1, 5]);
}

#[tokio::test]
async fn a_producer_whose_sends_keep_timing_out_is_replaced() {
    // No broker answers here: every send times out (librdkafka checks about once a second), and
    // once sends have done nothing but time out for three message timeouts (900 ms), the handle is
    // replaced.
    let settings =
        ProducerSettings { message_timeout: Duration::from_millis(300), ..ProducerSettings::new("stuck") };
    let producer = Producer::new("127.0.0.1:9", &settings).unwrap();
    let first = producer.handle();
    let mut first_failure = None;
    let mut failures = 0;
    while Arc::ptr_eq(&first, &producer.handle()) {
        assert!(producer.send("t", b"k", b"{}", &Headers::new()).await.is_err());
        first_failure.get_or_insert_with(std::time::Instant::now);
        failures += 1;
        assert!(failures < 20, "never replaced");
    }
    let failing_for = first_failure.unwrap().elapsed();
    assert!(failures >= 2, "the first timeout only starts the clock; replaced after {failures}");
    assert!(failing_for >= Duration::from_millis(800), "replaced after {failing_for:?} of timeouts");
}
