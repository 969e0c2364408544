//! Real-time note sharing (seed 002), done over in Rust: a user service and a notes service, each
//! with its own PostgreSQL database, talking through NATS JetStream events written by a
//! transactional outbox; a gateway that pushes each signed-in user's note events to browsers over
//! a WebSocket (and to backend clients over a gRPC stream), with heartbeats, resume from the last
//! JetStream sequence seen, and a bounded queue per connection that cuts slow clients; and a small
//! TypeScript page it serves.

pub mod app;
pub mod auth;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod gateway;
pub mod notes;
pub mod users;

pub use app::{App, build};
pub use config::{Cli, Settings};
