//! Wiring: `build(settings)` makes the whole service (bound to its port, which may be 0 in tests)
//! and `run_until_stopped(shutdown)` runs it until the shutdown signal, then drains.

use crate::batch::Batcher;
use crate::config::Settings;
use crate::http::{AppState, router};
use crate::intake::Intake;
use crate::outbox::Relay;
use crate::repo::{PgRequestRepository, TracedRepository};
use anyhow::Context as _;
use cruncan_http::ReadinessCheck;
use cruncan_id::Generator;
use cruncan_kafka::Producer;
use cruncan_shutdown::Shutdown;
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The embedded migrations of service one.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A built, bound, not yet running service.
pub struct App {
    listener: tokio::net::TcpListener,
    router: axum::Router,
    relay: Relay,
    producer: Producer,
    pool: PgPool,
    drain_timeout: Duration,
    lame_duck: Duration,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("addr", &self.listener.local_addr().ok()).finish_non_exhaustive()
    }
}

// ANCHOR: build
/// Builds service one: database (created when configured, migrated), producer, relay, router,
/// and the bound listener.
pub async fn build(settings: Settings) -> anyhow::Result<App> {
    let node = cruncan_id::resolve_node_id(settings.snowflake.node_id, settings.pod_ip.as_deref())?;
    if node.is_none() {
        tracing::warn!("no POD_IP or snowflake.node_id: using node id 0 (fine for one replica only)");
    }
    let ids = Arc::new(Generator::new(node.unwrap_or(0)));

    if settings.database.create_if_missing {
        cruncan_db::ensure_database(&settings.database).await?;
    }
    let pool = settings.database.lazy_pool();
    cruncan_db::migrate(&MIGRATOR, &pool, Duration::from_secs(30)).await?;

    let producer = Producer::new(&settings.kafka.brokers, &settings.kafka.producer)?;
    let relay = crate::outbox::relay(pool.clone(), producer.clone(), &settings.kafka, &settings.outbox)?;

    let batcher = (settings.writes.max_batch > 1).then(|| {
        Batcher::spawn(pool.clone(), relay.waker(), settings.writes.max_batch, settings.writes.concurrency)
    });

    // ANCHOR: readiness
    // Ready = can accept requests = the database answers. The broker is deliberately not part
    // of it: the outbox exists so requests are accepted while Kafka is away; its state shows in
    // the `outbox.pending` and `outbox.oldest_pending_age` metrics and their alert instead.
    let ready: ReadinessCheck = {
        let pool = pool.clone();
        Arc::new(move || {
            let pool = pool.clone();
            Box::pin(async move { cruncan_db::ping(&pool, Duration::from_secs(1)).await.context("database") })
        })
    };
    // ANCHOR_END: readiness
    let state = AppState {
        intake: Intake {
            repo: Arc::new(TracedRepository(PgRequestRepository::new(pool.clone(), relay.waker(), batcher))),
            ids,
            topic: settings.kafka.topic.as_str().into(),
            timeout: settings.http.request_timeout,
        },
        limits: Arc::new(settings.limits.clone()),
        body_limit: settings.http.body_limit_bytes,
        ready,
        requests: cruncan_telemetry::meter("one")
            .u64_counter("one.requests")
            .with_description("POST /one by outcome: accepted, replayed, rejected (4xx), failed (5xx)")
            .build(),
    };
    let addr = format!("{}:{}", settings.http.host, settings.http.port);
    let listener = tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("binding {addr}"))?;
    Ok(App {
        listener,
        router: router(state),
        relay,
        producer,
        pool,
        drain_timeout: settings.shutdown.drain_timeout,
        lame_duck: settings.shutdown.lame_duck,
    })
}
// ANCHOR_END: build

impl App {
    /// The bound address (the real port when configured with 0).
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// The database pool (tests inspect rows through it).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    // ANCHOR: run_until_stopped
    /// Serves until `shutdown`; then stops accepting, lets in-flight requests finish (up to the
    /// drain deadline), lets the relay publish what is pending, flushes the producer.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let addr = self.local_addr()?;
        tracing::info!(%addr, "service one listening");
        // The relay outlives the HTTP server: it must publish what the last requests wrote.
        let relay_stop = Shutdown::new();
        let relay = tokio::spawn(self.relay.run(relay_stop.clone()));

        let server =
            cruncan_http::serve_draining(self.listener, self.router, shutdown.clone(), self.lame_duck);
        tokio::pin!(server);
        tokio::select! {
            result = &mut server => result?,
            () = async {
                shutdown.wait().await;
                tokio::time::sleep(self.lame_duck + self.drain_timeout).await;
            } => tracing::warn!(timeout = ?self.drain_timeout, "in-flight requests did not finish in time"),
        }
        tracing::info!("HTTP server stopped; draining the outbox");
        relay_stop.trigger();
        relay.await.context("outbox relay task")?;
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(5))).await??;
        self.pool.close().await;
        tracing::info!("service one stopped");
        Ok(())
    }
    // ANCHOR_END: run_until_stopped
}
