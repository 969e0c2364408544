//! Steps about service two alone: delivery, retries, tokens and dead letters.

use crate::world::*;
use cruncan_kafka::{DeadLetterHeaders, Headers, Producer, ProducerSettings};
use cruncan_testkit::{brokers, read_topic, unique_name};
use cucumber::{given, then, when};
use std::time::Duration;

#[given("service two is running against the stub")]
pub(crate) async fn two_running(w: &mut FlowWorld) {
    w.start_stub().await;
    let s = w.two_settings(&unique_name("bdd-two")).await;
    w.start_two(s).await;
}

#[when("a request event is published")]
pub(crate) async fn publish_one(w: &mut FlowWorld) {
    w.publish_event(&new_request_id()).await;
}

#[when(expr = "{int} request events are published")]
pub(crate) async fn publish_many(w: &mut FlowWorld, n: usize) {
    for _ in 0..n {
        w.publish_event(&new_request_id()).await;
    }
}

#[then("the third party receives it exactly once with a bearer token")]
pub(crate) async fn received_once(w: &mut FlowWorld) {
    let id = w.request_ids.last().cloned().unwrap();
    w.wait_received(std::slice::from_ref(&id), Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // room for a duplicate to show up
    let calls: Vec<_> = w.stub().received().into_iter().filter(|r| r.id == id).collect();
    // The stub answers 401 to a call without a token it issued, so a recorded call had one.
    assert_eq!(calls.len(), 1, "expected one accepted call for {id}, saw {}", calls.len());
    assert_eq!(calls[0].language.as_deref(), Some("en"));
    assert_eq!(calls[0].idempotency_key.as_deref(), Some(id.as_str()));
}

#[then(expr = "the third party receives all {int} of them")]
pub(crate) async fn received_all(w: &mut FlowWorld, n: usize) {
    assert_eq!(w.request_ids.len(), n);
    let counts = w.wait_received(&w.request_ids.clone(), Duration::from_secs(60)).await;
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "expected each once, saw duplicates {twice:?}");
}

#[then(expr = "the stub issued exactly {int} token")]
pub(crate) async fn tokens_issued(w: &mut FlowWorld, n: usize) {
    assert_eq!(w.stub().tokens_issued(), n, "expected {n} token fetch(es)");
}

#[given(expr = "the third party will fail the next {int} call with 503")]
pub(crate) async fn fail_next(w: &mut FlowWorld, n: u32) {
    w.stub().set_control(stub::Control { fail_next: n, ..Default::default() });
}

#[then(expr = "the third party saw {int} attempts for it")]
pub(crate) async fn attempts(w: &mut FlowWorld, n: u32) {
    let id = w.request_ids.last().cloned().unwrap();
    assert_eq!(w.stub().attempts(&id), n, "expected {n} attempts for {id}");
}

#[when("an undecodable message is published")]
pub(crate) async fn publish_poison(w: &mut FlowWorld) {
    let key = unique_name("poison");
    let producer = w
        .producer
        .get_or_insert_with(|| Producer::new(&brokers(), &ProducerSettings::new("bdd")).unwrap())
        .clone();
    producer.send(&w.two_topic(), key.as_bytes(), b"{not json at all", &Headers::new()).await.unwrap();
    w.poison_key = Some(key);
}

#[then(expr = "the undecodable message is in the dead-letter topic with reason {string}")]
pub(crate) async fn poison_dead_lettered(w: &mut FlowWorld, reason: String) {
    let key = w.poison_key.clone().unwrap();
    let two = &w.two.as_ref().expect("service two is running").settings.kafka;
    let dlq = two.consumer.dead_letter_topic(&two.topic);
    let records = read_topic(&dlq, 1, Duration::from_secs(30), Duration::from_millis(500)).await;
    let record = records
        .iter()
        .find(|r| r.key == key)
        .unwrap_or_else(|| panic!("expected {key} in {dlq}, saw {records:?}"));
    assert_eq!(
        record.header(DeadLetterHeaders::REASON),
        Some(reason.as_str()),
        "headers: {:?}",
        record.headers
    );
}
