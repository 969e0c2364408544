//! Wiring: `build(settings)` makes the orchestrator service, bound to its port (0 in tests);
//! `run_until_stopped(shutdown)` serves and drives sagas until the signal, then drains.

use crate::config::{ParticipantsMode, Settings};
use crate::http::{AppState, router};
use crate::orchestrator::Orchestrator;
use crate::participants::Participants;
use crate::participants::http::HttpParticipant;
use anyhow::Context as _;
use cruncan_http::ReadinessCheck;
use cruncan_shutdown::Shutdown;
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A built, bound, not yet running orchestrator service.
pub struct App {
    listener: tokio::net::TcpListener,
    router: axum::Router,
    orchestrator: Arc<Orchestrator>,
    pool: PgPool,
    drain: Duration,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("addr", &self.listener.local_addr().ok()).finish_non_exhaustive()
    }
}

/// The participants `settings` ask for: in process on `pool`, or HTTP clients.
pub fn participants(settings: &Settings, pool: &PgPool) -> anyhow::Result<Participants> {
    let p = &settings.participants;
    Ok(match p.mode {
        ParticipantsMode::InProcess => Participants::in_process(pool.clone()),
        ParticipantsMode::Http => {
            let timeout = p.timeout;
            Participants {
                orders: Arc::new(HttpParticipant::new(&p.orders_url, timeout)?),
                payments: Arc::new(HttpParticipant::new(&p.payments_url, timeout)?),
                inventory: Arc::new(HttpParticipant::new(&p.inventory_url, timeout)?),
                shipping: Arc::new(HttpParticipant::new(&p.shipping_url, timeout)?),
            }
        }
    })
}

/// Builds the orchestrator service: database (created when configured, migrated),
/// participants, orchestrator, router and the bound listener.
pub async fn build(settings: Settings) -> anyhow::Result<App> {
    if settings.database.create_if_missing {
        cruncan_db::ensure_database(&settings.database).await?;
    }
    let pool = settings.database.lazy_pool();
    cruncan_db::migrate(&crate::MIGRATOR, &pool, Duration::from_secs(30)).await?;
    let config = settings.orchestrator.clone();
    config.validate()?;
    let participants = participants(&settings, &pool)?;
    let orchestrator = Arc::new(Orchestrator::new(pool.clone(), participants, config));
    let ready: ReadinessCheck = {
        let pool = pool.clone();
        Arc::new(move || {
            let pool = pool.clone();
            Box::pin(async move { cruncan_db::ping(&pool, Duration::from_secs(1)).await.context("database") })
        })
    };
    let router = router(AppState { orchestrator: Arc::clone(&orchestrator), ready });
    let addr = format!("{}:{}", settings.http.host, settings.http.port);
    let listener = tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("binding {addr}"))?;
    let drain = settings.orchestrator.drain_timeout;
    Ok(App { listener, router, orchestrator, pool, drain })
}

impl App {
    /// The bound address.
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// The database pool (tests inspect rows through it).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Serves and drives sagas until `shutdown`; then lets running sagas finish (up to the
    /// drain timeout) and gives up the leases of the rest.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr()?, owner = self.orchestrator.owner(), "saga orchestrator listening");
        let worker = tokio::spawn(Arc::clone(&self.orchestrator).run(shutdown.clone(), self.drain));
        cruncan_http::serve(self.listener, self.router, shutdown).await?;
        worker.await.context("orchestrator task")?;
        self.pool.close().await;
        Ok(())
    }
}
