//! Against the real Temporal dev server (`make up-temporal`, `TEMPORAL_ADDRESS`) and the stack's
//! PostgreSQL. Each test has its own database and task queue, so tests run in parallel and never
//! take each other's tasks.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic: that is its failure report

mod coffee;
mod crash;
mod helpers;
mod saga;
