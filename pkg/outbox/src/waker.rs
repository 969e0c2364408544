//! The in-process wake-up of the relay after a commit.

use std::sync::Arc;
use tokio::sync::Notify;

// ANCHOR: waker
/// Wakes the relay of this process after a transaction that wrote outbox rows committed. Wake-ups that arrive
/// while the relay is busy coalesce into one: the next round claims every row committed by then.
#[derive(Debug, Clone, Default)]
pub struct OutboxWaker(Arc<Notify>);

impl OutboxWaker {
    /// Call after the transaction that wrote outbox rows has committed.
    pub fn wake(&self) {
        self.0.notify_one();
    }

    pub(crate) async fn woken(&self) {
        self.0.notified().await;
    }
}
// ANCHOR_END: waker
