//! The choreographed saga over real Kafka: its own topic and consumer groups per test.

use crate::helpers::*;
use cruncan_shutdown::Shutdown;
use saga::choreography::{Choreography, ChoreographyConfig};
use saga::domain::OrderSaga;
use std::collections::BTreeSet;
use std::time::Duration;

const SCHEMAS: [&str; 4] = ["orders", "payments", "inventory", "shipping"];

struct Running {
    choreography: std::sync::Arc<Choreography>,
    topic: String,
    stop: Shutdown,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.trigger();
    }
}

/// A topic and consumer groups of the test's own, default relays and retention.
fn config() -> ChoreographyConfig {
    ChoreographyConfig {
        brokers: cruncan_testkit::brokers(),
        topic: cruncan_testkit::unique_name("saga-events"),
        group_prefix: cruncan_testkit::unique_name("saga"),
        partitions: 2,
        outbox: Default::default(),
        inbox_retention: saga::choreography::inbox::DEFAULT_RETENTION,
    }
}

async fn start(pool: &sqlx::PgPool) -> Running {
    start_with(pool, config())
}

fn start_with(pool: &sqlx::PgPool, cfg: ChoreographyConfig) -> Running {
    let topic = cfg.topic.clone();
    let choreography = std::sync::Arc::new(Choreography::new(pool.clone(), cfg).unwrap());
    let stop = Shutdown::new();
    let run = std::sync::Arc::clone(&choreography);
    let run_stop = stop.clone();
    tokio::spawn(async move { run.run(run_stop).await.unwrap() });
    Running { choreography, topic, stop }
}

/// Waits until each order is confirmed or cancelled.
async fn settled(pool: &sqlx::PgPool, sagas: &[&OrderSaga]) {
    let ids: Vec<uuid::Uuid> = sagas.iter().map(|s| s.order_id).collect();
    cruncan_testkit::wait_until(Duration::from_secs(60), "every order confirmed or cancelled", || async {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM unnest($1::uuid[]) id
             LEFT JOIN orders.orders o USING (id) WHERE o.status IS DISTINCT FROM 'confirmed'
               AND o.status IS DISTINCT FROM 'cancelled'",
        )
        .bind(&ids)
        .fetch_one(pool)
        .await
        .unwrap();
        open == 0
    })
    .await;
}

/// The events of one saga, in the order they were written, and the trace ids they carried.
async fn events_of(pool: &sqlx::PgPool, saga: &OrderSaga) -> (Vec<String>, BTreeSet<String>) {
    let history = saga::choreography::outbox::history(pool, saga.saga_id).await.unwrap();
    let traces =
        history.iter().filter_map(|e| Some(e.traceparent.as_ref()?.split('-').nth(1)?.to_owned())).collect();
    (history.into_iter().map(|e| e.event_type).collect(), traces)
}

#[tokio::test]
async fn the_choreographed_saga_completes_or_compensates_through_events_in_one_trace() {
    let _telemetry = cruncan_testkit::global_telemetry("saga-test");
    let pool = test_db().await;
    let running = start(&pool).await;
    let c = &running.choreography;
    let happy = c.place_order(order("u", &[("product_1", 2, 10.0)])).await.unwrap();
    let no_money = c.place_order(order("u", &[("product_1", 2, 10_000.0)])).await.unwrap();
    let no_stock = c.place_order(order("u", &[("product_2", 51, 1.0)])).await.unwrap();
    // 201 units: reserved, then refused by the carrier, then released.
    let too_big = c.place_order(order("u", &[("product_3", 200, 1.0), ("product_1", 1, 1.0)])).await.unwrap();
    settled(&pool, &[&happy, &no_money, &no_stock, &too_big]).await;

    let chain = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    let (events, traces) = events_of(&pool, &happy).await;
    assert_eq!(
        events,
        chain(&[
            "OrderCreated",
            "PaymentProcessed",
            "InventoryReserved",
            "ShipmentScheduled",
            "OrderConfirmed"
        ])
    );
    assert_eq!(traces.len(), 1, "one trace across the four services: {traces:?}");
    assert_eq!(
        events_of(&pool, &no_money).await.0,
        chain(&["OrderCreated", "PaymentFailed", "OrderCancelled"])
    );
    assert_eq!(
        events_of(&pool, &no_stock).await.0,
        chain(&["OrderCreated", "PaymentProcessed", "InventoryFailed", "PaymentRefunded", "OrderCancelled"])
    );
    let (events, traces) = events_of(&pool, &too_big).await;
    assert_eq!(
        events,
        chain(&[
            "OrderCreated",
            "PaymentProcessed",
            "InventoryReserved",
            "ShipmentFailed",
            "InventoryReleased",
            "PaymentRefunded",
            "OrderCancelled"
        ])
    );
    assert_eq!(traces.len(), 1, "{traces:?}");

    assert_eq!(order_status(&pool, happy.order_id).await.as_deref(), Some("confirmed"));
    assert_eq!(statuses(&pool, "payments.payments", happy.order_id).await, ["captured"]);
    assert_eq!(statuses(&pool, "payments.payments", no_money.order_id).await, Vec::<String>::new());
    assert_eq!(statuses(&pool, "payments.payments", no_stock.order_id).await, ["refunded"]);
    assert_eq!(statuses(&pool, "payments.payments", too_big.order_id).await, ["refunded"]);
    assert_eq!(statuses(&pool, "inventory.reservations", too_big.order_id).await, ["released", "released"]);
    assert_eq!(statuses(&pool, "shipping.shipments", happy.order_id).await, ["scheduled"]);
    for (product, left) in [("product_1", 98), ("product_2", 50), ("product_3", 200)] {
        assert_eq!(stock(&pool, product).await, left, "{product}");
    }
}

