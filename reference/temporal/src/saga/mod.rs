//! The order saga of seed 002 as a Temporal workflow, over the same participants as
//! `reference/saga` (orders, payments, inventory, shipping; their schemas, business rules and
//! idempotency keys `<saga id>:<step>`). What `reference/saga` builds by hand — saga state in
//! PostgreSQL, leases, resuming a dead orchestrator's sagas — is Temporal's job here.

pub mod activities;
pub mod client;
pub mod workflow;

pub use workflow::{OrderSagaWorkflow, SagaOutcome, StepProgress, StepState};
