//! Steps about the whole flow: one, Kafka and two together, through restarts.

use crate::world::*;
use crate::{one::valid_body, two::received_once};
use cruncan_testkit::unique_name;
use cucumber::{given, then, when};
use std::process::Command;
use std::time::Duration;

#[given("the whole flow is running")]
pub(crate) async fn flow_running(w: &mut FlowWorld) {
    let topic = unique_name("bdd-flow");
    w.start_stub().await;
    w.start_one(&topic).await;
    let s = w.two_settings(&topic).await;
    w.start_two(s).await;
}

#[then("the third party receives that request id exactly once")]
pub(crate) async fn flow_once(w: &mut FlowWorld) {
    received_once(w).await;
}

pub(crate) async fn post_accepted(w: &mut FlowWorld, n: usize) {
    for _ in 0..n {
        let (status, body) = w.post("application/json", valid_body().to_string(), None).await;
        match status {
            201 => w.accepted.push(body["request_id"].as_str().unwrap().to_owned()),
            503 => {} // not accepted: the client was told to retry
            other => panic!("expected 201 or 503, saw {other}: {body}"),
        }
    }
}

#[when(expr = "{int} requests are posted while the Kafka broker restarts")]
pub(crate) async fn post_during_broker_restart(w: &mut FlowWorld, n: usize) {
    post_accepted(w, n / 4).await;
    let script = cruncan_config::workspace_dir().join("scripts/stack.sh").display().to_string();
    let restart = tokio::task::spawn_blocking(move || {
        Command::new("bash").args([script.as_str(), "restart-kafka"]).status()
    });
    post_accepted(w, n - n / 4).await;
    let status = restart.await.unwrap().unwrap();
    assert!(status.success(), "restarting the broker failed");
}

#[when(expr = "{int} requests are posted while service two restarts")]
pub(crate) async fn post_during_two_restart(w: &mut FlowWorld, n: usize) {
    post_accepted(w, n / 2).await;
    // A crash, not a polite stop: whatever two had not committed comes again.
    let mut old = w.two.take().unwrap();
    old.task.take().unwrap().abort();
    let settings = old.settings.clone();
    drop(old);
    w.start_two(settings).await;
    post_accepted(w, n - n / 2).await;
}

#[then("every accepted request id reaches the third party")]
pub(crate) async fn none_lost(w: &mut FlowWorld) {
    assert!(w.accepted.len() >= 150, "expected most requests accepted, saw {}", w.accepted.len());
    let counts = w.wait_received(&w.accepted.clone(), Duration::from_secs(180)).await;
    let duplicates = counts.values().filter(|c| **c > 1).count();
    eprintln!(
        "  {} accepted, all delivered; {duplicates} delivered more than once (at-least-once)",
        w.accepted.len()
    );
}

fn stack(command: &'static str) -> tokio::task::JoinHandle<std::io::Result<std::process::ExitStatus>> {
    let script = cruncan_config::workspace_dir().join("scripts/stack.sh").display().to_string();
    tokio::task::spawn_blocking(move || Command::new("bash").args([script.as_str(), command]).status())
}

#[when("the Kafka broker is stopped")]
pub(crate) async fn broker_stopped(_w: &mut FlowWorld) {
    assert!(stack("stop-kafka").await.unwrap().unwrap().success(), "stopping the broker failed");
}

#[when("the Kafka broker is started again")]
pub(crate) async fn broker_started(_w: &mut FlowWorld) {
    assert!(stack("start-kafka").await.unwrap().unwrap().success(), "starting the broker failed");
}

#[when(expr = "{int} requests are posted")]
pub(crate) async fn post_n(w: &mut FlowWorld, n: usize) {
    post_accepted(w, n).await;
}

#[then(expr = "service one is ready and accepted all {int}")]
pub(crate) async fn one_ready_and_accepting(w: &mut FlowWorld, n: usize) {
    assert_eq!(w.accepted.len(), n, "the broker is not part of one's readiness: every request is 201");
    let ready = reqwest::get(format!("{}/readyz", w.one().base)).await.unwrap();
    assert_eq!(ready.status(), 200, "one stays ready while the broker is away");
}

#[then(expr = "the outbox holds at least {int} unsent messages")]
pub(crate) async fn outbox_holds(w: &mut FlowWorld, n: i64) {
    let pending = w.count("SELECT count(*) FROM outbox WHERE sent_at IS NULL", None).await;
    assert!(pending >= n, "expected at least {n} unsent outbox rows, saw {pending}");
}

#[then("all of them reach the third party")]
pub(crate) async fn all_reach(w: &mut FlowWorld) {
    assert!(!w.accepted.is_empty(), "nothing was accepted");
    w.wait_received(&w.accepted.clone(), Duration::from_secs(180)).await;
}
