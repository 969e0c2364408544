//! 200 concurrent orders for 50 units, on two orchestrator replicas: never oversold.

use crate::helpers::*;
use cruncan_shutdown::Shutdown;
use saga::participants::Participants;
use saga::{Orchestrator, OrchestratorConfig};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn two_hundred_concurrent_orders_for_fifty_units_sell_exactly_fifty() {
    let pool = test_db().await;
    let cfg = OrchestratorConfig { concurrency: 16, ..fast_config() };
    let replica =
        || Arc::new(Orchestrator::new(pool.clone(), Participants::in_process(pool.clone()), cfg.clone()));
    let (a, b) = (replica(), replica());
    let stop = Shutdown::new();
    let runs = [
        tokio::spawn(Arc::clone(&a).run(stop.clone(), Duration::from_secs(5))),
        tokio::spawn(Arc::clone(&b).run(stop.clone(), Duration::from_secs(5))),
    ];

    // 200 clients at once, half through each replica; each wants one of product_2's 50 units.
    let starts = (0..200).map(|i| {
        let via = if i % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
        async move { via.start(order(&format!("user-{i}"), &[("product_2", 1, 3.0)]), None).await.unwrap() }
    });
    let sagas = futures::future::join_all(starts).await;
    assert_eq!(sagas.len(), 200);

    cruncan_testkit::wait_until(Duration::from_secs(60), "every saga ended", || async {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM saga.sagas WHERE status NOT IN ('completed', 'compensated')",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        open == 0
    })
    .await;
    stop.trigger();
    for run in runs {
        run.await.unwrap();
    }

    let count = |status: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM saga.sagas WHERE status = $1")
                .bind(status)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!((count("completed").await, count("compensated").await), (50, 150));
    assert_eq!(stock(&pool, "product_2").await, 0);
    let (reserved, captured): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM inventory.reservations WHERE status = 'reserved'),
                (SELECT count(*) FROM payments.payments WHERE status = 'captured')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((reserved, captured), (50, 50), "every sold unit is paid, every refused one refunded");
    let refusals: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT DISTINCT s->>'error' FROM saga.sagas, jsonb_array_elements(steps) s
         WHERE status = 'compensated' AND s->>'step' = 'ReserveInventory'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(refusals, [Some("insufficient stock for product_2: have 0, need 1".to_owned())]);
}
