//! Encode once, send to many.
//!
//! A *variant* is a (quality, overlay) pair that at least one client watches. Each variant has
//! one encoder task: it waits for a new frame, draws the overlay (if asked) and encodes the JPEG
//! on an encoder thread, builds the multipart part once, and publishes it, reference-counted,
//! in a latest-value channel that all of the variant's clients read. A variant nobody watches
//! has no task and costs nothing; with no clients nothing is encoded at all.
//!
//! When frames come faster than a variant can encode, the encoder takes the newest frame when
//! it is free again (the others are counted as skipped): it never queues.
//!
//! While no fresh frame exists (none yet, or the newest is older than
//! `watchdog.frame_timeout_sec`), each variant publishes the "no signal" placeholder
//! (`nosignal`) once per [`nosignal::PERIOD`] instead, numbered 0; real frames replace it as
//! soon as they return, on the same connections.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use crate::detections::DetectionsHub;
use crate::encode::{self, OverlayInput};
use crate::frames::{FrameRx, RawFrame};
use crate::metrics::Metrics;
use crate::multipart::{self, Part};
use crate::nosignal::{self, Placeholder, PlaceholderRx};
use crate::pool::EncoderPool;

/// What a client asks to see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VariantKey {
    /// JPEG quality 1..=100.
    pub quality: u8,
    /// Detections overlay.
    pub overlay: bool,
}

/// One encoded frame of a variant, ready to send.
#[derive(Debug)]
pub struct Encoded {
    /// The multipart part (headers + JPEG + CRLF).
    pub part: Part,
    /// The frame it shows.
    pub frame_number: u64,
    /// Its capture time (CLOCK_MONOTONIC ns).
    pub capture_ns: u64,
    /// Its publish time by the video worker (CLOCK_MONOTONIC ns).
    pub publish_ns: u64,
    /// 0 for a frame; for the "no signal" placeholder (`frame_number` 0), a number that
    /// grows with each sending, so clients tell successive placeholders apart.
    pub placeholder_seq: u64,
}

impl Encoded {
    /// What tells two parts apart: the frame, or the placeholder's sending.
    pub fn key(&self) -> (u64, u64) {
        (self.frame_number, self.placeholder_seq)
    }

    /// Whether this is the "no signal" placeholder.
    pub fn is_placeholder(&self) -> bool {
        self.placeholder_seq != 0
    }
}

/// The latest encoded frame of one variant.
pub type EncodedRx = watch::Receiver<Option<Arc<Encoded>>>;
type EncodedTx = Arc<watch::Sender<Option<Arc<Encoded>>>>;

/// Why a snapshot could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// No frame was ever read.
    #[error("no frame yet: the video worker has not published any frame; is it running?")]
    NoFrame,
    /// Encoding failed.
    #[error("cannot encode the snapshot: {0}")]
    Encode(String),
}

/// The variants and their encoders.
#[derive(Debug)]
pub struct Hub {
    frames: FrameRx,
    detections: Arc<DetectionsHub>,
    /// Detections older than this (by capture time) are not drawn, and a frame older than
    /// this (since it was read) is not fresh: the placeholder is shown instead.
    fresh_limit_ns: u64,
    placeholder: PlaceholderRx,
    metrics: Arc<Metrics>,
    variants: Mutex<HashMap<VariantKey, EncodedTx>>,
    /// Held by every encoder task, so shutdown can wait for them.
    done: mpsc::Sender<()>,
    pool: Arc<EncoderPool>,
}

