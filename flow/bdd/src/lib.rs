//! The flow's test harness, shared by one's and two's integration tests and the BDD features:
//! each service's settings loaded from its own config files, then pointed at fresh resources (a
//! database of its own, a unique topic and consumer group, the local stack's broker) with the
//! short timings tests want. A suite changes what it needs on top, in the open.
//!
//! It lives in `flow/` (not `pkg/testkit`) because it knows the services; `pkg/testkit` stays
//! below them and knows only the stack.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a panic is a test failure report

use clap::Parser as _;
use cruncan_db::DatabaseSettings;
use cruncan_testkit::{brokers, unique_name};
use std::time::Duration;

/// The client secret the test token servers expect from two.
pub const CLIENT_SECRET: &str = "s3cr3t-client-secret";

/// The config folder of a flow service (`one`, `two`), as the service itself would find it.
pub fn config_dir(service: &str) -> String {
    cruncan_config::workspace_dir().join("flow").join(service).join("config").display().to_string()
}

/// A fresh database on the local stack's server (or `DATABASE_URL`), for one test.
pub async fn test_database() -> DatabaseSettings {
    let base = cruncan_db::local_test_settings().unwrap();
    cruncan_db::create_test_database(&base).await.unwrap()
}

// ANCHOR: one_settings
/// Service one's settings from its config files, pointed at `db`, a unique topic and the stack's
/// broker; any free port, node id 1, a 500 ms outbox poll and no lame-duck period (a test stops
/// at once).
pub fn one_settings(db: &DatabaseSettings) -> one::Settings {
    let dir = config_dir("one");
    // `test` has no file of its own: base.yaml alone, not local.yaml's conveniences.
    let cli = one::Cli::parse_from(["one", "--config-dir", &dir, "--environment", "test", "--port", "0"]);
    let mut s = one::Settings::load(&cli).unwrap();
    s.database = db.clone();
    s.kafka.brokers = brokers();
    s.kafka.topic = unique_name("one-test");
    s.outbox.poll_interval = Duration::from_millis(500);
    s.shutdown.lame_duck = Duration::ZERO;
    s.snowflake.node_id = Some(1);
    s
}
// ANCHOR_END: one_settings

/// Service two's settings from its config files, pointed at `db`, a unique topic (one partition)
/// and group, the stack's broker, and the token server and third party at the given URLs; any
/// free admin port, fast retries (20 ms to 200 ms, 4 attempts), a 5 s drain and 1 s calls.
pub fn two_settings(db: &DatabaseSettings, token_url: &str, three_url: &str) -> two::Settings {
    let dir = config_dir("two");
    let cli =
        two::Cli::parse_from(["two", "--config-dir", &dir, "--environment", "test", "--admin-port", "0"]);
    let mut s = two::Settings::load(&cli).unwrap();
    s.database = db.clone();
    s.kafka.brokers = brokers();
    s.kafka.topic = unique_name("two-test");
    s.kafka.partitions = 1;
    let consumer = &mut s.kafka.consumer;
    consumer.group_id = unique_name("two-group");
    consumer.backoff_initial = Duration::from_millis(20);
    consumer.backoff_max = Duration::from_millis(200);
    consumer.max_attempts = 4;
    consumer.drain_timeout = Duration::from_secs(5);
    s.token.url = token_url.to_owned();
    s.token.client_secret = CLIENT_SECRET.into();
    s.three.url = three_url.to_owned();
    s.three.timeout = Duration::from_secs(1);
    s
}

/// Whether two recorded `request_id` as delivered, asked through two's own store.
pub async fn delivered(two: &two::Settings, request_id: &str) -> bool {
    let pool = two.database.lazy_pool();
    let found = two::store::ProcessedStore::new(pool.clone()).is_processed(request_id).await.unwrap();
    pool.close().await;
    found
}
