//! The worker: polls one task queue, runs the workflows (replaying them from history when it has
//! not seen them before) and the activities. Any number of these may run; the server hands each
//! task to one of them.

use crate::coffee::activities::CoffeeActivities;
use crate::coffee::shop::CoffeeShop;
use crate::coffee::workflow::CoffeeOrderWorkflow;
use crate::db::Stores;
use crate::saga::activities::{CrashPoint, SagaActivities};
use crate::saga::workflow::OrderSagaWorkflow;
use anyhow::Context as _;
use saga::participants::Participants;
use std::future::Future;
use std::time::Duration;
use temporalio_client::Client;
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

/// The task queue the examples use.
pub const TASK_QUEUE: &str = "coffee-shop";

/// What a worker polls, how fast its barista is, and how it reacts to a crash of another.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// The task queue (tests use one each, so they never take each other's tasks).
    pub task_queue: String,
    /// How long brewing one drink takes.
    pub brew_time: Duration,
    /// How long the server holds a workflow task for this worker (which has the workflow
    /// cached) before any worker may take it. After a crash, the next step of each workflow
    /// the dead worker had cached waits this long.
    pub sticky_timeout: Duration,
    /// Abort the process at this point of the saga (crash tests and demos).
    pub crash: Option<CrashPoint>,
}

impl WorkerSettings {
    /// The SDK's defaults (10s sticky timeout) on `task_queue`, brewing in `brew_time`.
    pub fn new(task_queue: impl Into<String>, brew_time: Duration) -> Self {
        Self {
            task_queue: task_queue.into(),
            brew_time,
            sticky_timeout: Duration::from_secs(10),
            crash: None,
        }
    }
}

// ANCHOR: run_worker
/// Runs a worker for both workflows and their activities until `shutdown` resolves,
/// then lets in-flight tasks finish and returns.
pub async fn run_worker(
    client: Client,
    stores: Stores,
    settings: WorkerSettings,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let coffee = CoffeeActivities::new(CoffeeShop::new(stores.coffee), settings.brew_time);
    let saga = SagaActivities::new(Participants::in_process(stores.saga), settings.crash);
    let options = WorkerOptions::new(settings.task_queue.clone())
        .register_workflow::<CoffeeOrderWorkflow>()?
        .register_workflow::<OrderSagaWorkflow>()?
        .register_activities(coffee)
        .register_activities(saga)
        .sticky_queue_schedule_to_start_timeout(settings.sticky_timeout)
        .graceful_shutdown_period(Duration::from_secs(5))
        .build();
    let mut worker = Worker::new(&runtime, client, options)?;
    let stop = worker.shutdown_handle();
    let run = worker.run();
    tokio::pin!(run);
    tokio::select! {
        result = &mut run => result.context("worker stopped")?,
        () = shutdown => {
            stop();
            run.await.context("worker shutdown")?;
        }
    }
    Ok(())
}
// ANCHOR_END: run_worker
