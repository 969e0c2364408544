//! Following a user's events, with resume. A client that reconnects says the last stream
//! sequence it saw; it gets what it missed, read back from JetStream, then the live events — each
//! exactly once and in order:
//!
//! 1. register with the hub first (live events start queueing),
//! 2. take the stream's last sequence `L` (everything the hub can have delivered before step 1
//!    is at or below `L`),
//! 3. replay `since+1 ..= L` from the stream, filtered by audience,
//! 4. then the live queue; the [`Cursor`] drops whatever step 3 already sent.

use anyhow::Context as _;
use async_nats::jetstream::{consumer, stream};
use futures::StreamExt as _;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::domain::UserId;
use crate::events::NoteEvent;
use crate::gateway::hub::{Delivered, Hub, Live, Subscription};

// ANCHOR: cursor
/// The last sequence sent on one connection: only higher ones pass, so an event in both the
/// replay and the live queue is sent once, and never out of order.
#[derive(Debug, Clone, Copy)]
pub struct Cursor(u64);

impl Cursor {
    /// A cursor after `seq`.
    pub fn after(seq: u64) -> Self {
        Self(seq)
    }

    /// `true` (and moves) when `seq` is new.
    pub fn admit(&mut self, seq: u64) -> bool {
        if seq > self.0 {
            self.0 = seq;
            true
        } else {
            false
        }
    }

    /// The last sequence sent.
    pub fn last(self) -> u64 {
        self.0
    }
}
// ANCHOR_END: cursor

/// Where a connection starts.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// Live only (the client then loads the list over REST).
    Fresh,
    /// After this sequence: replay what was missed.
    After(u64),
}

/// Opens follows: the hub for live events, the stream for replays.
#[derive(Clone)]
pub struct Follower {
    hub: Arc<Hub>,
    stream: stream::Stream,
    filter: String,
    max_replay: usize,
}

/// One connection's events.
pub struct Feed {
    /// The sequence the client is at after the hello (what it sends back to resume).
    pub hello_seq: u64,
    /// The client was too far behind (or its sequence is unknown to this stream): it must
    /// reload its list; live events follow.
    pub resync: bool,
    backlog: VecDeque<Arc<Delivered>>,
    live: Subscription,
    cursor: Cursor,
}

/// The next thing to send.
#[derive(Debug)]
pub enum Next {
    /// An event.
    Event(Arc<Delivered>),
    /// The client cannot keep up: close.
    TooSlow,
}

impl Follower {
    /// A follower over `hub` and `stream`, replaying subjects matching `filter`.
    pub fn new(hub: Arc<Hub>, stream: stream::Stream, filter: String, max_replay: usize) -> Self {
        Self { hub, stream, filter, max_replay }
    }

    /// The hub.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    // ANCHOR: follow
    /// Starts following `user` from `start`.
    pub async fn follow(&self, user: UserId, start: Start) -> anyhow::Result<Feed> {
        let live = self.hub.subscribe(user);
        let state = self.stream.get_info().await.context("reading the stream's state")?.state;
        let last = state.last_sequence;
        let (backlog, cursor, resync) = match start {
            Start::Fresh => (VecDeque::new(), Cursor::after(last), false),
            Start::After(since) if since >= last => {
                // Nothing missed; a sequence beyond the stream's end belongs to another stream.
                (VecDeque::new(), Cursor::after(last), since > last)
            }
            Start::After(since)
                if since + 1 < state.first_sequence || (last - since) as usize > self.max_replay =>
            {
                (VecDeque::new(), Cursor::after(last), true)
            }
            Start::After(since) => (self.replay(user, since, last).await?, Cursor::after(since), false),
        };
        Ok(Feed { hello_seq: cursor.last(), resync, backlog, live, cursor })
    }
    // ANCHOR_END: follow

    // ANCHOR: replay
    /// The events for `user` in `since+1 ..= last`, read with a short-lived consumer that acks
    /// nothing and is deleted afterwards.
    async fn replay(&self, user: UserId, since: u64, last: u64) -> anyhow::Result<VecDeque<Arc<Delivered>>> {
        let consumer = self
            .stream
            .create_consumer(consumer::pull::Config {
                filter_subject: self.filter.clone(),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: since + 1 },
                ack_policy: consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .context("creating the replay consumer")?;
        let mut out = VecDeque::new();
        let result = async {
            'batches: loop {
                let mut batch =
                    consumer.fetch().max_messages(500).messages().await.context("fetching a replay batch")?;
                let mut got = 0;
                while let Some(msg) = batch.next().await {
                    let msg = msg.map_err(|e| anyhow::anyhow!("replay: {e}"))?;
                    got += 1;
                    let seq = msg.info().map_err(|e| anyhow::anyhow!("replay: {e}"))?.stream_sequence;
                    if seq > last {
                        break 'batches;
                    }
                    let event: NoteEvent = match serde_json::from_slice(&msg.payload) {
                        Ok(e) => e,
                        Err(e) => {
                            tracing::warn!(seq, error = %e, "skipping an unreadable event in the replay");
                            continue;
                        }
                    };
                    if event.audience.contains(&user) {
                        out.push_back(Arc::new(Delivered::new(seq, event)?));
                    }
                    if seq == last {
                        break 'batches;
                    }
                }
                if got == 0 {
                    break; // caught up (the last messages did not match the filter)
                }
            }
            anyhow::Ok(())
        }
        .await;
        let name = consumer.cached_info().name.clone();
        if let Err(e) = self.stream.delete_consumer(&name).await {
            tracing::debug!(error = %e, "replay consumer left to expire");
        }
        result?;
        Ok(out)
    }
    // ANCHOR_END: replay
}

impl Feed {
    /// The next event to send: the replay first, then the live queue, each sequence once.
    pub async fn next(&mut self) -> Next {
        while let Some(d) = self.backlog.pop_front() {
            if self.cursor.admit(d.seq) {
                return Next::Event(d);
            }
        }
        loop {
            match self.live.next().await {
                Live::Event(d) if self.cursor.admit(d.seq) => return Next::Event(d),
                Live::Event(_) => {}
                Live::TooSlow => return Next::TooSlow,
            }
        }
    }
}

impl Feed {
    /// The next event that is ready now, without waiting: the session writes a backlog in one
    /// flush instead of one write per event.
    pub fn ready(&mut self) -> Option<Arc<Delivered>> {
        while let Some(d) = self.backlog.pop_front() {
            if self.cursor.admit(d.seq) {
                return Some(d);
            }
        }
        while let Some(d) = self.live.ready() {
            if self.cursor.admit(d.seq) {
                return Some(d);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_admits_each_sequence_once_in_order() {
        let mut c = Cursor::after(5);
        let seen: Vec<u64> = [3, 5, 6, 6, 7, 4, 9, 8].into_iter().filter(|s| c.admit(*s)).collect();
        assert_eq!(seen, vec![6, 7, 9]);
        assert_eq!(c.last(), 9);
    }
}
