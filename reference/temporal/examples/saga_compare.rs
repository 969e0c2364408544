//! `cargo run --example saga_compare -- --sagas 50`: the same order saga, one after another,
//! through `reference/saga`'s hand-built orchestrator and through Temporal (an in-process worker
//! on the dev server at `TEMPORAL_ADDRESS`), over the same in-process participants. Prints the
//! latency per saga (start to outcome) of each as a Markdown table. Each run uses two fresh
//! databases (`t_…`, dropped by later test runs after an hour). Needs `make up` and
//! `make up-temporal`.

use clap::Parser;
use saga::domain::{CreateOrderBody, NewOrder};
use saga::participants::Participants;
use saga::{Orchestrator, OrchestratorConfig};
use std::time::{Duration, Instant};
use temporal_ref::connect::{TemporalSettings, connect};
use temporal_ref::saga::client::{saga_outcome, start_saga};
use temporal_ref::worker::{WorkerSettings, run_worker};

#[derive(Debug, Parser)]
struct Args {
    /// Sagas per engine (each reserves one unit of product_3, of which there are 200).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=150))]
    sagas: u32,
}

fn order() -> anyhow::Result<NewOrder> {
    Ok(CreateOrderBody::from_lines("bench", &[("product_3", 1, 9.99)]).validate()?)
}

/// p50, p95, max, mean in milliseconds.
fn summary(mut samples: Vec<Duration>) -> [f64; 4] {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| ms(samples[((samples.len() - 1) as f64 * q).round() as usize]);
    let mean = ms(samples.iter().sum::<Duration>()) / samples.len() as f64;
    [at(0.5), at(0.95), at(1.0), mean]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let base = cruncan_db::local_test_settings()?;
    let hand_db = cruncan_db::create_test_database(&base).await?;
    let hand_pool = hand_db.lazy_pool();
    saga::MIGRATOR.run(&hand_pool).await?;

    // The hand-built orchestrator: state in PostgreSQL, written before and after every call.
    let orchestrator = Orchestrator::new(
        hand_pool.clone(),
        Participants::in_process(hand_pool),
        OrchestratorConfig::default(),
    );
    let mut hand = Vec::new();
    for _ in 0..args.sagas {
        let started = Instant::now();
        let record = orchestrator.accept(order()?).await?;
        orchestrator.drive(record).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
        hand.push(started.elapsed());
    }

    // Temporal: the workflow's history is the state; one in-process worker.
    let coffee_db = cruncan_db::create_test_database(&base).await?;
    let saga_db = cruncan_db::create_test_database(&base).await?;
    let stores = temporal_ref::db::connect(&coffee_db, &saga_db).await?;
    let client = connect(&TemporalSettings::from_env("saga-compare")).await?;
    let queue = format!("saga-compare-{}", std::process::id());
    let settings = WorkerSettings::new(queue.clone(), Duration::ZERO);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = run_worker(client.clone(), stores, settings, async {
        let _ = stopped.await;
    });
    let runs = async {
        let mut temporal = Vec::new();
        for _ in 0..args.sagas {
            let started = Instant::now();
            let saga = start_saga(&client, &queue, order()?).await?;
            saga_outcome(&client, &saga).await?;
            temporal.push(started.elapsed());
        }
        let _ = stop.send(());
        anyhow::Ok(temporal)
    };
    let (worker, temporal) = tokio::join!(worker, runs);
    worker?;
    let temporal = temporal?;

    println!("| engine | sagas | p50 ms | p95 ms | max ms | mean ms |");
    println!("|---|---|---|---|---|---|");
    for (name, samples) in
        [("hand-built orchestrator (reference/saga)", hand), ("Temporal workflow", temporal)]
    {
        let [p50, p95, max, mean] = summary(samples);
        println!("| {name} | {} | {p50:.1} | {p95:.1} | {max:.1} | {mean:.1} |", args.sagas);
    }
    Ok(())
}
