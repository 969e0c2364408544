//! Shutdown as a value: one [`Shutdown`] resolves on SIGINT or SIGTERM (or when triggered by hand,
//! as tests do) and every task holds a cheap clone of it.
//!
//! Services take `shutdown: impl Future` in `run`, so a test stops an app deterministically without
//! sending signals, and `main` passes [`Shutdown::on_signals`].

use std::future::Future;
use tokio_util::sync::CancellationToken;

/// A shutdown signal that fans out to any number of tasks.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    /// A signal that only fires when [`Shutdown::trigger`] is called.
    pub fn new() -> Self {
        Self::default()
    }

    // ANCHOR: on_signals
    /// A signal that also fires on SIGINT (Ctrl-C) or SIGTERM (what Kubernetes sends).
    ///
    /// Must be called inside a Tokio runtime. The handlers are installed before this returns, so a
    /// signal that arrives right after start-up is not lost.
    pub fn on_signals() -> std::io::Result<Self> {
        let shutdown = Self::new();
        let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = sigint.recv() => "SIGINT",
                _ = sigterm.recv() => "SIGTERM",
                () = trigger.token.cancelled() => return,
            };
            tracing::info!(signal = name, "shutdown requested");
            trigger.trigger();
        });
        Ok(shutdown)
    }
    // ANCHOR_END: on_signals

    /// Fires the signal; every waiter wakes. Calling it again does nothing.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Whether the signal has fired.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves when the signal fires (at once if it already has).
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        self.token.clone().cancelled_owned()
    }

    /// A child that fires with this one but can also be fired alone (one component's own stop).
    pub fn child(&self) -> Self {
        Self { token: self.token.child_token() }
    }

    /// The underlying token, for APIs that take a `CancellationToken`.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::timeout;

    #[tokio::test]
    async fn trigger_wakes_every_waiter() {
        let s = Shutdown::new();
        let waiters: Vec<_> = (0..5).map(|_| tokio::spawn(s.wait())).collect();
        assert!(!s.is_triggered());
        s.trigger();
        for w in waiters {
            timeout(Duration::from_secs(1), w).await.unwrap().unwrap();
        }
        // A late waiter resolves at once.
        timeout(Duration::from_millis(100), s.wait()).await.unwrap();
    }

    #[tokio::test]
    async fn child_fires_with_parent_but_not_the_other_way() {
        let parent = Shutdown::new();
        let child = parent.child();
        child.trigger();
        assert!(!parent.is_triggered());
        let other = parent.child();
        parent.trigger();
        timeout(Duration::from_secs(1), other.wait()).await.unwrap();
    }

    #[tokio::test]
    async fn sigterm_fires_the_signal() {
        let s = Shutdown::on_signals().unwrap();
        // The signal goes to this very process, whose handler is installed.
        let rc = raise(libc::SIGTERM);
        assert_eq!(rc, 0);
        timeout(Duration::from_secs(5), s.wait()).await.expect("SIGTERM must trigger shutdown");
    }

    #[allow(unsafe_code)]
    fn raise(sig: i32) -> i32 {
        // SAFETY: raise has no memory-safety preconditions.
        unsafe { libc::raise(sig) }
    }
}
