//! The BDD suite of the whole flow (cucumber). Every scenario gets its own World: its own
//! databases, topic and consumer group, and its own instances of one, two and the stub, so
//! scenarios run concurrently (except `@serial` ones, which restart shared infrastructure).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing step panics with what it saw

mod flow;
mod one;
mod telemetry;
mod two;
mod world;

use cucumber::World as _;
use world::*;

#[tokio::main]
async fn main() {
    let features = cruncan_config::crate_dir!().join("features");
    FlowWorld::cucumber().max_concurrent_scenarios(4).fail_on_skipped().run_and_exit(features).await;
}
