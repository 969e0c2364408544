use crate::faults::Mode;
use crate::helpers::{spawn_system, spawn_system_with};
use reqwest::{Method, StatusCode};
use std::time::Duration;

#[tokio::test]
async fn orders_price_reserve_and_confirm() {
    let sys = spawn_system().await;
    let (user, a, b) = (sys.user().await, sys.product(250, 10).await, sys.product(1000, 3).await);
    let (status, order) = sys.order(&user, &[(&a, 2), (&b, 1)]).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["status"], "confirmed");
    assert_eq!(order["total_cents"], 2 * 250 + 1000);
    assert_eq!((sys.stock(&a).await, sys.stock(&b).await), (8, 2));
    let id = order["id"].as_str().unwrap();
    let got: serde_json::Value = sys
        .client
        .get(format!("{}/orders/{id}", sys.orders.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["items"], order["items"]);
}

#[tokio::test]
async fn orders_unknown_or_inactive_user_or_unknown_product_is_422_and_bad_items_400() {
    let sys = spawn_system().await;
    let (user, p) = (sys.user().await, sys.product(100, 5).await);
    let stranger = uuid::Uuid::new_v4().to_string();
    let (status, body) = sys.order(&stranger, &[(&p, 1)]).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_user")));
    let idle = sys.user().await;
    sqlx::query("UPDATE users SET active = false WHERE id = $1")
        .bind(idle.parse::<uuid::Uuid>().unwrap())
        .execute(sys.users.pool.as_ref().unwrap())
        .await
        .unwrap();
    let (status, body) = sys.order(&idle, &[(&p, 1)]).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("inactive_user")));
    let nothing = uuid::Uuid::new_v4().to_string();
    let (status, body) = sys.order(&user, &[(&p, 1), (&nothing, 1)]).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_product")));
    assert!(body["detail"].as_str().unwrap().starts_with("items[1].product_id"), "{body}");
    for (items, field) in [
        (vec![(p.as_str(), 0)], "items[0].quantity"),
        (vec![(p.as_str(), 1), (p.as_str(), 2)], "items[1].product_id"),
        (vec![], "items"),
    ] {
        let (status, body) = sys.order(&user, &items).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body["detail"].as_str().unwrap().starts_with(field), "{body}");
    }
    assert_eq!(sys.stock(&p).await, 5);
}

#[tokio::test]
async fn orders_a_failed_order_leaves_no_reservation_behind() {
    let sys = spawn_system().await;
    let (user, plenty, scarce) = (sys.user().await, sys.product(100, 10).await, sys.product(100, 1).await);
    let (status, body) = sys.order(&user, &[(&plenty, 4), (&scarce, 2)]).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("insufficient_stock")));
    assert_eq!((sys.stock(&plenty).await, sys.reserved(&plenty).await), (10, 0));
    assert_eq!(sys.stock(&scarce).await, 1);
    assert_eq!(sys.orders_by_status("cancelled").await, 1);
}

#[tokio::test]
async fn orders_a_reserve_whose_answer_is_lost_is_released() {
    // The product service takes the stock, but its answer arrives after the attempt timeout.
    let sys = spawn_system_with(|s| {
        let o = &mut s.orders;
        o.products_calls.attempt_timeout = Duration::from_millis(500);
        o.products_calls.max_attempts = 1;
    })
    .await;
    let (user, p) = (sys.user().await, sys.product(100, 10).await);
    sys.products_proxy.set_for(
        Method::POST,
        "/products/reserve",
        Mode::SlowReply(Duration::from_millis(1_500)),
    );
    let (status, body) = sys.order(&user, &[(&p, 3)]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["detail"], "products: timed out");
    // The late reserve has committed by now, and the release after it has given it back.
    cruncan_testkit::wait_until(Duration::from_secs(5), "stock back", || async { sys.stock(&p).await == 10 })
        .await;
    assert_eq!(sys.reserved(&p).await, 0);
    assert_eq!(sys.orders_by_status("cancelled").await, 1);
}

