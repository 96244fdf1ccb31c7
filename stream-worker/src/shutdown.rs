//! Shutdown signalling between the listener and every task it started.
//!
//! One `watch<bool>` flips to `true` when the server stops; connection tasks, stream bodies
//! and encoders each hold a [`Shutdown`] and finish what they are doing. A receiver created
//! after the flip sees it at once, so a request that races the stop cannot wait forever.
//! Completion is observed through an mpsc channel whose senders the tasks hold: when the last
//! task ends, the listener's receiver sees the channel close.

use tokio::sync::watch;

/// Listens for the server's shutdown.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    /// A listener on `rx` (the sender flips it to `true` once).
    pub fn new(rx: watch::Receiver<bool>) -> Shutdown {
        Shutdown { rx }
    }

    /// Whether shutdown has begun.
    pub fn is_shutdown(&self) -> bool {
        *self.rx.borrow()
    }

    /// Waits until shutdown begins (or the sender is gone, which means the same).
    pub async fn recv(&mut self) {
        let _ = self.rx.wait_for(|stop| *stop).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn late_listeners_see_an_earlier_shutdown() {
        let (tx, rx) = watch::channel(false);
        let mut early = Shutdown::new(rx.clone());
        assert!(!early.is_shutdown());
        let waiter = tokio::spawn(async move { early.recv().await });
        tx.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        let mut late = Shutdown::new(rx);
        assert!(late.is_shutdown());
        tokio::time::timeout(Duration::from_secs(5), late.recv())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_dropped_sender_counts_as_shutdown() {
        let (tx, rx) = watch::channel(false);
        let mut s = Shutdown::new(rx);
        drop(tx);
        tokio::time::timeout(Duration::from_secs(5), s.recv())
            .await
            .unwrap();
    }
}
