//! The order saga of seed 002 — CreateOrder, ProcessPayment, ReserveInventory, ScheduleShipment,
//! each with its compensation — built so that it survives a crash at any point:
//!
//! - [`orchestrator`]: one replica (or several) drives each saga, writing its state to
//!   PostgreSQL ([`store`]) before each participant call and after each answer; sagas are claimed
//!   with `FOR UPDATE SKIP LOCKED` and a lease, and a dead replica's sagas are resumed.
//! - [`participants`]: orders, payments, inventory and shipping, each owning its schema, behind
//!   one trait, in process or over HTTP; every call is idempotent per `<saga id>:<step>`.
//! - [`choreography`]: the same flow as Kafka events, each participant reacting to the event
//!   before it and publishing the next through its own transactional outbox.
//! - [`http`] and [`app`]: `POST /orders`, `GET /sagas/{id}`, `GET /orders/{id}`.

pub mod app;
pub mod choreography;
pub mod config;
pub mod domain;
pub mod http;
pub mod killpoint;
pub mod orchestrator;
pub mod participants;
pub mod state;
pub mod store;

pub use app::{App, build};
pub use config::Settings;
pub use orchestrator::{KillHook, KillPoint, Orchestrator, OrchestratorConfig, Phase, Started};

/// The migrations of every participant's schema and of the saga state.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
