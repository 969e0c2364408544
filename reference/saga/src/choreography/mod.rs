//! The same order saga as a choreography over Kafka: no orchestrator. Each participant consumes
//! the event before its step and publishes the next one (or a failure event), and a failure
//! travels back through events, each participant undoing its own step:
//!
//! `OrderCreated → PaymentProcessed → InventoryReserved → ShipmentScheduled → OrderConfirmed`;
//! `PaymentFailed → OrderCancelled`; `InventoryFailed → PaymentRefunded → OrderCancelled`;
//! `ShipmentFailed → InventoryReleased → PaymentRefunded → OrderCancelled`.
//!
//! Every participant writes its event to its own outbox in the transaction of its effect
//! ([`outbox`]), and records the event it consumed in its inbox in that same transaction
//! ([`services`]), so a redelivered event changes nothing; both are trimmed after their
//! retention ([`inbox`], [`outbox`]). The saga id is the correlation id and
//! the record key (one partition, so one order's events stay in order), and the trace context
//! travels in the record headers: one trace from `place_order` to `OrderConfirmed`.

pub mod events;
pub mod inbox;
pub mod outbox;
pub mod services;

pub use events::{Envelope, Event};
pub use services::{Choreography, ChoreographyConfig};