/// Every row a participant owns, as text, sorted.
async fn snapshot(pool: &sqlx::PgPool) -> Vec<String> {
    let mut all = Vec::new();
    for q in [
        "SELECT id::text || status FROM orders.orders",
        "SELECT order_id::text || status || amount FROM payments.payments",
        "SELECT order_id::text || product_id || quantity || status FROM inventory.reservations",
        "SELECT order_id::text || status FROM shipping.shipments",
        "SELECT product_id || available FROM inventory.stock",
        "SELECT 'events ' || (SELECT count(*) FROM orders.outbox) + (SELECT count(*) FROM payments.outbox)
                 + (SELECT count(*) FROM inventory.outbox) + (SELECT count(*) FROM shipping.outbox)",
    ] {
        let mut rows: Vec<String> = sqlx::query_scalar(q).fetch_all(pool).await.unwrap();
        rows.sort();
        all.extend(rows);
    }
    all
}

#[tokio::test]
async fn every_event_delivered_twice_changes_nothing_and_a_poison_event_is_dead_lettered() {
    let pool = test_db().await;
    let running = start(&pool).await;
    let c = &running.choreography;
    let happy = c.place_order(order("u", &[("product_1", 3, 10.0)])).await.unwrap();
    let too_big = c.place_order(order("u", &[("product_3", 201, 1.0)])).await.unwrap();
    settled(&pool, &[&happy, &too_big]).await;
    let before = snapshot(&pool).await;

    // Publish every event ever written once more, as a relay that died before its commit would.
    for schema in SCHEMAS {
        sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE {schema}.outbox SET sent_at = NULL")))
            .execute(&pool)
            .await
            .unwrap();
    }
    let inbox = SCHEMAS.map(|s| format!("SELECT duplicates FROM {s}.inbox")).join(" UNION ALL ");
    cruncan_testkit::wait_until(Duration::from_secs(30), "every handled event seen again", || async {
        let (handled, duplicates): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*), coalesce(sum(least(duplicates, 1)), 0)::bigint FROM ({inbox}) i"
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        handled > 0 && handled == duplicates
    })
    .await;
    assert_eq!(snapshot(&pool).await, before, "duplicates changed nothing and emitted nothing");

    // A record that is not a saga event goes to the dead-letter topic, not round and round.
    let producer = cruncan_kafka::Producer::new(
        &cruncan_testkit::brokers(),
        &cruncan_kafka::ProducerSettings::new("saga-test"),
    )
    .unwrap();
    producer.send(&running.topic, b"poison", b"{not json", &cruncan_kafka::Headers::new()).await.unwrap();
    let dead = cruncan_testkit::read_topic(
        &format!("{}.dlq", running.topic),
        1,
        Duration::from_secs(30),
        Duration::from_millis(200),
    )
    .await;
    assert_eq!(dead[0].key, "poison");
    assert_eq!(dead[0].header("dlq.reason"), Some("permanent"));
    assert_eq!(snapshot(&pool).await, before);
}