// ANCHOR: no_oversell
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_200_concurrent_orders_never_oversell() {
    let sys = spawn_system_with(|s| {
        // Correctness under contention, not speed: budgets wide enough for a busy 2-core box.
        for db in [&mut s.users.database, &mut s.products.database, &mut s.orders.service.database] {
            db.acquire_timeout = Duration::from_secs(30);
        }
        s.products.request_timeout = Duration::from_millis(30_000);
        s.users.request_timeout = Duration::from_millis(30_000);
        let o = &mut s.orders;
        o.service.request_timeout = Duration::from_millis(30_000);
        o.max_in_flight = 256;
        for calls in [&mut o.products_calls, &mut o.users_calls] {
            calls.max_concurrent = 256;
            calls.attempt_timeout = Duration::from_millis(30_000);
        }
    })
    .await;
    let (user, p) = (sys.user().await, sys.product(100, 50).await);
    let items = [(p.as_str(), 1)];
    let orders = (0..200).map(|_| sys.order(&user, &items));
    let outcomes = futures::future::join_all(orders).await;
    let statuses: Vec<_> = outcomes.iter().map(|o| o.0.as_u16()).collect();
    let created = outcomes.iter().filter(|(s, _)| *s == StatusCode::CREATED).count();
    let refused = outcomes
        .iter()
        .filter(|(s, b)| *s == StatusCode::CONFLICT && b["code"] == "insufficient_stock")
        .count();
    assert_eq!((created, refused), (50, 150), "{statuses:?}");
    assert_eq!((sys.stock(&p).await, sys.reserved(&p).await), (0, 50));
    assert_eq!(sys.orders_by_status("confirmed").await, 50);
}
// ANCHOR_END: no_oversell

#[tokio::test]
async fn orders_a_release_that_fails_is_finished_by_the_sweeper() {
    let sys = spawn_system_with(|s| s.orders.sweep_interval = Duration::from_millis(100)).await;
    let (user, plenty, scarce) = (sys.user().await, sys.product(100, 10).await, sys.product(100, 1).await);
    sys.products_proxy.set_for(Method::POST, "/products/release", Mode::Fail);
    let (status, _) = sys.order(&user, &[(&plenty, 4), (&scarce, 2)]).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!((sys.stock(&plenty).await, sys.orders_by_status("release_pending").await), (6, 1));
    sys.products_proxy.set(Mode::Pass);
    cruncan_testkit::wait_until(Duration::from_secs(10), "the sweeper to release", || async {
        sys.orders_by_status("cancelled").await == 1
    })
    .await;
    assert_eq!((sys.stock(&plenty).await, sys.reserved(&plenty).await, sys.stock(&scarce).await), (10, 0, 1));
}

#[tokio::test]
async fn orders_an_order_abandoned_mid_way_is_released_by_the_sweeper() {
    // As if the order service died between a reserve and the confirm, an hour ago.
    let sys = spawn_system_with(|s| s.orders.sweep_interval = Duration::from_millis(100)).await;
    let p = sys.product(100, 10).await;
    let (order, reservation, product) =
        (uuid::Uuid::new_v4(), uuid::Uuid::new_v4(), p.parse::<uuid::Uuid>().unwrap());
    let body = serde_json::json!({"product_id": p, "quantity": 3, "reservation_id": reservation});
    let r =
        sys.client.post(format!("{}/products/reserve", sys.products.base)).json(&body).send().await.unwrap();
    assert_eq!((r.status(), sys.stock(&p).await), (StatusCode::OK, 7));
    let db = sys.orders.pool.as_ref().unwrap();
    sqlx::query(
        "INSERT INTO orders (id, user_id, status, total_cents, updated_at)
         VALUES ($1, $2, 'pending', 300, now() - interval '1 hour')",
    )
    .bind(order)
    .bind(uuid::Uuid::new_v4())
    .execute(db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO order_items (order_id, position, product_id, quantity, price_cents, reservation_id)
         VALUES ($1, 0, $2, 3, 100, $3)",
    )
    .bind(order)
    .bind(product)
    .bind(reservation)
    .execute(db)
    .await
    .unwrap();
    cruncan_testkit::wait_until(Duration::from_secs(10), "the sweeper to cancel it", || async {
        sys.orders_by_status("cancelled").await == 1
    })
    .await;
    assert_eq!((sys.stock(&p).await, sys.reserved(&p).await), (10, 0));
}
