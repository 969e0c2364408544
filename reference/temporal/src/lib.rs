//!
//! - [`coffee`]: one workflow per order — retries by policy, heartbeats, a signal, a query, a
//!   pickup timer, compensation (cancel, refund).
//! - [`worker`]: one worker process that runs both, stopped by a shutdown future.
//! - [`connect`]: the server's address (`TEMPORAL_ADDRESS`) and the client.
//!
//! Every side effect is a PostgreSQL row keyed by an idempotency key derived from the workflow
//! id, because Temporal runs activities at least once.

pub mod coffee;
pub mod connect;
pub mod db;
pub mod history;
pub mod retry;
pub mod worker;

/// The tables of the coffee shop and the saga's participants.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