impl Hub {
    /// A hub encoding frames from `frames` on `pool`, showing `placeholder` while no frame is
    /// fresh. `done` is a completion sender (see `shutdown`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        frames: FrameRx,
        detections: Arc<DetectionsHub>,
        fresh_limit_ns: u64,
        placeholder: PlaceholderRx,
        metrics: Arc<Metrics>,
        done: mpsc::Sender<()>,
        pool: EncoderPool,
    ) -> Arc<Hub> {
        Arc::new(Hub {
            frames,
            detections,
            fresh_limit_ns,
            placeholder,
            metrics,
            variants: Mutex::new(HashMap::new()),
            done,
            pool: Arc::new(pool),
        })
    }

    /// Subscribes to a variant, starting its encoder when it is the first subscriber.
    /// Must be called inside the tokio runtime.
    pub fn subscribe(self: &Arc<Self>, key: VariantKey) -> EncodedRx {
        let mut map = self.lock();
        if let Some(tx) = map.get(&key) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(None);
        let tx = Arc::new(tx);
        map.insert(key, tx.clone());
        self.metrics.variants.fetch_add(1, Relaxed);
        tokio::spawn(run_variant(self.clone(), key, tx, self.done.clone()));
        debug!(
            quality = key.quality,
            overlay = key.overlay,
            "variant started"
        );
        rx
    }

    /// The frames the encoders read (for the H.264 encoders, which share them).
    pub fn frames(&self) -> FrameRx {
        self.frames.clone()
    }

    /// The encoder pool (shared with the H.264 encoders).
    pub fn pool(&self) -> Arc<EncoderPool> {
        self.pool.clone()
    }

    /// A completion sender, so shutdown also waits for tasks started elsewhere.
    pub fn done_sender(&self) -> mpsc::Sender<()> {
        self.done.clone()
    }

    /// Number of variants being encoded.
    pub fn variant_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<VariantKey, EncodedTx>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts
        // and removes), so a poisoned lock is still usable.
        self.variants.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a frame was read within the freshness limit (`watchdog.frame_timeout_sec`), the
    /// same measure as `/healthz`.
    pub fn has_fresh_frame(&self) -> bool {
        let now = shm_core::monotonic_ns();
        let limit = self.fresh_limit_ns as f64 / 1e9;
        self.latest_frame().is_some()
            && self
                .metrics
                .frame_age_secs(now)
                .is_some_and(|age| age < limit)
    }

    /// The "no signal" placeholder, when no frame is fresh and one has been rendered.
    pub fn no_signal(&self) -> Option<Arc<Placeholder>> {
        if self.has_fresh_frame() {
            return None;
        }
        self.placeholder.borrow().clone()
    }

    /// The newest frame read, if any.
    pub fn latest_frame(&self) -> Option<Arc<RawFrame>> {
        self.frames.borrow().clone()
    }

    /// The newest frame as one JPEG: reused from a variant that already encoded it, else
    /// encoded now (on an encoder thread).
    pub async fn snapshot(&self, key: VariantKey) -> Result<Bytes, SnapshotError> {
        let frame = self.latest_frame().ok_or(SnapshotError::NoFrame)?;
        let cached = self.lock().get(&key).and_then(|tx| {
            tx.borrow()
                .as_ref()
                .filter(|e| e.frame_number == frame.frame_number)
                .map(|e| e.part.jpeg())
        });
        if let Some(jpeg) = cached {
            return Ok(jpeg);
        }
        let encoded = self.encode_blocking(frame, key, Vec::new()).await.0;
        encoded
            .map(|e| e.part.jpeg())
            .map_err(SnapshotError::Encode)
    }

    /// Draws and encodes `frame` on an encoder thread; gives the scratch buffer back.
    async fn encode_blocking(
        &self,
        frame: Arc<RawFrame>,
        key: VariantKey,
        mut scratch: Vec<u8>,
    ) -> (Result<Encoded, String>, Vec<u8>) {
        let now = shm_core::monotonic_ns();
        let detections = if key.overlay {
            self.detections.fresh(now, self.fresh_limit_ns).ok()
        } else {
            None
        };
        let metrics = self.metrics.clone();
        let job = self.pool.run(move || {
            let t0 = Instant::now();
            let overlay = key.overlay.then(|| OverlayInput {
                detections: detections.as_ref().map(|d| &d.parsed),
                now_ns: shm_core::monotonic_ns(),
            });
            let result = encode::encode(&frame, key.quality, overlay, &mut scratch)
                .map(|jpeg| Encoded {
                    part: multipart::part(jpeg.as_slice(), frame.frame_number, frame.capture_ns),
                    frame_number: frame.frame_number,
                    capture_ns: frame.capture_ns,
                    publish_ns: frame.publish_ns,
                    placeholder_seq: 0,
                })
                .map_err(|e| e.to_string());
            metrics.encodes.fetch_add(1, Relaxed);
            metrics
                .encode_seconds
                .observe_ns(t0.elapsed().as_nanos() as u64);
            if result.is_err() {
                metrics.encode_errors.fetch_add(1, Relaxed);
            }
            (result, scratch)
        });
        match job.await {
            Ok(r) => r,
            Err(e) => (Err(e.to_string()), Vec::new()),
        }
    }
}

