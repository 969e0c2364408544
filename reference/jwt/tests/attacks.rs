//! The attack suite: every forged, stale or misdirected token is a 401; valid ones pass; a valid
//! token the policy refuses is a 403; the JWKS endpoint's outages (stale keys served up to
//! max-stale, with a warning and a metric per failed refresh), key rotation, key removal and
//! unknown-kid floods behave.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic: that is its failure report

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::{Extension, Json, Router};
use common::*;
use jwt::{Auth, AuthSettings, Claims, Jwks, Policy};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt as _;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn config(server: &MockServer, keys_ttl: Duration, min_refetch: Duration) -> AuthSettings {
    AuthSettings {
        jwks_url: format!("{}/.well-known/jwks.json", server.uri()),
        issuer: ISS.into(),
        audience: AUD.into(),
        leeway: Duration::from_secs(30),
        keys_ttl,
        min_refetch_interval: min_refetch,
    }
}

fn router(jwks: Jwks) -> Router {
    let auth = Auth {
        jwks: Arc::new(jwks),
        policy: Arc::new(Policy {
            allowed_emails: ["alice@example.com".to_owned()].into(),
            client_id: "cruncan-web".into(),
        }),
    };
    Router::new()
        .route("/me", get(|Extension(c): Extension<Claims>| async move { Json(c) }))
        .layer(axum::middleware::from_fn_with_state(auth, jwt::require))
}

async fn app(server: &MockServer, min_refetch: Duration) -> Router {
    router(Jwks::new(reqwest::Client::new(), config(server, Duration::from_secs(600), min_refetch)))
}

