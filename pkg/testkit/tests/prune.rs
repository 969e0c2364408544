//! Stale test topics are deleted from the real broker; young ones and other names stay.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cruncan_testkit::{brokers, delete_test_topics_older_than, unique_name, wait_until};
use rdkafka::consumer::Consumer as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

async fn topics() -> Vec<String> {
    tokio::task::spawn_blocking(|| {
        let client: rdkafka::consumer::BaseConsumer =
            rdkafka::ClientConfig::new().set("bootstrap.servers", brokers()).create().unwrap();
        let md = client.fetch_metadata(None, Duration::from_secs(10)).unwrap();
        md.topics().iter().map(|t| t.name().to_owned()).collect()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn topics_made_by_an_old_run_are_deleted_and_the_rest_stay() {
    let two_hours_ago = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() - 7200;
    let young = unique_name("prune");
    let old = young.replacen(young.split('-').nth(1).unwrap(), &format!("t{two_hours_ago}"), 1);
    let old_dead_letters = format!("{old}.dlq");
    // A name nobody's test made, which no age makes stale.
    let other = format!("prune.kept.{}", young.split('-').nth(2).unwrap());
    for topic in [&young, &old, &old_dead_letters, &other] {
        cruncan_kafka::ensure_topic(&brokers(), topic, 1, 1).await.unwrap();
    }
    wait_until(Duration::from_secs(10), "the topics listed", || async { topics().await.contains(&old) })
        .await;

    let deleted = delete_test_topics_older_than(&brokers(), Duration::from_secs(3600)).await.unwrap();

    assert!(deleted.contains(&old) && deleted.contains(&old_dead_letters), "deleted {deleted:?}");
    assert!(!deleted.contains(&young) && !deleted.contains(&other), "deleted {deleted:?}");
    wait_until(Duration::from_secs(10), "the old topics gone, the rest kept", || async {
        let left = topics().await;
        left.contains(&young)
            && left.contains(&other)
            && !left.contains(&old)
            && !left.contains(&old_dead_letters)
    })
    .await;
    delete(&[&young, &other]).await;
}

async fn delete(names: &[&str]) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", brokers()).create().unwrap();
    admin.delete_topics(names, &AdminOptions::new()).await.unwrap();
}
