//! Service one against the real PostgreSQL and Kafka of the local stack (`make up`). Each test
//! gets its own database and topic. One binary, many modules (compiles once).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic: that is its failure report

mod availability;
mod batch;
mod create;
mod helpers;
mod idempotency;
mod openapi;
mod outbox;
mod outbox_growth;
mod shutdown;
mod telemetry;
mod validation;
