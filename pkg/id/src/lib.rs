//! Snowflake ids: 41 bits of milliseconds since the Twitter epoch, 16 bits of node id and 6 bits of
//! sequence, packed into a `u64` and written as a 20-character zero-padded decimal string.
//!
//! We write the generator ourselves (about a hundred lines) because the layout is fixed by the wire
//! format of the Go original and because it teaches two things worth knowing: a lock-free
//! compare-and-swap loop, and what to do when the wall clock moves backwards.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch of the Snowflake epoch (2010-11-04T01:42:54.657Z).
pub const EPOCH_MS: u64 = 1_288_834_974_657;
/// Bits of the millisecond timestamp.
pub const TIME_BITS: u32 = 41;
/// Bits of the node id.
pub const NODE_BITS: u32 = 16;
/// Bits of the per-millisecond sequence.
pub const SEQUENCE_BITS: u32 = 6;

const MAX_SEQUENCE: u64 = (1 << SEQUENCE_BITS) - 1;
const MAX_TIME: u64 = (1 << TIME_BITS) - 1;

/// Errors of id generation and node-id resolution.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    /// `POD_IP` held an IPv6 address; the 16-bit node id is taken from an IPv4 address.
    #[error("POD_IP {0:?} is IPv6; set an explicit node_id (0..=65535) for IPv6 pods")]
    Ipv6(String),
    /// `POD_IP` was not an IP address at all.
    #[error("POD_IP {0:?} is not a valid IPv4 address")]
    Malformed(String),
    /// An id string that is not a 20-digit decimal number.
    #[error("{0:?} is not a Snowflake id (20 decimal digits)")]
    Parse(String),
    /// The clock is past the 41-bit range (the year 2080) or before the epoch.
    #[error("clock is outside the Snowflake time range")]
    ClockOutOfRange,
}

/// A Snowflake id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(u64);

impl Id {
    /// Wraps a raw 64-bit value.
    pub const fn from_u64(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw 64-bit value.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Milliseconds since the Unix epoch at which the id was made.
    pub const fn timestamp_ms(self) -> u64 {
        (self.0 >> (NODE_BITS + SEQUENCE_BITS)) + EPOCH_MS
    }

    /// The node that made the id.
    pub const fn node(self) -> u16 {
        ((self.0 >> SEQUENCE_BITS) & ((1 << NODE_BITS) - 1)) as u16
    }

    /// The sequence within its millisecond.
    pub const fn sequence(self) -> u8 {
        (self.0 & MAX_SEQUENCE) as u8
    }

    /// The smallest id that can be made at `timestamp_ms` (milliseconds since the Unix epoch):
    /// every id made earlier is smaller, every id made at or after it is not. `None` outside the
    /// 41-bit time range.
    pub const fn first_at(timestamp_ms: u64) -> Option<Self> {
        match timestamp_ms.checked_sub(EPOCH_MS) {
            Some(elapsed) if elapsed < (1 << TIME_BITS) => Some(Self(elapsed << (NODE_BITS + SEQUENCE_BITS))),
            _ => None,
        }
    }

    fn compose(elapsed_ms: u64, node: u16, sequence: u64) -> Self {
        Self((elapsed_ms << (NODE_BITS + SEQUENCE_BITS)) | (u64::from(node) << SEQUENCE_BITS) | sequence)
    }
}

// ANCHOR: id_display
/// The wire form: 20 digits, zero-padded, so ids sort as strings the way they sort as numbers.
impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:020}", self.0)
    }
}
// ANCHOR_END: id_display

impl FromStr for Id {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdError::Parse(s.to_owned()));
        }
        s.parse::<u64>().map(Id).map_err(|_| IdError::Parse(s.to_owned()))
    }
}

/// A source of wall-clock milliseconds since the Unix epoch; tests inject their own.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
    }
}

// ANCHOR: node_id
/// The node id of this process: an explicit setting wins, otherwise the low 16 bits of the IPv4
/// address in `POD_IP` (the Kubernetes downward API), otherwise `None` (single-node development).
pub fn resolve_node_id(explicit: Option<u16>, pod_ip: Option<&str>) -> Result<Option<u16>, IdError> {
    if let Some(node) = explicit {
        return Ok(Some(node));
    }
    let Some(raw) = pod_ip.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    match raw.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => Ok(Some(node_from_ipv4(v4))),
        Ok(IpAddr::V6(_)) => Err(IdError::Ipv6(raw.to_owned())),
        Err(_) => Err(IdError::Malformed(raw.to_owned())),
    }
}

