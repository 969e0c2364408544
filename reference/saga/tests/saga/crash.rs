//! Crash-resume: for every kill point, an orchestrator dies there and a new one resumes.

use crate::helpers::*;
use saga::domain::Step;
use saga::orchestrator::DriveError;
use saga::participants::Participants;
use saga::state::SagaStatus;
use saga::{KillHook, KillPoint, Orchestrator};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Dies the first time it reaches `point`.
fn kill_at(point: KillPoint, hit: Arc<Mutex<HashSet<KillPoint>>>) -> KillHook {
    let fired = AtomicBool::new(false);
    Arc::new(move |p| {
        if p == point && !fired.swap(true, Ordering::SeqCst) {
            hit.lock().unwrap().insert(p);
            return true;
        }
        false
    })
}

// ANCHOR: crash_test
#[tokio::test]
async fn every_saga_ends_completed_or_compensated_whatever_point_the_orchestrator_dies_at() {
    let pool = test_db().await;
    let log = CallLog::default();
    let participants = faulty(Participants::in_process(pool.clone()), &log, business_faults);
    let hit = Arc::new(Mutex::new(HashSet::new()));

    // Each kill point, on a saga that completes and on one whose shipment is refused.
    let mut sagas = Vec::new();
    for point in KillPoint::all() {
        for user in ["happy", "noship"] {
            let doomed = Orchestrator::new(pool.clone(), participants.clone(), fast_config())
                .with_kill_hook(kill_at(point, Arc::clone(&hit)));
            let order = order(user, &[("product_1", 1, 10.0), ("product_2", 1, 5.0)]);
            let record = doomed.accept(order).await.unwrap();
            sagas.push((record.id(), user, point, doomed));
        }
    }
    let outcomes = futures::future::join_all(sagas.iter().map(|(id, _, _, doomed)| async move {
        doomed.drive(doomed.store().get(*id).await.unwrap().unwrap()).await
    }))
    .await;
    for ((_, user, point, _), outcome) in sagas.iter().zip(&outcomes) {
        // A refused shipment has nothing to undo; a completed saga undoes nothing.
        let reachable = match point {
            KillPoint::Written(step, phase)
            | KillPoint::Answered(step, phase)
            | KillPoint::Recorded(step, phase) => {
                *phase == saga::Phase::Execute || (*user == "noship" && *step != Step::ScheduleShipment)
            }
        };
        if reachable {
            assert!(
                matches!(outcome, Err(DriveError::Killed(p)) if p == point),
                "{user} {point:?}: {outcome:?}"
            );
        } else {
            assert!(outcome.is_ok(), "{user} {point:?}: {outcome:?}");
        }
    }
    assert_eq!(hit.lock().unwrap().len(), KillPoint::all().len() - 3, "every reachable point fired");

    // A new replica takes over once the dead ones' leases run out.
    let resumer = Orchestrator::new(pool.clone(), participants.clone(), fast_config());
    let mut statuses = BTreeMap::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        for (id, outcome) in resumer.resume(500).await.unwrap() {
            statuses.insert(id, outcome.unwrap());
        }
        if statuses.len() == sagas.iter().zip(&outcomes).filter(|(_, o)| o.is_err()).count() {
            break;
        }
    }
    for (id, user, point, _) in &sagas {
        let saga = resumer.store().get(*id).await.unwrap().unwrap();
        let want = if *user == "happy" { SagaStatus::Completed } else { SagaStatus::Compensated };
        assert_eq!(saga.status, want, "{user} killed at {point:?}");
    }
    assert_balanced(&pool, &sagas.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>()).await;
    // The kills made the resumer repeat calls the participants had already answered.
    let calls = log.all();
    let distinct: HashSet<_> = calls.iter().map(|c| (c.saga_id, c.step, c.phase)).collect();
    assert!(calls.len() > distinct.len(), "some calls were repeated after a crash");
}
// ANCHOR_END: crash_test

/// No step applied twice, and stock and money balance.
async fn assert_balanced(pool: &sqlx::PgPool, sagas: &[(uuid::Uuid, &str)]) {
    for (saga_id, user) in sagas {
        let order_id: uuid::Uuid = sqlx::query_scalar("SELECT order_id FROM saga.sagas WHERE id = $1")
            .bind(saga_id)
            .fetch_one(pool)
            .await
            .unwrap();
        let happy = *user == "happy";
        let order = order_status(pool, order_id).await;
        assert_eq!(order.as_deref(), Some(if happy { "created" } else { "cancelled" }));
        let payments = statuses(pool, "payments.payments", order_id).await;
        assert_eq!(payments, [if happy { "captured" } else { "refunded" }], "one payment per order");
        let reservations = statuses(pool, "inventory.reservations", order_id).await;
        let r = if happy { "reserved" } else { "released" };
        assert_eq!(reservations, [r, r], "one reservation per line");
        let shipments = statuses(pool, "shipping.shipments", order_id).await;
        assert_eq!(shipments.len(), usize::from(happy), "one shipment per completed order");
    }
    let completed = sagas.iter().filter(|s| s.1 == "happy").count() as i64;
    // Reserved = released + shipped: what left the shelf is exactly what completed orders hold.
    for (product, initial) in [("product_1", 100), ("product_2", 50)] {
        let held: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(quantity), 0)::bigint FROM inventory.reservations
             WHERE product_id = $1 AND status = 'reserved'",
        )
        .bind(product)
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(held, completed);
        assert_eq!(stock(pool, product).await, initial - held, "{product}");
    }
    let captured: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(amount), 0)::bigint FROM payments.payments WHERE status = 'captured'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(captured, completed * 1500);
}

#[tokio::test]
async fn a_replica_that_lost_its_lease_cannot_overwrite_the_saga() {
    let pool = test_db().await;
    let participants = Participants::in_process(pool.clone());
    let paused = Orchestrator::new(pool.clone(), participants.clone(), fast_config());
    let record = paused.accept(order("happy", &[("product_1", 1, 10.0)])).await.unwrap();
    // The replica pauses past its lease (a long GC, a frozen VM); another one takes the saga over.
    sqlx::query("UPDATE saga.sagas SET lease_until = now() - interval '1 second' WHERE id = $1")
        .bind(record.id())
        .execute(&pool)
        .await
        .unwrap();
    let other = Orchestrator::new(pool.clone(), participants, fast_config());
    let resumed = other.resume(10).await.unwrap();
    assert!(matches!(resumed[..], [(id, Ok(SagaStatus::Completed))] if id == record.id()), "{resumed:?}");

    // The paused replica wakes up with its stale copy: its first write is refused.
    let stale = paused.drive(record.clone()).await;
    assert!(
        matches!(&stale, Err(DriveError::Store(e)) if e.downcast_ref::<saga::store::LeaseLost>().is_some()),
        "{stale:?}"
    );
    let saga = other.store().get(record.id()).await.unwrap().unwrap();
    assert_eq!(saga.status, SagaStatus::Completed);
    assert_eq!(statuses(&pool, "payments.payments", saga.input.order_id).await, ["captured"]);
}
