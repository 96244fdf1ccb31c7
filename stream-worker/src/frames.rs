//! The one frame reader of the process: a dedicated thread that blocks in
//! [`shm_core::Reader::wait_next`] and hands every new frame to the async side through a
//! latest-value channel (`tokio::sync::watch`). No polling: the thread sleeps on the segment's
//! futex until the video worker publishes.
//!
//! Frame buffers are recycled: a buffer is reused as soon as nobody (channel, encoders) holds
//! it any more, so steady streaming allocates nothing.
//!
//! A dead writer is an outage, not an error: the thread keeps heartbeating (every wait does)
//! and the clients stay connected until frames return. A standalone video worker that
//! restarts re-creates the segment: the thread follows it ([`Reader::follow_replaced`]).

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use shm_core::{AttachError, AttachOptions, PixelFormat, Reader, SegmentLocation};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::metrics::Metrics;

/// One frame copied out of the segment.
#[derive(Debug, Clone, Default)]
pub struct RawFrame {
    /// Frame number (from 1, continued across writer restarts).
    pub frame_number: u64,
    /// Capture time, CLOCK_MONOTONIC ns.
    pub capture_ns: u64,
    /// Publish time, CLOCK_MONOTONIC ns.
    pub publish_ns: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes per row.
    pub stride: u32,
    /// BGR8 pixels, `stride` bytes per row.
    pub data: Vec<u8>,
}

impl RawFrame {
    /// Whether the geometry is consistent with the data (checked before any pixel is touched).
    pub fn is_valid(&self) -> bool {
        let row = self.width as usize * 3;
        self.width > 0
            && self.height > 0
            && self.stride as usize >= row
            && self.width <= 16_384
            && self.height <= 16_384
            && self.data.len() >= self.stride as usize * (self.height as usize - 1) + row
    }
}

/// The newest frame, shared by the encoders; `None` until the first frame.
pub type FrameRx = watch::Receiver<Option<Arc<RawFrame>>>;

/// The reader thread.
#[derive(Debug)]
pub struct FrameReader {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Wait per `wait_next` call: also the heartbeat period and the stop latency.
const WAIT: Duration = Duration::from_millis(200);
/// How many frame buffers are kept for reuse.
const POOL: usize = 4;

impl FrameReader {
    /// Attaches to the frame segment (waiting up to `timeout` for it to appear) on a new
    /// thread, then follows it. Returns once attached, or with the attach error.
    pub fn start(
        loc: SegmentLocation,
        timeout: Duration,
        metrics: Arc<Metrics>,
        tx: watch::Sender<Option<Arc<RawFrame>>>,
    ) -> Result<FrameReader, StartError> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let span = tracing::Span::current();
        let thread = std::thread::Builder::new()
            .name("frame-reader".into())
            .spawn(move || {
                // Threads do not inherit the caller's span; keep `worker=stream` on our lines.
                let _span = span.entered();
                // The reader is created on its own thread so it never has to cross threads.
                let reader = match Reader::attach(&loc, AttachOptions::new("stream", timeout)) {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                info!(
                    segment = %loc.name(),
                    width = reader.info().spec.width,
                    height = reader.info().spec.height,
                    slots = reader.info().spec.slot_count,
                    "attached to the frame segment"
                );
                let _ = ready_tx.send(Ok(()));
                follow(reader, &loc, &metrics, &tx, &stop2);
            })
            .map_err(StartError::Thread)?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(FrameReader {
                stop,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(StartError::Attach(e))
            }
            Err(_) => {
                let _ = thread.join();
                Err(StartError::Thread(std::io::Error::other(
                    "the frame reader thread ended before attaching",
                )))
            }
        }
    }

