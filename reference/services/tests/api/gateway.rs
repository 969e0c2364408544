use crate::faults::Mode;
use crate::helpers::{json_of, spawn_gateway, spawn_system};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn gateway_routes_by_path_with_a_request_id_and_a_deadline() {
    let sys = spawn_system().await;
    let gw = spawn_gateway(&sys, |_| {}).await;
    let c = &sys.client;
    let r = c
        .post(format!("{}/users", gw.base))
        .bearer_auth(&gw.token)
        .json(&json!({"email": "gw@example.com", "name": "G"}));
    let r = r.send().await.unwrap();
    assert!(uuid::Uuid::parse_str(r.headers()["x-request-id"].to_str().unwrap()).is_ok());
    let (status, user) = json_of(r).await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let p = sys.product(300, 5).await;
    let r =
        c.get(format!("{}/products/{p}", gw.base)).bearer_auth(&gw.token).header("x-request-id", "mine-1");
    let r = r.send().await.unwrap();
    assert_eq!((r.status(), r.headers()["x-request-id"].to_str().unwrap()), (StatusCode::OK, "mine-1"));
    let deadline = sys.products_proxy.deadlines()[0].unwrap();
    assert!(deadline > 0 && u128::from(deadline) <= sys.settings.gateway.timeout.as_millis(), "{deadline}");
    let order = json!({"user_id": user["id"], "items": [{"product_id": p, "quantity": 2}]});
    let r = c.post(format!("{}/orders", gw.base)).bearer_auth(&gw.token).json(&order).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c.get(format!("{}/nowhere", gw.base)).bearer_auth(&gw.token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn gateway_requires_a_valid_jwt_except_for_health_and_docs() {
    let sys = spawn_system().await;
    let gw = spawn_gateway(&sys, |_| {}).await;
    let url = format!("{}/products/{}", gw.base, uuid::Uuid::new_v4());
    assert_eq!(sys.client.get(&url).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let forged = format!("{}x", &gw.token[..gw.token.len() - 1]);
    assert_eq!(
        sys.client.get(&url).bearer_auth(forged).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        sys.client.get(&url).bearer_auth(&gw.token).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(sys.products_proxy.hits(), 1, "refused requests never reach the service");
    for open in ["/healthz", "/openapi.json"] {
        assert_eq!(
            sys.client.get(format!("{}{open}", gw.base)).send().await.unwrap().status(),
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn gateway_answers_cors_preflight_for_allowed_origins_only() {
    let sys = spawn_system().await;
    let gw = spawn_gateway(&sys, |g| g.cors_origins = vec!["http://localhost:3000".into()]).await;
    let preflight = |origin: &str| {
        sys.client
            .request(Method::OPTIONS, format!("{}/orders", gw.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type")
            .send()
    };
    let r = preflight("http://localhost:3000").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["access-control-allow-origin"], "http://localhost:3000");
    let r = preflight("http://evil.example").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn gateway_limits_each_client_with_429_and_retry_after() {
    let sys = spawn_system().await;
    let gw = spawn_gateway(&sys, |g| {
        g.rate_per_second = 1;
        g.rate_burst = 3;
    })
    .await;
    let url = format!("{}/products/{}", gw.base, uuid::Uuid::new_v4());
    let busy = gw.token_for("busy-client");
    for _ in 0..3 {
        assert_eq!(
            sys.client.get(&url).bearer_auth(&busy).send().await.unwrap().status(),
            StatusCode::NOT_FOUND
        );
    }
    // One token comes back per second; a slow machine may earn one, never ten.
    let mut limited = None;
    for _ in 0..10 {
        let r = sys.client.get(&url).bearer_auth(&busy).send().await.unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("the busy client was never limited");
    assert!(r.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    let other = gw.token_for("quiet-client");
    assert_eq!(
        sys.client.get(&url).bearer_auth(&other).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_sheds_load_with_503_and_retry_after() {
    let sys = spawn_system().await;
    let gw = spawn_gateway(&sys, |g| g.max_in_flight = 2).await;
    let p = sys.product(100, 5).await;
    sys.products_proxy.set(Mode::Hang);
    let url = format!("{}/products/{p}", gw.base);
    let held: Vec<_> =
        (0..2).map(|_| tokio::spawn(sys.client.get(&url).bearer_auth(&gw.token).send())).collect();
    cruncan_testkit::wait_until(Duration::from_secs(5), "two requests held", || async {
        sys.products_proxy.hits() == 2
    })
    .await;
    let r = sys.client.get(&url).bearer_auth(&gw.token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(sys.products_proxy.hits(), 2, "the shed request never reached the service");
    sys.products_proxy.set(Mode::Pass);
    for h in held {
        assert_eq!(h.await.unwrap().unwrap().status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn gateway_times_out_with_504() {
    let sys = spawn_system().await;
    let gw = spawn_gateway(&sys, |g| g.timeout = Duration::from_millis(300)).await;
    sys.products_proxy.set(Mode::SlowRequest(Duration::from_secs(2)));
    let url = format!("{}/products/{}", gw.base, uuid::Uuid::new_v4());
    let r = sys.client.get(&url).bearer_auth(&gw.token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test]
async fn gateway_serves_one_openapi_document_merged_from_the_services() {
    let sys = spawn_system().await;
    let gw = spawn_gateway(&sys, |_| {}).await;
    let doc: serde_json::Value =
        sys.client.get(format!("{}/openapi.json", gw.base)).send().await.unwrap().json().await.unwrap();
    for path in [
        "/users",
        "/users/{id}/validate",
        "/products/{id}",
        "/products/reserve",
        "/products/release",
        "/orders",
        "/orders/{id}",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
}

#[tokio::test]
async fn gateway_an_unreachable_service_is_502() {
    let sys = spawn_system().await;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let gw = spawn_gateway(&sys, |g| g.orders_url = nowhere).await;
    let r = sys.client.get(format!("{}/orders/{}", gw.base, uuid::Uuid::new_v4())).bearer_auth(&gw.token);
    let (status, body) = json_of(r.send().await.unwrap()).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_GATEWAY, Some("bad_gateway")));
}
