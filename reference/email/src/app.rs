//! Wiring: `build(settings)` makes the whole service, bound to its three ports (0 in tests), and
//! `run_until_stopped(shutdown)` runs it until the signal, then drains.

use anyhow::Context as _;
use cruncan_http::ReadinessCheck;
use cruncan_shutdown::Shutdown;
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

use crate::cache::Cache;
use crate::config::Settings;
use crate::grpc::GrpcEmails;
use crate::http::{HttpState, router};
use crate::jetstream::{connect, ensure_consumer, ensure_stream};
use crate::mailer::{Mailer, SmtpMailer};
use crate::metrics::Metrics;
use crate::service::Emails;
use crate::store::Store;
use crate::worker::{Worker, run_pool};
use cruncan_jetstream::Relay;

/// The embedded migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A built, bound, not yet running service.
pub struct App {
    http: TcpListener,
    grpc: TcpListener,
    admin: TcpListener,
    router: axum::Router,
    admin_router: axum::Router,
    grpc_service: GrpcEmails,
    identity: tonic::transport::Identity,
    dev_ca_pem: Option<String>,
    settings: Settings,
    relay: Relay,
    worker: Arc<Worker>,
    consumer: async_nats::jetstream::consumer::PullConsumer,
    pool: PgPool,
    cache_stop: Shutdown,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("http", &self.http.local_addr().ok()).finish_non_exhaustive()
    }
}

async fn bind(host: &str, port: u16) -> anyhow::Result<TcpListener> {
    let addr = format!("{host}:{port}");
    TcpListener::bind(&addr).await.with_context(|| format!("binding {addr}"))
}

/// Builds the service with the SMTP mailer of `settings.smtp`.
pub async fn build(settings: Settings) -> anyhow::Result<App> {
    let mailer = Arc::new(SmtpMailer::new(&settings.smtp)?);
    build_with_mailer(settings, mailer).await
}

/// Builds the service with `mailer`: database (created when configured, migrated), JetStream
/// stream and consumer, Redis cache, relay, workers, the three bound listeners.
pub async fn build_with_mailer(settings: Settings, mailer: Arc<dyn Mailer>) -> anyhow::Result<App> {
    if settings.database.create_if_missing {
        cruncan_db::ensure_database(&settings.database).await?;
    }
    let pool = settings.database.lazy_pool();
    cruncan_db::migrate(&MIGRATOR, &pool, Duration::from_secs(30)).await?;

    let nats = connect(&settings.nats).await?;
    let js = async_nats::jetstream::new(nats.clone());
    let stream = ensure_stream(&js, &settings.nats).await?;
    let consumer = ensure_consumer(&stream, &settings.nats).await?;

    let metrics = Metrics::new();
    let cache_stop = Shutdown::new();
    let cache = Cache::new(&settings.redis, metrics.clone(), cache_stop.clone())?;
    let store = Store::new(pool.clone());
    let relay = Relay::new(pool.clone(), js.clone(), settings.outbox.clone());
    let worker = Arc::new(Worker::new(
        store.clone(),
        cache.clone(),
        mailer,
        js,
        &settings.nats,
        settings.workers.clone(),
        metrics.clone(),
    ));
    let emails = Emails::new(
        store,
        cache,
        relay.clone(),
        settings.nats.subject(crate::jetstream::SEND_SUBJECT),
        settings.http.request_timeout,
    );

    let (identity, dev_ca_pem) = grpc_identity(&settings)?;
    let ready: ReadinessCheck = {
        let (pool, nats) = (pool.clone(), nats.clone());
        Arc::new(move || {
            let (pool, nats) = (pool.clone(), nats.clone());
            Box::pin(async move {
                cruncan_db::ping(&pool, Duration::from_secs(1)).await.context("database")?;
                cruncan_jetstream::connected(&nats)
            })
        })
    };
    let http_state = HttpState {
        emails: emails.clone(),
        body_limit: settings.http.body_limit_bytes,
        metrics: metrics.clone(),
    };
    Ok(App {
        http: bind(&settings.http.host, settings.http.port).await?,
        grpc: bind(&settings.grpc.host, settings.grpc.port).await?,
        admin: bind(&settings.admin.host, settings.admin.port).await?,
        router: router(http_state),
        admin_router: cruncan_http::health_routes(ready),
        grpc_service: GrpcEmails::new(emails, metrics),
        identity,
        dev_ca_pem,
        settings,
        relay,
        worker,
        consumer,
        pool,
        cache_stop,
    })
}

