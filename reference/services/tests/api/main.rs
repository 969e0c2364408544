//! Tests of reference/services against real PostgreSQL, faults injected by a proxy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../jwt/tests/common/mod.rs"]
mod jwtkeys;

mod faults;
mod gateway;
mod helpers;
mod orders;
mod products;
mod resilience;
mod users;