/// The low 16 bits of an IPv4 address: unique per pod within a /16 pod network.
pub fn node_from_ipv4(ip: Ipv4Addr) -> u16 {
    let [_, _, c, d] = ip.octets();
    u16::from_be_bytes([c, d])
}
// ANCHOR_END: node_id

/// What [`Generator::try_next_id`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The id.
    Id(Id),
    /// This millisecond's 64 ids are spent: none until the clock passes it. `behind_ms` is how far
    /// the clock is behind the last id's millisecond (0: it is in that millisecond now).
    Wait {
        /// Milliseconds the clock lags the last id handed out.
        behind_ms: u64,
    },
}

/// A thread-safe, lock-free Snowflake generator.
#[derive(Debug)]
pub struct Generator<C: Clock = SystemClock> {
    node: u16,
    clock: C,
    /// `(elapsed_ms << SEQUENCE_BITS) | sequence` of the last id handed out.
    last: AtomicU64,
}

impl Generator<SystemClock> {
    /// A generator for `node` on the system clock.
    pub fn new(node: u16) -> Self {
        Self::with_clock(node, SystemClock)
    }
}

impl<C: Clock> Generator<C> {
    /// A generator for `node` on an injected clock.
    pub fn with_clock(node: u16, clock: C) -> Self {
        Self { node, clock, last: AtomicU64::new(0) }
    }

    /// This generator's node id.
    pub fn node(&self) -> u16 {
        self.node
    }

    // ANCHOR: next_id
    /// The next id: strictly greater than every id this generator handed out before.
    ///
    /// - Same millisecond: the sequence goes up; after 64 ids we wait for the next millisecond.
    /// - Clock moved backwards (an NTP step): we keep the last timestamp we used instead of reusing
    ///   older ones, and once its 64 sequence numbers are spent we wait until the wall clock passes
    ///   it. Ids stay unique and ordered; the price is a pause as long as the backwards jump.
    ///
    /// Waiting is asynchronous (the caller is an async handler): the task yields or sleeps on the
    /// runtime's timer, so the thread serves other requests meanwhile.
    pub async fn next_id(&self) -> Result<Id, IdError> {
        loop {
            match self.try_next_id()? {
                Next::Id(id) => return Ok(id),
                // Within the current millisecond: let other tasks run, then look again.
                Next::Wait { behind_ms: 0 } => tokio::task::yield_now().await,
                // The clock is behind the last id (stepped back): sleep until it catches up.
                Next::Wait { behind_ms } => tokio::time::sleep(Duration::from_millis(behind_ms)).await,
            }
        }
    }

    /// One step of [`Generator::next_id`] that never waits: the id, or how far the clock must
    /// advance before the next one exists.
    pub fn try_next_id(&self) -> Result<Next, IdError> {
        loop {
            // Load the last id *before* reading the clock: a clock read that is older than the
            // stored state would otherwise look like a backwards clock.
            let prev = self.last.load(Ordering::Acquire);
            let now = self.elapsed_now()?;
            let (last_ms, seq) = (prev >> SEQUENCE_BITS, prev & MAX_SEQUENCE);
            let (ms, next_seq) = if now > last_ms {
                (now, 0)
            } else if seq < MAX_SEQUENCE {
                (last_ms, seq + 1)
            } else {
                return Ok(Next::Wait { behind_ms: last_ms - now });
            };
            if ms > MAX_TIME {
                return Err(IdError::ClockOutOfRange);
            }
            let packed = (ms << SEQUENCE_BITS) | next_seq;
            if self.last.compare_exchange_weak(prev, packed, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                return Ok(Next::Id(Id::compose(ms, self.node, next_seq)));
            }
        }
    }
    // ANCHOR_END: next_id

    fn elapsed_now(&self) -> Result<u64, IdError> {
        self.clock.now_ms().checked_sub(EPOCH_MS).ok_or(IdError::ClockOutOfRange)
    }
}

#[cfg(test)]
mod tests;
