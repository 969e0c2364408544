//! Wiring: one `build_*` per program. Each binds its listener (port 0 in tests) and returns an
//! [`App`] to run until shutdown.

use crate::config::{OrdersSettings, ServiceSettings};
use crate::orders::clients::{HttpCatalog, HttpUsers};
use crate::orders::place::Ports;
use crate::orders::sweeper::Sweeper;
use crate::orders::{OrdersState, PgOrders};
use crate::products::ProductStore;
use crate::resilience::Dependency;
use crate::users::UserStore;
use anyhow::Context as _;
use axum::Router;
use cruncan_db::DatabaseSettings;
use cruncan_http::ReadinessCheck;
use cruncan_shutdown::Shutdown;
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use utoipa::OpenApi as _;

/// A built, bound, not yet running program.
pub struct App {
    name: &'static str,
    listener: tokio::net::TcpListener,
    router: Router,
    pool: Option<PgPool>,
    background: Vec<Background>,
}

/// A task that runs beside the server until shutdown (the order sweeper, the rate limiter's
/// pruning).
type Background = Box<dyn FnOnce(Shutdown) -> tokio::task::JoinHandle<()> + Send>;

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("name", &self.name)
            .field("addr", &self.listener.local_addr().ok())
            .finish()
    }
}

impl App {
    /// An app from its parts.
    pub fn new(
        name: &'static str,
        listener: tokio::net::TcpListener,
        router: Router,
        pool: Option<PgPool>,
    ) -> Self {
        Self { name, listener, router, pool, background: Vec::new() }
    }

    /// Adds a task that runs beside the server and stops with it.
    pub fn with_background<F, Fut>(mut self, task: F) -> Self
    where
        F: FnOnce(Shutdown) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.background.push(Box::new(move |shutdown| tokio::spawn(task(shutdown))));
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Its database (tests look at rows through it).
    pub fn pool(&self) -> Option<&PgPool> {
        self.pool.as_ref()
    }

    /// Serves until `shutdown`, then drains in-flight requests.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        tracing::info!(service = self.name, addr = %self.local_addr()?, "listening");
        let background: Vec<_> = self.background.into_iter().map(|task| task(shutdown.clone())).collect();
        cruncan_http::serve(self.listener, self.router, shutdown).await?;
        for task in background {
            task.await?;
        }
        if let Some(pool) = self.pool {
            pool.close().await;
        }
        Ok(())
    }
}

/// Binds `host:port`.
pub async fn bind(host: &str, port: u16) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = format!("{host}:{port}");
    tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("binding {addr}"))
}

async fn database(s: &DatabaseSettings, migrator: &sqlx::migrate::Migrator) -> anyhow::Result<PgPool> {
    if s.create_if_missing {
        cruncan_db::ensure_database(s).await?;
    }
    let pool = s.lazy_pool();
    cruncan_db::migrate(migrator, &pool, Duration::from_secs(30)).await?;
    Ok(pool)
}

/// The layers every service shares: deadline, health, OpenAPI, JSON 404/405, telemetry.
fn service(
    name: &'static str,
    routes: Router,
    doc: utoipa::openapi::OpenApi,
    s: &ServiceSettings,
    pool: &PgPool,
) -> Router {
    let ready: ReadinessCheck = {
        let pool = pool.clone();
        Arc::new(move || {
            let pool = pool.clone();
            Box::pin(async move { cruncan_db::ping(&pool, Duration::from_secs(1)).await.context(name) })
        })
    };
    routes
        .layer(axum::middleware::from_fn_with_state(s.request_timeout, crate::deadline::enforce))
        .route("/openapi.json", axum::routing::get(move || async move { axum::Json(doc) }))
        .merge(cruncan_http::health_routes(ready))
        .fallback(cruncan_http::not_found)
        .layer(axum::middleware::from_fn(cruncan_http::json_method_not_allowed))
        .layer(axum::middleware::from_fn(cruncan_http::telemetry_middleware))
}

/// The user service.
pub async fn build_users(s: &ServiceSettings) -> anyhow::Result<App> {
    let pool = database(&s.database, &crate::users::MIGRATOR).await?;
    let routes = crate::users::router(UserStore(pool.clone()));
    let router = service("users", routes, crate::users::ApiDoc::openapi(), s, &pool);
    Ok(App::new("users", bind(&s.host, s.port).await?, router, Some(pool)))
}

/// The product service.
pub async fn build_products(s: &ServiceSettings) -> anyhow::Result<App> {
    let pool = database(&s.database, &crate::products::MIGRATOR).await?;
    let routes = crate::products::router(ProductStore(pool.clone()));
    let router = service("products", routes, crate::products::ApiDoc::openapi(), s, &pool);
    Ok(App::new("products", bind(&s.host, s.port).await?, router, Some(pool)))
}

/// The order service's handles on its dependencies (their breakers, for tests and dashboards).
#[derive(Debug, Clone)]
pub struct OrdersDeps {
    /// Calls to the user service.
    pub users: Dependency,
    /// Calls to the product service.
    pub products: Dependency,
}

/// The order service: its database, a layered client per dependency, load shedding, and the
/// sweeper that releases what failed orders still hold.
pub async fn build_orders(s: &OrdersSettings) -> anyhow::Result<(App, OrdersDeps)> {
    let pool = database(&s.service.database, &crate::orders::MIGRATOR).await?;
    let client = reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(30)).build()?;
    let users = Dependency::new("users", &s.users_url, client.clone(), &s.users_calls)?;
    let products = Dependency::new("products", &s.products_url, client, &s.products_calls)?;
    let store = PgOrders(pool.clone());
    let catalog = Arc::new(HttpCatalog::new(products.clone(), s.price_staleness));
    let release_timeout = s.release_timeout;
    let ports = Ports {
        users: Arc::new(HttpUsers(users.clone())),
        catalog: catalog.clone(),
        store: Arc::new(store.clone()),
        release_timeout,
    };
    let sweeper = Sweeper {
        pool: pool.clone(),
        catalog,
        every: s.sweep_interval,
        // Longer than any order can take, so an order still being placed is never swept.
        stale_after: 2 * (s.service.request_timeout + release_timeout),
        release_timeout,
    };
    let routes = crate::orders::router(OrdersState { ports, store });
    let router = service("orders", routes, crate::orders::ApiDoc::openapi(), &s.service, &pool);
    let router = crate::shed::with_load_shedding(router, s.max_in_flight);
    let listener = bind(&s.service.host, s.service.port).await?;
    let app = App::new("orders", listener, router, Some(pool)).with_background(|stop| sweeper.run(stop));
    Ok((app, OrdersDeps { users, products }))
}
