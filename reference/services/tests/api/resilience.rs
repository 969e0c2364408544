//! Each layer shown working against a fault injected by the proxy.

use crate::faults::Mode;
use crate::helpers::{json_of, spawn_system, spawn_system_with, test_calls};
use reqwest::{Method, StatusCode};
use services::deadline::Deadline;
use services::resilience::{Call, CircuitState, Dependency};
use std::time::Duration;

#[tokio::test]
async fn resilience_a_slow_product_service_trips_the_timeout() {
    let sys = spawn_system_with(|s| {
        let o = &mut s.orders;
        o.products_calls.attempt_timeout = Duration::from_millis(200);
        o.products_calls.max_attempts = 1;
    })
    .await;
    let (user, p) = (sys.user().await, sys.product(100, 5).await);
    sys.products_proxy.set(Mode::SlowRequest(Duration::from_secs(2)));
    let (status, body) = sys.order(&user, &[(&p, 1)]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["detail"], "products: timed out");
    assert_eq!(sys.stock(&p).await, 5);
}

#[tokio::test]
async fn resilience_the_deadline_travels_downstream() {
    let sys = spawn_system().await;
    let (user, p) = (sys.user().await, sys.product(100, 5).await);
    let body = serde_json::json!({"user_id": user, "items": [{"product_id": p, "quantity": 1}]});
    let r = sys
        .client
        .post(format!("{}/orders", sys.orders.base))
        .header(services::deadline::DEADLINE_HEADER, "1500")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let seen: Vec<u64> = [sys.users_proxy.deadlines(), sys.products_proxy.deadlines()]
        .concat()
        .into_iter()
        .map(|d| d.unwrap())
        .collect();
    assert_eq!(seen.len(), 3, "validate, price, reserve");
    assert!(seen.iter().all(|d| *d > 0 && *d <= 1500), "{seen:?}");
}

