//! `cargo run --example services`: the user (8501), product (8502) and order (8503) services and
//! the gateway (8500) in one process, each service with its own database on the local stack
//! (`make up`), plus a JWKS on 8509 with a key made at start. It places one order through the
//! gateway, prints a token and curl commands, and serves until Ctrl-C.

#[path = "../../jwt/tests/common/mod.rs"]
mod jwtkeys;

use clap::Parser as _;
use cruncan_shutdown::Shutdown;
use cruncan_telemetry::TelemetrySettings;
use serde_json::{Value, json};
use services::{App, Cli, Settings, app};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load(&Cli::parse())?;
    let telemetry = TelemetrySettings {
        log_filter: "warn,services=info".into(),
        ..TelemetrySettings::new("services", env!("CARGO_PKG_VERSION"))
    };
    cruncan_service::run(telemetry, |shutdown| run(settings, shutdown)).await
}

async fn run(s: Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    let key = jwtkeys::rsa_key("services-demo");
    let doc = jwtkeys::jwks(&[&key]);
    let jwks = axum::Router::new()
        .route("/.well-known/jwks.json", axum::routing::get(move || async move { axum::Json(doc) }));
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(cruncan_http::serve(app::bind("127.0.0.1", 8509).await?, jwks, shutdown.clone()));
    let (orders, _deps) = app::build_orders(&s.orders).await?;
    let apps: [App; 4] = [
        app::build_users(&s.users).await?,
        app::build_products(&s.products).await?,
        orders,
        services::gateway::build_gateway(&s.gateway).await?,
    ];
    for a in apps {
        tasks.spawn(a.run_until_stopped(shutdown.clone()));
    }

    let mut claims = jwtkeys::claims();
    claims["exp"] = (jwtkeys::now() + 3600).into();
    let token = jwtkeys::sign(&key, &claims);
    demo(&token).await?;
    println!("\nserving; gateway on http://127.0.0.1:8500 (Swagger UI at /docs). Try:");
    println!("  export TOKEN='{token}'");
    println!("  curl -s -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:8500/products/<id>");
    println!("Ctrl-C to stop");
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

/// A user, a product and an order, through the gateway.
async fn demo(token: &str) -> anyhow::Result<()> {
    let c = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        c.post(format!("http://127.0.0.1:8500{path}")).bearer_auth(token).json(&body).send()
    };
    let email = format!("ada-{}@example.com", uuid::Uuid::new_v4().simple());
    let user: Value = post("/users", json!({"email": email, "name": "Ada"})).await?.json().await?;
    println!("POST /users    -> {user}");
    let product: Value =
        post("/products", json!({"name": "Widget", "price_cents": 1250, "stock": 5})).await?.json().await?;
    println!("POST /products -> {product}");
    let order = json!({"user_id": user["id"], "items": [{"product_id": product["id"], "quantity": 2}]});
    let r = post("/orders", order).await?;
    println!("POST /orders   -> {} {}", r.status(), r.text().await?);
    let again = json!({"user_id": user["id"], "items": [{"product_id": product["id"], "quantity": 9}]});
    let r = post("/orders", again).await?;
    println!("POST /orders   -> {} {}  (only 3 left)", r.status(), r.text().await?);
    Ok(())
}
