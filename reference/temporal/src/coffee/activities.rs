//! The coffee shop's activities: the only code that touches the outside world. Each takes one
//! serialisable input (it is written into the workflow's history) and turns the shop's errors into
//! what Temporal should do next: retry (any ordinary error) or stop (a non-retryable failure).

use super::cards::CardError;
use super::order::{CoffeeOrder, Drink};
use super::shop::{ChargeError, CoffeeShop};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use temporalio_macros::activities;
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

/// The failure type a declined card carries, so the workflow can tell it from other failures.
pub const CARD_DECLINED: &str = "CardDeclined";

/// Input of [`CoffeeActivities::take_order`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TakeOrder {
    /// The order id (the workflow id).
    pub order_id: String,
    /// The order.
    pub order: CoffeeOrder,
}

/// Input of [`CoffeeActivities::charge_card`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Charge {
    /// One key per order and step.
    pub key: String,
    /// The order.
    pub order_id: String,
    /// Card token.
    pub card: String,
    /// Amount.
    pub amount_cents: i64,
}

/// Input of [`CoffeeActivities::brew_drink`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Brew {
    /// One key per order and cup.
    pub key: String,
    /// The order.
    pub order_id: String,
    /// Which drink of the order (0-based).
    pub position: u32,
    /// The drink.
    pub drink: Drink,
}

/// Input of [`CoffeeActivities::refund`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refund {
    /// One key per order and step.
    pub key: String,
    /// The charge to refund.
    pub charge_id: String,
    /// Why.
    pub reason: String,
}

/// Input of [`CoffeeActivities::close_order`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Close {
    /// The order.
    pub order_id: String,
    /// Final status.
    pub status: String,
}

/// The activities, over one shop. `brew_time` is how long the machine takes per drink (seconds
/// in the demo, a fraction of one in tests).
#[derive(Debug)]
pub struct CoffeeActivities {
    shop: CoffeeShop,
    brew_time: Duration,
}

impl CoffeeActivities {
    /// Activities over `shop`, brewing each drink in `brew_time`.
    pub fn new(shop: CoffeeShop, brew_time: Duration) -> Self {
        Self { shop, brew_time }
    }
}

/// How often brewing reports progress, in milliseconds.
const BREW_STEP_MS: u64 = 100;

#[activities]
impl CoffeeActivities {
    /// Records the order.
    #[activity]
    pub async fn take_order(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: TakeOrder,
    ) -> Result<(), ActivityError> {
        self.shop.take_order(&input.order_id, &input.order).await?;
        Ok(())
    }

    // ANCHOR: charge_card
    /// Charges the card. A declined card is a non-retryable failure (typed
    /// [`CARD_DECLINED`]); an unreachable processor is an ordinary error, which the
    /// retry policy retries.
    #[activity]
    pub async fn charge_card(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: Charge,
    ) -> Result<String, ActivityError> {
        let attempt = ctx.info().attempt;
        let Charge { key, order_id, card, amount_cents } = &input;
        let charged = self.shop.charge(key, order_id, card, *amount_cents, attempt);
        match charged.await {
            Ok(charge_id) => Ok(charge_id),
            Err(ChargeError::Card(e @ CardError::Declined(_))) => Err(ActivityError::application(
                ApplicationFailure::builder(e)
                    .type_name(CARD_DECLINED.to_owned())
                    .non_retryable(true)
                    .build(),
            )),
            Err(e) => Err(e.into()),
        }
    }
    // ANCHOR_END: charge_card

    // ANCHOR: brew_drink
    /// Brews one drink, heartbeating its progress. If the worker dies mid-brew, the
    /// heartbeat timeout fires, the server retries on another worker, and that attempt
    /// resumes from the last reported progress with the cup already taken (the effect
    /// is made once).
    #[activity]
    pub async fn brew_drink(self: Arc<Self>, ctx: ActivityContext, input: Brew) -> Result<(), ActivityError> {
        let attempt = ctx.info().attempt;
        let mut done_ms: u64 = ctx.heartbeat_details().deserialize()?.unwrap_or(0);
        let shop = &self.shop;
        let Brew { key, order_id, position, drink } = &input;
        shop.start_brew(key, order_id, *position, *drink, attempt).await?;
        let total_ms = u64::try_from(self.brew_time.as_millis()).unwrap_or(u64::MAX);
        while done_ms < total_ms {
            if ctx.is_cancelled() {
                return Err(ActivityError::cancelled());
            }
            tokio::time::sleep(Duration::from_millis(BREW_STEP_MS)).await;
            done_ms += BREW_STEP_MS;
            ctx.record_heartbeat(done_ms).await?;
        }
        shop.finish_brew(key, attempt).await?;
        Ok(())
    }
    // ANCHOR_END: brew_drink

    /// Refunds a charge in full; returns the refund id.
    #[activity]
    pub async fn refund(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: Refund,
    ) -> Result<String, ActivityError> {
        Ok(self.shop.refund(&input.key, &input.charge_id, &input.reason).await?)
    }

    /// Sets the order's final status.
    #[activity]
    pub async fn close_order(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: Close,
    ) -> Result<(), ActivityError> {
        self.shop.close_order(&input.order_id, &input.status).await?;
        Ok(())
    }
}
