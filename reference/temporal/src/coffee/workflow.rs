//! The coffee order as a Temporal workflow: take the order, charge the card, brew each drink,
//! wait for the customer or the pickup timer, and compensate (cancel, refund) when it goes wrong.
//!
//! Workflow code is replayed from history after a crash, so it must be deterministic: no clock,
//! no randomness, no I/O. Time is `ctx.timer`, waiting is `ctx.wait_condition`, and everything
//! that touches the world is an activity whose result is recorded in the history.

use super::activities::{Brew, CARD_DECLINED, Charge, Close, CoffeeActivities, Refund, TakeOrder};
use super::order::{CoffeeOrder, OrderView, Outcome, Stage};
use crate::retry::{brewing, charging, quick_step};
use temporalio_common::error::IncomingError;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::workflows::select;
use temporalio_sdk::{
    ActivityExecutionError, SyncWorkflowContext, WorkflowContext, WorkflowContextView, WorkflowResult,
};

/// One workflow per order; its id is the order id.
#[workflow]
pub struct CoffeeOrderWorkflow {
    order: CoffeeOrder,
    view: OrderView,
}

// ANCHOR: run
#[workflow_methods]
impl CoffeeOrderWorkflow {
    /// Starts with the order; nothing has happened yet.
    #[init]
    pub fn new(_ctx: &WorkflowContextView, order: CoffeeOrder) -> Self {
        let view = OrderView {
            stage: Stage::Received,
            drinks_ready: 0,
            drinks_total: u32::try_from(order.drinks().len()).unwrap_or(u32::MAX),
            customer_arrived: false,
            charge_id: None,
        };
        Self { order, view }
    }

    /// The order from start to end.
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<Outcome> {
        let order = ctx.state(|s| s.order.clone());
        let order_id = ctx.workflow_id().to_owned();
        let take = TakeOrder { order_id: order_id.clone(), order: order.clone() };
        ctx.execute_activity(CoffeeActivities::take_order, take, quick_step()).await?;

        let charge = Charge {
            key: format!("{order_id}/charge"),
            order_id: order_id.clone(),
            card: order.card().to_owned(),
            amount_cents: order.total_cents(),
        };
        let charged = ctx.execute_activity(CoffeeActivities::charge_card, charge, charging());
        let charge_id = match charged.await {
            Ok(id) => id,
            Err(e) => {
                // Declined, or the processor never answered within the retry policy: either
                // way nothing was charged, and the order is cancelled.
                let reason = declined(&e).unwrap_or_else(|| format!("not charged: {e}"));
                close(ctx, &order_id, "declined").await?;
                ctx.state_mut(|s| s.view.stage = Stage::Declined);
                return Ok(Outcome::Declined { reason });
            }
        };
        ctx.state_mut(|s| {
            s.view.stage = Stage::Brewing;
            s.view.charge_id = Some(charge_id.clone());
        });
        // ANCHOR_END: run

        // ANCHOR: brew
        for (position, drink) in (0u32..).zip(order.drinks().iter().copied()) {
            let brew = Brew {
                key: format!("{order_id}/brew/{position}"),
                order_id: order_id.clone(),
                position,
                drink,
            };
            let brewed = ctx.execute_activity(CoffeeActivities::brew_drink, brew, brewing());
            if let Err(e) = brewed.await {
                let reason = format!("could not brew {drink}: {e}");
                return refund(ctx, &order_id, charge_id, reason).await;
            }
            ctx.state_mut(|s| s.view.drinks_ready += 1);
        }
        ctx.state_mut(|s| s.view.stage = Stage::Ready);
        // ANCHOR_END: brew

        // ANCHOR: pickup
        // The first to finish wins: the customer's signal or the pickup timer. Both are
        // durable: the timer lives on the server, so it fires even if no worker is up
        // at that moment.
        let arrived = select! {
            _ = ctx.wait_condition(|s| s.view.customer_arrived) => true,
            _ = ctx.timer(order.pickup_within()) => false,
        };
        if !arrived {
            let reason = format!("not collected within {:?}", order.pickup_within());
            return refund(ctx, &order_id, charge_id, reason).await;
        }
        close(ctx, &order_id, "collected").await?;
        ctx.state_mut(|s| s.view.stage = Stage::Collected);
        Ok(Outcome::Collected { charge_id })
    }
    // ANCHOR_END: pickup

    // ANCHOR: signal_query
    /// Signal: the customer is at the counter (before or after the drinks are ready).
    #[signal]
    pub fn customer_arrived(&mut self, _ctx: &mut SyncWorkflowContext<Self>) {
        self.view.customer_arrived = true;
    }

    /// Query: where the order is. Answered from the workflow's state; changes nothing.
    #[query]
    pub fn status(&self, _ctx: &WorkflowContextView) -> OrderView {
        self.view.clone()
    }
    // ANCHOR_END: signal_query
}

/// The compensation for a charged order that cannot be completed: refund, then close.
async fn refund(
    ctx: &WorkflowContext<CoffeeOrderWorkflow>,
    order_id: &str,
    charge_id: String,
    reason: String,
) -> WorkflowResult<Outcome> {
    let refund =
        Refund { key: format!("{order_id}/refund"), charge_id: charge_id.clone(), reason: reason.clone() };
    ctx.execute_activity(CoffeeActivities::refund, refund, quick_step()).await?;
    close(ctx, order_id, "refunded").await?;
    ctx.state_mut(|s| s.view.stage = Stage::Refunded);
    Ok(Outcome::Refunded { charge_id, reason })
}

async fn close(
    ctx: &WorkflowContext<CoffeeOrderWorkflow>,
    order_id: &str,
    status: &str,
) -> Result<(), ActivityExecutionError> {
    let close = Close { order_id: order_id.to_owned(), status: status.to_owned() };
    ctx.execute_activity(CoffeeActivities::close_order, close, quick_step()).await
}

/// The processor's reason, when the failure is a declined card (and not, say, a timeout).
fn declined(e: &ActivityExecutionError) -> Option<String> {
    match e.cause() {
        Some(IncomingError::Application(app)) if app.type_name() == Some(CARD_DECLINED) => {
            Some(app.source_error().to_string())
        }
        _ => None,
    }
}
