//! One test's world: a fresh database, a client, a task queue of its own, and a worker that runs
//! while the test's scenario runs.

use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use temporal_ref::coffee::shop::CoffeeShop;
use temporal_ref::connect::{TemporalSettings, connect};
use temporal_ref::db::Stores;
use temporal_ref::worker::{WorkerSettings, run_worker};
use temporalio_client::Client;

/// Every wait in a test is bounded by this.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub struct TestEnv {
    pub client: Client,
    pub stores: Stores,
    pub shop: CoffeeShop,
    pub task_queue: String,
    /// The coffee shop's database.
    pub database: String,
    /// The saga participants' database.
    pub saga_database: String,
}

impl TestEnv {
    pub async fn new() -> Self {
        let base = cruncan_db::local_test_settings().unwrap();
        let coffee = cruncan_db::create_test_database(&base).await.unwrap();
        let saga = cruncan_db::create_test_database(&base).await.unwrap();
        let stores = temporal_ref::db::connect(&coffee, &saga).await.unwrap();
        let client = connect(&TemporalSettings::from_env("test")).await.unwrap();
        Self {
            client,
            shop: CoffeeShop::new(stores.coffee.clone()),
            stores,
            saga_database: saga.name,
            task_queue: cruncan_testkit::unique_name("tq"),
            database: coffee.name,
        }
    }

    /// A fresh workflow id.
    pub fn id(&self, prefix: &str) -> String {
        cruncan_testkit::unique_name(prefix)
    }

    /// Runs `scenario` while an in-process worker polls this test's task queue; stops the
    /// worker afterwards. The scenario is bounded by [`PATIENCE`].
    pub async fn with_worker<F: Future>(&self, brew_time: Duration, scenario: F) -> F::Output {
        let settings = WorkerSettings::new(self.task_queue.clone(), brew_time);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = run_worker(self.client.clone(), self.stores.clone(), settings, async {
            let _ = stopped.await;
        });
        let scenario = async {
            let out = tokio::time::timeout(PATIENCE, scenario).await;
            let _ = stop.send(());
            out.expect("scenario took too long")
        };
        let (worker, out) = tokio::join!(worker, scenario);
        worker.expect("worker failed");
        out
    }
}

/// Polls `check` every 50ms until it returns `Some`, for at most [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A worker process, killed when dropped (so a failing test leaves none behind).
pub struct WorkerProcess(Child);

impl WorkerProcess {
    pub fn spawn(env: &TestEnv, brew_ms: u64, extra: &[&str]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_temporal_worker"))
            .args(["--task-queue", &env.task_queue, "--database", &env.database])
            .args(["--saga-database", &env.saga_database])
            .args(extra)
            .args(["--brew", &format!("{brew_ms}ms")])
            // The default 10s would hold the workflow's next step for the dead worker that long.
            .args(["--sticky-timeout", "1s"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Self(child)
    }

    pub fn identity(&self) -> String {
        format!("coffee-worker-{}", self.0.id())
    }

    /// Waits (bounded) until the process ends by itself, e.g. at its crash point.
    pub async fn exited(mut self) -> std::process::ExitStatus {
        eventually("the worker to exit", || std::future::ready(self.0.try_wait().unwrap())).await
    }

    /// SIGKILL, and wait until it is gone.
    pub fn kill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
