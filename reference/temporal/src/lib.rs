//!
//! - [`coffee`]: one workflow per order — retries by policy, heartbeats, a signal, a query, a
//!   pickup timer, compensation (cancel, refund).
//! - [`saga`]: the order saga (order, payment, inventory, shipping) over `reference/saga`'s
//!   participants, with compensations.
//! - [`worker`]: one worker process that runs both, stopped by a shutdown future.
//! - [`connect`]: the server's address (`TEMPORAL_ADDRESS`) and the client.
//!
//! Every side effect is a PostgreSQL row keyed by an idempotency key derived from the workflow
//! id, because Temporal runs activities at least once.

pub mod coffee;
pub mod connect;
pub mod db;
pub mod history;
pub mod program;
pub mod retry;
pub mod saga;
pub mod worker;

/// The coffee shop's tables (the saga's participants migrate with `saga::MIGRATOR`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
