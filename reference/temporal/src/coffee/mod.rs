//! The coffee shop (seed 002, "Building Resilient Workflows with Temporal.io").

pub mod activities;
pub mod cards;
pub mod client;
pub mod order;
pub mod shop;
pub mod workflow;

pub use order::{CoffeeOrder, Drink, OrderView, Outcome, Stage};
pub use workflow::CoffeeOrderWorkflow;
