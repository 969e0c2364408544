//! Closing a group consumer off the async runtime, for a bounded time.
//!
//! rdkafka's consumer leaves its group when it is dropped, and its `Drop` polls until librdkafka
//! says the consumer is closed, with no time limit. After a broker restart that wait has been seen
//! to last forever (the BDD scenario "Nothing accepted is lost when the broker restarts mid-way";
//! a debugger showed two's runtime thread in `BaseConsumer::drop`). On a runtime thread it then
//! blocks that thread, and the runtime's shutdown, and the process never exits. So the consumer is
//! dropped on a thread of its own: a normal stop waits for it a bounded time (leaving the group
//! promptly spares the next member a session timeout), and a consumer that does not close in that
//! time is left to the process's exit.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

/// Owns the consumer; dropping it (or [`CloseOffRuntime::close`]) closes it on its own thread.
/// Clones handed out must be gone first, or the last of them closes it wherever it is dropped.
#[derive(Debug)]
pub(crate) struct CloseOffRuntime<T: Send + Sync + 'static>(Option<Arc<T>>);

impl<T: Send + Sync + 'static> CloseOffRuntime<T> {
    pub(crate) fn new(inner: T) -> Self {
        Self(Some(Arc::new(inner)))
    }

    /// Closes it and waits at most `within`; says whether it closed in time.
    pub(crate) async fn close(mut self, within: Duration) -> bool {
        let Some(done) = self.0.take().and_then(drop_on_thread) else { return false };
        tokio::time::timeout(within, done).await.is_ok_and(|closed| closed.is_ok())
    }
}

impl<T: Send + Sync + 'static> Deref for CloseOffRuntime<T> {
    type Target = Arc<T>;

    fn deref(&self) -> &Arc<T> {
        match &self.0 {
            Some(inner) => inner,
            // Only `close` and `drop` take it, and both consume `self`.
            None => unreachable!("a closed consumer is never used"),
        }
    }
}

impl<T: Send + Sync + 'static> Drop for CloseOffRuntime<T> {
    fn drop(&mut self) {
        if let Some(inner) = self.0.take() {
            drop_on_thread(inner);
        }
    }
}

/// Drops `inner` on a new thread; the receiver hears when it is done. `None` (after dropping
/// `inner` here) if no thread could be started.
fn drop_on_thread<T: Send + Sync + 'static>(inner: Arc<T>) -> Option<tokio::sync::oneshot::Receiver<()>> {
    let (done, closed) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("kafka-close".into()).spawn(move || {
        drop(inner);
        let _ = done.send(());
    });
    match spawned {
        Ok(_) => Some(closed),
        Err(e) => {
            tracing::error!(error = %e, "could not start a thread to close the Kafka consumer");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Stands for a consumer whose close hangs (or not).
    struct Slow(Duration, Arc<AtomicBool>);

    impl Drop for Slow {
        fn drop(&mut self) {
            std::thread::sleep(self.0);
            self.1.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_close_that_hangs_is_left_behind_and_a_quick_one_is_waited_for() {
        let closed = Arc::new(AtomicBool::new(false));
        let hanging = CloseOffRuntime::new(Slow(Duration::from_secs(3600), Arc::clone(&closed)));
        // On a single-threaded runtime a close on the runtime's thread would block this test.
        assert!(!hanging.close(Duration::from_millis(100)).await, "a hanging close is not waited for");
        assert!(!closed.load(Ordering::SeqCst));

        let closed = Arc::new(AtomicBool::new(false));
        let quick = CloseOffRuntime::new(Slow(Duration::from_millis(50), Arc::clone(&closed)));
        assert!(quick.close(Duration::from_secs(5)).await);
        assert!(closed.load(Ordering::SeqCst));

        let closed = Arc::new(AtomicBool::new(false));
        drop(CloseOffRuntime::new(Slow(Duration::from_secs(3600), Arc::clone(&closed))));
        // Dropped without `close` (an error path): this thread was not held.
        assert!(!closed.load(Ordering::SeqCst));
    }
}