#[tokio::test]
async fn participants_stopped_mid_flight_finish_every_order_after_a_restart() {
    let pool = test_db().await;
    let cfg = config();
    let first = start_with(&pool, cfg.clone());
    let mut sagas = Vec::new();
    for i in 0..20 {
        // Every fourth order wants more than the stock: refunded and cancelled through events.
        let units = if i % 4 == 0 { 201 } else { 1 };
        sagas.push(first.choreography.place_order(order("u", &[("product_3", units, 1.0)])).await.unwrap());
    }
    // All four participants stop once events are flowing, and start again (same groups).
    cruncan_testkit::wait_until(Duration::from_secs(30), "the first event consumed", || async {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM payments.inbox").fetch_one(&pool).await.unwrap();
        n > 0
    })
    .await;
    first.stop.trigger();
    drop(first);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _second = start_with(&pool, cfg);
    settled(&pool, &sagas.iter().collect::<Vec<_>>()).await;

    for (i, saga) in sagas.iter().enumerate() {
        let want = if i % 4 == 0 { "cancelled" } else { "confirmed" };
        assert_eq!(order_status(&pool, saga.order_id).await.as_deref(), Some(want), "order {i}");
        let payments = statuses(&pool, "payments.payments", saga.order_id).await;
        assert_eq!(payments, [if i % 4 == 0 { "refunded" } else { "captured" }], "order {i}");
    }
    assert_eq!(stock(&pool, "product_3").await, 200 - 15, "one unit for each confirmed order");
}

/// Rows left in the four inboxes and the four outboxes.
async fn kept_rows(pool: &sqlx::PgPool) -> i64 {
    let union = SCHEMAS
        .map(|s| format!("(SELECT count(*) FROM {s}.inbox) + (SELECT count(*) FROM {s}.outbox)"))
        .join(" + ");
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT {union}"))).fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn inboxes_and_outboxes_forget_a_finished_saga_after_their_retention() {
    let pool = test_db().await;
    let cfg = ChoreographyConfig {
        outbox: cruncan_outbox::OutboxSettings { retention: Duration::from_secs(1), ..Default::default() },
        inbox_retention: Duration::from_secs(1),
        ..config()
    };
    let running = start_with(&pool, cfg);
    let saga = running.choreography.place_order(order("u", &[("product_1", 1, 10.0)])).await.unwrap();
    settled(&pool, &[&saga]).await;
    assert_eq!(order_status(&pool, saga.order_id).await.as_deref(), Some("confirmed"));
    assert!(kept_rows(&pool).await > 0, "the saga left inbox and outbox rows");

    cruncan_testkit::wait_until(Duration::from_secs(20), "inboxes and outboxes emptied", || async {
        kept_rows(&pool).await == 0
    })
    .await;
    assert_eq!(order_status(&pool, saga.order_id).await.as_deref(), Some("confirmed"), "the order stays");
}

#[tokio::test]
async fn an_inbox_deletes_its_oldest_expired_rows_through_its_index_and_keeps_young_ones() {
    let pool = test_db().await;
    let add = |n: i32, age_s: f64| {
        sqlx::query(
            "INSERT INTO payments.inbox (event_id, event_type, received_at)
             SELECT gen_random_uuid(), 'PaymentProcessed', now() - make_interval(secs => $2)
             FROM generate_series(1, $1)",
        )
        .bind(n)
        .bind(age_s)
        .execute(&pool)
    };
    add(20_000, 60.0).await.unwrap(); // young
    add(1_000, 7_200.0).await.unwrap(); // two hours old
    let deleter = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with((*pool.connect_options()).clone())
        .await
        .unwrap();
    let hour = Duration::from_secs(3600);
    let mut chunks = Vec::new();
    while let n @ 1.. =
        saga::choreography::inbox::delete_expired(&deleter, "payments", hour, 300).await.unwrap()
    {
        chunks.push(n);
    }
    deleter.close().await;

    assert_eq!(chunks, [300, 300, 300, 100]);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM payments.inbox").fetch_one(&pool).await.unwrap();
    assert_eq!(left, 20_000, "the young rows stay");
    let scans = cruncan_db::table_scans(&pool, "payments.inbox", 5, Duration::from_secs(15)).await.unwrap();
    assert!(scans.index_scans >= 5, "the statistics came in: {} index scans", scans.index_scans);
    // Five statements scanning the inbox would read over 100,000 rows.
    assert!(scans.seq_rows_read < 10_000, "{} rows read by sequential scans", scans.seq_rows_read);
}