// ANCHOR: breaker_test
#[tokio::test]
async fn resilience_the_breaker_opens_then_half_opens_and_closes() {
    // Open long enough that the calls below surely fall inside the open period.
    let sys =
        spawn_system_with(|s| s.orders.products_calls.breaker_open = Duration::from_millis(1_000)).await;
    let (user, p) = (sys.user().await, sys.product(100, 50).await);
    sys.products_proxy.set(Mode::Fail);
    let mut opened = false;
    for _ in 0..20 {
        let (status, body) = sys.order(&user, &[(&p, 1)]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        if body["detail"] == "products: circuit open" {
            opened = true;
            break;
        }
    }
    assert!(opened, "the breaker never opened");
    let reached = sys.products_proxy.hits();
    for _ in 0..5 {
        let (_, body) = sys.order(&user, &[(&p, 1)]).await;
        assert_eq!(body["detail"], "products: circuit open");
    }
    assert_eq!(sys.products_proxy.hits(), reached, "no call reaches products while open");

    sys.products_proxy.set(Mode::Pass);
    tokio::time::sleep(Duration::from_millis(1_100)).await; // then a probe is let through
    let (status, body) = sys.order(&user, &[(&p, 1)]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let breaker = sys.deps.products.breaker();
    use CircuitState::*;
    assert_eq!(breaker.transitions(), vec![Closed, Open, HalfOpen, Closed]);
    assert_eq!(breaker.state(), Closed);
}
// ANCHOR_END: breaker_test

// ANCHOR: budget_test
/// 200 calls against a dependency failing every other request: the calls that reach it.
async fn calls_reaching(budget_percent: f32) -> usize {
    let sys = spawn_system().await;
    let p = sys.product(100, 5).await;
    let mut calls = test_calls();
    calls.retry_budget_percent = budget_percent;
    calls.breaker_failure_rate = 1.0; // this test is about the budget, not the breaker
    let dep = Dependency::new("products", &sys.products_proxy.base, reqwest::Client::new(), &calls).unwrap();
    sys.products_proxy.set(Mode::FailEveryOther);
    for _ in 0..200 {
        let _ = dep.send(Call::get(format!("/products/{p}"), Deadline::after(Duration::from_secs(5)))).await;
    }
    sys.products_proxy.hits()
}

#[tokio::test]
async fn resilience_the_retry_budget_caps_amplification() {
    let budgeted = calls_reaching(0.1).await;
    assert!(budgeted <= 240, "{budgeted} calls reached the dependency for 200 (over 1.2x)");
    // The same three-attempt policy with a budget that never runs dry.
    let unbounded = calls_reaching(10.0).await;
    assert!(unbounded >= 280, "without a budget every failure is retried: {unbounded}");
}
// ANCHOR_END: budget_test

// ANCHOR: bulkhead_test
/// Products hang; ten orders wait on them; then an order for an unknown user (which only
/// calls the user service) comes in. Its status:
async fn user_call_while_products_hang(products_bulkhead: usize) -> (StatusCode, serde_json::Value) {
    let sys = spawn_system_with(|s| {
        let o = &mut s.orders;
        o.max_in_flight = 8;
        o.products_calls.max_concurrent = products_bulkhead;
        o.products_calls.max_attempts = 1;
        o.products_calls.attempt_timeout = Duration::from_millis(10_000);
    })
    .await;
    let (user, p) = (sys.user().await, sys.product(100, 50).await);
    sys.products_proxy.set(Mode::Hang);
    let base = sys.orders.base.clone();
    let body = serde_json::json!({"user_id": user, "items": [{"product_id": p, "quantity": 1}]});
    let stuck: Vec<_> =
        (0..10).map(|_| tokio::spawn(sys.client.post(format!("{base}/orders")).json(&body).send())).collect();
    // The calls held by the hung product service; every other order has been answered.
    let held = products_bulkhead.min(8);
    cruncan_testkit::wait_until(Duration::from_secs(10), "the other orders to be answered", || async {
        sys.products_proxy.hits() >= held && stuck.iter().filter(|s| s.is_finished()).count() == 10 - held
    })
    .await;
    let stranger = uuid::Uuid::new_v4().to_string();
    let answer = sys.order(&stranger, &[(&p, 1)]).await;
    sys.products_proxy.set(Mode::Fail);
    for s in stuck {
        let _ = s.await;
    }
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resilience_the_bulkhead_keeps_user_calls_flowing_while_products_hang() {
    let (status, body) = user_call_while_products_hang(2).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_user")));
    // Without a bulkhead the stuck product calls fill the order service and everything is shed.
    let (status, body) = user_call_while_products_hang(64).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("overloaded")));
}
// ANCHOR_END: bulkhead_test

#[tokio::test]
async fn resilience_cached_prices_answer_within_the_staleness_bound() {
    let sys = spawn_system_with(|s| {
        let o = &mut s.orders;
        o.price_staleness = Duration::from_millis(1_500);
        o.products_calls.max_attempts = 1;
        o.products_calls.breaker_failure_rate = 1.0;
    })
    .await;
    let (user, p) = (sys.user().await, sys.product(700, 50).await);
    assert_eq!(sys.order(&user, &[(&p, 1)]).await.0, StatusCode::CREATED);
    sys.products_proxy.set_for(Method::GET, "/products/", Mode::Fail);
    let (status, order) = sys.order(&user, &[(&p, 1)]).await;
    assert_eq!((status, order["total_cents"].as_i64()), (StatusCode::CREATED, Some(700)), "{order}");
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let (status, body) = sys.order(&user, &[(&p, 1)]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "a price older than the bound is not used: {body}");
    assert_eq!(sys.stock(&p).await, 48);
    let _ = json_of;
}

#[tokio::test]
async fn resilience_breaker_state_and_dependency_calls_are_exported_as_metrics() {
    let t = cruncan_testkit::global_telemetry("services");
    let sys = spawn_system().await;
    let (user, p) = (sys.user().await, sys.product(100, 5).await);
    assert_eq!(sys.order(&user, &[(&p, 1)]).await.0, StatusCode::CREATED);
    tokio::task::spawn_blocking(|| t.guard.force_flush()).await.unwrap();
    let names = ["services.breaker.state", "services.dependency.calls"];
    let metrics = t.receiver.wait_for_metrics(Duration::from_secs(15), &names).await.unwrap();
    assert_eq!(metrics["services.breaker.state"].kind, "gauge");
    assert_eq!(metrics["services.dependency.calls"].kind, "counter");
}
