//! The starter's side: place an order, signal, query, wait for the outcome. Each call is one
//! request to the server; no worker needs to be up to place an order or send a signal.

use super::order::{CoffeeOrder, OrderView, Outcome};
use super::workflow::CoffeeOrderWorkflow;
use anyhow::Context as _;
use temporalio_client::{
    Client, WorkflowGetResultOptions, WorkflowQueryOptions, WorkflowSignalOptions, WorkflowStartOptions,
};

/// Starts the workflow for `order` with id `order_id` on `task_queue`. Starting the
/// same id again while it runs is refused by the server: the order id is the
/// deduplication key.
pub async fn place_order(
    client: &Client,
    task_queue: &str,
    order_id: &str,
    order: CoffeeOrder,
) -> anyhow::Result<()> {
    let options = WorkflowStartOptions::new(task_queue, order_id).build();
    client
        .start_workflow(CoffeeOrderWorkflow::run, order, options)
        .await
        .with_context(|| format!("starting order {order_id}"))?;
    Ok(())
}

/// Sends the "customer arrived" signal.
pub async fn customer_arrived(client: &Client, order_id: &str) -> anyhow::Result<()> {
    let handle = client.get_workflow_handle::<CoffeeOrderWorkflow>(order_id);
    handle
        .signal(CoffeeOrderWorkflow::customer_arrived, (), WorkflowSignalOptions::default())
        .await
        .with_context(|| format!("signalling order {order_id}"))?;
    Ok(())
}

/// Asks the workflow where the order is (a worker must be up to answer).
pub async fn status(client: &Client, order_id: &str) -> anyhow::Result<OrderView> {
    let handle = client.get_workflow_handle::<CoffeeOrderWorkflow>(order_id);
    handle
        .query(CoffeeOrderWorkflow::status, (), WorkflowQueryOptions::default())
        .await
        .with_context(|| format!("querying order {order_id}"))
}

/// Waits for the workflow's result.
pub async fn outcome(client: &Client, order_id: &str) -> anyhow::Result<Outcome> {
    let handle = client.get_workflow_handle::<CoffeeOrderWorkflow>(order_id);
    handle
        .get_result(WorkflowGetResultOptions::default())
        .await
        .with_context(|| format!("waiting for order {order_id}"))
}
