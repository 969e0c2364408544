use crate::helpers::{json_of, spawn_system};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn products_reserve_and_release_are_idempotent() {
    let sys = spawn_system().await;
    let p = sys.product(250, 10).await;
    let rid = uuid::Uuid::new_v4();
    let reserve = || {
        let body = json!({"product_id": p, "quantity": 3, "reservation_id": rid});
        sys.client.post(format!("{}/products/reserve", sys.products.base)).json(&body).send()
    };
    for _ in 0..3 {
        let (status, body) = json_of(reserve().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "reserved");
    }
    assert_eq!(sys.stock(&p).await, 7, "a repeated reserve takes the stock once");
    for _ in 0..2 {
        let r = sys
            .client
            .post(format!("{}/products/release", sys.products.base))
            .json(&json!({"reservation_id": rid}));
        assert_eq!(r.send().await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(sys.stock(&p).await, 10, "a repeated release gives it back once");
    let (status, body) = json_of(reserve().await.unwrap()).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("reservation_conflict")));
    assert_eq!(sys.stock(&p).await, 10);
}

#[tokio::test]
async fn products_a_release_that_arrives_first_wins() {
    let sys = spawn_system().await;
    let p = sys.product(100, 5).await;
    let rid = uuid::Uuid::new_v4();
    let r = sys
        .client
        .post(format!("{}/products/release", sys.products.base))
        .json(&json!({"reservation_id": rid}));
    assert_eq!(r.send().await.unwrap().status(), StatusCode::OK);
    let body = json!({"product_id": p, "quantity": 2, "reservation_id": rid});
    let r =
        sys.client.post(format!("{}/products/reserve", sys.products.base)).json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(sys.stock(&p).await, 5, "the late reserve took nothing");
}

#[tokio::test]
async fn products_unknown_is_404_short_stock_is_409_bad_quantity_is_400() {
    let sys = spawn_system().await;
    let p = sys.product(100, 2).await;
    let reserve = |product: String, quantity: i32| {
        let body = json!({"product_id": product, "quantity": quantity});
        sys.client.post(format!("{}/products/reserve", sys.products.base)).json(&body).send()
    };
    let (status, body) = json_of(reserve(p.clone(), 3).await.unwrap()).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("insufficient_stock")));
    assert_eq!(sys.stock(&p).await, 2);
    assert_eq!(reserve(uuid::Uuid::new_v4().to_string(), 1).await.unwrap().status(), StatusCode::NOT_FOUND);
    let (status, body) = json_of(reserve(p.clone(), 0).await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["detail"].as_str().unwrap().starts_with("quantity"), "{body}");
    let (status, body) = json_of(reserve("not-a-uuid".into(), 1).await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["detail"].as_str().unwrap().starts_with("product_id"), "{body}");
    let r = sys
        .client
        .get(format!("{}/products/{}", sys.products.base, uuid::Uuid::new_v4()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn products_a_spent_deadline_is_refused_with_504() {
    let sys = spawn_system().await;
    let p = sys.product(100, 2).await;
    let r = sys
        .client
        .get(format!("{}/products/{p}", sys.products.base))
        .header(services::deadline::DEADLINE_HEADER, "0")
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(r).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::GATEWAY_TIMEOUT, Some("deadline_exceeded")));
}
