//! The four participants of the order saga — orders, payments, inventory, shipping — each a
//! module that owns its PostgreSQL schema, behind one trait, [`Participant`].
//!
//! - In process: [`Orders`], [`Payments`], [`Inventory`], [`Shipping`] apply their step in a
//!   local transaction (see [`LocalStep`]).
//! - Over HTTP: [`http::router`] serves any participant as its own service and
//!   [`http::HttpParticipant`] calls one; the orchestrator cannot tell the two apart, so its calls
//!   can time out and fail like remote ones.
//!
//! Every call carries an [`IdempotencyKey`] (`<saga id>:<step>`); a repeated call returns the
//! first answer and changes nothing, and a compensation of a step that never ran leaves a
//! tombstone so the step can no longer run.

pub mod http;
mod inventory;
pub mod ledger;
mod orders;
mod payments;
mod shipping;

pub use inventory::Inventory;
pub use ledger::{LocalStep, Outcome};
pub use orders::Orders;
pub use payments::{PAYMENT_LIMIT, Payments};
pub use shipping::{SHIPMENT_UNIT_LIMIT, Shipping};

use crate::domain::{IdempotencyKey, OrderSaga, Step};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::sync::Arc;

// ANCHOR: participant
/// What a participant answered when it could not do its step.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// A business rule said no ("amount exceeds limit"); nothing changed, and asking again with
    /// the same key gives the same answer. The saga compensates the steps before this one.
    #[error("{0}")]
    Rejected(String),
    /// No answer (timeout, connection refused, 5xx, database down): the step may or may not have
    /// happened. The orchestrator retries with the same key, then gives up and compensates it too.
    #[error("unavailable: {0:#}")]
    Unavailable(anyhow::Error),
}

/// What a step produced: the id of the thing it created (order, payment, reservation,
/// shipment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepOutput {
    /// Id of what the step created.
    pub reference: String,
}

/// One participant of the saga: a step and its compensation, both idempotent per key.
#[async_trait::async_trait]
pub trait Participant: Send + Sync + 'static {
    /// Does the step once per key; a repeat returns the first answer.
    async fn execute(&self, key: &IdempotencyKey, saga: &OrderSaga) -> Result<StepOutput, StepError>;
    /// Undoes what the step did under `key`, if anything; a repeat does nothing. Only
    /// [`StepError::Unavailable`] is expected: a compensation must not be refused.
    async fn compensate(&self, key: &IdempotencyKey, saga: &OrderSaga) -> Result<(), StepError>;
}
// ANCHOR_END: participant

/// The saga's four participants, each in process or remote.
#[derive(Clone)]
pub struct Participants {
    /// CreateOrder / CancelOrder.
    pub orders: Arc<dyn Participant>,
    /// ProcessPayment / RefundPayment.
    pub payments: Arc<dyn Participant>,
    /// ReserveInventory / ReleaseReservation.
    pub inventory: Arc<dyn Participant>,
    /// ScheduleShipment / CancelShipment.
    pub shipping: Arc<dyn Participant>,
}

impl std::fmt::Debug for Participants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Participants").finish_non_exhaustive()
    }
}

impl Participants {
    /// All four in process, on `pool` (whose database has run [`crate::MIGRATOR`]).
    pub fn in_process(pool: PgPool) -> Self {
        Self {
            orders: Arc::new(Orders::new(pool.clone())),
            payments: Arc::new(Payments::new(pool.clone())),
            inventory: Arc::new(Inventory::new(pool.clone())),
            shipping: Arc::new(Shipping::new(pool)),
        }
    }

    /// The participant that runs `step`.
    pub fn for_step(&self, step: Step) -> &Arc<dyn Participant> {
        match step {
            Step::CreateOrder => &self.orders,
            Step::ProcessPayment => &self.payments,
            Step::ReserveInventory => &self.inventory,
            Step::ScheduleShipment => &self.shipping,
        }
    }
}

/// The in-process participant named `orders`, `payments`, `inventory` or `shipping`.
pub fn by_name(name: &str, pool: PgPool) -> Option<Arc<dyn Participant>> {
    Some(match name {
        "orders" => Arc::new(Orders::new(pool)),
        "payments" => Arc::new(Payments::new(pool)),
        "inventory" => Arc::new(Inventory::new(pool)),
        "shipping" => Arc::new(Shipping::new(pool)),
        _ => return None,
    })
}
