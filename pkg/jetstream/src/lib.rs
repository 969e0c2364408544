//! A transactional outbox to NATS JetStream, shared by the services that publish events
//! (reference/email, reference/notes' user and notes services).
//!
//! A change and its event are written in one PostgreSQL transaction ([`enqueue`]), so an event
//! exists exactly when its change committed. The [`Relay`] publishes the rows in order, each
//! with its event id as `Nats-Msg-Id` and the headers it was written with (the writer's trace
//! context), waits for JetStream's acks and only then deletes them. Rows are claimed with
//! `FOR UPDATE SKIP LOCKED`, so replicas share the work without publishing a row twice at the
//! same time. A crash between the publish and the delete publishes the row again, and JetStream
//! drops that copy inside the stream's duplicate window; past the window the consumers' own
//! idempotency covers it.
//!
//! The table every service migrates (its migrations own it, with its other tables):
//!
//! ```sql
//! CREATE TABLE outbox (
//!     seq        bigserial   PRIMARY KEY,
//!     subject    text        NOT NULL,
//!     msg_id     uuid        NOT NULL,
//!     payload    jsonb       NOT NULL,
//!     headers    jsonb       NOT NULL DEFAULT '{}',
//!     created_at timestamptz NOT NULL DEFAULT now()
//! );
//! ```

mod relay;

/// `Ok` while `nats` is connected: the readiness of a service that cannot work without NATS.
pub fn connected(nats: &async_nats::Client) -> anyhow::Result<()> {
    anyhow::ensure!(
        nats.connection_state() == async_nats::connection::State::Connected,
        "nats: not connected"
    );
    Ok(())
}

pub use relay::{Relay, RelaySettings, enqueue, pending, trace_headers};
