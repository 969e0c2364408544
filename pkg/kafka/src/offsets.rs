//! The at-least-once invariant in one type: which offset of a partition may be committed.
//!
//! Lanes finish messages out of order (offset 7 before offset 5). Committing one past the highest
//! finished offset would skip 5 after a crash, so the tracker remembers the offsets still in
//! flight per partition and only ever offers the lowest unfinished one (or one past the highest
//! handed out when none is). When a rebalance takes a partition away, its state is forgotten: the
//! next owner resumes from the committed offset and a late `finish` from this consumer must not
//! store anything for a partition it no longer owns.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// A topic and partition.
type Partition = (String, i32);

/// Offsets of one partition that were handed to lanes and not finished yet.
#[derive(Debug, Default)]
struct PartitionOffsets {
    in_flight: BTreeSet<i64>,
    /// One past the highest offset handed out.
    next: i64,
    /// The last position offered for commit.
    stored: i64,
}

impl PartitionOffsets {
    /// The position safe to commit: nothing below it is unfinished.
    fn committable(&self) -> i64 {
        self.in_flight.first().copied().unwrap_or(self.next)
    }
}

// ANCHOR: offset_tracker
/// Offsets in flight per partition, shared by the poll loop ([`OffsetTracker::begin`]), the lanes
/// ([`OffsetTracker::finish`]) and the rebalance callback ([`OffsetTracker::revoke`]); cheap to
/// clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct OffsetTracker {
    partitions: Arc<Mutex<HashMap<Partition, PartitionOffsets>>>,
}

impl OffsetTracker {
    /// `offset` was handed to a lane: until it finishes, no position past it is committable.
    pub(crate) fn begin(&self, topic: &str, partition: i32, offset: i64) {
        let mut partitions = self.lock();
        // The first offset seen is where this consumer started: the position already committed.
        let p = partitions
            .entry((topic.to_owned(), partition))
            .or_insert_with(|| PartitionOffsets { stored: offset, ..PartitionOffsets::default() });
        p.in_flight.insert(offset);
        p.next = p.next.max(offset + 1);
    }

    /// `offset` is finished (handled or dead-lettered). Returns the partition's new commit
    /// position when it moved forward, `None` when it did not (a lower offset is still in flight)
    /// or the partition was revoked meanwhile.
    pub(crate) fn finish(&self, topic: &str, partition: i32, offset: i64) -> Option<i64> {
        let mut partitions = self.lock();
        let p = partitions.get_mut(&(topic.to_owned(), partition))?;
        p.in_flight.remove(&offset);
        let position = p.committable();
        (position > p.stored).then(|| {
            p.stored = position;
            position
        })
    }

    /// The partition left this consumer (rebalance): forget its offsets, so neither a late
    /// `finish` nor a later re-assignment sees stale state.
    pub(crate) fn revoke(&self, topic: &str, partition: i32) {
        self.lock().remove(&(topic.to_owned(), partition));
    }

    /// The position that may be committed for the partition now, `None` if it is not tracked.
    pub(crate) fn committable(&self, topic: &str, partition: i32) -> Option<i64> {
        self.lock().get(&(topic.to_owned(), partition)).map(PartitionOffsets::committable)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Partition, PartitionOffsets>> {
        // A panic while holding the lock cannot leave the map half-updated in a way that breaks
        // the invariant (each method is one insert or remove), so a poisoned lock is still usable.
        self.partitions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
// ANCHOR_END: offset_tracker

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_commits_past_an_unfinished_offset() {
        let t = OffsetTracker::default();
        for offset in 5..=7 {
            t.begin("t", 0, offset);
        }
        assert_eq!(t.committable("t", 0), Some(5), "nothing finished: commit at the first");
        assert_eq!(t.finish("t", 0, 7), None, "7 finished, 5 and 6 still in flight");
        assert_eq!(t.committable("t", 0), Some(5));
        assert_eq!(t.finish("t", 0, 5), Some(6), "5 finished: 6 is the lowest unfinished");
        assert_eq!(t.finish("t", 0, 6), Some(8), "all finished: one past the highest handed out");
        assert_eq!(t.committable("t", 0), Some(8));
    }

    #[test]
    fn the_position_never_moves_back_and_is_offered_once() {
        let t = OffsetTracker::default();
        t.begin("t", 0, 0);
        assert_eq!(t.finish("t", 0, 0), Some(1));
        assert_eq!(t.finish("t", 0, 0), None, "a repeated finish stores nothing new");
        t.begin("t", 0, 1);
        t.begin("t", 0, 2);
        assert_eq!(t.finish("t", 0, 2), None, "1 is in flight: the position stays at 1");
        assert_eq!(t.finish("t", 0, 1), Some(3));
    }

    #[test]
    fn partitions_and_topics_are_independent() {
        let t = OffsetTracker::default();
        t.begin("t", 0, 10);
        t.begin("t", 1, 3);
        t.begin("u", 0, 100);
        assert_eq!(t.finish("t", 1, 3), Some(4), "partition 0's offset 10 does not hold back partition 1");
        assert_eq!(t.committable("t", 0), Some(10));
        assert_eq!(t.committable("u", 0), Some(100));
        assert_eq!(t.committable("u", 1), None, "never assigned");
    }

    #[test]
    fn revoked_partitions_forget_their_state() {
        let t = OffsetTracker::default();
        t.begin("t", 0, 4);
        t.begin("t", 0, 5);
        t.begin("t", 1, 0);
        t.revoke("t", 0);
        assert_eq!(t.committable("t", 0), None);
        assert_eq!(t.finish("t", 0, 4), None, "a lane finishing after the revoke stores nothing");
        assert_eq!(t.committable("t", 1), Some(0), "other partitions keep theirs");
        // Assigned again later: the next owner's committed offset is where it starts, and nothing of
        // the old in-flight set (4, 5) holds the new position back.
        t.begin("t", 0, 2);
        assert_eq!(t.finish("t", 0, 2), Some(3));
    }
}
