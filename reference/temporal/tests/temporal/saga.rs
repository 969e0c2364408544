//! The order saga on Temporal, on the same scenarios as `reference/saga`'s orchestrator tests
//! (happy path, refused payment, insufficient stock) and its crash-resume: a worker that dies
//! right after a participant answered, so the answer is lost and the call is repeated.

use crate::helpers::{TestEnv, WorkerProcess};
use saga::domain::{CreateOrderBody, NewOrder, OrderSaga};
use sqlx::PgPool;
use std::time::Duration;
use temporal_ref::history::activity_runs;
use temporal_ref::saga::client::{saga_outcome, start_saga, workflow_id};
use temporal_ref::saga::{SagaOutcome, StepState};

fn order(user: &str, lines: &[(&str, i64, f64)]) -> NewOrder {
    CreateOrderBody::from_lines(user, lines).validate().unwrap()
}

async fn stock(pool: &PgPool, product: &str) -> i64 {
    sqlx::query_scalar("SELECT available FROM inventory.stock WHERE product_id = $1")
        .bind(product)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Statuses of the rows of `table` for the saga's order, sorted.
async fn statuses(pool: &PgPool, table: &str, saga: &OrderSaga) -> Vec<String> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT status FROM {table} WHERE order_id = $1 ORDER BY status"
    )))
    .bind(saga.order_id)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn order_status(pool: &PgPool, saga: &OrderSaga) -> Option<String> {
    sqlx::query_scalar("SELECT status FROM orders.orders WHERE id = $1")
        .bind(saga.order_id)
        .fetch_optional(pool)
        .await
        .unwrap()
}

