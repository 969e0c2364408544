//! Wiring: `build(settings)` makes the user service, the notes service and the gateway, bound to
//! their ports (0 in tests), and `run_until_stopped(shutdown)` runs them until the signal.
//! They share one process here for the example and the tests; each has its own database, its
//! own listener and talks to the others only over HTTP (JWKS) and NATS, so each can be split out.

use anyhow::Context as _;
use axum::Router;
use axum::http::{HeaderValue, Method, header};
use cruncan_http::ReadinessCheck;
use cruncan_shutdown::Shutdown;
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::{Issuer, Verifier};
use crate::config::{ServiceSettings, Settings};
use crate::events::{NOTE_EVENTS, connect, ensure_stream};
use crate::gateway::follow::Follower;
use crate::gateway::grpc::GrpcFeed;
use crate::gateway::hub::{Hub, Stats};
use crate::gateway::{GatewayState, feed};
use crate::notes::store::Notes;
use crate::notes::{NotesState, consumer};
use crate::users::UsersState;
use cruncan_jetstream::Relay;

/// The users service's migrations.
pub static USERS_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/users");
/// The notes service's migrations.
pub static NOTES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/notes");

/// A built, bound, not yet running system.
pub struct App {
    users: (TcpListener, Router),
    notes: (TcpListener, Router),
    gateway: (TcpListener, Router),
    grpc: (TcpListener, GrpcFeed),
    relays: [Relay; 2],
    consumer: async_nats::jetstream::consumer::PullConsumer,
    feed: (async_nats::jetstream::stream::Stream, String, u64),
    hub: Arc<Hub>,
    pools: [PgPool; 2],
    stop: Shutdown,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("gateway", &self.gateway.0.local_addr().ok()).finish_non_exhaustive()
    }
}

/// Binds `host:port`.
pub async fn bind(host: &str, port: u16) -> anyhow::Result<TcpListener> {
    let addr = format!("{host}:{port}");
    TcpListener::bind(&addr).await.with_context(|| format!("binding {addr}"))
}

