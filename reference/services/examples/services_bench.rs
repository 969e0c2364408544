//! `cargo run --example services_bench`: what each resilience layer does to a caller
//! and its dependency, measured. A stub dependency on 127.0.0.1 is made flaky (every other call
//! 503), slow (one call in ten takes 1 s), down (every call 503) or hung (every call takes
//! 500 ms); the same calls go through the order service's `Dependency` stack with one layer set
//! differently. For each: calls made, calls that reached the dependency, errors, caller p50 and p99.
//! Bounded (about 10 s); prints one JSON line.

use axum::extract::State;
use axum::http::StatusCode;
use futures::StreamExt as _;
use serde_json::{Value, json};
use services::config::CallSettings;
use services::deadline::Deadline;
use services::resilience::{Call, Dependency};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
enum Fault {
    Flaky,
    Slow,
    Down,
    Hung,
}

#[derive(Default)]
struct Stub {
    fault: std::sync::Mutex<Option<Fault>>,
    hits: AtomicU64,
}

async fn answer(State(stub): State<Arc<Stub>>) -> StatusCode {
    let n = stub.hits.fetch_add(1, Ordering::SeqCst);
    let fault = *stub.fault.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    match fault {
        Some(Fault::Flaky) if n % 2 == 0 => StatusCode::SERVICE_UNAVAILABLE,
        Some(Fault::Down) => StatusCode::SERVICE_UNAVAILABLE,
        Some(Fault::Slow) if n % 10 == 0 => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            StatusCode::OK
        }
        Some(Fault::Hung) => {
            tokio::time::sleep(Duration::from_millis(500)).await;
            StatusCode::OK
        }
        _ => StatusCode::OK,
    }
}

/// No layer does anything: one attempt, no timeout to speak of, no breaker, no bulkhead.
fn bare() -> CallSettings {
    CallSettings {
        attempt_timeout: Duration::from_millis(10_000),
        max_attempts: 1,
        retry_budget_percent: 0.1,
        retry_budget_min_per_sec: 1,
        backoff_min: Duration::from_millis(2),
        backoff_max: Duration::from_millis(20),
        max_concurrent: 10_000,
        breaker_failure_rate: 1.0,
        breaker_window: 100_000,
        breaker_min_calls: 100_000,
        breaker_open: Duration::from_millis(1_000),
        breaker_half_open_calls: 1,
    }
}

async fn measure(
    stub: &Arc<Stub>,
    base: &str,
    fault: Fault,
    s: &CallSettings,
    calls: usize,
    concurrency: usize,
) -> anyhow::Result<Value> {
    let dep = Dependency::new("bench", base, reqwest::Client::new(), s)?;
    *stub.fault.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(fault);
    stub.hits.store(0, Ordering::SeqCst);
    let mut latencies = hdrhistogram::Histogram::<u64>::new(3)?;
    let results: Vec<(bool, u64)> = futures::stream::iter(0..calls)
        .map(|_| {
            let dep = dep.clone();
            async move {
                let started = Instant::now();
                let ok = dep
                    .send(Call::get("/products/x", Deadline::after(Duration::from_secs(10))))
                    .await
                    .is_ok();
                (ok, u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX))
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    for (_, us) in &results {
        latencies.record(*us)?;
    }
    let reached = stub.hits.load(Ordering::SeqCst);
    Ok(json!({
        "calls": calls,
        "reached": reached,
        "amplification": (reached as f64 / calls as f64 * 100.0).round() / 100.0,
        "errors": results.iter().filter(|(ok, _)| !ok).count(),
        "p50_ms": (latencies.value_at_quantile(0.5) as f64 / 100.0).round() / 10.0,
        "p99_ms": (latencies.value_at_quantile(0.99) as f64 / 100.0).round() / 10.0,
    }))
}

/// Name, fault, calls, concurrency, and the layer settings to compare.
type Scenario = (&'static str, Fault, usize, usize, Vec<(&'static str, CallSettings)>);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let stub = Arc::new(Stub::default());
    let app = axum::Router::new().route("/products/x", axum::routing::get(answer)).with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let retry_3x = CallSettings { max_attempts: 3, retry_budget_percent: 10.0, ..bare() };
    let budget = CallSettings { max_attempts: 3, retry_budget_percent: 0.1, ..bare() };
    let timeout = CallSettings { attempt_timeout: Duration::from_millis(100), ..bare() };
    let timeout_retry =
        CallSettings { attempt_timeout: Duration::from_millis(100), max_attempts: 2, ..bare() };
    let breaker =
        CallSettings { breaker_failure_rate: 0.5, breaker_window: 20, breaker_min_calls: 10, ..bare() };
    let bulkhead = CallSettings { max_concurrent: 8, ..bare() };
    let scenarios: [Scenario; 4] = [
        (
            "flaky_50pc",
            Fault::Flaky,
            400,
            8,
            vec![("none", bare()), ("retry_3x", retry_3x), ("retry_budget", budget)],
        ),
        (
            "slow_10pc_1s",
            Fault::Slow,
            200,
            8,
            vec![("none", bare()), ("timeout_100ms", timeout), ("timeout_and_retry", timeout_retry)],
        ),
        ("down", Fault::Down, 400, 8, vec![("none", bare()), ("breaker", breaker)]),
        ("hung_500ms", Fault::Hung, 64, 64, vec![("none", bare()), ("bulkhead_8", bulkhead)]),
    ];
    let mut report = serde_json::Map::new();
    for (name, fault, calls, concurrency, layers) in scenarios {
        let mut row = serde_json::Map::new();
        for (layer, settings) in layers {
            row.insert(layer.into(), measure(&stub, &base, fault, &settings, calls, concurrency).await?);
        }
        report.insert(name.into(), Value::Object(row));
    }
    println!("{}", Value::Object(report));
    Ok(())
}