async fn serve_jwks(server: &MockServer, keys: &[&TestKey], expect: u64) {
    Mock::given(method("GET"))
        .and(path("/.well-known/jwks.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(jwks(keys)))
        .expect(expect)
        .mount(server)
        .await;
}

async fn call(app: &Router, token: Option<&str>) -> (StatusCode, Option<String>, serde_json::Value) {
    let mut req = Request::get("/me");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let challenge = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
    (status, challenge, serde_json::from_slice(&bytes).unwrap_or_default())
}

fn with(mut claims: serde_json::Value, key: &str, value: serde_json::Value) -> serde_json::Value {
    claims[key] = value;
    claims
}

#[tokio::test]
async fn forged_stale_and_misdirected_tokens_are_all_401() {
    let server = MockServer::start().await;
    let rsa = rsa_key("rsa-1");
    let ec = ec_key("ec-1");
    serve_jwks(&server, &[&rsa, &ec], 1).await;
    let app = app(&server, Duration::from_secs(60)).await;

    // The valid ones first (this also fills the key cache).
    for key in [&rsa, &ec] {
        let (status, _, body) = call(&app, Some(&sign(key, &claims()))).await;
        assert_eq!(status, StatusCode::OK, "{:?}: {body}", key.alg);
        assert_eq!(body["email"], "alice@example.com");
    }

    let valid = sign(&rsa, &claims());
    let parts: Vec<&str> = valid.split('.').collect();
    let none_header = b64(br#"{"alg":"none","kid":"rsa-1","typ":"JWT"}"#);
    let alg_none = format!("{none_header}.{}.", parts[1]);
    let hs256 = {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("rsa-1".into());
        jsonwebtoken::encode(&header, &claims(), &jsonwebtoken::EncodingKey::from_secret(&rsa.public_pem))
            .unwrap()
    };
    let tampered = {
        let forged = b64(serde_json::to_vec(&with(claims(), "email", "mallory@example.com".into()))
            .unwrap()
            .as_slice());
        format!("{}.{forged}.{}", parts[0], parts[2])
    };
    let bad_signature = {
        let mut sig = parts[2].to_owned();
        let flipped = if sig.ends_with('A') { 'B' } else { 'A' };
        sig.pop();
        sig.push(flipped);
        format!("{}.{}.{sig}", parts[0], parts[1])
    };
    let cases = [
        ("alg none", alg_none),
        ("HS256 signed with the RSA public key", hs256),
        ("expired", sign(&rsa, &with(claims(), "exp", (now() - 3600).into()))),
        ("nbf in the future", sign(&rsa, &with(claims(), "nbf", (now() + 3600).into()))),
        ("wrong iss", sign(&rsa, &with(claims(), "iss", "https://evil.example.com/".into()))),
        ("wrong aud", sign(&rsa, &with(claims(), "aud", "someone-else".into()))),
        ("unknown kid", sign(&rsa_key("rsa-unknown"), &claims())),
        ("tampered payload", tampered),
        ("bad signature", bad_signature),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    for (case, token) in cases {
        let (status, challenge, body) = call(&app, Some(&token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
        assert_eq!(body["code"], "invalid_token", "{case}");
        assert!(challenge.unwrap().contains(r#"error="invalid_token""#), "{case}");
        let message = body["detail"].as_str().unwrap();
        assert!(
            !message.to_lowercase().contains("base64") && !message.contains("Error"),
            "{case}: stable wording, got {message}"
        );
    }

    let (status, challenge, _) = call(&app, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "missing header");
    assert_eq!(challenge.as_deref(), Some(r#"Bearer realm="cruncan""#));
}

#[tokio::test]
async fn a_valid_token_the_policy_refuses_is_403() {
    let server = MockServer::start().await;
    let rsa = rsa_key("rsa-1");
    serve_jwks(&server, &[&rsa], 1).await;
    let app = app(&server, Duration::from_secs(60)).await;
    for (field, value) in [("email", "bob@example.com"), ("client_id", "another-app")] {
        let (status, challenge, body) =
            call(&app, Some(&sign(&rsa, &with(claims(), field, value.into())))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{field}: {body}");
        assert_eq!(body["code"], "forbidden");
        assert!(challenge.unwrap().contains("insufficient_scope"));
    }
}

#[tokio::test]
async fn cached_keys_keep_working_while_the_jwks_endpoint_is_down() {
    let server = MockServer::start().await;
    let rsa = rsa_key("rsa-1");
    serve_jwks(&server, &[&rsa], 1).await;
    let app = app(&server, Duration::from_millis(1)).await;
    assert_eq!(call(&app, Some(&sign(&rsa, &claims()))).await.0, StatusCode::OK);
    server.reset().await;
    Mock::given(path("/.well-known/jwks.json")).respond_with(ResponseTemplate::new(503)).mount(&server).await;
    for _ in 0..5 {
        assert_eq!(call(&app, Some(&sign(&rsa, &claims()))).await.0, StatusCode::OK);
    }
    assert!(server.received_requests().await.unwrap().is_empty(), "no refetch while the keys are cached");
}

#[tokio::test]
async fn a_rotated_key_is_accepted_after_one_refetch() {
    let server = MockServer::start().await;
    let old = rsa_key("2026-01");
    let new = rsa_key("2026-02");
    Mock::given(path("/.well-known/jwks.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(jwks(&[&old])))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    serve_jwks(&server, &[&old, &new], 1).await;
    let app = app(&server, Duration::from_millis(200)).await;
    assert_eq!(call(&app, Some(&sign(&old, &claims()))).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(call(&app, Some(&sign(&new, &claims()))).await.0, StatusCode::OK, "new kid after one refetch");
    assert_eq!(call(&app, Some(&sign(&old, &claims()))).await.0, StatusCode::OK, "the old key still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_kids_fetches_the_jwks_at_most_once_per_interval() {
    let server = MockServer::start().await;
    let rsa = rsa_key("rsa-1");
    serve_jwks(&server, &[&rsa], 1).await;
    let app = app(&server, Duration::from_secs(60)).await;
    let forger = ec_key("unused");
    let calls = (0..50).map(|i| {
        let app = app.clone();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(format!("made-up-{i}"));
        let token = jsonwebtoken::encode(&header, &claims(), &forger.encoding).unwrap();
        tokio::spawn(async move { call(&app, Some(&token)).await.0 })
    });
    for status in futures_join(calls).await {
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // The wiremock expectation (exactly one fetch) is verified when the server drops.
}

async fn futures_join(tasks: impl Iterator<Item = tokio::task::JoinHandle<StatusCode>>) -> Vec<StatusCode> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// The warnings this JWKS URL's failed refreshes wrote, in order.
fn refresh_warnings(url: &str) -> Vec<serde_json::Value> {
    cruncan_testkit::global_telemetry("jwt")
        .logs
        .json_lines()
        .into_iter()
        .filter(|l| l["level"] == "WARN" && l["jwks_url"] == url)
        .filter(|l| l["message"].as_str().is_some_and(|m| m.starts_with("JWKS refresh failed")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_keys_are_served_while_the_jwks_is_down_until_max_stale_then_refused() {
    let telemetry = cruncan_testkit::global_telemetry("jwt"); // before the meter is taken
    let server = MockServer::start().await;
    let rsa = rsa_key("rsa-1");
    serve_jwks(&server, &[&rsa], 1).await;
    let (ttl, min_refetch, max_stale) =
        (Duration::from_millis(300), Duration::from_millis(100), Duration::from_secs(2));
    let cfg = config(&server, ttl, min_refetch);
    let url = cfg.jwks_url.clone();
    let app = router(Jwks::new(reqwest::Client::new(), cfg).with_max_stale(max_stale));
    let token = sign(&rsa, &claims());
    assert_eq!(call(&app, Some(&token)).await.0, StatusCode::OK);
    let fetched = std::time::Instant::now(); // no earlier than the fetch

    // The JWKS endpoint goes down, and the TTL passes: the last keys are still used.
    server.reset().await;
    Mock::given(path("/.well-known/jwks.json")).respond_with(ResponseTemplate::new(503)).mount(&server).await;
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert_eq!(call(&app, Some(&token)).await.0, StatusCode::OK, "stale key past the TTL");
    tokio::time::sleep(min_refetch + Duration::from_millis(50)).await;
    assert_eq!(call(&app, Some(&token)).await.0, StatusCode::OK, "still stale, still accepted");
    let failed_so_far = server.received_requests().await.unwrap().len();
    assert_eq!(failed_so_far, 2, "one refresh per call, each at least min_refetch apart");
    let warnings = refresh_warnings(&url);
    assert_eq!(warnings.len(), 2, "a warning per failed refresh: {warnings:?}");
    assert!(warnings.iter().all(|w| w["serving_stale"] == true), "{warnings:?}");

    // Past keys_ttl + max_stale: refused.
    tokio::time::sleep((ttl + max_stale + Duration::from_millis(100)).saturating_sub(fetched.elapsed()))
        .await;
    let (status, _, body) = call(&app, Some(&token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let warnings = refresh_warnings(&url);
    assert_eq!(warnings.len(), server.received_requests().await.unwrap().len(), "{warnings:?}");
    assert_eq!(warnings.last().unwrap()["serving_stale"], false);

    // The metric left the process too.
    tokio::task::spawn_blocking(|| cruncan_testkit::global_telemetry("jwt").guard.force_flush())
        .await
        .unwrap();
    let metrics = telemetry
        .receiver
        .wait_for_metrics(Duration::from_secs(15), &["jwt.jwks.refresh.failures", "jwt.jwks.stale_keys.used"])
        .await
        .unwrap();
    assert_eq!(metrics["jwt.jwks.refresh.failures"].kind, "counter");

    // The endpoint is back: the next refresh succeeds and tokens pass again.
    server.reset().await;
    serve_jwks(&server, &[&rsa], 1).await;
    tokio::time::sleep(min_refetch).await;
    assert_eq!(call(&app, Some(&token)).await.0, StatusCode::OK, "after the outage");
}

#[tokio::test]
async fn a_key_removed_from_the_jwks_is_refused_after_the_next_refresh() {
    let server = MockServer::start().await;
    let revoked = rsa_key("2026-01");
    let kept = rsa_key("2026-02");
    Mock::given(path("/.well-known/jwks.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(jwks(&[&revoked, &kept])))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    serve_jwks(&server, &[&kept], 1).await;
    let ttl = Duration::from_millis(200);
    let app = router(Jwks::new(reqwest::Client::new(), config(&server, ttl, Duration::from_millis(50))));
    assert_eq!(call(&app, Some(&sign(&revoked, &claims()))).await.0, StatusCode::OK);
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    // Stale keys are for a failing endpoint only: a successful refresh without the key drops it.
    assert_eq!(call(&app, Some(&sign(&revoked, &claims()))).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&app, Some(&sign(&kept, &claims()))).await.0, StatusCode::OK);
}
