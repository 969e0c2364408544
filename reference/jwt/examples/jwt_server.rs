//! `cargo run --example jwt_server`: an API protected by the JWT middleware, its own JWKS endpoint
//! with a key made at start, and a demonstration: a valid token (200), a forged one (401) and one
//! the policy refuses (403). It keeps serving and prints a token to try with curl; Ctrl-C stops it.

#[path = "../tests/common/mod.rs"]
mod common;

use axum::routing::get;
use axum::{Extension, Json, Router};
use jwt::{Auth, AuthSettings, Claims, Jwks, Policy};
use std::sync::Arc;
use std::time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let key = common::rsa_key("demo-key-1");
    // The issuer's JWKS endpoint (in real life: your identity provider).
    let jwks_doc = common::jwks(&[&key]);
    let jwks_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let jwks_url = format!("http://{}/.well-known/jwks.json", jwks_listener.local_addr()?);
    let jwks_app = Router::new().route("/.well-known/jwks.json", get(move || async move { Json(jwks_doc) }));
    tokio::spawn(async move { axum::serve(jwks_listener, jwks_app).await });

    let auth = Auth {
        jwks: Arc::new(
            Jwks::new(
                reqwest::Client::new(),
                AuthSettings {
                    jwks_url,
                    issuer: common::ISS.into(),
                    audience: common::AUD.into(),
                    leeway: Duration::from_secs(30),
                    keys_ttl: Duration::from_secs(600),
                    min_refetch_interval: Duration::from_secs(30),
                },
            )
            // While the JWKS endpoint fails, keep using the last keys for up to an hour past the TTL.
            .with_max_stale(Duration::from_secs(3600)),
        ),
        policy: Arc::new(Policy {
            allowed_emails: ["alice@example.com".to_owned()].into(),
            client_id: "cruncan-web".into(),
        }),
    };
    let api = Router::new()
        .route("/me", get(|Extension(c): Extension<Claims>| async move { Json(c) }))
        .layer(axum::middleware::from_fn_with_state(auth, jwt::require));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8095").await?;
    tokio::spawn(async move { axum::serve(listener, api).await });

    let valid = common::sign(&key, &common::claims());
    let mut bob = common::claims();
    bob["email"] = "bob@example.com".into();
    let refused = common::sign(&key, &bob);
    let forged = format!("{}x", &valid[..valid.len() - 1]);
    let client = reqwest::Client::new();
    for (what, token) in
        [("valid token", &valid), ("forged signature", &forged), ("email not allowed", &refused)]
    {
        let r = client.get("http://127.0.0.1:8095/me").bearer_auth(token).send().await?;
        println!("{what:>18}: {} {}", r.status(), r.text().await?);
    }
    println!(
        "\nserving on http://127.0.0.1:8095/me — try:\n  curl -s -H 'Authorization: Bearer {valid}' http://127.0.0.1:8095/me\nCtrl-C to stop"
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
