//! The in-process fan-out: one bounded queue per connection, registered under its user; an event
//! goes to the queues of the users in its audience. A queue that is full means its client reads
//! slower than events arrive: the connection is cut (not waited for, not buffered without bound),
//! so one slow browser costs at most `capacity` queued pointers and never slows the others.

use axum::extract::ws::Utf8Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::mpsc;

use crate::domain::UserId;
use crate::events::NoteEvent;

/// An event with its stream sequence, serialised once for every socket it goes to.
#[derive(Debug)]
pub struct Delivered {
    /// JetStream stream sequence.
    pub seq: u64,
    /// The event.
    pub event: NoteEvent,
    /// `{"type":"event","seq":..,"event":..}`, shared by every WebSocket.
    pub json: Utf8Bytes,
}

impl Delivered {
    /// Wraps `event` received at stream sequence `seq`. The audience stays behind: it is for
    /// routing, a browser has no use for it (and it would be most of the frame for a note shared
    /// widely — 500 recipients are 20 KB on every socket).
    pub fn new(seq: u64, event: NoteEvent) -> anyhow::Result<Self> {
        let pushed = serde_json::json!({
            "type": "event",
            "seq": seq,
            "event": {"event_id": event.event_id, "kind": event.kind, "note": &event.note, "by": event.by, "at": event.at},
        });
        Ok(Self { seq, event, json: serde_json::to_string(&pushed)?.into() })
    }
}

/// Counters the bench and the tests read.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections registered now.
    pub connected: AtomicU64,
    /// Events put in a connection's queue.
    pub queued: AtomicU64,
    /// Connections cut because their queue was full.
    pub slow_dropped: AtomicU64,
}

struct Slot {
    id: u64,
    tx: mpsc::Sender<Arc<Delivered>>,
    kicked: Arc<AtomicBool>,
}

// ANCHOR: hub
/// Connections by user.
pub struct Hub {
    slots: Mutex<HashMap<UserId, Vec<Slot>>>,
    next_id: AtomicU64,
    capacity: usize,
    stats: Stats,
}

