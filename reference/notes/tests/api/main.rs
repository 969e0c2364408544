//! The notes system against the real stack (`make up`): PostgreSQL, NATS JetStream, and for the
//! browser test Debian's Chromium. Every test has its own two databases, stream and subjects.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed setup step is a failed test

mod browser;
mod events;
mod helpers;
mod notes;
mod resume;
mod ws;