/// The certificate files when configured, else a development CA and certificate made now.
fn grpc_identity(settings: &Settings) -> anyhow::Result<(tonic::transport::Identity, Option<String>)> {
    let g = &settings.grpc;
    if let (Some(cert), Some(key)) = (&g.cert_path, &g.key_path) {
        let cert = std::fs::read_to_string(cert).with_context(|| format!("reading {cert}"))?;
        let key = std::fs::read_to_string(key).with_context(|| format!("reading {key}"))?;
        return Ok((tonic::transport::Identity::from_pem(cert, key), None));
    }
    let pki = crate::tls::dev_pki()?;
    if let Some(out) = &g.dev_ca_out {
        if let Some(dir) = std::path::Path::new(out).parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, &pki.ca_pem).with_context(|| format!("writing {out}"))?;
    }
    Ok((tonic::transport::Identity::from_pem(&pki.cert_pem, &pki.key_pem), Some(pki.ca_pem)))
}

impl App {
    /// The REST address.
    pub fn http_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.http.local_addr()?)
    }
    /// The gRPC address.
    pub fn grpc_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.grpc.local_addr()?)
    }
    /// The health address.
    pub fn admin_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.admin.local_addr()?)
    }
    /// The development CA clients trust (`None` with certificate files).
    pub fn dev_ca_pem(&self) -> Option<&str> {
        self.dev_ca_pem.as_deref()
    }
    /// The database pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
    /// The worker (tests drive `process`/`settle` by hand).
    pub fn worker(&self) -> Arc<Worker> {
        Arc::clone(&self.worker)
    }

    // ANCHOR: run_until_stopped
    /// Serves until `shutdown`. Then: the edges stop accepting and finish their requests; the
    /// workers stop pulling, finish their sends and nak what their last pull brings; the relay
    /// publishes what the last requests wrote; all within `shutdown.drain_timeout`.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let http_addr = self.http_addr()?;
        tracing::info!(rest = %http_addr, grpc = %self.grpc_addr()?, admin = %self.admin_addr()?,
            workers = self.settings.workers.count, "email service listening");
        let relay_stop = Shutdown::new();
        let relay = tokio::spawn(self.relay.run(relay_stop.clone()));
        let workers = (self.settings.workers.count > 0).then(|| {
            tokio::spawn(run_pool(self.worker, self.consumer, self.settings.workers.count, shutdown.clone()))
        });
        let http = cruncan_http::serve(self.http, self.router, shutdown.clone());
        let admin = cruncan_http::serve(self.admin, self.admin_router, shutdown.clone());
        let grpc = crate::grpc::serve(
            self.grpc,
            self.identity,
            &self.settings.grpc,
            self.grpc_service,
            shutdown.clone(),
        );
        let drain = self.settings.shutdown.drain_timeout;
        let servers = async { tokio::try_join!(http, admin, grpc).map(|_| ()) };
        tokio::pin!(servers);
        tokio::select! {
            result = &mut servers => result?,
            () = async { shutdown.wait().await; tokio::time::sleep(drain).await } => {
                tracing::warn!(?drain, "in-flight requests did not finish in time");
            }
        }
        relay_stop.trigger();
        let _ = tokio::time::timeout(drain, relay).await;
        if let Some(workers) = workers
            && tokio::time::timeout(drain, workers).await.is_err()
        {
            tracing::warn!(?drain, "sends still in flight at the deadline; JetStream redelivers them");
        }
        self.cache_stop.trigger();
        self.pool.close().await;
        tracing::info!("email service stopped");
        Ok(())
    }
    // ANCHOR_END: run_until_stopped
}
