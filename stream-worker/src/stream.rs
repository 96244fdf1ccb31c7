//! One `/stream/video` client: pacing to its fps, always the newest part, nothing queued.
//!
//! The response body is pulled by hyper only when the previous part has left its (small)
//! write buffer, i.e. when the client's socket accepted it. At that moment the client gets the
//! newest encoded part of its variant, if its fps interval has passed; parts published while
//! the client was busy are simply never sent to it. So a slow or stalled client costs one
//! pending future and never delays anyone else, and no thread is spent per client. A client
//! that stops reading altogether is closed by the connection's write-progress deadline
//! (`conn::StallLimited`, `stream.client_stall_sec`).

use std::convert::Infallible;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::time::Instant;

use crate::hub::EncodedRx;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// A connected stream client, counted in the `clients` gauge until dropped.
#[derive(Debug)]
pub struct ClientGuard {
    metrics: Arc<Metrics>,
}

impl ClientGuard {
    /// Admits a client if fewer than `max` are connected.
    pub fn admit(metrics: &Arc<Metrics>, max: u32) -> Option<ClientGuard> {
        metrics
            .clients
            .fetch_update(Relaxed, Relaxed, |n| (n < i64::from(max)).then_some(n + 1))
            .ok()?;
        metrics.clients_total.fetch_add(1, Relaxed);
        Some(ClientGuard {
            metrics: metrics.clone(),
        })
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.metrics.clients.fetch_sub(1, Relaxed);
    }
}

/// The sending side of one client.
#[derive(Debug)]
pub struct ClientStream {
    rx: EncodedRx,
    interval: Duration,
    next_due: Instant,
    last_sent: u64,
    /// [`crate::hub::Encoded::key`] of the last part sent (placeholders are told apart by it).
    last_key: (u64, u64),
    shutdown: Shutdown,
    metrics: Arc<Metrics>,
    _guard: ClientGuard,
}

impl ClientStream {
    /// A client of the variant `rx`, paced at `fps` (>= 1).
    pub fn new(
        rx: EncodedRx,
        fps: u32,
        shutdown: Shutdown,
        metrics: Arc<Metrics>,
        guard: ClientGuard,
    ) -> ClientStream {
        ClientStream {
            rx,
            interval: Duration::from_secs_f64(1.0 / f64::from(fps.max(1))),
            next_due: Instant::now(),
            last_sent: 0,
            last_key: (0, 0),
            shutdown,
            metrics,
            _guard: guard,
        }
    }

    /// The next part to send: the newest one, once the fps interval has passed. `None` ends
    /// the response (server stopping).
    pub async fn next_part(&mut self) -> Option<Bytes> {
        if Instant::now() < self.next_due {
            tokio::select! {
                _ = tokio::time::sleep_until(self.next_due) => {}
                _ = self.shutdown.recv() => return None,
            }
        }
        let encoded = loop {
            if self.shutdown.is_shutdown() {
                return None;
            }
            let current = self.rx.borrow_and_update().clone();
            match current {
                Some(e) if e.key() != self.last_key => break e,
                _ => {
                    // Nothing new (or an outage): wait without sending anything; the
                    // connection stays open and resumes with the next frame.
                    tokio::select! {
                        changed = self.rx.changed() => {
                            if changed.is_err() {
                                return None;
                            }
                        }
                        _ = self.shutdown.recv() => return None,
                    }
                }
            }
        };
        self.last_key = encoded.key();
        if !encoded.is_placeholder() {
            if self.last_sent != 0 && encoded.frame_number > self.last_sent + 1 {
                self.metrics
                    .client_skipped
                    .fetch_add(encoded.frame_number - self.last_sent - 1, Relaxed);
            }
            self.last_sent = encoded.frame_number;
        }
        let now = Instant::now();
        // On schedule: exactly `fps` on average. Behind (slow client, outage): send now and
        // allow at most one catch-up part, never a burst.
        let floor = now.checked_sub(self.interval).unwrap_or(now);
        self.next_due = (self.next_due + self.interval).max(floor);
        let latency = shm_core::monotonic_ns().saturating_sub(encoded.publish_ns);
        self.metrics.record_send_latency(latency);
        self.metrics.parts_sent.fetch_add(1, Relaxed);
        self.metrics
            .bytes_sent
            .fetch_add(encoded.part.bytes.len() as u64, Relaxed);
        Some(encoded.part.bytes.clone())
    }

