//! The saga against real PostgreSQL (and Kafka for the choreography): one database per test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod choreography;
mod crash;
mod helpers;
mod orchestration;
mod oversell;
mod remote;
