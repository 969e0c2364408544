//! Happy path, a failure at each step, lost answers, and a compensation that keeps failing.

use crate::helpers::*;
use saga::Phase::{Compensate as C, Execute as E};
use saga::domain::Step::{CreateOrder, ProcessPayment, ReserveInventory, ScheduleShipment};
use saga::participants::Participants;
use saga::state::{SagaStatus, StepState};
use saga::{Orchestrator, OrchestratorConfig};

async fn run(
    pool: &sqlx::PgPool,
    participants: Participants,
    cfg: OrchestratorConfig,
    order: saga::domain::NewOrder,
) -> saga::state::SagaRecord {
    let orchestrator = Orchestrator::new(pool.clone(), participants, cfg);
    let record = orchestrator.accept(order).await.unwrap();
    orchestrator.drive(record.clone()).await.unwrap();
    orchestrator.store().get(record.id()).await.unwrap().unwrap()
}

#[tokio::test]
async fn happy_path_runs_four_steps_and_reserves_every_item() {
    let pool = test_db().await;
    let log = CallLog::default();
    let p = faulty(Participants::in_process(pool.clone()), &log, business_faults);
    let order = order("user_123", &[("product_1", 2, 100.0), ("product_3", 5, 9.99)]);
    let saga = run(&pool, p, fast_config(), order).await;

    assert_eq!(saga.status, SagaStatus::Completed);
    assert_eq!(
        log.of(saga.id()),
        [(CreateOrder, E), (ProcessPayment, E), (ReserveInventory, E), (ScheduleShipment, E)]
    );
    assert!(
        saga.steps
            .iter()
            .all(|s| s.state == StepState::Completed && s.attempts == 1 && s.reference.is_some())
    );
    let order_id = saga.input.order_id;
    assert_eq!(order_status(&pool, order_id).await.as_deref(), Some("created"));
    assert_eq!(statuses(&pool, "payments.payments", order_id).await, ["captured"]);
    assert_eq!(statuses(&pool, "inventory.reservations", order_id).await, ["reserved", "reserved"]);
    assert_eq!(statuses(&pool, "shipping.shipments", order_id).await, ["scheduled"]);
    assert_eq!((stock(&pool, "product_1").await, stock(&pool, "product_3").await), (98, 195));
    let amount: i64 = sqlx::query_scalar("SELECT amount FROM payments.payments WHERE order_id = $1")
        .bind(order_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(amount, 2 * 10_000 + 5 * 999);
}

#[tokio::test]
async fn a_refused_order_compensates_nothing() {
    let pool = test_db().await;
    let log = CallLog::default();
    let p = faulty(Participants::in_process(pool.clone()), &log, business_faults);
    let saga = run(&pool, p, fast_config(), order("blocked-1", &[("product_1", 1, 1.0)])).await;

    assert_eq!(saga.status, SagaStatus::Compensated);
    assert_eq!(log.of(saga.id()), [(CreateOrder, E)]);
    assert_eq!(saga.steps[0].state, StepState::Failed);
    assert_eq!(saga.steps[0].error.as_deref(), Some("user is blocked"));
    assert_eq!(order_status(&pool, saga.input.order_id).await, None);
}

#[tokio::test]
async fn a_refused_payment_cancels_the_order() {
    let pool = test_db().await;
    let log = CallLog::default();
    let p = faulty(Participants::in_process(pool.clone()), &log, business_faults);
    // The seed's test: 2 × 10,000.00 is over the limit.
    let saga = run(&pool, p, fast_config(), order("user_123", &[("product_1", 2, 10_000.0)])).await;

    assert_eq!(saga.status, SagaStatus::Compensated);
    assert_eq!(log.of(saga.id()), [(CreateOrder, E), (ProcessPayment, E), (CreateOrder, C)]);
    assert_eq!(saga.steps[1].error.as_deref(), Some("amount exceeds limit"));
    assert_eq!(saga.steps[0].state, StepState::Compensated);
    assert_eq!(saga.steps[1].state, StepState::Failed);
    assert_eq!(order_status(&pool, saga.input.order_id).await.as_deref(), Some("cancelled"));
    assert!(statuses(&pool, "payments.payments", saga.input.order_id).await.is_empty());
}

#[tokio::test]
async fn insufficient_stock_refunds_and_cancels_and_reserves_nothing() {
    let pool = test_db().await;
    let log = CallLog::default();
    let p = faulty(Participants::in_process(pool.clone()), &log, business_faults);
    // The first line fits, the second does not: neither may stay reserved.
    let order = order("user_123", &[("product_1", 3, 1.0), ("product_2", 51, 1.0)]);
    let saga = run(&pool, p, fast_config(), order).await;

    assert_eq!(saga.status, SagaStatus::Compensated);
    assert_eq!(
        log.of(saga.id()),
        [(CreateOrder, E), (ProcessPayment, E), (ReserveInventory, E), (ProcessPayment, C), (CreateOrder, C)]
    );
    assert_eq!(saga.steps[2].error.as_deref(), Some("insufficient stock for product_2: have 50, need 51"));
    let order_id = saga.input.order_id;
    assert_eq!(statuses(&pool, "payments.payments", order_id).await, ["refunded"]);
    assert_eq!(order_status(&pool, order_id).await.as_deref(), Some("cancelled"));
    assert!(statuses(&pool, "inventory.reservations", order_id).await.is_empty());
    assert_eq!((stock(&pool, "product_1").await, stock(&pool, "product_2").await), (100, 50));
}

#[tokio::test]
async fn an_unknown_product_is_named() {
    let pool = test_db().await;
    let saga = run(
        &pool,
        Participants::in_process(pool.clone()),
        fast_config(),
        order("u", &[("product_9", 1, 1.0)]),
    )
    .await;
    assert_eq!(saga.status, SagaStatus::Compensated);
    assert_eq!(saga.steps[2].error.as_deref(), Some("product not found: product_9"));
}

#[tokio::test]
async fn a_refused_shipment_undoes_the_three_steps_before_it_in_reverse() {
    let pool = test_db().await;
    let log = CallLog::default();
    let p = faulty(Participants::in_process(pool.clone()), &log, business_faults);
    let saga = run(&pool, p, fast_config(), order("noship-1", &[("product_1", 4, 2.5)])).await;

    assert_eq!(saga.status, SagaStatus::Compensated);
    assert_eq!(
        log.of(saga.id()),
        [
            (CreateOrder, E),
            (ProcessPayment, E),
            (ReserveInventory, E),
            (ScheduleShipment, E),
            (ReserveInventory, C),
            (ProcessPayment, C),
            (CreateOrder, C),
        ]
    );
    let order_id = saga.input.order_id;
    assert_eq!(statuses(&pool, "inventory.reservations", order_id).await, ["released"]);
    assert_eq!(stock(&pool, "product_1").await, 100);
    assert_eq!(statuses(&pool, "payments.payments", order_id).await, ["refunded"]);
    assert_eq!(order_status(&pool, order_id).await.as_deref(), Some("cancelled"));
    assert!(statuses(&pool, "shipping.shipments", order_id).await.is_empty());
}

#[tokio::test]
async fn a_lost_answer_is_retried_with_the_same_key_and_charges_once() {
    let pool = test_db().await;
    let log = CallLog::default();
    let p = faulty(Participants::in_process(pool.clone()), &log, |step| Faults {
        unavailable_first: if step == ProcessPayment { 2 } else { 0 },
        apply_then_lose: true,
        ..Faults::default()
    });
    let saga = run(&pool, p, fast_config(), order("u", &[("product_1", 1, 5.0)])).await;

    assert_eq!(saga.status, SagaStatus::Completed);
    assert_eq!(saga.steps[1].attempts, 3);
    assert_eq!(statuses(&pool, "payments.payments", saga.input.order_id).await, ["captured"]);
}

#[tokio::test]
async fn a_step_that_never_answers_is_compensated_too() {
    let pool = test_db().await;
    let log = CallLog::default();
    // Every answer of the payment is lost, though the payment happened.
    let p = faulty(Participants::in_process(pool.clone()), &log, |step| Faults {
        unavailable_first: if step == ProcessPayment { u32::MAX } else { 0 },
        apply_then_lose: true,
        ..Faults::default()
    });
    let saga = run(&pool, p, fast_config(), order("u", &[("product_1", 1, 5.0)])).await;

    assert_eq!(saga.status, SagaStatus::Compensated);
    assert_eq!(saga.steps[1].state, StepState::Compensated);
    assert_eq!(saga.steps[1].attempts, 3);
    assert_eq!(
        log.of(saga.id()),
        [
            (CreateOrder, E),
            (ProcessPayment, E),
            (ProcessPayment, E),
            (ProcessPayment, E),
            (ProcessPayment, C),
            (CreateOrder, C)
        ]
    );
    assert_eq!(statuses(&pool, "payments.payments", saga.input.order_id).await, ["refunded"]);
}

#[tokio::test]
async fn a_compensation_that_keeps_failing_parks_the_saga_as_failed() {
    let telemetry = cruncan_testkit::global_telemetry("saga-test");
    let pool = test_db().await;
    let log = CallLog::default();
    let p = faulty(Participants::in_process(pool.clone()), &log, |step| Faults {
        compensation_fails: step == ProcessPayment,
        ..business_faults(step)
    });
    let saga = run(&pool, p, fast_config(), order("noship-2", &[("product_1", 1, 5.0)])).await;

    assert_eq!(saga.status, SagaStatus::Failed);
    let payment = &saga.steps[1];
    assert_eq!(payment.state, StepState::CompensationFailed);
    assert_eq!(payment.compensation_attempts, 3);
    assert!(payment.error.as_deref().unwrap().starts_with("RefundPayment:"), "{:?}", payment.error);
    // Parked: the order is not cancelled behind the operator's back, and nothing is dropped.
    assert_eq!(saga.steps[0].state, StepState::Completed);
    assert_eq!(saga.steps[2].state, StepState::Compensated);
    assert_eq!(statuses(&pool, "payments.payments", saga.input.order_id).await, ["captured"]);

    // What the operator alerts on: an error log naming the saga, and the parked counter.
    let saga_id = saga.id().to_string();
    let logged = telemetry.logs.json_lines().into_iter().any(|l| {
        l["level"] == "ERROR"
            && l["saga_id"] == saga_id.as_str()
            && l["message"].as_str().unwrap().contains("parked")
    });
    assert!(logged, "no error log for parked saga {saga_id}");
    tokio::task::spawn_blocking(|| telemetry.guard.force_flush()).await.unwrap();
    let metrics = telemetry.receiver.metrics();
    assert_eq!(
        metrics.get("saga.compensation.parked").map(|m| m.kind.as_str()),
        Some("counter"),
        "{metrics:?}"
    );
}

#[tokio::test]
async fn a_late_step_after_its_compensation_changes_nothing() {
    let pool = test_db().await;
    let p = Participants::in_process(pool.clone());
    let saga = saga::domain::OrderSaga::new(order("u", &[("product_1", 7, 1.0)]));
    let key = saga.key(ReserveInventory);
    // The orchestrator gave up on the reservation and compensated it; then the call arrives.
    p.inventory.compensate(&key, &saga).await.unwrap();
    let late = p.inventory.execute(&key, &saga).await;
    assert!(matches!(late, Err(saga::participants::StepError::Rejected(_))), "{late:?}");
    assert_eq!(stock(&pool, "product_1").await, 100);
    // Repeats change nothing either.
    p.inventory.compensate(&key, &saga).await.unwrap();
    assert_eq!(stock(&pool, "product_1").await, 100);
}

#[tokio::test]
async fn a_parked_saga_requeued_after_the_fix_finishes_compensating() {
    let pool = test_db().await;
    let log = CallLog::default();
    let broken = faulty(Participants::in_process(pool.clone()), &log, |step| Faults {
        compensation_fails: step == ProcessPayment,
        ..business_faults(step)
    });
    let saga = run(&pool, broken, fast_config(), order("noship-3", &[("product_1", 1, 5.0)])).await;
    assert_eq!(saga.status, SagaStatus::Failed);

    // The payment provider is back: the operator requeues, any replica finishes the job.
    let fixed = Orchestrator::new(pool.clone(), Participants::in_process(pool.clone()), fast_config());
    assert!(fixed.store().requeue_parked(saga.id()).await.unwrap());
    assert!(!fixed.store().requeue_parked(saga.id()).await.unwrap(), "only a parked saga is requeued");
    let resumed = fixed.resume(10).await.unwrap();
    assert!(matches!(resumed[..], [(_, Ok(SagaStatus::Compensated))]), "{resumed:?}");
    let order_id = saga.input.order_id;
    assert_eq!(statuses(&pool, "payments.payments", order_id).await, ["refunded"]);
    assert_eq!(order_status(&pool, order_id).await.as_deref(), Some("cancelled"));
    assert_eq!(stock(&pool, "product_1").await, 100);
}
