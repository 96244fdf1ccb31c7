//! Encode once per bitrate, send to every client of that bitrate.
//!
//! Mirrors the JPEG [`crate::hub`]: each bitrate that at least one client watches has one
//! encoder task. It takes the newest frame, encodes it on the shared encoder pool, wraps it
//! into one fMP4 fragment and publishes it, reference-counted, in a latest-value channel.
//! A bitrate nobody watches has no task and no encoder.
//!
//! Keyframes come at least every `stream.h264_keyframe_sec`, and when a client joins or falls
//! behind (at most one forced keyframe a second per bitrate, so a burst of joins costs one and
//! a waiting client waits at most about a second, whatever `h264_keyframe_sec` is). Every fragment
//! carries the init segment it belongs to, so a client that starts at a keyframe has all it
//! needs, and a size change (new SPS) reaches everybody at the next keyframe.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{AcqRel, Relaxed, Release};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use super::encoder::{EncoderSettings, H264Encoder, Picture};
use super::fmp4::{self, SampleTiming, TrackInfo};
use crate::frames::{FrameRx, RawFrame};
use crate::metrics::Metrics;
use crate::pool::EncoderPool;

/// At most one forced keyframe a second per bitrate (SPEC).
const FORCED_KEYFRAME_GAP_NS: u64 = 1_000_000_000;

/// One fragment of one bitrate, ready to send.
#[derive(Debug)]
pub struct Fragment {
    /// Position in this bitrate's stream, from 1; consecutive fragments differ by 1.
    pub seq: u64,
    /// An IDR frame: a client can start here.
    pub keyframe: bool,
    /// The init segment this fragment belongs to (shared by all fragments until the SPS changes).
    pub init: Bytes,
    /// `moof` + `mdat`.
    pub data: Bytes,
    /// The frame it shows.
    pub frame_number: u64,
    /// Publish time of the frame by the video worker (CLOCK_MONOTONIC ns).
    pub publish_ns: u64,
}

/// The latest fragment of one bitrate.
pub type FragmentRx = watch::Receiver<Option<Arc<Fragment>>>;
type FragmentTx = Arc<watch::Sender<Option<Arc<Fragment>>>>;

/// A client's hold on one bitrate's stream; the encoder runs while any is held.
#[derive(Debug)]
pub struct Subscription {
    /// The fragments.
    pub rx: FragmentRx,
    /// The bitrate.
    pub bitrate_kbps: u32,
    want_keyframe: Arc<AtomicBool>,
}

impl Subscription {
    /// Asks the encoder for a keyframe (granted at most once a second per bitrate): for a
    /// client that fell behind and waits for one.
    pub fn request_keyframe(&self) {
        // Release: pairs with the encoder's AcqRel swap; nothing else is published by it.
        self.want_keyframe.store(true, Release);
    }
}

/// How the encoders are set up (from `[stream]` and `[video]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct H264Settings {
    /// Longest time between keyframes, in seconds.
    pub keyframe_sec: f64,
    /// Nominal frame rate (`video.fps`), for rate control and the first sample's duration.
    pub fps: u32,
}

#[derive(Debug)]
struct Variant {
    tx: FragmentTx,
    /// A client joined and waits for a keyframe.
    want_keyframe: Arc<AtomicBool>,
}

/// The bitrates being encoded and their encoders.
#[derive(Debug)]
pub struct H264Hub {
    frames: FrameRx,
    settings: H264Settings,
    metrics: Arc<Metrics>,
    pool: Arc<EncoderPool>,
    variants: Mutex<HashMap<u32, Variant>>,
    /// Held by every encoder task, so shutdown can wait for them.
    done: mpsc::Sender<()>,
}

impl H264Hub {
    /// A hub encoding frames from `frames` on `pool`; `done` is a completion sender (see
    /// `shutdown`).
    pub fn new(
        frames: FrameRx,
        settings: H264Settings,
        metrics: Arc<Metrics>,
        pool: Arc<EncoderPool>,
        done: mpsc::Sender<()>,
    ) -> Arc<H264Hub> {
        Arc::new(H264Hub {
            frames,
            settings,
            metrics,
            pool,
            variants: Mutex::new(HashMap::new()),
            done,
        })
    }

