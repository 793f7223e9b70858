//! Shutdown as a runtime-agnostic signal: a flume channel on which nothing is ever sent and
//! whose only sender is dropped on shutdown. Every receiver then wakes up, whichever runtime
//! awaits it (a glommio shard, the tokio control thread) or a plain thread.

use std::sync::{Arc, Mutex, OnceLock};

/// Why the daemon is shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownReason {
    /// `ControlPlane::shutdown` or `ShutdownTrigger::trigger` was called.
    Requested,
    /// SIGTERM (the service manager stops us).
    Sigterm,
    /// SIGINT (Ctrl-C).
    Sigint,
    /// A component failed and asked the whole daemon to stop.
    Fatal,
}

struct Inner {
    sender: Mutex<Option<flume::Sender<()>>>,
    reason: OnceLock<ShutdownReason>,
}

/// Fires the shutdown. Clonable; may be called from any thread, any number of times (the
/// first reason wins). It takes an uncontended lock once, so it is fine on a shard too.
#[derive(Clone)]
pub struct ShutdownTrigger {
    inner: Arc<Inner>,
}

/// Awaited by whoever must stop on shutdown. Clonable and cheap.
#[derive(Clone)]
pub struct ShutdownSignal {
    rx: flume::Receiver<()>,
    inner: Arc<Inner>,
}

/// A new, untriggered pair.
pub fn shutdown_channel() -> (ShutdownTrigger, ShutdownSignal) {
    let (tx, rx) = flume::bounded(1);
    let inner = Arc::new(Inner { sender: Mutex::new(Some(tx)), reason: OnceLock::new() });
    (ShutdownTrigger { inner: inner.clone() }, ShutdownSignal { rx, inner })
}

impl ShutdownTrigger {
    /// Start the shutdown (idempotent).
    pub fn trigger(&self, reason: ShutdownReason) {
        let _ = self.inner.reason.set(reason);
        let sender = match self.inner.sender.lock() {
            Ok(mut g) => g.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if sender.is_some() {
            tracing::info!(?reason, "shutdown triggered");
        }
        drop(sender);
    }
}

impl ShutdownSignal {
    /// Resolves once shutdown has been triggered (at once if it already was).
    pub async fn wait(&self) {
        // Nothing is ever sent: this returns only when the sender is dropped.
        let _ = self.rx.recv_async().await;
    }

    /// Blocks the calling thread until shutdown. Never call this on a shard.
    pub fn wait_blocking(&self) {
        let _ = self.rx.recv();
    }

    /// Whether shutdown has been triggered (for polling loops).
    pub fn is_triggered(&self) -> bool {
        self.rx.is_disconnected()
    }

    /// The reason, once triggered.
    pub fn reason(&self) -> Option<ShutdownReason> {
        self.inner.reason.get().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn all_waiters_wake_and_first_reason_wins() {
        let (t, s) = shutdown_channel();
        assert!(!s.is_triggered());
        assert_eq!(s.reason(), None);
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || s.wait_blocking())
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        t.clone().trigger(ShutdownReason::Sigterm);
        t.trigger(ShutdownReason::Requested);
        for w in waiters {
            assert!(w.join().is_ok());
        }
        assert!(s.is_triggered());
        assert_eq!(s.reason(), Some(ShutdownReason::Sigterm));
    }

    #[test]
    fn glommio_shard_awaits_the_signal() {
        let (t, s) = shutdown_channel();
        let h = glommio::LocalExecutorBuilder::default().io_memory(1 << 20).spawn(move || async move {
            s.wait().await;
            s.reason()
        });
        let h = match h {
            Ok(h) => h,
            Err(e) => panic!("glommio executor: {e}"),
        };
        std::thread::sleep(Duration::from_millis(20));
        t.trigger(ShutdownReason::Fatal);
        match h.join() {
            Ok(r) => assert_eq!(r, Some(ShutdownReason::Fatal)),
            Err(e) => panic!("glommio join: {e}"),
        }
    }
}
