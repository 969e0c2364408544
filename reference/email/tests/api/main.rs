//! The email service against the real PostgreSQL, NATS JetStream, Redis and SMTP sink of
//! `make up`. Each test has its own database, stream, subjects and cache keys.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;
mod sink;

mod cache;
mod create;
mod failures;
mod grpc;
mod lifecycle;
mod outbox;
mod replay;
mod search;
mod validation;