/// Runs `order` to its end with an in-process worker.
async fn run(env: &TestEnv, order: NewOrder) -> (OrderSaga, SagaOutcome) {
    env.with_worker(Duration::ZERO, async {
        let saga = start_saga(&env.client, &env.task_queue, order).await.unwrap();
        let outcome = saga_outcome(&env.client, &saga).await.unwrap();
        (saga, outcome)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_happy_path_runs_four_steps_and_reserves_every_item() {
    let env = TestEnv::new().await;
    let db = &env.stores.saga;
    let (saga, outcome) =
        run(&env, order("user_123", &[("product_1", 2, 100.0), ("product_3", 5, 9.99)])).await;

    assert_eq!(outcome, SagaOutcome::Completed);
    assert_eq!(order_status(db, &saga).await.as_deref(), Some("created"));
    assert_eq!(statuses(db, "payments.payments", &saga).await, ["captured"]);
    assert_eq!(statuses(db, "inventory.reservations", &saga).await, ["reserved", "reserved"]);
    assert_eq!(statuses(db, "shipping.shipments", &saga).await, ["scheduled"]);
    assert_eq!((stock(db, "product_1").await, stock(db, "product_3").await), (98, 195));
    let runs = activity_runs(&env.client, &workflow_id(&saga)).await.unwrap();
    assert_eq!(runs.len(), 4);
    assert!(runs.iter().all(|r| r.activity.ends_with("execute_step") && r.attempt == 1), "{runs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_refused_payment_cancels_the_order() {
    let env = TestEnv::new().await;
    let db = &env.stores.saga;
    // The seed's test: 2 × 10,000.00 is over the limit.
    let (saga, outcome) = run(&env, order("user_123", &[("product_1", 2, 10_000.0)])).await;

    let SagaOutcome::Compensated { step, reason } = outcome else { panic!("{outcome:?}") };
    assert_eq!((step.name(), reason.as_str()), ("ProcessPayment", "amount exceeds limit"));
    assert_eq!(order_status(db, &saga).await.as_deref(), Some("cancelled"));
    assert!(statuses(db, "payments.payments", &saga).await.is_empty());
    // A refusal is final: the payment was asked once, then only the order was compensated.
    let runs = activity_runs(&env.client, &workflow_id(&saga)).await.unwrap();
    let names: Vec<_> =
        runs.iter().map(|r| (r.activity.rsplit("::").next().unwrap_or(""), r.attempt)).collect();
    assert_eq!(names, [("execute_step", 1), ("execute_step", 1), ("compensate_step", 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_insufficient_stock_refunds_and_cancels_and_reserves_nothing() {
    let env = TestEnv::new().await;
    let db = &env.stores.saga;
    // The first line fits, the second does not: neither may stay reserved.
    let (saga, outcome) =
        run(&env, order("user_123", &[("product_1", 3, 1.0), ("product_2", 51, 1.0)])).await;

    let SagaOutcome::Compensated { step, reason } = outcome else { panic!("{outcome:?}") };
    assert_eq!(step.name(), "ReserveInventory");
    assert_eq!(reason, "insufficient stock for product_2: have 50, need 51");
    assert_eq!(statuses(db, "payments.payments", &saga).await, ["refunded"]);
    assert_eq!(order_status(db, &saga).await.as_deref(), Some("cancelled"));
    assert!(statuses(db, "inventory.reservations", &saga).await.is_empty());
    assert_eq!((stock(db, "product_1").await, stock(db, "product_2").await), (100, 50));
}

/// A happy saga and one that runs out of stock, on a worker that aborts the first time
/// `crash_after` answers; a second worker finishes both. Returns the sagas.
async fn crash_and_resume(env: &TestEnv, crash_after: &str) -> (OrderSaga, OrderSaga) {
    let doomed = WorkerProcess::spawn(env, 0, &["--crash-after", crash_after]);
    let happy = start_saga(
        &env.client,
        &env.task_queue,
        order("happy", &[("product_1", 1, 10.0), ("product_2", 1, 5.0)]),
    );
    let happy = happy.await.unwrap();
    let nostock = order("nostock", &[("product_1", 1, 10.0), ("product_2", 51, 5.0)]);
    let nostock = start_saga(&env.client, &env.task_queue, nostock).await.unwrap();
    let status = doomed.exited().await;
    assert!(!status.success(), "the worker died at its crash point: {status:?}");

    let _rescuer = WorkerProcess::spawn(env, 0, &[]);
    let patience = crate::helpers::PATIENCE;
    let outcomes = tokio::time::timeout(patience, async {
        (saga_outcome(&env.client, &happy).await.unwrap(), saga_outcome(&env.client, &nostock).await.unwrap())
    })
    .await
    .expect("the sagas did not finish after the crash");
    assert_eq!(outcomes.0, SagaOutcome::Completed);
    assert!(
        matches!(&outcomes.1, SagaOutcome::Compensated { step, .. } if step.name() == "ReserveInventory")
    );
    (happy, nostock)
}

/// No step applied twice; stock and money balance.
async fn assert_balanced(env: &TestEnv, happy: &OrderSaga, nostock: &OrderSaga) {
    let db = &env.stores.saga;
    assert_eq!(order_status(db, happy).await.as_deref(), Some("created"));
    assert_eq!(statuses(db, "payments.payments", happy).await, ["captured"], "one payment");
    assert_eq!(statuses(db, "inventory.reservations", happy).await, ["reserved", "reserved"]);
    assert_eq!(statuses(db, "shipping.shipments", happy).await, ["scheduled"]);
    assert_eq!(order_status(db, nostock).await.as_deref(), Some("cancelled"));
    assert_eq!(statuses(db, "payments.payments", nostock).await, ["refunded"], "one payment, refunded");
    assert!(statuses(db, "inventory.reservations", nostock).await.is_empty());
    assert!(statuses(db, "shipping.shipments", nostock).await.is_empty());
    assert_eq!((stock(db, "product_1").await, stock(db, "product_2").await), (99, 49));
}

/// The largest attempt number of `activity` over both sagas' histories.
async fn max_attempt(env: &TestEnv, sagas: [&OrderSaga; 2], activity: &str) -> i32 {
    let mut max = 0;
    for saga in sagas {
        let runs = activity_runs(&env.client, &workflow_id(saga)).await.unwrap();
        max = runs.iter().filter(|r| r.activity.ends_with(activity)).map(|r| r.attempt).fold(max, i32::max);
    }
    max
}

// ANCHOR: crash_points
/// `reference/saga` kills its orchestrator at every point; here the worker aborts right after a
/// participant answered each step and each compensation these sagas reach — the answer is
/// lost, the call is repeated with the same key by the next worker, nothing happens twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_worker_dying_after_any_answer_resumes_and_applies_each_step_once() {
    let points = [
        ("CreateOrder", "execute_step"),
        ("ProcessPayment", "execute_step"),
        ("ReserveInventory", "execute_step"),
        ("ScheduleShipment", "execute_step"),
        ("RefundPayment", "compensate_step"),
        ("CancelOrder", "compensate_step"),
    ];
    futures::future::join_all(points.map(|(point, activity)| async move {
        let env = TestEnv::new().await;
        let (happy, nostock) = crash_and_resume(&env, point).await;
        assert_balanced(&env, &happy, &nostock).await;
        let attempt = max_attempt(&env, [&happy, &nostock], activity).await;
        assert!(attempt >= 2, "after dying at {point}, the lost answer was asked again");
    }))
    .await;
}
// ANCHOR_END: crash_points

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_progress_query_shows_each_step() {
    let env = TestEnv::new().await;
    let order = order("user_123", &[("product_1", 3, 1.0), ("product_2", 51, 1.0)]);
    let progress = env
        .with_worker(Duration::ZERO, async {
            let saga = start_saga(&env.client, &env.task_queue, order).await.unwrap();
            saga_outcome(&env.client, &saga).await.unwrap();
            let handle =
                env.client.get_workflow_handle::<temporal_ref::saga::OrderSagaWorkflow>(workflow_id(&saga));
            handle
                .query(temporal_ref::saga::OrderSagaWorkflow::progress, (), Default::default())
                .await
                .unwrap()
        })
        .await;
    let states: Vec<_> = progress.iter().map(|p| p.state.clone()).collect();
    assert_eq!(states[0], StepState::Compensated);
    assert_eq!(states[1], StepState::Compensated);
    assert_eq!(states[2], StepState::Failed("insufficient stock for product_2: have 50, need 51".into()));
    assert_eq!(states[3], StepState::Pending);
}
