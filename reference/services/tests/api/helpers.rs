//! `spawn_system()`: users, products and orders on port 0, each with a fresh database, with a
//! fault proxy in front of users and of products; `spawn_gateway()` adds the gateway and a JWKS.
#![allow(dead_code)]

use crate::faults::FaultProxy;
use crate::jwtkeys;
use clap::Parser as _;
use cruncan_shutdown::Shutdown;
use reqwest::StatusCode;
use serde_json::{Value, json};
use services::app::OrdersDeps;
use services::config::{CallSettings, GatewaySettings, ServiceSettings};
use services::{App, Cli, Settings};
use sqlx::PgPool;
use std::time::Duration;

/// The crate's config files, every port 0.
pub fn settings() -> Settings {
    let dir = cruncan_config::crate_dir!().join("config");
    let mut s =
        Settings::load(&Cli::parse_from(["services", "--config-dir", dir.to_str().unwrap()])).unwrap();
    s.users.port = 0;
    s.products.port = 0;
    s.orders.service.port = 0;
    s.gateway.port = 0;
    s.orders.users_calls = test_calls();
    s.orders.products_calls = test_calls();
    s
}

/// Short timeouts and a quick breaker, so fault tests take a second, not a minute.
pub fn test_calls() -> CallSettings {
    CallSettings {
        attempt_timeout: Duration::from_millis(1_000),
        max_attempts: 3,
        retry_budget_percent: 0.1,
        retry_budget_min_per_sec: 1,
        backoff_min: Duration::from_millis(2),
        backoff_max: Duration::from_millis(10),
        max_concurrent: 64,
        breaker_failure_rate: 0.5,
        breaker_window: 10,
        breaker_min_calls: 5,
        breaker_open: Duration::from_millis(300),
        breaker_half_open_calls: 1,
    }
}

async fn fresh(mut s: ServiceSettings) -> ServiceSettings {
    let mut base = cruncan_db::local_test_settings().unwrap();
    base.max_connections = s.database.max_connections;
    base.acquire_timeout = s.database.acquire_timeout;
    s.database = cruncan_db::create_test_database(&base).await.unwrap();
    s
}

pub struct Running {
    pub base: String,
    pub pool: Option<PgPool>,
    pub shutdown: Shutdown,
}

