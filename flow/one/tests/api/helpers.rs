//! `spawn_app()` and friends: the real service on port 0, a fresh database, a unique topic.

use cruncan_db::DatabaseSettings;
use cruncan_shutdown::Shutdown;
pub use cruncan_testkit::{brokers, read_topic, wait_until};
use one::Settings;
use sqlx::PgPool;

pub fn telemetry() -> &'static cruncan_testkit::TestTelemetry {
    cruncan_testkit::global_telemetry("one")
}

pub use flow_bdd::test_database;

/// The harness's settings for one (config files, `db`, a unique topic).
pub fn settings(db: &DatabaseSettings) -> Settings {
    flow_bdd::one_settings(db)
}

pub struct TestApp {
    pub base: String,
    pub pool: PgPool,
    pub settings: Settings,
    pub shutdown: Shutdown,
    pub handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub client: reqwest::Client,
}

pub async fn spawn_app() -> TestApp {
    spawn_with(settings(&test_database().await)).await
}

pub async fn spawn_with(settings: Settings) -> TestApp {
    telemetry();
    let app = one::build(settings.clone()).await.unwrap();
    let addr = app.local_addr().unwrap();
    let pool = app.pool().clone();
    let shutdown = Shutdown::new();
    let handle = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    TestApp {
        base: format!("http://{addr}"),
        pool,
        settings,
        shutdown,
        handle,
        client: reqwest::Client::new(),
    }
}

impl TestApp {
    pub async fn post_one(&self, body: &serde_json::Value) -> reqwest::Response {
        self.post_raw("application/json", body.to_string(), &[]).await
    }

    pub async fn post_raw(
        &self,
        content_type: &str,
        body: String,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req =
            self.client.post(format!("{}/one", self.base)).header("content-type", content_type).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.base)).send().await.unwrap()
    }

    pub async fn count(&self, table: &str) -> i64 {
        let sql = sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}"));
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }

    pub async fn pending(&self) -> i64 {
        cruncan_outbox::backlog(&self.pool, &one::outbox::table().unwrap()).await.unwrap().0
    }

    /// Stops the app the way SIGTERM would and waits for it.
    pub async fn stop(self) {
        self.shutdown.trigger();
        self.handle.await.unwrap().unwrap();
    }
}

pub fn valid_body() -> serde_json::Value {
    serde_json::json!({"user_id": "user-1", "prompt": "summarise this", "data": [{"key": "lang", "value": "en"}]})
}
