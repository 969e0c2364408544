//! The way back from the dead-letter topic: dead letters of a permanent 4xx are redriven once the
//! third party is fixed, delivered once, and a second redrive delivers nothing twice.

use crate::helpers::{brokers, mount_token, read_topic, spawn_two, unique_name, wait_until};
use cruncan_kafka::{Producer, ProducerSettings, RedriveOptions, redrive};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wiremock::matchers::path;
use wiremock::{Mock, ResponseTemplate};

// ANCHOR: redrive_test
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_redriven_after_the_fix_and_delivered_once() {
    let two = spawn_two(|_| {}).await;
    mount_token(&two.token_server, "tok", 1).await;
    // The third party rejects every request (a bug on its side) until it is fixed.
    let fixed = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(Mutex::new(Vec::<String>::new()));
    let (is_fixed, seen) = (Arc::clone(&fixed), Arc::clone(&delivered));
    Mock::given(path("/three"))
        .respond_with(move |r: &wiremock::Request| {
            if !is_fixed.load(Ordering::SeqCst) {
                return ResponseTemplate::new(422);
            }
            let id = r.headers.get("idempotency-key").unwrap().to_str().unwrap().to_owned();
            seen.lock().unwrap().push(id);
            ResponseTemplate::new(200)
        })
        .mount(&two.three)
        .await;
    let ids: Vec<String> = (0..5).map(|i| format!("{:020}", 4_220 + i)).collect();
    for id in &ids {
        two.publish_event(id).await;
    }
    let dead = read_topic(&two.dlq(), ids.len(), Duration::from_secs(30), Duration::from_millis(500)).await;
    assert_eq!(dead.len(), ids.len(), "each rejected message dead-lettered");

    fixed.store(true, Ordering::SeqCst);
    let opts = RedriveOptions {
        brokers: brokers(),
        from: two.dlq(),
        to: None, // back to the dlq.original.topic of each message
        filters: vec![("dlq.reason".into(), "permanent".into())],
        dry_run: false,
        limit: None,
        group_id: unique_name("redrive"),
    };
    let producer = Producer::new(&brokers(), &ProducerSettings::new("redrive-test")).unwrap();
    let dry = redrive(&RedriveOptions { dry_run: true, ..opts.clone() }, &producer).await.unwrap();
    assert_eq!((dry.read, dry.redriven), (ids.len(), ids.len()), "a dry run reports and publishes nothing");
    let first = redrive(&opts, &producer).await.unwrap();
    assert_eq!(first.redriven, ids.len(), "the dry run did not consume the group's progress");
    for id in &ids {
        wait_until(Duration::from_secs(30), "redriven message delivered", || two.processed(id)).await;
    }
    // Again with the same group: its progress was committed, nothing is left to redrive.
    let second = redrive(&opts, &producer).await.unwrap();
    assert_eq!(second.read, 0, "progress committed");
    // Again with a fresh group: every dead letter is redriven again, and two skips them all.
    let third =
        redrive(&RedriveOptions { group_id: unique_name("redrive"), ..opts }, &producer).await.unwrap();
    assert_eq!(third.redriven, ids.len());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut got = delivered.lock().unwrap().clone();
    got.sort();
    assert_eq!(got, ids, "each message delivered exactly once, however often it was redriven");
    two.stop().await;
}
// ANCHOR_END: redrive_test