pub async fn run(app: App) -> Running {
    let base = format!("http://{}", app.local_addr().unwrap());
    let pool = app.pool().cloned();
    let shutdown = Shutdown::new();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    Running { base, pool, shutdown }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

pub struct System {
    pub users: Running,
    pub products: Running,
    pub orders: Running,
    pub deps: OrdersDeps,
    pub users_proxy: FaultProxy,
    pub products_proxy: FaultProxy,
    pub settings: Settings,
    pub client: reqwest::Client,
}

pub async fn spawn_system() -> System {
    spawn_system_with(|_| {}).await
}

/// The three services; `tweak` adjusts the settings before they start.
pub async fn spawn_system_with(tweak: impl FnOnce(&mut Settings)) -> System {
    let mut s = settings();
    tweak(&mut s);
    let (u, p, o) =
        tokio::join!(fresh(s.users.clone()), fresh(s.products.clone()), fresh(s.orders.service.clone()));
    (s.users, s.products, s.orders.service) = (u, p, o);
    let users = run(services::app::build_users(&s.users).await.unwrap()).await;
    let products = run(services::app::build_products(&s.products).await.unwrap()).await;
    let users_proxy = FaultProxy::start(&users.base).await;
    let products_proxy = FaultProxy::start(&products.base).await;
    s.orders.users_url = users_proxy.base.clone();
    s.orders.products_url = products_proxy.base.clone();
    let (app, deps) = services::app::build_orders(&s.orders).await.unwrap();
    let orders = run(app).await;
    System {
        users,
        products,
        orders,
        deps,
        users_proxy,
        products_proxy,
        settings: s,
        client: reqwest::Client::new(),
    }
}

pub async fn json_of(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

impl System {
    pub async fn user(&self) -> String {
        let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
        let r = self
            .client
            .post(format!("{}/users", self.users.base))
            .json(&json!({"email": email, "name": "Ada"}));
        let (status, body) = json_of(r.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    pub async fn product(&self, price_cents: i64, stock: i32) -> String {
        let body = json!({"name": "Widget", "price_cents": price_cents, "stock": stock});
        let r = self.client.post(format!("{}/products", self.products.base)).json(&body);
        let (status, body) = json_of(r.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    pub async fn order(&self, user: &str, items: &[(&str, i32)]) -> (StatusCode, Value) {
        let items: Vec<Value> = items.iter().map(|(p, q)| json!({"product_id": p, "quantity": q})).collect();
        let r = self
            .client
            .post(format!("{}/orders", self.orders.base))
            .json(&json!({"user_id": user, "items": items}));
        json_of(r.send().await.unwrap()).await
    }

    pub async fn stock(&self, product: &str) -> i32 {
        let id: uuid::Uuid = product.parse().unwrap();
        sqlx::query_scalar("SELECT stock FROM products WHERE id = $1")
            .bind(id)
            .fetch_one(self.products.pool.as_ref().unwrap())
            .await
            .unwrap()
    }

    /// Units held by reservations in state `reserved` for `product`.
    pub async fn reserved(&self, product: &str) -> i64 {
        let id: uuid::Uuid = product.parse().unwrap();
        sqlx::query_scalar("SELECT coalesce(sum(quantity), 0)::bigint FROM reservations WHERE product_id = $1 AND state = 'reserved'")
            .bind(id)
            .fetch_one(self.products.pool.as_ref().unwrap())
            .await
            .unwrap()
    }

    pub async fn orders_by_status(&self, status: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = $1")
            .bind(status)
            .fetch_one(self.orders.pool.as_ref().unwrap())
            .await
            .unwrap()
    }
}

pub struct Gateway {
    pub base: String,
    pub token: String,
    pub key: jwtkeys::TestKey,
    _gateway: Running,
    _jwks: Running,
}

impl Gateway {
    /// A valid token for `sub`.
    pub fn token_for(&self, sub: &str) -> String {
        let mut claims = jwtkeys::claims();
        claims["sub"] = sub.into();
        jwtkeys::sign(&self.key, &claims)
    }
}

/// The gateway in front of `sys` (products through its fault proxy), with a JWKS of its own.
pub async fn spawn_gateway(sys: &System, tweak: impl FnOnce(&mut GatewaySettings)) -> Gateway {
    let key = jwtkeys::rsa_key("gw-test");
    let doc = jwtkeys::jwks(&[&key]);
    let jwks_app = axum::Router::new()
        .route("/.well-known/jwks.json", axum::routing::get(move || async move { axum::Json(doc) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_base = format!("http://{}", listener.local_addr().unwrap());
    let jwks_stop = Shutdown::new();
    tokio::spawn(cruncan_http::serve(listener, jwks_app, jwks_stop.clone()));
    let mut g = sys.settings.gateway.clone();
    g.jwt.jwks_url = format!("{jwks_base}/.well-known/jwks.json");
    g.jwt.issuer = jwtkeys::ISS.into();
    g.jwt.audience = jwtkeys::AUD.into();
    g.jwt.allowed_emails = vec!["alice@example.com".into()];
    g.jwt.client_id = "cruncan-web".into();
    g.users_url = sys.users.base.clone();
    g.products_url = sys.products_proxy.base.clone();
    g.orders_url = sys.orders.base.clone();
    tweak(&mut g);
    let gateway = run(services::gateway::build_gateway(&g).await.unwrap()).await;
    let token = jwtkeys::sign(&key, &jwtkeys::claims());
    Gateway {
        base: gateway.base.clone(),
        token,
        key,
        _gateway: gateway,
        _jwks: Running { base: jwks_base, pool: None, shutdown: jwks_stop },
    }
}
