//! Kill the worker process in the middle of a workflow, start another: the workflow completes,
//! and every activity's effect exists exactly once.
//!
//! The worker is the `temporal_worker` binary (the `coffee_worker` example's program, which cargo
//! builds before the tests), killed with SIGKILL: no graceful shutdown, no chance to report
//! anything to the server.

use crate::helpers::{TestEnv, WorkerProcess, eventually};
use std::time::Duration;
use temporal_ref::coffee::cards::CARD_OK;
use temporal_ref::coffee::client::{customer_arrived, outcome, place_order};
use temporal_ref::coffee::{CoffeeOrder, Drink, Outcome};
use temporal_ref::history::activity_runs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_brew_is_replaced_and_each_effect_happens_once() {
    let env = TestEnv::new().await;
    let id = env.id("crash");
    let order =
        CoffeeOrder::new("ada", vec![Drink::Latte, Drink::Espresso], CARD_OK, Duration::from_secs(60))
            .unwrap();

    let first = WorkerProcess::spawn(&env, 1000, &[]);
    let first_identity = first.identity();
    place_order(&env.client, &env.task_queue, &id, order).await.unwrap();
    customer_arrived(&env.client, &id).await.unwrap();

    // The first cup is taken when brewing starts; it takes a second, so the kill lands mid-brew.
    eventually("the first brew to start", || async {
        env.shop.effects(&id).await.ok().filter(|e| e.cups == 1).map(|_| ())
    })
    .await;
    first.kill();
    let at_kill = env.shop.effects(&id).await.unwrap();
    assert_eq!((at_kill.charges, at_kill.cups, at_kill.cups_ready), (1, 1, 0), "killed mid-brew");

    let second = WorkerProcess::spawn(&env, 1000, &[]);
    let result = tokio::time::timeout(crate::helpers::PATIENCE, outcome(&env.client, &id)).await;
    let result = result.expect("the new worker did not finish the order").unwrap();
    assert!(matches!(result, Outcome::Collected { .. }), "{result:?}");

    let effects = env.shop.effects(&id).await.unwrap();
    assert_eq!(effects.status.as_deref(), Some("collected"));
    assert_eq!((effects.charges, effects.refunds, effects.cups, effects.cups_ready), (1, 0, 2, 2));
    assert_eq!(effects.cup_ready_attempts, [2, 1], "the first cup was finished by the retry");

    // The history tells the same story: charge on the first worker, the interrupted brew
    // retried (attempt 2) on the second.
    let runs = activity_runs(&env.client, &id).await.unwrap();
    let by = |name: &str| runs.iter().filter(|r| r.activity.ends_with(name)).collect::<Vec<_>>();
    assert_eq!(by("charge_card")[0].worker, first_identity);
    let brews = by("brew_drink");
    assert_eq!(brews.iter().map(|r| r.attempt).collect::<Vec<_>>(), [2, 1]);
    assert!(brews.iter().all(|r| r.worker == second.identity()), "{brews:?}");
}
