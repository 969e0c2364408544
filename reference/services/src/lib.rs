//! Users, products and orders — the three services of seed 002's "Microservices Architecture in
//! Go" — behind a gateway, with the order service calling the other two *well*:
//!
//! - each service owns its PostgreSQL database and migrations;
//! - `POST /products/reserve` is one conditional update keyed by a reservation id, so it is
//!   atomic, idempotent and can be released (a release that arrives first wins);
//! - the order service's calls go through a tower stack per dependency: bulkhead, retry with a
//!   budget and jittered backoff (idempotent calls only), circuit breaker, timeout per attempt,
//!   and the caller's deadline travels downstream in a header;
//! - the gateway routes by path, sets request ids, checks JWTs (`reference/jwt`), limits each
//!   client's rate, answers CORS, times out, sheds load with 503 + `Retry-After`, and serves one
//!   OpenAPI document merged from the three services'.

pub mod app;
pub mod config;
pub mod deadline;
pub mod error;
pub mod gateway;
pub mod orders;
pub mod products;
pub mod resilience;
pub mod shed;
pub mod users;

pub use app::App;
pub use config::{Cli, Settings};