    /// This client as a response body.
    pub fn into_body(self) -> UnsyncBoxBody<Bytes, Infallible> {
        let stream = futures_util::stream::unfold(self, |mut client| async move {
            let part = client.next_part().await?;
            Some((Ok::<_, Infallible>(Frame::data(part)), client))
        });
        StreamBody::new(stream).boxed_unsync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::Encoded;
    use crate::multipart;
    use tokio::sync::watch;

    fn encoded(n: u64) -> Option<Arc<Encoded>> {
        Some(Arc::new(Encoded {
            part: multipart::part(b"\xff\xd8x\xff\xd9", n, 0),
            frame_number: n,
            capture_ns: 0,
            publish_ns: shm_core::monotonic_ns(),
            placeholder_seq: 0,
        }))
    }

    type Fixture = (
        watch::Sender<Option<Arc<Encoded>>>,
        watch::Sender<bool>,
        ClientStream,
        Arc<Metrics>,
    );

    fn client(fps: u32) -> Fixture {
        let (tx, rx) = watch::channel(None);
        let (stop_tx, stop_rx) = watch::channel(false);
        let metrics = Arc::new(Metrics::default());
        let guard = ClientGuard::admit(&metrics, 10).unwrap();
        let c = ClientStream::new(rx, fps, Shutdown::new(stop_rx), metrics.clone(), guard);
        (tx, stop_tx, c, metrics)
    }

    #[test]
    fn admission_stops_at_max_and_drop_frees_the_slot() {
        let m = Arc::new(Metrics::default());
        let a = ClientGuard::admit(&m, 2).unwrap();
        let _b = ClientGuard::admit(&m, 2).unwrap();
        assert!(ClientGuard::admit(&m, 2).is_none());
        drop(a);
        assert!(ClientGuard::admit(&m, 2).is_some());
        assert_eq!(m.clients_total.load(Relaxed), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn sends_only_new_frames_and_skips_what_it_missed() {
        let (tx, _stop, mut c, m) = client(30);
        tx.send_replace(encoded(1));
        let p = c.next_part().await.unwrap();
        assert!(p.starts_with(b"--frame\r\n"));
        // Frames 2..4 arrive while the client is busy: it gets 4 and 2..3 count as skipped.
        tx.send_replace(encoded(2));
        tx.send_replace(encoded(3));
        tx.send_replace(encoded(4));
        let p = c.next_part().await.unwrap();
        assert!(String::from_utf8_lossy(&p).contains("X-Frame-Number: 4\r\n"));
        assert_eq!(m.client_skipped.load(Relaxed), 2);
        assert_eq!(m.parts_sent.load(Relaxed), 2);
        // Nothing new: it waits (no duplicate).
        let waited = tokio::time::timeout(Duration::from_secs(5), c.next_part()).await;
        assert!(waited.is_err());
        assert_eq!(m.clients.load(Relaxed), 1);
        drop(c);
        assert_eq!(m.clients.load(Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn paces_to_the_asked_fps() {
        let (tx, _stop, mut c, _m) = client(5);
        let start = Instant::now();
        let mut n = 0;
        // The source runs at 50 fps for 2 s; a 5 fps client gets about 10 parts.
        let feeder = tokio::spawn(async move {
            for i in 1..=100u64 {
                tx.send_replace(encoded(i));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        while start.elapsed() < Duration::from_secs(2) {
            if tokio::time::timeout(Duration::from_millis(500), c.next_part())
                .await
                .is_ok()
            {
                n += 1;
            }
        }
        assert!((10..=11).contains(&n), "{n} parts in 2 s at fps=5");
        feeder.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_stream() {
        let (_tx, stop, mut c, _m) = client(30);
        stop.send_replace(true);
        assert!(c.next_part().await.is_none());
    }
}
