//! One test's world: a fresh database, a client, a task queue of its own, and a worker that runs
//! while the test's scenario runs.

use sqlx::PgPool;
use std::future::Future;
use std::time::Duration;
use temporal_ref::coffee::shop::CoffeeShop;
use temporal_ref::connect::{TemporalSettings, connect};
use temporal_ref::worker::{WorkerSettings, run_worker};
use temporalio_client::Client;

/// Every wait in a test is bounded by this.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub struct TestEnv {
    pub client: Client,
    pub pool: PgPool,
    pub shop: CoffeeShop,
    pub task_queue: String,
    pub database: String,
}

impl TestEnv {
    pub async fn new() -> Self {
        let base = cruncan_db::local_test_settings().unwrap();
        let db = cruncan_db::create_test_database(&base).await.unwrap();
        let pool = temporal_ref::db::connect(&db).await.unwrap();
        let client = connect(&TemporalSettings::from_env("test")).await.unwrap();
        Self {
            client,
            shop: CoffeeShop::new(pool.clone()),
            pool,
            task_queue: cruncan_testkit::unique_name("tq"),
            database: db.name,
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
        let worker = run_worker(self.client.clone(), self.pool.clone(), settings, async {
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