    /// Subscribes to the stream at `bitrate_kbps`, starting its encoder for the first client
    /// and asking for a keyframe. Must be called inside the tokio runtime.
    pub fn subscribe(self: &Arc<Self>, bitrate_kbps: u32) -> Subscription {
        let mut map = self.lock();
        let variant = map.entry(bitrate_kbps).or_insert_with(|| {
            let (tx, _) = watch::channel(None);
            let v = Variant {
                tx: Arc::new(tx),
                want_keyframe: Arc::new(AtomicBool::new(false)),
            };
            self.metrics.h264.encoders.fetch_add(1, Relaxed);
            tokio::spawn(run_encoder(
                self.clone(),
                bitrate_kbps,
                v.tx.clone(),
                v.want_keyframe.clone(),
                self.done.clone(),
            ));
            debug!(bitrate_kbps, "h264 encoder started");
            v
        });
        let sub = Subscription {
            rx: variant.tx.subscribe(),
            bitrate_kbps,
            want_keyframe: variant.want_keyframe.clone(),
        };
        // A joining client waits for a keyframe.
        sub.request_keyframe();
        sub
    }

    /// Number of bitrates being encoded.
    pub fn encoder_count(&self) -> usize {
        self.lock().len()
    }

    /// Completion sender for client tasks, so shutdown waits for them too.
    pub fn done_sender(&self) -> mpsc::Sender<()> {
        self.done.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Variant>> {
        // Single inserts and removes cannot leave the map inconsistent: a poisoned lock is
        // still usable.
        self.variants.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Timeline of one bitrate's stream, in the track's 90 kHz units.
#[derive(Debug, Default)]
struct Timeline {
    first_capture_ns: Option<u64>,
    last: Option<SampleTiming>,
}

impl Timeline {
    /// The next sample's timing: its capture time since the first frame, strictly increasing;
    /// it is shown until the next frame, guessed from the previous gap.
    fn next(&mut self, capture_ns: u64, fps: u32) -> SampleTiming {
        let first = *self.first_capture_ns.get_or_insert(capture_ns);
        let t = (u128::from(capture_ns.saturating_sub(first)) * u128::from(fmp4::TIMESCALE)
            / 1_000_000_000) as u64;
        let nominal = fmp4::TIMESCALE / fps.max(1);
        let timing = match self.last {
            None => SampleTiming {
                decode_time: t,
                duration: nominal,
            },
            Some(prev) => {
                let decode_time = t.max(prev.decode_time + 1);
                let gap = decode_time - prev.decode_time;
                SampleTiming {
                    decode_time,
                    // A long outage is not a long frame: keep durations near the nominal.
                    duration: gap.clamp(1, u64::from(nominal) * 4) as u32,
                }
            }
        };
        self.last = Some(timing);
        timing
    }
}

/// The encoder of one bitrate: runs while the bitrate has subscribers.
async fn run_encoder(
    hub: Arc<H264Hub>,
    bitrate_kbps: u32,
    tx: FragmentTx,
    want_keyframe: Arc<AtomicBool>,
    _done: mpsc::Sender<()>,
) {
    let settings = hub.settings;
    let enc_settings = EncoderSettings {
        bitrate_kbps,
        fps: settings.fps as f32,
        keyframe_frames: ((settings.keyframe_sec * f64::from(settings.fps)).round() as u32).max(1),
    };
    let keyframe_ns = (settings.keyframe_sec * 1e9) as u64;
    let mut frames = hub.frames.clone();
    // Start with the current frame rather than waiting for the next one.
    frames.mark_changed();
    let mut encoder: Option<H264Encoder> = None;
    let mut timeline = Timeline::default();
    let mut seq = 0u64;
    let mut last_keyframe_ns = 0u64;
    let mut init: Option<(TrackInfo, Bytes)> = None;
    let mut last_encoded = 0u64;
    let mut errors = 0u64;
    loop {
        tokio::select! {
            biased;
            _ = tx.closed() => {
                let mut map = hub.lock();
                // Re-checked under the lock: a client may have subscribed since.
                if tx.receiver_count() == 0 {
                    map.remove(&bitrate_kbps);
                    break;
                }
                continue;
            }
            changed = frames.changed() => {
                if changed.is_err() {
                    hub.lock().remove(&bitrate_kbps);
                    break;
                }
            }
        }
        let Some(frame) = frames.borrow_and_update().clone() else {
            continue;
        };
        if last_encoded != 0 && frame.frame_number > last_encoded + 1 {
            hub.metrics
                .h264
                .encode_skipped
                .fetch_add(frame.frame_number - last_encoded - 1, Relaxed);
        }
        last_encoded = frame.frame_number;
        let now = shm_core::monotonic_ns();
        let since_key = now.saturating_sub(last_keyframe_ns);
        // The stream's first keyframe serves its first clients: it is not counted as forced.
        let starting = init.is_none();
        let joined =
            since_key >= FORCED_KEYFRAME_GAP_NS && want_keyframe.swap(false, AcqRel) && !starting;
        let force = joined || starting || since_key >= keyframe_ns;
        let enc = match encoder.take() {
            Some(e) => e,
            None => match H264Encoder::new(enc_settings) {
                Ok(e) => e,
                Err(e) => {
                    errors += 1;
                    if errors.is_power_of_two() {
                        warn!(bitrate_kbps, count = errors, "{e}");
                    }
                    continue;
                }
            },
        };
        let metrics = hub.metrics.clone();
        let job = hub
            .pool
            .run(move || encode_job(enc, &frame, force, &metrics));
        let (enc, result) = match job.await {
            Ok((enc, r)) => (Some(enc), r),
            // The job panicked: the encoder went with it; a new one starts at the next frame.
            Err(e) => (None, Err(e.to_string())),
        };
        encoder = enc;
        let (picture, frame) = match result {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(e) => {
                hub.metrics.h264.encode_errors.fetch_add(1, Relaxed);
                errors += 1;
                if errors.is_power_of_two() {
                    warn!(bitrate_kbps, count = errors, "{e}");
                }
                continue;
            }
        };
        if picture.keyframe {
            last_keyframe_ns = now;
            hub.metrics.h264.keyframes.fetch_add(1, Relaxed);
            if joined {
                hub.metrics.h264.forced_keyframes.fetch_add(1, Relaxed);
            }
            if let Some((sps, pps)) = &picture.parameter_sets {
                let track = TrackInfo {
                    width: frame.width as u16,
                    height: frame.height as u16,
                    sps: sps.clone(),
                    pps: pps.clone(),
                };
                if init.as_ref().is_none_or(|(t, _)| *t != track) {
                    let bytes = Bytes::from(fmp4::init_segment(&track));
                    debug!(bitrate_kbps, codec = %track.codec_string(), width = track.width, height = track.height, "h264 init segment");
                    init = Some((track, bytes));
                }
            }
        }
        let Some((_, init_bytes)) = &init else {
            // No keyframe yet: nothing a client could decode.
            continue;
        };
        seq += 1;
        let timing = timeline.next(frame.capture_ns, settings.fps);
        let data = fmp4::fragment(seq as u32, timing, picture.keyframe, &picture.sample);
        hub.metrics
            .h264
            .bytes_encoded
            .fetch_add(data.len() as u64, Relaxed);
        tx.send_replace(Some(Arc::new(Fragment {
            seq,
            keyframe: picture.keyframe,
            init: init_bytes.clone(),
            data: Bytes::from(data),
            frame_number: frame.frame_number,
            publish_ns: frame.publish_ns,
        })));
    }
    hub.metrics.h264.encoders.fetch_sub(1, Relaxed);
    debug!(bitrate_kbps, "h264 encoder stopped");
}

type JobResult = Result<Option<(Picture, Arc<RawFrame>)>, String>;

/// Runs on an encoder thread: encodes one frame and hands the encoder back.
fn encode_job(
    mut enc: H264Encoder,
    frame: &Arc<RawFrame>,
    force: bool,
    metrics: &Metrics,
) -> (H264Encoder, JobResult) {
    let t0 = Instant::now();
    let result = enc
        .encode(frame, force)
        .map(|p| p.map(|p| (p, frame.clone())))
        .map_err(|e| e.to_string());
    metrics.h264.encodes.fetch_add(1, Relaxed);
    metrics
        .h264
        .encode_seconds
        .observe_ns(t0.elapsed().as_nanos() as u64);
    (enc, result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn frame(n: u64, w: u32, h: u32) -> Arc<RawFrame> {
        let mut data = vec![0u8; (w * h * 3) as usize];
        for (i, px) in data.chunks_exact_mut(3).enumerate() {
            let (x, y) = (i as u32 % w, i as u32 / w);
            px[0] = ((x + n as u32 * 4) % 256) as u8;
            px[1] = (y % 256) as u8;
            px[2] = 128;
        }
        Arc::new(RawFrame {
            frame_number: n,
            capture_ns: n * 33_333_333,
            publish_ns: shm_core::monotonic_ns(),
            width: w,
            height: h,
            stride: w * 3,
            data,
        })
    }

    struct Fixture {
        tx: watch::Sender<Option<Arc<RawFrame>>>,
        hub: Arc<H264Hub>,
        metrics: Arc<Metrics>,
        _done_rx: mpsc::Receiver<()>,
    }

    fn fixture(keyframe_sec: f64) -> Fixture {
        let (tx, rx) = watch::channel(None);
        let metrics = Arc::new(Metrics::default());
        let (done_tx, done_rx) = mpsc::channel(1);
        let hub = H264Hub::new(
            rx,
            H264Settings {
                keyframe_sec,
                fps: 30,
            },
            metrics.clone(),
            Arc::new(EncoderPool::new(2).unwrap()),
            done_tx,
        );
        Fixture {
            tx,
            hub,
            metrics,
            _done_rx: done_rx,
        }
    }

    async fn next(rx: &mut FragmentRx) -> Arc<Fragment> {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                rx.changed().await.unwrap();
                if let Some(f) = rx.borrow_and_update().clone() {
                    return f;
                }
            }
        })
        .await
        .expect("no fragment within 20 s")
    }

    #[test]
    fn timeline_is_strictly_increasing_with_sane_durations() {
        let mut t = Timeline::default();
        let a = t.next(1_000_000_000, 30);
        assert_eq!(
            a,
            SampleTiming {
                decode_time: 0,
                duration: 3000
            }
        );
        let b = t.next(1_033_333_333, 30);
        assert_eq!((b.decode_time, b.duration), (2999, 2999));
        let c = t.next(1_033_333_333, 30);
        assert_eq!((c.decode_time, c.duration), (3000, 1));
        let d = t.next(61_000_000_000, 30);
        assert_eq!(d.decode_time, 5_400_000);
        assert_eq!(d.duration, 12_000, "an outage is not one long frame");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_encode_per_frame_per_bitrate_and_a_keyframe_for_each_join() {
        let f = fixture(60.0);
        let mut a = f.hub.subscribe(800);
        let mut b = f.hub.subscribe(800);
        let mut c = f.hub.subscribe(1500);
        assert_eq!(f.hub.encoder_count(), 2);
        f.tx.send_replace(Some(frame(1, 64, 48)));
        let (fa, fb, fc) = (
            next(&mut a.rx).await,
            next(&mut b.rx).await,
            next(&mut c.rx).await,
        );
        assert!(
            Arc::ptr_eq(&fa, &fb),
            "clients of a bitrate share one fragment"
        );
        assert!(
            fa.keyframe && fc.keyframe,
            "a stream starts with a keyframe"
        );
        assert_eq!((fa.seq, fa.frame_number), (1, 1));
        assert_eq!(f.metrics.h264.encodes.load(Relaxed), 2);
        for n in 2..=3 {
            f.tx.send_replace(Some(frame(n, 64, 48)));
            let p = next(&mut a.rx).await;
            assert_eq!(p.seq, n);
            assert!(!p.keyframe, "no keyframe without a reason (frame {n})");
            assert_eq!(p.init, fa.init, "the init segment stays while the SPS does");
        }
        // A client joining more than a second after the last keyframe forces one.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let mut late = f.hub.subscribe(800);
        f.tx.send_replace(Some(frame(4, 64, 48)));
        let p = next(&mut late.rx).await;
        assert!(p.keyframe, "a join forces a keyframe");
        assert_eq!(f.metrics.h264.forced_keyframes.load(Relaxed), 1);
        // A second join within the second waits for the next regular chance instead.
        let _again = f.hub.subscribe(800);
        f.tx.send_replace(Some(frame(5, 64, 48)));
        assert!(!next(&mut late.rx).await.keyframe);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keyframes_come_every_keyframe_sec_and_encoders_stop_without_clients() {
        let f = fixture(0.2);
        let mut a = f.hub.subscribe(500);
        f.tx.send_replace(Some(frame(1, 64, 48)));
        assert!(next(&mut a.rx).await.keyframe);
        tokio::time::sleep(Duration::from_millis(300)).await;
        f.tx.send_replace(Some(frame(2, 64, 48)));
        assert!(next(&mut a.rx).await.keyframe, "keyframe_sec elapsed");
        drop(a);
        tokio::time::timeout(Duration::from_secs(10), async {
            while f.hub.encoder_count() > 0 || f.metrics.h264.encoders.load(Relaxed) > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("encoder not stopped");
        let before = f.metrics.h264.encodes.load(Relaxed);
        f.tx.send_replace(Some(frame(3, 64, 48)));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            f.metrics.h264.encodes.load(Relaxed),
            before,
            "nothing encoded without clients"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_size_change_brings_a_new_init_segment_at_a_keyframe() {
        let f = fixture(60.0);
        let mut a = f.hub.subscribe(500);
        f.tx.send_replace(Some(frame(1, 64, 48)));
        let first = next(&mut a.rx).await;
        f.tx.send_replace(Some(frame(2, 96, 64)));
        let second = next(&mut a.rx).await;
        assert!(second.keyframe, "the encoder restarts with a keyframe");
        assert_ne!(first.init, second.init);
    }
}