    /// Stops the thread (within one wait period) and releases the reader entry.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Why the frame reader could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The segment did not appear, is invalid, or is full of readers.
    #[error(transparent)]
    Attach(AttachError),
    /// No thread could be started.
    #[error("cannot start the frame reader thread: {0}")]
    Thread(std::io::Error),
}

/// Frames-per-second over a sliding window of receive times.
struct FpsMeter {
    times: std::collections::VecDeque<u64>,
}

impl FpsMeter {
    fn record(&mut self, now_ns: u64) -> f64 {
        self.times.push_back(now_ns);
        while let Some(&t) = self.times.front() {
            if now_ns.saturating_sub(t) > 2_000_000_000 || self.times.len() > 256 {
                self.times.pop_front();
            } else {
                break;
            }
        }
        match (self.times.front(), self.times.len()) {
            (Some(&first), n) if n >= 2 && now_ns > first => {
                (n - 1) as f64 * 1e9 / (now_ns - first) as f64
            }
            _ => 0.0,
        }
    }
}

fn follow(
    mut reader: Reader,
    loc: &SegmentLocation,
    metrics: &Metrics,
    tx: &watch::Sender<Option<Arc<RawFrame>>>,
    stop: &AtomicBool,
) {
    let mut pool: Vec<Arc<RawFrame>> = Vec::with_capacity(POOL + 1);
    let mut last_number = 0u64;
    let mut fps = FpsMeter {
        times: Default::default(),
    };
    let mut errors = 0u64;
    let mut was_up = None;
    while !stop.load(Relaxed) {
        match reader.wait_next(WAIT) {
            Ok(true) => {
                let mut frame = take_buffer(&mut pool);
                let Some(f) = Arc::get_mut(&mut frame) else {
                    continue;
                };
                match reader.read_latest(&mut f.data) {
                    Ok(Some(meta)) => {
                        f.frame_number = meta.frame_number;
                        f.capture_ns = meta.capture_ns;
                        f.publish_ns = meta.publish_ns;
                        f.width = meta.width;
                        f.height = meta.height;
                        f.stride = meta.stride;
                        f.data.truncate(meta.len);
                        if meta.format != PixelFormat::Bgr8 || !f.is_valid() {
                            errors += 1;
                            if errors.is_power_of_two() {
                                warn!(
                                    frame = meta.frame_number,
                                    "ignoring a frame that is not {}x{} BGR8 with consistent stride ({:?}, {}x{}, stride {}, {} bytes)",
                                    meta.width, meta.height, meta.format, meta.width, meta.height, meta.stride, meta.len
                                );
                            }
                            continue;
                        }
                        if last_number != 0 && meta.frame_number > last_number + 1 {
                            metrics
                                .frames_missed
                                .fetch_add(meta.frame_number - last_number - 1, Relaxed);
                        }
                        last_number = meta.frame_number;
                        let now = shm_core::monotonic_ns();
                        metrics.input_fps.set(fps.record(now));
                        metrics.frames_read.fetch_add(1, Relaxed);
                        metrics.last_frame_number.store(meta.frame_number, Relaxed);
                        metrics.last_capture_ns.store(meta.capture_ns, Relaxed);
                        metrics.last_publish_ns.store(meta.publish_ns, Relaxed);
                        metrics
                            .writer_generation
                            .store(u64::from(meta.writer_generation), Relaxed);
                        metrics.video_up.store(true, Relaxed);
                        pool.push(frame.clone());
                        tx.send_replace(Some(frame));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        errors += 1;
                        if errors.is_power_of_two() {
                            warn!(count = errors, "reading a frame failed: {e}");
                        }
                    }
                }
            }
            Ok(false) => {
                let alive = reader.writer().alive;
                metrics.video_up.store(alive, Relaxed);
                if was_up != Some(alive) {
                    if alive {
                        info!("video worker is publishing");
                    } else {
                        warn!("video worker is not running; clients stay connected and resume when frames return");
                    }
                    was_up = Some(alive);
                }
                match reader.follow_replaced() {
                    Ok(true) => {
                        info!(
                            segment = %loc.name(),
                            "the frame segment was re-created; following the new one"
                        );
                        last_number = 0;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        errors += 1;
                        if errors.is_power_of_two() {
                            warn!(
                                count = errors,
                                "cannot follow the re-created frame segment: {e}"
                            );
                        }
                    }
                }
            }
            Err(e) => {
                errors += 1;
                if errors.is_power_of_two() {
                    warn!(count = errors, "waiting for a frame failed: {e}");
                }
                reader.heartbeat();
                std::thread::sleep(WAIT);
            }
        }
    }
    debug!("frame reader stopped");
}

/// A buffer nobody else holds, or a new one.
fn take_buffer(pool: &mut Vec<Arc<RawFrame>>) -> Arc<RawFrame> {
    if let Some(i) = pool.iter().position(|f| Arc::strong_count(f) == 1) {
        return pool.swap_remove(i);
    }
    if pool.len() >= POOL {
        // All held elsewhere (slow encoders): forget the oldest, it is freed when released.
        pool.remove(0);
    }
    Arc::new(RawFrame::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_once_released() {
        let mut pool = Vec::new();
        let a = take_buffer(&mut pool);
        pool.push(a.clone());
        let held = a.clone();
        drop(a);
        // `held` keeps it busy: a new buffer is made.
        let b = take_buffer(&mut pool);
        assert!(!Arc::ptr_eq(&b, &held));
        drop(held);
        let c = take_buffer(&mut pool);
        assert_eq!(Arc::strong_count(&c), 1);
        assert!(pool.is_empty());
    }

    #[test]
    fn fps_meter_measures_rate_over_the_window() {
        let mut m = FpsMeter {
            times: Default::default(),
        };
        let mut v = 0.0;
        for i in 0..100u64 {
            v = m.record(i * 33_333_333);
        }
        assert!((v - 30.0).abs() < 0.1, "{v}");
    }

    #[test]
    fn frame_geometry_is_checked() {
        let mut f = RawFrame {
            width: 4,
            height: 2,
            stride: 12,
            data: vec![0; 24],
            ..RawFrame::default()
        };
        assert!(f.is_valid());
        f.data.truncate(23);
        assert!(!f.is_valid());
        f.stride = 11;
        assert!(!f.is_valid());
        f.height = 0;
        assert!(!f.is_valid());
    }
}
