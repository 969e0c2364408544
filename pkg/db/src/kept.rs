//! A connection that one task keeps between uses instead of taking one from the pool each time.
//!
//! sqlx pings every connection handed back to its pool: a round trip, and a wake-up on both
//! sides, per checkout. A task that runs a statement every few milliseconds (a batch writer, a
//! relay, a de-duplication store) pays it on every batch for nothing. Keeping the connection
//! saves that, and keeps what the pool's checks protect against:
//!
//! - a connection unused for [`PING_AFTER_IDLE`] goes back to the pool, which pings a connection
//!   idle that long before handing it out again;
//! - a connection held for the pool's `max_lifetime` since it was taken from the pool is renewed
//!   (sqlx does not say when a connection was opened, so one can live up to about twice
//!   `max_lifetime`, 30 minutes by default);
//! - a connection that met an unreachable database ([`is_unavailable`]) is closed, not reused.

use crate::{PING_AFTER_IDLE, is_unavailable};
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};
use std::time::Instant;

// ANCHOR: kept
/// A task's own connection between uses; empty until the first use, after an unreachable
/// database, and after sitting idle.
#[derive(Debug, Default)]
pub struct KeptConnection {
    held: Option<Held>,
}

#[derive(Debug)]
struct Held {
    conn: PoolConnection<Postgres>,
    checked_out: Instant,
    used: Instant,
}

impl KeptConnection {
    /// The kept connection if it was used within [`PING_AFTER_IDLE`] and has not been held for
    /// the pool's `max_lifetime`; otherwise a new one from `pool` (the old one goes back).
    /// Afterwards say how the use went: [`KeptConnection::record`].
    pub async fn get(&mut self, pool: &PgPool) -> Result<&mut PgConnection, sqlx::Error> {
        let lifetime = pool.options().get_max_lifetime();
        if let Some(held) = self.held.take() {
            if held.used.elapsed() < PING_AFTER_IDLE
                && lifetime.is_none_or(|l| held.checked_out.elapsed() < l)
            {
                return Ok(&mut self.held.insert(held).conn);
            }
            // Back to the pool (or closed, past its lifetime) before taking another: with a
            // full pool, holding it while waiting would wait for ourselves.
            drop(held);
        }
        let conn = pool.acquire().await?;
        let now = Instant::now();
        Ok(&mut self.held.insert(Held { conn, checked_out: now, used: now }).conn)
    }

    /// Runs `f` on the kept connection (taking one from `pool` when needed, see
    /// [`KeptConnection::get`]) and records how it went ([`KeptConnection::record`]).
    pub async fn run<T>(
        &mut self,
        pool: &PgPool,
        f: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        let result = match self.get(pool).await {
            Ok(conn) => f(conn).await,
            Err(e) => Err(e),
        };
        self.record(&result);
        result
    }

    /// Records a use that ended with `result`: an unreachable database closes the connection
    /// (it may be broken), anything else keeps it as just used.
    pub fn record<T>(&mut self, result: &Result<T, sqlx::Error>) {
        match result {
            Err(e) if is_unavailable(e) => self.discard(),
            _ => self.used(),
        }
    }

    /// Marks the connection as just used.
    pub fn used(&mut self) {
        if let Some(held) = &mut self.held {
            held.used = Instant::now();
        }
    }

    /// Closes the connection instead of handing it back: it met an unreachable database.
    pub fn discard(&mut self) {
        if let Some(mut held) = self.held.take() {
            held.conn.close_on_drop();
        }
    }

    /// Hands the connection back to the pool now.
    pub fn release(&mut self) {
        self.held = None;
    }

    /// When the kept connection turns idle ([`PING_AFTER_IDLE`] after its last use), if one is
    /// kept: the moment to call [`KeptConnection::release_if_idle`].
    pub fn idle_at(&self) -> Option<Instant> {
        self.held.as_ref().map(|held| held.used + PING_AFTER_IDLE)
    }

    /// Hands the connection back to the pool if it sat idle for [`PING_AFTER_IDLE`].
    pub fn release_if_idle(&mut self) {
        if self.held.as_ref().is_some_and(|held| held.used.elapsed() >= PING_AFTER_IDLE) {
            self.held = None;
        }
    }

    /// Whether a connection is kept.
    pub fn is_kept(&self) -> bool {
        self.held.is_some()
    }
}
// ANCHOR_END: kept
