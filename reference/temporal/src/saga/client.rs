//! Starting a saga and waiting for it.

use super::workflow::{OrderSagaWorkflow, SagaOutcome};
use anyhow::Context as _;
use saga::domain::{NewOrder, OrderSaga};
use temporalio_client::{Client, WorkflowGetResultOptions, WorkflowStartOptions};

/// The workflow id of a saga.
pub fn workflow_id(saga: &OrderSaga) -> String {
    format!("saga-{}", saga.saga_id)
}

// ANCHOR: start_saga
/// Fixes the saga's ids (so every retry uses the same idempotency keys) and starts its
/// workflow on `task_queue`.
pub async fn start_saga(client: &Client, task_queue: &str, order: NewOrder) -> anyhow::Result<OrderSaga> {
    let saga = OrderSaga::new(order);
    let options = WorkflowStartOptions::new(task_queue, workflow_id(&saga)).build();
    client
        .start_workflow(OrderSagaWorkflow::run, saga.clone(), options)
        .await
        .with_context(|| format!("starting saga {}", saga.saga_id))?;
    Ok(saga)
}
// ANCHOR_END: start_saga

/// Waits for the saga's outcome.
pub async fn saga_outcome(client: &Client, saga: &OrderSaga) -> anyhow::Result<SagaOutcome> {
    client
        .get_workflow_handle::<OrderSagaWorkflow>(workflow_id(saga))
        .get_result(WorkflowGetResultOptions::default())
        .await
        .with_context(|| format!("waiting for saga {}", saga.saga_id))
}
