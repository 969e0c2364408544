//! The events of the choreographed saga.

use crate::domain::OrderSaga;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

// ANCHOR: events
/// Every event carries the saga's input, so each participant has what it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    /// Orders created the order: payments charges.
    OrderCreated { saga: OrderSaga },
    /// Payments charged: inventory reserves.
    PaymentProcessed { saga: OrderSaga },
    /// Payments refused: orders cancels.
    PaymentFailed { saga: OrderSaga, reason: String },
    /// Inventory reserved every line: shipping schedules.
    InventoryReserved { saga: OrderSaga },
    /// Inventory refused: payments refunds.
    InventoryFailed { saga: OrderSaga, reason: String },
    /// Shipping scheduled: orders confirms.
    ShipmentScheduled { saga: OrderSaga },
    /// Shipping refused: inventory releases.
    ShipmentFailed { saga: OrderSaga, reason: String },
    /// Inventory released (compensation): payments refunds.
    InventoryReleased { saga: OrderSaga, reason: String },
    /// Payments refunded (compensation): orders cancels.
    PaymentRefunded { saga: OrderSaga, reason: String },
    /// The saga completed.
    OrderConfirmed { saga: OrderSaga },
    /// The saga was compensated.
    OrderCancelled { saga: OrderSaga, reason: String },
}
// ANCHOR_END: events

impl Event {
    /// The saga the event belongs to.
    pub fn saga(&self) -> &OrderSaga {
        match self {
            Event::OrderCreated { saga }
            | Event::PaymentProcessed { saga }
            | Event::PaymentFailed { saga, .. }
            | Event::InventoryReserved { saga }
            | Event::InventoryFailed { saga, .. }
            | Event::ShipmentScheduled { saga }
            | Event::ShipmentFailed { saga, .. }
            | Event::InventoryReleased { saga, .. }
            | Event::PaymentRefunded { saga, .. }
            | Event::OrderConfirmed { saga }
            | Event::OrderCancelled { saga, .. } => saga,
        }
    }

    /// The event's type name, e.g. `PaymentProcessed`.
    pub fn name(&self) -> &'static str {
        match self {
            Event::OrderCreated { .. } => "OrderCreated",
            Event::PaymentProcessed { .. } => "PaymentProcessed",
            Event::PaymentFailed { .. } => "PaymentFailed",
            Event::InventoryReserved { .. } => "InventoryReserved",
            Event::InventoryFailed { .. } => "InventoryFailed",
            Event::ShipmentScheduled { .. } => "ShipmentScheduled",
            Event::ShipmentFailed { .. } => "ShipmentFailed",
            Event::InventoryReleased { .. } => "InventoryReleased",
            Event::PaymentRefunded { .. } => "PaymentRefunded",
            Event::OrderConfirmed { .. } => "OrderConfirmed",
            Event::OrderCancelled { .. } => "OrderCancelled",
        }
    }
}

/// What goes on the wire: the event with its own id (for de-duplication) and the saga id as
/// correlation id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique per event; a redelivery has the same id.
    pub event_id: Uuid,
    /// The saga id: every event of one order carries it.
    pub correlation_id: Uuid,
    /// The event.
    pub event: Event,
}

impl Envelope {
    /// A new envelope with a fresh id.
    pub fn new(event: Event) -> Self {
        Self { event_id: Uuid::new_v4(), correlation_id: event.saga().saga_id, event }
    }
}
