//! The email service of seed 001, done over: REST and gRPC accept an email and store it with its
//! `email.send` event in one PostgreSQL transaction (an outbox); a relay publishes the event to
//! NATS JetStream; a pool of workers on a durable pull consumer sends it over SMTP with lettre,
//! acking only after the server accepted it, retrying transient failures with a delay and
//! dead-lettering permanent ones; reads go through a Redis cache; search is PostgreSQL full-text.

pub mod app;
pub mod cache;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod http;
pub mod jetstream;
pub mod mailer;
pub mod metrics;
pub mod replay;
pub mod search;
pub mod service;
pub mod store;
pub mod tls;
pub mod worker;

pub use app::{App, MIGRATOR, build, build_with_mailer};
pub use config::{Cli, Settings};