// ANCHOR: send_buffer
/// Binds `host:port` with `SO_SNDBUF` set on the listening socket, which Linux copies to every
/// accepted connection: a client that stops reading fills this (and its queue in the hub) and
/// is cut, instead of parking megabytes in the kernel first. 0: the kernel's autotuning.
pub async fn bind_with_send_buffer(host: &str, port: u16, send_buffer: u32) -> anyhow::Result<TcpListener> {
    if send_buffer == 0 {
        return bind(host, port).await;
    }
    let addr = tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("resolving {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))?;
    let socket =
        if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_send_buffer_size(send_buffer)?;
    socket.bind(addr).with_context(|| format!("binding {addr}"))?;
    Ok(socket.listen(1024)?)
}
// ANCHOR_END: send_buffer

/// Which pages may call a service from a browser: the configured origins and the gateway's own
/// (`"*"`: any — tolerable only because the API authenticates with a bearer header, never a
/// cookie, so a foreign page cannot act with the user's credentials).
fn cors(origins: &[String], gateway: SocketAddr) -> CorsLayer {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let own = format!("http://{gateway}");
        AllowOrigin::list(
            origins.iter().chain(std::iter::once(&own)).filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(Duration::from_secs(600))
}

/// A REST service's router with the house plumbing: health, JSON 404/405, telemetry, CORS.
fn service_router(api: Router, s: &ServiceSettings, gateway: SocketAddr, ready: ReadinessCheck) -> Router {
    api.merge(cruncan_http::health_routes(ready))
        .fallback(cruncan_http::not_found)
        .layer(axum::middleware::from_fn(cruncan_http::json_method_not_allowed))
        .layer(axum::middleware::from_fn(cruncan_http::telemetry_middleware))
        .layer(cors(&s.cors_origins, gateway))
}

fn readiness(pool: PgPool, nats: async_nats::Client) -> ReadinessCheck {
    Arc::new(move || {
        let (pool, nats) = (pool.clone(), nats.clone());
        Box::pin(async move {
            cruncan_db::ping(&pool, Duration::from_secs(1)).await.context("database")?;
            cruncan_jetstream::connected(&nats)
        })
    })
}

/// The gateway is ready while NATS is connected (its feed and every replay need it).
fn gateway_readiness(nats: async_nats::Client) -> ReadinessCheck {
    Arc::new(move || {
        let nats = nats.clone();
        Box::pin(async move { cruncan_jetstream::connected(&nats) })
    })
}

async fn database(
    settings: &Settings,
    service: &ServiceSettings,
    migrator: &sqlx::migrate::Migrator,
) -> anyhow::Result<PgPool> {
    let db = settings.database_of(service);
    if db.create_if_missing {
        cruncan_db::ensure_database(&db).await?;
    }
    let pool = db.lazy_pool();
    cruncan_db::migrate(migrator, &pool, Duration::from_secs(30)).await?;
    Ok(pool)
}

/// Builds the three parts: two databases (created when configured, migrated), the stream, the
/// notes service's durable consumer, the signing key, the hub, and four bound listeners.
pub async fn build(settings: Settings) -> anyhow::Result<App> {
    let users_pool = database(&settings, &settings.users, &USERS_MIGRATOR).await?;
    let notes_pool = database(&settings, &settings.notes, &NOTES_MIGRATOR).await?;
    let nats = connect(&settings.nats, "notes").await?;
    let js = async_nats::jetstream::new(nats.clone());
    let stream = ensure_stream(&js, &settings.nats).await?;
    let consumer = consumer::ensure_consumer(&stream, &settings.nats).await?;
    let stop = Shutdown::new();
    let g = &settings.gateway;
    let gateway_listener = bind_with_send_buffer(&g.host, g.port, g.socket_send_buffer_bytes).await?;
    let gateway_addr = gateway_listener.local_addr()?;

    // The user service: issues tokens, publishes user.created.
    let users_listener = bind(&settings.users.host, settings.users.port).await?;
    let users_relay = Relay::new(users_pool.clone(), js.clone(), settings.outbox.clone());
    let users_state = UsersState {
        pool: users_pool.clone(),
        relay: users_relay.clone(),
        issuer: Arc::new(Issuer::generate(settings.auth.clone())?),
        subject: settings.nats.subject(crate::events::USER_CREATED),
    };
    let users_router = service_router(
        crate::users::router(users_state),
        &settings.users,
        gateway_addr,
        readiness(users_pool.clone(), nats.clone()),
    );
    // Everyone else verifies tokens against its JWKS, over HTTP like any other client.
    let jwks_url = format!("http://{}/.well-known/jwks.json", users_listener.local_addr()?);
    let verifier = Verifier::new(jwks_url, &settings.auth)?;

    // The notes service.
    let notes_relay = Relay::new(notes_pool.clone(), js.clone(), settings.outbox.clone());
    let notes_state = NotesState {
        notes: Notes::new(notes_pool.clone(), settings.nats.subject_prefix.clone()),
        relay: notes_relay.clone(),
        verifier: verifier.clone(),
    };
    let notes_listener = bind(&settings.notes.host, settings.notes.port).await?;
    let notes_router = service_router(
        crate::notes::router(notes_state),
        &settings.notes,
        gateway_addr,
        readiness(notes_pool.clone(), nats.clone()),
    );

    // The gateway: live from the end of the stream as it is now; earlier events by replay.
    let filter = settings.nats.subject(NOTE_EVENTS);
    let start = stream.get_info().await.context("reading the stream's state")?.state.last_sequence;
    let hub = Hub::new(settings.gateway.queue_capacity);
    let follower =
        Follower::new(Arc::clone(&hub), stream.clone(), filter.clone(), settings.gateway.max_replay);
    let grpc_listener = bind(&settings.gateway.host, settings.gateway.grpc_port).await?;
    let page_config = serde_json::json!({
        "users_url": format!("http://{}", users_listener.local_addr()?),
        "notes_url": format!("http://{}", notes_listener.local_addr()?),
    });
    let gateway_state = GatewayState {
        follower: follower.clone(),
        verifier: verifier.clone(),
        settings: Arc::new(settings.gateway.clone()),
        page_config: Arc::new(page_config),
        shutdown: stop.clone(),
    };
    let gateway_router = crate::gateway::router(gateway_state, &settings.web_dir())
        .merge(cruncan_http::health_routes(gateway_readiness(nats.clone())))
        .layer(axum::middleware::from_fn(cruncan_http::telemetry_middleware));
    let grpc = GrpcFeed::new(follower, verifier, stop.clone());

    Ok(App {
        users: (users_listener, users_router),
        notes: (notes_listener, notes_router),
        gateway: (gateway_listener, gateway_router),
        grpc: (grpc_listener, grpc),
        relays: [users_relay, notes_relay],
        consumer,
        feed: (stream, filter, start),
        hub,
        pools: [users_pool, notes_pool],
        stop,
    })
}

impl App {
    /// The user service's address.
    pub fn users_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.users.0.local_addr()?)
    }
    /// The notes service's address.
    pub fn notes_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.notes.0.local_addr()?)
    }
    /// The gateway's address (page and WebSocket).
    pub fn gateway_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.gateway.0.local_addr()?)
    }
    /// The gateway's gRPC address.
    pub fn grpc_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.grpc.0.local_addr()?)
    }
    /// The hub (its counters).
    pub fn hub(&self) -> Arc<Hub> {
        Arc::clone(&self.hub)
    }
    /// The gateway's counters.
    pub fn stats(&self) -> &Stats {
        self.hub.stats()
    }
    /// The notes service's database.
    pub fn notes_pool(&self) -> &PgPool {
        &self.pools[1]
    }

    /// Serves until `shutdown`: then the sockets are closed with 1001 (clients resume elsewhere),
    /// the HTTP servers finish their requests, the relays publish what the last requests wrote,
    /// the consumer stops between messages.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        tracing::info!(
            gateway = %self.gateway_addr()?, users = %self.users_addr()?, notes = %self.notes_addr()?,
            grpc = %self.grpc_addr()?, "notes system listening"
        );
        let stop = self.stop.clone();
        tokio::spawn({
            let stop = stop.clone();
            async move {
                shutdown.wait().await;
                stop.trigger();
            }
        });
        let mut tasks = tokio::task::JoinSet::new();
        for relay in self.relays {
            let stop = stop.clone();
            tasks.spawn(async move {
                relay.run(stop).await;
                Ok(())
            });
        }
        let (stream, filter, start) = self.feed;
        let feed_stop = stop.clone();
        tasks.spawn(async move {
            feed::run(stream, filter, self.hub, start, feed_stop).await;
            Ok(())
        });
        let [users_pool, notes_pool] = self.pools;
        tasks.spawn(consumer::run(self.consumer, notes_pool.clone(), stop.clone()));
        tasks.spawn(cruncan_http::serve(self.users.0, self.users.1, stop.clone()));
        tasks.spawn(cruncan_http::serve(self.notes.0, self.notes.1, stop.clone()));
        tasks.spawn(cruncan_http::serve(self.gateway.0, self.gateway.1, stop.clone()));
        tasks.spawn(crate::gateway::grpc::serve(self.grpc.0, self.grpc.1, stop.clone()));
        let mut first_error = None;
        while let Some(done) = tasks.join_next().await {
            match done.context("task panicked").and_then(|r| r) {
                Ok(()) => {}
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "a part of the notes system failed; stopping");
                    stop.trigger();
                    first_error.get_or_insert(e);
                }
            }
        }
        users_pool.close().await;
        notes_pool.close().await;
        tracing::info!("notes system stopped");
        first_error.map_or(Ok(()), Err)
    }
}