/// The encoder of one variant: runs while the variant has subscribers.
async fn run_variant(hub: Arc<Hub>, key: VariantKey, tx: EncodedTx, _done: mpsc::Sender<()>) {
    let mut frames = hub.frames.clone();
    // A new variant shows the current frame at once (even during an outage) rather than
    // waiting for the next one.
    frames.mark_changed();
    let mut scratch = Vec::new();
    let mut last_encoded = 0u64;
    let mut errors = 0u64;
    // The first tick is at once: a new variant during an outage shows the placeholder now.
    let mut no_signal = tokio::time::interval(nosignal::PERIOD);
    no_signal.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut placeholder_seq = 0u64;
    loop {
        tokio::select! {
            biased;
            _ = tx.closed() => {
                let mut map = hub.lock();
                // Re-checked under the lock: a client may have subscribed since.
                if tx.receiver_count() == 0 {
                    map.remove(&key);
                    break;
                }
                continue;
            }
            changed = frames.changed() => {
                if changed.is_err() {
                    // The frame reader is gone: the server is stopping.
                    hub.lock().remove(&key);
                    break;
                }
            }
            _ = no_signal.tick() => {
                if let Some(p) = hub.no_signal() {
                    placeholder_seq += 1;
                    let now = shm_core::monotonic_ns();
                    tx.send_replace(Some(Arc::new(Encoded {
                        part: multipart::part(&p.jpeg, 0, now),
                        frame_number: 0,
                        capture_ns: now,
                        publish_ns: now,
                        placeholder_seq,
                    })));
                }
                continue;
            }
        }
        let Some(frame) = frames.borrow_and_update().clone() else {
            continue;
        };
        if last_encoded != 0 && frame.frame_number > last_encoded + 1 {
            hub.metrics
                .encode_skipped
                .fetch_add(frame.frame_number - last_encoded - 1, Relaxed);
        }
        last_encoded = frame.frame_number;
        let (result, s) = hub.encode_blocking(frame, key, scratch).await;
        scratch = s;
        match result {
            Ok(e) => {
                tx.send_replace(Some(Arc::new(e)));
            }
            Err(e) => {
                errors += 1;
                if errors.is_power_of_two() {
                    warn!(
                        quality = key.quality,
                        overlay = key.overlay,
                        count = errors,
                        "{e}"
                    );
                }
            }
        }
    }
    hub.metrics.variants.fetch_sub(1, Relaxed);
    debug!(
        quality = key.quality,
        overlay = key.overlay,
        "variant stopped"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn frame(n: u64) -> Arc<RawFrame> {
        Arc::new(RawFrame {
            frame_number: n,
            capture_ns: shm_core::monotonic_ns(),
            publish_ns: shm_core::monotonic_ns(),
            width: 64,
            height: 48,
            stride: 192,
            data: vec![(n * 10) as u8; 64 * 48 * 3],
        })
    }

    struct Fixture {
        tx: watch::Sender<Option<Arc<RawFrame>>>,
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
        placeholder: watch::Sender<Option<Arc<Placeholder>>>,
        _done_rx: mpsc::Receiver<()>,
    }

    fn fixture() -> Fixture {
        let (tx, rx) = watch::channel(None);
        let metrics = Arc::new(Metrics::default());
        let (done_tx, done_rx) = mpsc::channel(1);
        let (placeholder, placeholder_rx) = watch::channel(None);
        let hub = Hub::new(
            rx,
            Arc::new(DetectionsHub::new(true, "d")),
            2_000_000_000,
            placeholder_rx,
            metrics.clone(),
            done_tx,
            EncoderPool::new(2).unwrap(),
        );
        Fixture {
            tx,
            hub,
            metrics,
            placeholder,
            _done_rx: done_rx,
        }
    }

    async fn next(rx: &mut EncodedRx) -> Arc<Encoded> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                rx.changed().await.unwrap();
                if let Some(e) = rx.borrow_and_update().clone() {
                    return e;
                }
            }
        })
        .await
        .expect("no encoded frame within 10 s")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_encode_per_frame_per_variant_shared_by_all_subscribers() {
        let f = fixture();
        let key = VariantKey {
            quality: 80,
            overlay: false,
        };
        let mut a = f.hub.subscribe(key);
        let mut b = f.hub.subscribe(key);
        let mut c = f.hub.subscribe(VariantKey {
            quality: 30,
            overlay: true,
        });
        assert_eq!(f.hub.variant_count(), 2);
        f.tx.send_replace(Some(frame(1)));
        let (ea, eb, ec) = (next(&mut a).await, next(&mut b).await, next(&mut c).await);
        assert!(
            Arc::ptr_eq(&ea, &eb),
            "subscribers of a variant share one encoded part"
        );
        assert_eq!((ea.frame_number, ec.frame_number), (1, 1));
        assert_eq!(f.metrics.encodes.load(Relaxed), 2);
        let snap = f.hub.snapshot(key).await.unwrap();
        assert_eq!(snap, ea.part.jpeg(), "snapshot reuses the variant's encode");
        assert_eq!(f.metrics.encodes.load(Relaxed), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_placeholder_is_sent_every_period_until_a_fresh_frame_comes() {
        let f = fixture();
        f.placeholder.send_replace(Some(Arc::new(Placeholder {
            reason: "camera unavailable: /dev/video9".into(),
            jpeg: Bytes::from_static(b"\xff\xd8placeholder\xff\xd9"),
        })));
        let key = VariantKey {
            quality: 80,
            overlay: false,
        };
        let mut rx = f.hub.subscribe(key);
        let first = next(&mut rx).await;
        let second = next(&mut rx).await;
        for p in [&first, &second] {
            assert!(p.is_placeholder());
            assert_eq!(p.frame_number, 0);
            assert_eq!(&p.part.jpeg()[..], b"\xff\xd8placeholder\xff\xd9");
        }
        assert_ne!(first.key(), second.key(), "each sending is a new part");
        // A fresh frame (as the frame reader records it) replaces the placeholder.
        f.metrics
            .last_publish_ns
            .store(shm_core::monotonic_ns(), Relaxed);
        f.tx.send_replace(Some(frame(7)));
        let mut got = next(&mut rx).await;
        while got.is_placeholder() {
            got = next(&mut rx).await;
        }
        assert_eq!(got.frame_number, 7);
        assert!(f.hub.no_signal().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn variants_stop_when_their_last_subscriber_leaves() {
        let f = fixture();
        f.tx.send_replace(Some(frame(1)));
        let key = VariantKey {
            quality: 50,
            overlay: false,
        };
        let mut a = f.hub.subscribe(key);
        assert_eq!(
            next(&mut a).await.frame_number,
            1,
            "the current frame is encoded at once"
        );
        drop(a);
        tokio::time::timeout(Duration::from_secs(10), async {
            while f.hub.variant_count() > 0 || f.metrics.variants.load(Relaxed) > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("variant not stopped");
        let before = f.metrics.encodes.load(Relaxed);
        f.tx.send_replace(Some(frame(2)));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            f.metrics.encodes.load(Relaxed),
            before,
            "nothing encoded without clients"
        );
        // A new subscriber restarts the variant.
        let mut a = f.hub.subscribe(key);
        assert_eq!(next(&mut a).await.frame_number, 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn snapshot_without_frames_is_an_error() {
        let f = fixture();
        let e = f
            .hub
            .snapshot(VariantKey {
                quality: 50,
                overlay: false,
            })
            .await
            .unwrap_err();
        assert!(matches!(e, SnapshotError::NoFrame));
        f.tx.send_replace(Some(frame(3)));
        let jpeg = f
            .hub
            .snapshot(VariantKey {
                quality: 50,
                overlay: true,
            })
            .await
            .unwrap();
        assert_eq!(&jpeg[..2], b"\xff\xd8");
    }
}
