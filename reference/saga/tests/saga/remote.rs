//! Participants as HTTP services: calls that time out and fail like remote ones.

use crate::helpers::*;
use saga::domain::Step;
use saga::participants::http::{HttpParticipant, router};
use saga::participants::{Participant, Participants};
use saga::state::{SagaStatus, StepState};
use saga::{Orchestrator, OrchestratorConfig};
use std::sync::Arc;
use std::time::Duration;

/// Serves `participant` on 127.0.0.1:0 and returns its base URL.
async fn serve(participant: Arc<dyn Participant>) -> String {
    let ready: cruncan_http::ReadinessCheck = Arc::new(|| Box::pin(async { Ok(()) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(participant, ready)).await });
    base
}

/// Each of `local` served over HTTP, and clients of them (`shipping_url` overrides shipping).
async fn remote(local: Participants, shipping_url: Option<&str>) -> Participants {
    let client = |base: String| -> Arc<dyn Participant> {
        Arc::new(HttpParticipant::new(base, Duration::from_millis(300)).unwrap())
    };
    let shipping = match shipping_url {
        Some(url) => url.to_owned(),
        None => serve(local.shipping).await,
    };
    Participants {
        orders: client(serve(local.orders).await),
        payments: client(serve(local.payments).await),
        inventory: client(serve(local.inventory).await),
        shipping: client(shipping),
    }
}

async fn run(
    pool: &sqlx::PgPool,
    p: Participants,
    cfg: OrchestratorConfig,
    user: &str,
) -> saga::state::SagaRecord {
    let orchestrator = Orchestrator::new(pool.clone(), p, cfg);
    let record = orchestrator.accept(order(user, &[("product_3", 10, 1.0)])).await.unwrap();
    orchestrator.drive(record.clone()).await.unwrap();
    orchestrator.store().get(record.id()).await.unwrap().unwrap()
}

#[tokio::test]
async fn over_http_a_refusal_is_a_refusal_and_the_saga_compensates() {
    let pool = test_db().await;
    let log = CallLog::default();
    let p = remote(faulty(Participants::in_process(pool.clone()), &log, business_faults), None).await;
    let ok = run(&pool, p.clone(), fast_config(), "user").await;
    assert_eq!(ok.status, SagaStatus::Completed);
    let refused = run(&pool, p, fast_config(), "noship-http").await;
    assert_eq!(refused.status, SagaStatus::Compensated);
    assert_eq!(refused.steps[3].error.as_deref(), Some("no carrier"));
    assert_eq!(refused.steps[3].attempts, 1, "a refusal is not retried");
    assert_eq!(stock(&pool, "product_3").await, 190);
}

#[tokio::test]
async fn a_slow_participant_times_out_and_the_retry_with_the_same_key_charges_once() {
    let pool = test_db().await;
    let log = CallLog::default();
    // The first payment call takes 800 ms; the client gives up after 300 ms and retries.
    let local = faulty(Participants::in_process(pool.clone()), &log, |step| Faults {
        first_call_delay: (step == Step::ProcessPayment).then_some(Duration::from_millis(800)),
        ..Faults::default()
    });
    let saga = run(&pool, remote(local, None).await, fast_config(), "user").await;

    assert_eq!(saga.status, SagaStatus::Completed);
    assert!(saga.steps[1].attempts >= 2, "{:?}", saga.steps[1]);
    // Let the slow first call finish: it must find the key taken and change nothing.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(statuses(&pool, "payments.payments", saga.input.order_id).await, ["captured"]);
}

#[tokio::test]
async fn a_participant_that_is_down_parks_the_saga_instead_of_dropping_it() {
    let pool = test_db().await;
    // Nothing listens there: every shipping call and compensation is refused a connection.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let p = remote(Participants::in_process(pool.clone()), Some(&closed)).await;
    let saga = run(&pool, p, fast_config(), "user").await;

    // Shipping may or may not have happened, and its compensation cannot be confirmed: parked.
    assert_eq!(saga.status, SagaStatus::Failed);
    assert_eq!(saga.steps[3].state, StepState::CompensationFailed);
    assert_eq!((saga.steps[3].attempts, saga.steps[3].compensation_attempts), (3, 3));
    assert_eq!(saga.steps[2].state, StepState::Completed, "nothing else is undone behind it");
}
