//! The gateway: one address for the three services, with the cross-cutting concerns in one
//! place — request ids, CORS, load shedding, timeouts, JWT, a per-client rate limit — and one
//! merged OpenAPI document.

pub mod openapi;
pub mod proxy;
pub mod ratelimit;

use crate::app::{App, bind};
use crate::config::GatewaySettings;
use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::routing::any;
use cruncan_http::ReadinessCheck;
use jwt::{Auth, AuthSettings, Jwks, Policy};
use proxy::Upstreams;
use std::sync::Arc;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;

fn auth(s: &GatewaySettings, client: reqwest::Client) -> Auth {
    let cfg = AuthSettings {
        jwks_url: s.jwt.jwks_url.clone(),
        issuer: s.jwt.issuer.clone(),
        audience: s.jwt.audience.clone(),
        leeway: Duration::from_secs(30),
        keys_ttl: Duration::from_secs(600),
        min_refetch_interval: Duration::from_secs(30),
    };
    let policy = Policy {
        allowed_emails: s.jwt.allowed_emails.iter().cloned().collect(),
        client_id: s.jwt.client_id.clone(),
    };
    Auth { jwks: Arc::new(Jwks::new(client, cfg)), policy: Arc::new(policy) }
}

fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, HeaderName::from_static("x-request-id")])
        .expose_headers([HeaderName::from_static("x-request-id"), header::RETRY_AFTER])
        .max_age(Duration::from_secs(600))
}

// ANCHOR: gateway_router
/// The gateway's router. Outermost first: request id, telemetry, CORS, load shedding, timeout,
/// then (API routes only) JWT and the per-client rate limit.
pub fn router(s: &GatewaySettings, client: reqwest::Client, limiter: Arc<ratelimit::Limiter>) -> Router {
    let upstreams = Arc::new(Upstreams {
        client: client.clone(),
        users: s.users_url.clone(),
        products: s.products_url.clone(),
        orders: s.orders_url.clone(),
        timeout: s.timeout,
        body_limit: s.body_limit_bytes,
    });
    let mut api = Router::new();
    for prefix in ["/users", "/products", "/orders"] {
        api =
            api.route(prefix, any(proxy::forward)).route(&format!("{prefix}/{{*rest}}"), any(proxy::forward));
    }
    let api = api
        .with_state(upstreams)
        .layer(axum::middleware::from_fn_with_state(limiter, ratelimit::limit))
        .layer(axum::middleware::from_fn_with_state(auth(s, client), jwt::require));
    // Ready when it runs: tying readiness to the upstreams would take all three routes off the
    // air when one service is down (its routes answer 502/504 instead).
    let ready: ReadinessCheck = Arc::new(|| Box::pin(async { Ok(()) }));
    let router = api
        .merge(utoipa_swagger_ui::SwaggerUi::new("/docs").url("/openapi.json", openapi::merged()))
        .merge(cruncan_http::health_routes(ready))
        .fallback(cruncan_http::not_found)
        .layer(TimeoutLayer::with_status_code(StatusCode::GATEWAY_TIMEOUT, s.timeout));
    crate::shed::with_load_shedding(router, s.max_in_flight)
        .layer(cors(&s.cors_origins))
        .layer(axum::middleware::from_fn(cruncan_http::json_method_not_allowed))
        .layer(axum::middleware::from_fn(cruncan_http::telemetry_middleware))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}
// ANCHOR_END: gateway_router

/// The gateway, bound.
pub async fn build_gateway(s: &GatewaySettings) -> anyhow::Result<App> {
    let client = reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(30)).build()?;
    let limiter = ratelimit::limiter(s.rate_per_second, s.rate_burst);
    let router = router(s, client, limiter.clone());
    let app = App::new("gateway", bind(&s.host, s.port).await?, router, None);
    Ok(app.with_background(|stop| ratelimit::prune(limiter, stop)))
}
