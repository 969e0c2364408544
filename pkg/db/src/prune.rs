//! The loop of a task that deletes expired rows in chunks beside a service: the outbox's sent
//! rows, service two's processed ids. What a chunk deletes, and how it finds it cheaply, is the
//! caller's; when and how much is here.

use cruncan_shutdown::Shutdown;
use std::future::Future;
use std::time::Duration;

// ANCHOR: prune
/// How a pruning task paces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pruning {
    /// Wait between visits.
    pub every: Duration,
    /// Chunks per visit at most, so one visit ends even while a backlog is being cleared.
    pub chunks_per_visit: usize,
}

impl Pruning {
    /// Every 10 s (more often when the retention is shorter), at most 20 chunks a visit.
    pub fn for_retention(retention: Duration) -> Self {
        let every = Duration::from_secs(10).min(retention.max(Duration::from_millis(100)));
        Self { every, chunks_per_visit: 20 }
    }

    /// Until `shutdown`: every `every`, runs `chunk` (which deletes one chunk and says how many
    /// rows) until it deletes nothing, fails, or ran `chunks_per_visit` times. A failure is logged
    /// with `what` and retried at the next visit.
    pub async fn run<F, Fut>(self, what: &str, shutdown: Shutdown, mut chunk: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<u64>>,
    {
        loop {
            tokio::select! {
                () = shutdown.wait() => return,
                () = tokio::time::sleep(self.every) => {}
            }
            for _ in 0..self.chunks_per_visit {
                if shutdown.is_triggered() {
                    return;
                }
                match chunk().await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(what, error = %format!("{e:#}"), "deleting expired rows failed; will retry");
                        break;
                    }
                }
            }
        }
    }
}
// ANCHOR_END: prune

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn a_short_retention_is_visited_as_often() {
        assert_eq!(Pruning::for_retention(Duration::from_secs(3600)).every, Duration::from_secs(10));
        assert_eq!(Pruning::for_retention(Duration::from_secs(1)).every, Duration::from_secs(1));
        assert_eq!(Pruning::for_retention(Duration::ZERO).every, Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_visit_runs_chunks_until_one_deletes_nothing_and_stops_at_the_cap() {
        // A backlog of 45 rows, 10 a chunk: visits delete 10+10+10 (the cap), then 10+5+0.
        let left = Arc::new(AtomicU64::new(45));
        let calls = Arc::new(AtomicU64::new(0));
        let shutdown = Shutdown::new();
        let pruning = Pruning { every: Duration::from_secs(10), chunks_per_visit: 3 };
        let task = {
            let (left, calls) = (Arc::clone(&left), Arc::clone(&calls));
            tokio::spawn(pruning.run("test rows", shutdown.clone(), move || {
                let (left, calls) = (Arc::clone(&left), Arc::clone(&calls));
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let n = left.load(Ordering::SeqCst).min(10);
                    left.fetch_sub(n, Ordering::SeqCst);
                    Ok(n)
                }
            }))
        };
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert_eq!((left.load(Ordering::SeqCst), calls.load(Ordering::SeqCst)), (15, 3));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!((left.load(Ordering::SeqCst), calls.load(Ordering::SeqCst)), (0, 6));
        shutdown.trigger();
        task.await.unwrap();
    }
}
