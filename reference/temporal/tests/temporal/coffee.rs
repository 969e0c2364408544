//! The coffee shop's scenarios: happy path, declined card, flaky processor, signal and query,
//! pickup timer, duplicate order id.

use crate::helpers::{TestEnv, eventually};
use std::time::Duration;
use temporal_ref::coffee::cards::{CARD_DECLINED, CARD_FLAKY, CARD_OK, CARD_UNREACHABLE, FLAKY_FAILURES};
use temporal_ref::coffee::client::{customer_arrived, outcome, place_order, status};
use temporal_ref::coffee::{CoffeeOrder, Drink, Outcome, Stage};
use temporal_ref::history::activity_runs;

const BREW: Duration = Duration::from_millis(200);

fn order(card: &str, pickup_within: Duration) -> CoffeeOrder {
    CoffeeOrder::new("ada", vec![Drink::Latte, Drink::Espresso], card, pickup_within).unwrap()
}

fn attempts_of(runs: &[temporal_ref::history::ActivityRun], activity: &str) -> Vec<i32> {
    runs.iter().filter(|r| r.activity.ends_with(activity)).map(|r| r.attempt).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_is_charged_brewed_and_collected() {
    let env = TestEnv::new().await;
    let id = env.id("happy");
    let outcome = env
        .with_worker(BREW, async {
            place_order(&env.client, &env.task_queue, &id, order(CARD_OK, Duration::from_secs(60))).await?;
            // The customer may arrive before the drinks are ready: the signal is kept in the
            // workflow's state until the workflow gets there.
            customer_arrived(&env.client, &id).await?;
            outcome(&env.client, &id).await
        })
        .await
        .unwrap();

    let Outcome::Collected { charge_id } = outcome else { panic!("expected collected, got {outcome:?}") };
    assert!(charge_id.starts_with("ch_"));
    let effects = env.shop.effects(&id).await.unwrap();
    assert_eq!(effects.status.as_deref(), Some("collected"));
    assert_eq!((effects.charges, effects.refunds, effects.cups, effects.cups_ready), (1, 0, 2, 2));
    let runs = activity_runs(&env.client, &id).await.unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r.activity.rsplit("::").next().unwrap_or("")).collect();
    assert_eq!(names, ["take_order", "charge_card", "brew_drink", "brew_drink", "close_order"]);
    assert!(runs.iter().all(|r| r.attempt == 1), "nothing needed a retry: {runs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declined_card_cancels_the_order_without_retrying_or_brewing() {
    let env = TestEnv::new().await;
    let id = env.id("declined");
    let outcome = env
        .with_worker(BREW, async {
            place_order(&env.client, &env.task_queue, &id, order(CARD_DECLINED, Duration::from_secs(60)))
                .await?;
            outcome(&env.client, &id).await
        })
        .await
        .unwrap();

    assert_eq!(outcome, Outcome::Declined { reason: "card declined: insufficient funds".into() });
    let effects = env.shop.effects(&id).await.unwrap();
    assert_eq!(effects.status.as_deref(), Some("declined"), "the order is compensated (cancelled)");
    assert_eq!((effects.charges, effects.refunds, effects.cups), (0, 0, 0));
    let runs = activity_runs(&env.client, &id).await.unwrap();
    assert_eq!(attempts_of(&runs, "charge_card"), [1], "a decline is not retried");
    assert!(attempts_of(&runs, "brew_drink").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaky_processor_is_retried_by_policy_and_charged_once() {
    let env = TestEnv::new().await;
    let id = env.id("flaky");
    let outcome = env
        .with_worker(BREW, async {
            place_order(&env.client, &env.task_queue, &id, order(CARD_FLAKY, Duration::from_secs(60)))
                .await?;
            customer_arrived(&env.client, &id).await?;
            outcome(&env.client, &id).await
        })
        .await
        .unwrap();

    assert!(matches!(outcome, Outcome::Collected { .. }), "{outcome:?}");
    let effects = env.shop.effects(&id).await.unwrap();
    let third = i32::try_from(FLAKY_FAILURES).unwrap() + 1;
    assert_eq!(effects.charges, 1);
    assert_eq!(effects.charge_attempt, Some(third), "charged by the attempt after the failures");
    let runs = activity_runs(&env.client, &id).await.unwrap();
    assert_eq!(attempts_of(&runs, "charge_card"), [third], "the server retried it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_follows_the_order_and_the_signal_completes_it() {
    let env = TestEnv::new().await;
    let id = env.id("signal");
    let (ready, outcome, last) = env
        .with_worker(BREW, async {
            place_order(&env.client, &env.task_queue, &id, order(CARD_OK, Duration::from_secs(60))).await?;
            let ready = eventually("the drinks to be ready", || async {
                status(&env.client, &id).await.ok().filter(|v| v.stage == Stage::Ready)
            })
            .await;
            customer_arrived(&env.client, &id).await?;
            let outcome = outcome(&env.client, &id).await?;
            // A closed workflow still answers queries: a worker replays its history.
            let last = status(&env.client, &id).await?;
            anyhow::Ok((ready, outcome, last))
        })
        .await
        .unwrap();

    assert_eq!((ready.drinks_ready, ready.drinks_total, ready.customer_arrived), (2, 2, false));
    assert!(ready.charge_id.is_some());
    let Outcome::Collected { charge_id } = outcome else { panic!("{outcome:?}") };
    assert_eq!(last.stage, Stage::Collected);
    assert!(last.customer_arrived);
    assert_eq!(last.charge_id, Some(charge_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_not_collected_in_time_is_cancelled_and_refunded() {
    let env = TestEnv::new().await;
    let id = env.id("timer");
    let outcome = env
        .with_worker(BREW, async {
            place_order(&env.client, &env.task_queue, &id, order(CARD_OK, Duration::from_secs(1))).await?;
            outcome(&env.client, &id).await
        })
        .await
        .unwrap();

    let Outcome::Refunded { charge_id, reason } = outcome else { panic!("expected refund, got {outcome:?}") };
    assert_eq!(reason, "not collected within 1s");
    let effects = env.shop.effects(&id).await.unwrap();
    assert_eq!(effects.status.as_deref(), Some("refunded"));
    assert_eq!((effects.charges, effects.refunds, effects.cups_ready), (1, 1, 2));
    assert!(charge_id.starts_with("ch_"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_order_id_cannot_start_twice() {
    let env = TestEnv::new().await;
    let id = env.id("dup");
    // No worker: starting needs only the server.
    place_order(&env.client, &env.task_queue, &id, order(CARD_OK, Duration::from_secs(60))).await.unwrap();
    let again = place_order(&env.client, &env.task_queue, &id, order(CARD_OK, Duration::from_secs(60))).await;
    let err = again.expect_err("a second start with the same id must be refused");
    assert!(format!("{err:#}").to_lowercase().contains("already"), "{err:#}");
    // Leave nothing running on the server.
    let handle = env.client.get_workflow_handle::<temporalio_client::UntypedWorkflow>(&id);
    handle.terminate(Default::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brewing_that_keeps_failing_is_compensated_by_a_refund() {
    let env = TestEnv::new().await;
    let id = env.id("broken");
    // The barista's table is gone (this test's own database): every brew attempt fails.
    let rename = |from: &str, to: &str| format!("ALTER TABLE {from} RENAME TO {to}");
    sqlx::query(sqlx::AssertSqlSafe(rename("coffee_brew", "coffee_brew_away")))
        .execute(&env.stores.coffee)
        .await
        .unwrap();
    let outcome = env
        .with_worker(BREW, async {
            place_order(&env.client, &env.task_queue, &id, order(CARD_OK, Duration::from_secs(60))).await?;
            outcome(&env.client, &id).await
        })
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(rename("coffee_brew_away", "coffee_brew")))
        .execute(&env.stores.coffee)
        .await
        .unwrap();

    let Outcome::Refunded { reason, .. } = outcome else { panic!("expected refund, got {outcome:?}") };
    assert!(reason.starts_with("could not brew latte"), "{reason}");
    let effects = env.shop.effects(&id).await.unwrap();
    assert_eq!(effects.status.as_deref(), Some("refunded"));
    assert_eq!((effects.charges, effects.refunds, effects.cups), (1, 1, 0));
    let runs = activity_runs(&env.client, &id).await.unwrap();
    assert_eq!(attempts_of(&runs, "brew_drink"), [5], "retried up to the policy's 5 attempts");
    assert_eq!(attempts_of(&runs, "refund"), [1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_processor_exhausts_the_policy_and_cancels_the_order() {
    let env = TestEnv::new().await;
    let id = env.id("unreachable");
    let outcome = env
        .with_worker(BREW, async {
            let order = order(CARD_UNREACHABLE, Duration::from_secs(60));
            place_order(&env.client, &env.task_queue, &id, order).await?;
            outcome(&env.client, &id).await
        })
        .await
        .unwrap();

    let Outcome::Declined { reason } = outcome else { panic!("expected a cancellation, got {outcome:?}") };
    assert!(reason.starts_with("not charged"), "{reason}");
    let effects = env.shop.effects(&id).await.unwrap();
    assert_eq!(effects.status.as_deref(), Some("declined"));
    assert_eq!((effects.charges, effects.cups), (0, 0));
    let runs = activity_runs(&env.client, &id).await.unwrap();
    assert_eq!(attempts_of(&runs, "charge_card"), [5], "the policy's 5 attempts, then no more");
}
