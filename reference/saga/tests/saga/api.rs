//! The orchestrator service through a real socket: `build(settings)` on port 0.

use crate::helpers::*;
use cruncan_shutdown::Shutdown;
use saga::OrchestratorConfig;
use saga::config::{HttpSettings, ParticipantsMode, ParticipantsSettings, Settings, TelemetrySettings};
use serde_json::{Value, json};
use std::time::Duration;

struct TestApp {
    base: String,
    http: reqwest::Client,
    stop: Shutdown,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.trigger();
    }
}

impl TestApp {
    async fn post_order(&self, body: Value) -> (u16, Value) {
        let r = self.http.post(format!("{}/orders", self.base)).json(&body).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// `POST /orders` with an `Idempotency-Key`: status, whether it was a replay, body.
    async fn post_keyed(&self, key: &str, body: &Value) -> (u16, bool, Value) {
        let r = self
            .http
            .post(format!("{}/orders", self.base))
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await
            .unwrap();
        let replayed = r.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
        (r.status().as_u16(), replayed, r.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// Polls `GET /sagas/{id}` until it ends.
    async fn ended(&self, saga_id: &str) -> Value {
        for _ in 0..100 {
            let (_, saga) = self.get(&format!("/sagas/{saga_id}")).await;
            if ["completed", "compensated", "failed"].contains(&saga["status"].as_str().unwrap()) {
                return saga;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("saga {saga_id} did not end");
    }
}

async fn spawn_app() -> TestApp {
    spawn_app_with(test_db_settings().await).await
}

async fn spawn_app_with(database: cruncan_db::DatabaseSettings) -> TestApp {
    let settings = Settings {
        http: HttpSettings { host: "127.0.0.1".into(), port: 0 },
        database,
        orchestrator: OrchestratorConfig { lease: Duration::from_secs(3), concurrency: 8, ..fast_config() },
        participants: ParticipantsSettings {
            mode: ParticipantsMode::InProcess,
            timeout: Duration::from_millis(500),
            orders_url: String::new(),
            payments_url: String::new(),
            inventory_url: String::new(),
            shipping_url: String::new(),
        },
        telemetry: TelemetrySettings { log_filter: "info".into() },
    };
    let app = saga::build(settings).await.unwrap();
    let base = format!("http://{}", app.local_addr().unwrap());
    let stop = Shutdown::new();
    tokio::spawn(app.run_until_stopped(stop.clone()));
    TestApp { base, http: reqwest::Client::new(), stop }
}

#[tokio::test]
async fn post_orders_answers_202_and_the_saga_and_order_can_be_followed() {
    let app = spawn_app().await;
    let (status, accepted) = app
        .post_order(json!({"user_id": "user_123", "items": [
            {"product_id": "product_1", "quantity": 2, "price": 100.0},
            {"product_id": "product_2", "quantity": 1, "price": 0.5}]}))
        .await;
    assert_eq!(status, 202, "{accepted}");
    let saga = app.ended(accepted["saga_id"].as_str().unwrap()).await;
    assert_eq!(saga["status"], "completed");
    let steps: Vec<(&str, &str)> = saga["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("CreateOrder", "completed"),
            ("ProcessPayment", "completed"),
            ("ReserveInventory", "completed"),
            ("ScheduleShipment", "completed")
        ]
    );
    assert!(saga["steps"].as_array().unwrap().iter().all(|s| s["attempts"].as_u64() >= Some(1)));
    let (status, order) = app.get(&format!("/orders/{}", accepted["order_id"].as_str().unwrap())).await;
    assert_eq!(status, 200);
    assert_eq!((order["status"].as_str(), order["total"].as_i64()), (Some("confirmed"), Some(20_050)));
}

#[tokio::test]
async fn an_idempotency_key_starts_one_saga_however_often_and_concurrently_it_is_sent() {
    let database = test_db_settings().await;
    let pool = database.lazy_pool();
    let app = spawn_app_with(database).await;
    let order = json!({"user_id": "u", "items": [{"product_id": "product_3", "quantity": 4, "price": 2.5}]});
    // The same order: fields in another order, an unknown field, other number spelling.
    let same = json!({"items": [{"price": 2.50, "quantity": 4, "product_id": "product_3"}], "user_id": "u", "note": "retry"});
    let sends = (0..8).map(|i| app.post_keyed("order-7", if i % 2 == 0 { &order } else { &same }));
    let answers = futures::future::join_all(sends).await;
    assert!(answers.iter().all(|(status, ..)| *status == 202), "{answers:?}");
    let first = &answers[0].2["saga_id"];
    assert!(
        answers.iter().all(|(_, _, body)| &body["saga_id"] == first),
        "one saga for one key: {answers:?}"
    );
    assert_eq!(answers.iter().filter(|(_, replayed, _)| *replayed).count(), 7, "{answers:?}");

    // After it ended, a retry still answers that saga, with its status now.
    let saga_id = first.as_str().unwrap();
    assert_eq!(app.ended(saga_id).await["status"], "completed");
    let (status, replayed, body) = app.post_keyed("order-7", &same).await;
    assert_eq!(
        (status, replayed, body["saga_id"].as_str(), body["status"].as_str()),
        (202, true, Some(saga_id), Some("completed"))
    );

    // The key with another order is refused, naming the header; a bad key is a 400.
    let other = json!({"user_id": "u", "items": [{"product_id": "product_3", "quantity": 5, "price": 2.5}]});
    let (status, _, body) = app.post_keyed("order-7", &other).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("idempotency_key_reused")), "{body}");
    assert!(body["detail"].as_str().unwrap().contains("Idempotency-Key"), "{body}");
    let (status, _, body) = app.post_keyed("two words", &order).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_idempotency_key")), "{body}");

    let sagas: i64 = sqlx::query_scalar("SELECT count(*) FROM saga.sagas").fetch_one(&pool).await.unwrap();
    assert_eq!(sagas, 1);
    assert_eq!(stock(&pool, "product_3").await, 196, "reserved once: 200 - 4");
    // A different key is a different order.
    let (status, replayed, body) = app.post_keyed("order-8", &order).await;
    assert_eq!((status, replayed), (202, false));
    assert_ne!(&body["saga_id"], first);
}

#[tokio::test]
async fn a_refused_payment_shows_as_compensated_with_the_reason() {
    let app = spawn_app().await;
    let (_, accepted) = app
        .post_order(
            json!({"user_id": "u", "items": [{"product_id": "product_1", "quantity": 2, "price": 10000}]}),
        )
        .await;
    let saga = app.ended(accepted["saga_id"].as_str().unwrap()).await;
    assert_eq!(saga["status"], "compensated");
    assert_eq!(saga["steps"][1]["error"], "amount exceeds limit");
    assert_eq!(saga["steps"][0]["state"], "compensated");
    let (_, order) = app.get(&format!("/orders/{}", accepted["order_id"].as_str().unwrap())).await;
    assert_eq!(order["status"], "cancelled");
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_field_and_unknown_ids_are_404() {
    let app = spawn_app().await;
    for (body, field) in [
        (json!({"user_id": "u", "items": []}), "items"),
        (
            json!({"user_id": "u", "items": [{"product_id": "p", "quantity": -1, "price": 1}]}),
            "items[0].quantity",
        ),
        (
            json!({"user_id": "u", "items": [{"product_id": "p", "quantity": "x", "price": 1}]}),
            "items[0].quantity",
        ),
        (json!({"items": []}), "user_id"),
    ] {
        let (status, error) = app.post_order(body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert!(error["detail"].as_str().unwrap().contains(field), "{body}: {error}");
    }
    let r = app.http.post(format!("{}/orders", app.base)).body("{}").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 415, "an order must say it is JSON");
    let (status, _) = app.get("/sagas/not-a-uuid").await;
    assert_eq!(status, 400);
    let (status, error) = app.get(&format!("/sagas/{}", uuid::Uuid::new_v4())).await;
    assert_eq!((status, error["code"].as_str()), (404, Some("not_found")));
    let (status, _) = app.get(&format!("/orders/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(status, 404);
    let r = app.http.post(format!("{}/sagas/{}/retry", app.base, uuid::Uuid::new_v4())).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let (_, accepted) = app
        .post_order(
            json!({"user_id": "u", "items": [{"product_id": "product_1", "quantity": 1, "price": 1}]}),
        )
        .await;
    let saga_id = accepted["saga_id"].as_str().unwrap();
    app.ended(saga_id).await;
    let r = app.http.post(format!("{}/sagas/{saga_id}/retry", app.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 409, "a completed saga is not retried");
    let (status, ready) = app.get("/readyz").await;
    assert_eq!((status, ready["status"].as_str()), (200, Some("ready")));
}

#[tokio::test]
async fn with_the_database_cut_off_orders_get_503_with_retry_after_never_500() {
    let mut database = test_db_settings().await;
    let upstream = format!("{}:{}", database.host, database.port).parse().unwrap();
    let proxy = cruncan_testkit::TcpProxy::start(upstream).unwrap();
    database.port = proxy.addr().port();
    database.acquire_timeout = Duration::from_millis(500);
    let app = spawn_app_with(database).await;
    proxy.cut();
    let r = app
        .http
        .post(format!("{}/orders", app.base))
        .json(&json!({"user_id": "u", "items": [{"product_id": "product_1", "quantity": 1, "price": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let (status, _) = app.get("/readyz").await;
    assert_eq!(status, 503);
    proxy.restore();
    let (status, accepted) = app
        .post_order(
            json!({"user_id": "u", "items": [{"product_id": "product_1", "quantity": 1, "price": 1}]}),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(app.ended(accepted["saga_id"].as_str().unwrap()).await["status"], "completed");
}
