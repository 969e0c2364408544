//! Service one: `POST /one` validates a request, gives it a Snowflake id, stores it in
//! PostgreSQL together with an outbox row in one transaction, and answers `201`; a relay in the
//! same process publishes the outbox to Kafka. See the book's chapters on service one.

pub mod app;
pub mod batch;
pub mod config;
pub mod domain;
pub mod http;
pub mod intake;
pub mod outbox;
pub mod repo;

pub use app::{App, MIGRATOR, build};
pub use config::{Cli, Settings};
