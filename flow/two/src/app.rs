//! Wiring: `build(settings)` makes the consumer, handler and admin server; `run_until_stopped`
//! consumes until the shutdown signal, then finishes in-flight messages and commits.

use crate::config::Settings;
use crate::handler::DeliveryHandler;
use crate::store::ProcessedStore;
use anyhow::Context as _;
use cruncan_accesstoken::TokenCache;
use cruncan_http::ReadinessCheck;
use cruncan_kafka::{Consumer, Producer};
use cruncan_shutdown::Shutdown;
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The embedded migrations of service two.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A built service two, not yet consuming.
pub struct App {
    consumer: Consumer,
    handler: Arc<DeliveryHandler>,
    admin: tokio::net::TcpListener,
    router: axum::Router,
    pool: PgPool,
    dedup_retention: Duration,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("admin", &self.admin.local_addr().ok()).finish_non_exhaustive()
    }
}

// ANCHOR: build
/// Builds service two: its database (created when configured, migrated), the topics, the
/// dead-letter producer, the consumer, the handler and the admin server.
pub async fn build(settings: Settings) -> anyhow::Result<App> {
    if settings.database.create_if_missing {
        cruncan_db::ensure_database(&settings.database).await?;
    }
    let pool = settings.database.lazy_pool();
    cruncan_db::migrate(&MIGRATOR, &pool, Duration::from_secs(30)).await?;

    let k = &settings.kafka;
    for topic in [k.topic.clone(), k.consumer.dead_letter_topic(&k.topic)] {
        if let Err(e) = cruncan_kafka::ensure_topic(&k.brokers, &topic, k.partitions, k.replication).await {
            tracing::warn!(error = %format!("{e:#}"), %topic, "could not ensure topic; consuming anyway");
        }
    }
    let dead_letters = Producer::new(&k.brokers, &k.dead_letters)?;
    let consumer =
        Consumer::new(&k.brokers, std::slice::from_ref(&k.topic), k.consumer.clone(), dead_letters.clone())?;

    let http = reqwest::Client::builder().build().context("building the HTTP client")?;
    let tokens = TokenCache::new(http.clone(), settings.token.clone());
    let handler = Arc::new(DeliveryHandler::new(
        tokens,
        http,
        settings.three.clone(),
        ProcessedStore::new(pool.clone()),
    ));

    let ready: ReadinessCheck = {
        let (pool, producer, handler) = (pool.clone(), dead_letters, Arc::clone(&handler));
        Arc::new(move || {
            let (pool, producer, handler) = (pool.clone(), producer.clone(), Arc::clone(&handler));
            Box::pin(async move {
                if let Some(why) = handler.config_error() {
                    anyhow::bail!("configuration: {why}");
                }
                cruncan_db::ping(&pool, Duration::from_secs(1)).await.context("database")?;
                producer.check(Duration::from_secs(2)).await.context("kafka")?;
                Ok(())
            })
        })
    };
    let router = cruncan_http::health_routes(ready)
        .fallback(cruncan_http::not_found)
        .layer(axum::middleware::from_fn(cruncan_http::telemetry_middleware));
    let addr = format!("{}:{}", settings.admin.host, settings.admin.port);
    let admin = tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("binding {addr}"))?;
    Ok(App { consumer, handler, admin, router, pool, dedup_retention: settings.dedup.retention })
}
// ANCHOR_END: build

impl App {
    /// The admin server's address.
    pub fn admin_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.admin.local_addr()?)
    }

    /// Two's database pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    // ANCHOR: run_until_stopped
    /// Consumes until `shutdown`; then each lane finishes its message, offsets are committed, and
    /// the admin server stops last (it reports readiness until the end).
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let addr = self.admin_addr()?;
        tracing::info!(%addr, "service two consuming; admin server listening");
        let admin_stop = Shutdown::new();
        let admin = tokio::spawn(cruncan_http::serve(self.admin, self.router, admin_stop.clone()));
        // Its own stop: the consumer can also end on an error, without any shutdown.
        let pruner_stop = shutdown.child();
        let pruner =
            tokio::spawn(crate::retention::run(self.pool.clone(), self.dedup_retention, pruner_stop.clone()));
        let consumed = self.consumer.run(self.handler, shutdown).await;
        // It stops at the latest after the statement it is running.
        pruner_stop.trigger();
        if let Err(e) = pruner.await {
            tracing::error!(error = %e, "processed-id retention task failed");
        }
        admin_stop.trigger();
        admin.await.context("admin server task")??;
        self.pool.close().await;
        tracing::info!("service two stopped");
        consumed
    }
    // ANCHOR_END: run_until_stopped
}