impl Hub {
    /// A hub whose connections queue at most `capacity` events.
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            slots: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            capacity: capacity.max(1),
            stats: Stats::default(),
        })
    }

    /// Registers a connection of `user`; dropping the [`Subscription`] unregisters it.
    pub fn subscribe(self: &Arc<Self>, user: UserId) -> Subscription {
        let (tx, rx) = mpsc::channel(self.capacity);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let kicked = Arc::new(AtomicBool::new(false));
        self.lock().entry(user).or_default().push(Slot { id, tx, kicked: Arc::clone(&kicked) });
        self.stats.connected.fetch_add(1, Ordering::Relaxed);
        Subscription { rx, kicked, hub: Arc::clone(self), user, id }
    }

    /// Offers `d` to every connection of its audience without waiting: a full queue cuts that
    /// connection.
    pub fn publish(&self, d: &Arc<Delivered>) {
        let mut slots = self.lock();
        for user in &d.event.audience {
            let Some(conns) = slots.get_mut(user) else { continue };
            conns.retain(|slot| match slot.tx.try_send(Arc::clone(d)) {
                Ok(()) => {
                    self.stats.queued.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    slot.kicked.store(true, Ordering::Release);
                    self.stats.slow_dropped.fetch_add(1, Ordering::Relaxed);
                    self.stats.connected.fetch_sub(1, Ordering::Relaxed);
                    false // dropping the sender wakes the connection, which sees `kicked`
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
            if conns.is_empty() {
                slots.remove(user);
            }
        }
    }
    // ANCHOR_END: hub

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, Vec<Slot>>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn unsubscribe(&self, user: UserId, id: u64) {
        let mut slots = self.lock();
        if let Some(conns) = slots.get_mut(&user) {
            let before = conns.len();
            conns.retain(|s| s.id != id);
            if conns.len() < before {
                self.stats.connected.fetch_sub(1, Ordering::Relaxed);
            }
            if conns.is_empty() {
                slots.remove(&user);
            }
        }
    }
}

/// One connection's queue.
pub struct Subscription {
    rx: mpsc::Receiver<Arc<Delivered>>,
    kicked: Arc<AtomicBool>,
    hub: Arc<Hub>,
    user: UserId,
    id: u64,
}

/// What a subscription yields.
#[derive(Debug)]
pub enum Live {
    /// The next event.
    Event(Arc<Delivered>),
    /// The queue overflowed: the client is too slow and is cut.
    TooSlow,
}

impl Subscription {
    /// The next event, or [`Live::TooSlow`] as soon as the hub cut this connection.
    pub async fn next(&mut self) -> Live {
        if self.kicked.load(Ordering::Acquire) {
            return Live::TooSlow;
        }
        match self.rx.recv().await {
            Some(d) if !self.kicked.load(Ordering::Acquire) => Live::Event(d),
            // The sender is only dropped by a cut (or the hub going away with the gateway).
            _ => Live::TooSlow,
        }
    }

    /// An event that is already queued, without waiting (`None`: nothing ready, or cut — the
    /// next [`Subscription::next`] says which).
    pub fn ready(&mut self) -> Option<Arc<Delivered>> {
        if self.kicked.load(Ordering::Acquire) {
            return None;
        }
        self.rx.try_recv().ok()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.user, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::NoteId;
    use crate::events::{NoteEventKind, NoteView};

    fn event(seq: u64, audience: Vec<UserId>) -> Arc<Delivered> {
        let owner = audience[0];
        let note = NoteView {
            id: NoteId(uuid::Uuid::now_v7()),
            owner_id: owner,
            title: "t".into(),
            body: String::new(),
            version: 1,
            shared_with: vec![],
            updated_at: chrono::Utc::now(),
        };
        let e = NoteEvent {
            event_id: uuid::Uuid::now_v7(),
            kind: NoteEventKind::Created,
            note,
            audience,
            by: owner,
            at: chrono::Utc::now(),
        };
        Arc::new(Delivered::new(seq, e).unwrap_or_else(|e| panic!("{e}")))
    }

    #[tokio::test]
    async fn events_reach_only_their_audience() {
        let hub = Hub::new(4);
        let (a, b) = (UserId(uuid::Uuid::now_v7()), UserId(uuid::Uuid::now_v7()));
        let mut sa = hub.subscribe(a);
        let mut sb = hub.subscribe(b);
        hub.publish(&event(1, vec![a]));
        hub.publish(&event(2, vec![a, b]));
        for (sub, want) in [(&mut sa, vec![1, 2]), (&mut sb, vec![2])] {
            for seq in want {
                match sub.next().await {
                    Live::Event(d) => {
                        assert_eq!(d.seq, seq);
                        assert!(!d.json.as_str().contains("audience"), "routing data is not pushed");
                    }
                    Live::TooSlow => panic!("cut"),
                }
            }
        }
        assert_eq!(hub.stats().connected.load(Ordering::Relaxed), 2);
        drop(sa);
        assert_eq!(hub.stats().connected.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_full_queue_cuts_only_that_connection() {
        let hub = Hub::new(2);
        let u = UserId(uuid::Uuid::now_v7());
        let mut slow = hub.subscribe(u);
        let mut fast = hub.subscribe(u);
        for seq in 1..=3 {
            hub.publish(&event(seq, vec![u]));
            if let Live::Event(d) = fast.next().await {
                assert_eq!(d.seq, seq);
            } else {
                panic!("the reading connection was cut");
            }
        }
        assert!(matches!(slow.next().await, Live::TooSlow));
        assert_eq!(hub.stats().slow_dropped.load(Ordering::Relaxed), 1);
        assert_eq!(hub.stats().connected.load(Ordering::Relaxed), 1);
    }
}
