//! The worker loop: attach to the frame segment, detect on the newest frame, publish one
//! detections record per processed frame on the detections channel.
//!
//! - Frames are read in place ([`Reader::read_zero_copy`]): the detector works on the slot
//!   itself (its first step shrinks it into the detector's own buffers; the kinds are read
//!   from the slot's pixels), and a result is thrown away when the read reports that the
//!   writer overwrote the slot meanwhile. With 3 slots at 30 fps that leaves the detector
//!   about 66 ms, eight times what it needs.
//! - Always the newest frame: after each detection the next read takes the latest published
//!   frame, so when detection is slower than the camera intermediate frames are skipped,
//!   never queued.
//! - A dead or restarting video worker is an outage, not an error: the loop keeps waiting
//!   (heartbeating in the reader table, so the supervisor's watchdog sees a live worker), logs
//!   once when frames stop and once when they come back. A standalone video worker that was
//!   restarted recreates its segment; the loop follows the new segment
//!   ([`Reader::follow_replaced`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use billiards_supervised::{detections_channel, frames_segment, ParentWatch, Segment};
use config::{exit_codes, Config};
use opencv::core::{Mat, CV_8UC3};
use opencv::prelude::*;
use shm_core::{
    AttachError, AttachOptions, CreateMode, FrameView, Monitor, PixelFormat, PublishMeta, Reader,
    SegmentLocation, Writer, ZeroCopy,
};
use tracing::{debug, info, warn};

use crate::detect::{DetectError, Detector, DetectorParams};
use crate::model::{BallJson, CueJson, DetectionsJson, FrameDetections, Motion, TableJson};
use crate::shots::{FrameMotion, ShotDetector};
use crate::track::Tracker;

pub use billiards_detections::{DETECTIONS_CAPACITY, DETECTIONS_SLOTS};
/// Name of our entry in the frame segment's reader table.
pub const READER_NAME: &str = "vision";

/// How long `wait_next` sleeps before the loop looks at the stop flag and the writer again.
const POLL: Duration = Duration::from_millis(100);
/// Period of the statistics log line.
const STATS_EVERY: Duration = Duration::from_secs(10);

/// A failure that ends the worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The frame segment never appeared: the video worker is not running. Exit code
    /// [`exit_codes::VIDEO_NOT_AVAILABLE`].
    #[error("video worker not available: {0}; start the tree with `billiards-supervisor start`")]
    VideoNotAvailable(AttachError),
    /// The frame segment cannot be used (invalid, reader table full, I/O error).
    #[error("frame segment: {0}")]
    Attach(AttachError),
    /// The frame segment's contents are impossible.
    #[error("frame segment: {0}")]
    Read(#[from] shm_core::ReadError),
    /// A segment name from the configuration is not usable.
    #[error(transparent)]
    Name(#[from] billiards_supervised::SegmentNameError),
    /// A standalone worker could not create the detections channel.
    #[error("detections channel: {0}")]
    Create(#[from] shm_core::CreateError),
    /// The detections channel could not be opened for writing.
    #[error("detections channel: {0}")]
    Open(#[from] shm_core::OpenError),
    /// A standalone worker found the detections channel written by another live process.
    #[error(
        "detections channel {name} is written by another live vision worker (pid {pid}); stop it \
         (or the supervisor) first, or set another vision.detections_shm_name"
    )]
    InUse {
        /// Channel name.
        name: String,
        /// The live writer.
        pid: u32,
    },
    /// Publishing failed (a bug or a corrupt channel).
    #[error("detections channel: cannot publish: {0}")]
    Publish(#[from] shm_core::PublishError),
}

impl WorkerError {
    /// The process exit code of this failure (see [`config::exit_codes`]).
    pub fn exit_code(&self) -> i32 {
        use shm_core::OpenError;
        match self {
            WorkerError::VideoNotAvailable(_) => exit_codes::VIDEO_NOT_AVAILABLE,
            WorkerError::Attach(AttachError::Invalid { .. })
            | WorkerError::Read(_)
            | WorkerError::Open(OpenError::SpecMismatch { .. })
            | WorkerError::Open(OpenError::Attach(AttachError::Invalid { .. })) => {
                exit_codes::SEGMENT_INVALID
            }
            WorkerError::Name { .. } => exit_codes::USAGE,
            _ => exit_codes::FAILURE,
        }
    }
}

/// How the worker runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Started by the supervisor: the detections channel exists (the supervisor created it
    /// and unlinks it). Standalone, the worker creates the channel and unlinks it on exit.
    pub supervised: bool,
}

/// What a run did, for the final log line and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Frames processed and published.
    pub processed: u64,
    /// Frames published by the writer that were never processed (always-latest skips, and
    /// slots overwritten during detection).
    pub skipped: u64,
    /// Outages of the video worker that were waited out.
    pub outages: u64,
}

/// Unlinks the detections channel that a standalone worker created, on every way out.
struct CreatedChannel(SegmentLocation);

impl Drop for CreatedChannel {
    fn drop(&mut self) {
        match shm_core::unlink(&self.0) {
            Ok(_) => debug!(segment = self.0.name(), "detections channel unlinked"),
            Err(e) => warn!("{e}"),
        }
    }
}

fn attach(loc: &SegmentLocation, timeout: Duration) -> Result<Reader, WorkerError> {
    Reader::attach(loc, AttachOptions::new(READER_NAME, timeout)).map_err(|e| match e {
        e @ AttachError::NotFound { .. } => WorkerError::VideoNotAvailable(e),
        e => WorkerError::Attach(e),
    })
}

/// Waits up to `timeout` for the frame segment in short steps, so that a stop request is
/// honoured at once; `Ok(None)` when stopped first.
fn attach_until(
    loc: &SegmentLocation,
    timeout: Duration,
    stop: &AtomicBool,
) -> Result<Option<Reader>, WorkerError> {
    let started = Instant::now();
    loop {
        let remaining = timeout.saturating_sub(started.elapsed());
        match attach(loc, remaining.min(POLL)) {
            Ok(r) => return Ok(Some(r)),
            Err(WorkerError::VideoNotAvailable(_)) if !remaining.is_zero() => {
                if stop.load(Ordering::SeqCst) {
                    return Ok(None);
                }
            }
            Err(WorkerError::VideoNotAvailable(_)) => {
                return Err(WorkerError::VideoNotAvailable(AttachError::NotFound {
                    name: loc.name().into(),
                    waited: timeout,
                }))
            }
            Err(e) => return Err(e),
        }
    }
}

/// Why one frame was not processed (the loop carries on).
#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error("frame {frame}: {why}")]
    Format { frame: u64, why: String },
    #[error("frame {frame}: {source}")]
    Detect { frame: u64, source: DetectError },
}

/// Runs the detector on a slot in place.
fn detect_in_place(
    view: &FrameView<'_>,
    det: &mut Detector,
) -> Result<FrameDetections, FrameError> {
    let m = view.meta();
    let frame = m.frame_number;
    let bad = |why: String| FrameError::Format { frame, why };
    if m.format != PixelFormat::Bgr8 {
        return Err(bad(format!("pixel format {:?}, expected BGR8", m.format)));
    }
    let (w, h) = (m.width as usize, m.height as usize);
    let stride = if m.stride == 0 {
        w * 3
    } else {
        m.stride as usize
    };
    if w == 0 || h == 0 || stride < w * 3 || stride.checked_mul(h).is_none_or(|n| n > view.len()) {
        return Err(bad(format!(
            "{w}x{h} frame with stride {stride} does not fit its {} bytes",
            view.len()
        )));
    }
    // SAFETY: the view points at `view.len()` readable bytes of the mapping for the whole
    // closure, and `stride * h <= view.len()` (checked above), so the Mat covers only mapped
    // memory. The Mat does not outlive this function (it borrows nothing beyond the closure)
    // and is only read (the mapping is read-only; OpenCV's resize and our per-pixel sums only
    // read). The writer may overwrite the slot meanwhile; the result is then garbage, which
    // the caller discards when the read reports `ZeroCopy::Overwritten`.
    let mat = unsafe {
        Mat::new_rows_cols_with_data_unsafe(
            h as i32,
            w as i32,
            CV_8UC3,
            view.as_ptr() as *mut std::ffi::c_void,
            stride,
        )
    }
    .map_err(|e| FrameError::Detect {
        frame,
        source: e.into(),
    })?;
    let res = if mat.is_continuous() {
        det.process(&mat)
    } else {
        // Padded rows: one copy into a packed matrix.
        mat.try_clone()
            .map_err(DetectError::from)
            .and_then(|m| det.process(&m))
    };
    res.map_err(|source| FrameError::Detect { frame, source })
}

/// Percentiles of a small window of samples (milliseconds).
#[derive(Debug, Default)]
struct Window(Vec<f32>);

impl Window {
    fn push(&mut self, v: f32) {
        if self.0.len() >= 1024 {
            self.0.remove(0);
        }
        self.0.push(v);
    }
    fn p(&self, q: f32) -> f32 {
        if self.0.is_empty() {
            return 0.0;
        }
        let mut v = self.0.clone();
        v.sort_by(f32::total_cmp);
        v[((v.len() - 1) as f32 * q).round() as usize]
    }
}

/// Reads frames and publishes detections until `stop` is set.
pub fn run(
    config: &Config,
    opts: &RunOptions,
    stop: &AtomicBool,
) -> Result<RunSummary, WorkerError> {
    // One core: the detector is sized for it, and the tree shares the machine.
    if let Err(e) = opencv::core::set_num_threads(1) {
        debug!("cannot limit OpenCV to one thread: {e}");
    }
    let frames_loc = frames_segment(config)?.location;
    let Segment {
        location: det_loc,
        spec,
    } = detections_channel(config)?;
    let timeout = Duration::from_secs_f64(config.video.attach_timeout_sec.max(0.0));
    info!(
        segment = frames_loc.name(),
        timeout_s = timeout.as_secs_f64(),
        "attaching to the frame segment"
    );
    let Some(mut reader) = attach_until(&frames_loc, timeout, stop)? else {
        info!("stopped while waiting for the frame segment");
        return Ok(RunSummary::default());
    };
    info!(
        segment = frames_loc.name(),
        path = %reader.info().path.display(),
        width = reader.info().spec.width,
        height = reader.info().spec.height,
        "attached to the frame segment"
    );

    let _created = if opts.supervised {
        None
    } else {
        if let Ok(m) = Monitor::open(&det_loc) {
            let w = m.snapshot().writer;
            if w.alive && w.pid != std::process::id() {
                return Err(WorkerError::InUse {
                    name: det_loc.name().into(),
                    pid: w.pid,
                });
            }
        }
        shm_core::create(&det_loc, &spec, CreateMode::ReplaceExisting)?;
        Some(CreatedChannel(det_loc.clone()))
    };
    let mut out = Writer::open(&det_loc, &spec)?;
    info!(channel = det_loc.name(), "publishing detections");

    let mut det = Detector::new(DetectorParams::default());
    if let Some(corners) = fixed_corners(config) {
        info!(
            ?corners,
            "table fixed by vision.table_corners; table detection is off"
        );
        det = det.with_table_corners(corners);
    }
    let mut tracker = Tracker::new();
    let mut shots = ShotDetector::new();
    let mut moving_numbers: Vec<u8> = Vec::with_capacity(16);
    let mut json: Vec<u8> = Vec::with_capacity(8192);
    let mut summary = RunSummary::default();
    let fps = config.video.fps.max(1) as f64;
    // Frames are late after a few frame periods; shorter hiccups are not outages.
    let stall = Duration::from_secs_f64((5.0 / fps).max(0.5));
    let mut last_frame_at = Instant::now();
    let mut last_number = 0u64;
    let mut outage: Option<Instant> = None;
    let mut frame_errors = 0u64;
    let (mut detect_ms, mut latency_ms) = (Window::default(), Window::default());
    let mut stats_at = Instant::now();
    let mut stats_processed = 0u64;

    // Under the supervisor, its death ends us too (it also asks the kernel to kill us; this
    // covers a supervisor started without that).
    // The loop comes round at least every POLL (100 ms), which is billiards_supervised::PARENT_POLL.
    let parent = ParentWatch::new(opts.supervised);
    while !stop.load(Ordering::SeqCst) {
        if let Some(watch) = parent {
            if watch.gone() {
                warn!(
                    supervisor_pid = watch.parent_pid(),
                    "the supervisor is gone; stopping"
                );
                break;
            }
        }
        if !reader.wait_next(POLL)? {
            out.heartbeat();
            let now = Instant::now();
            if outage.is_none() && now.duration_since(last_frame_at) > stall {
                let w = reader.writer();
                warn!(
                    writer_pid = w.pid,
                    writer_alive = w.alive,
                    "no frames from the video worker for {:.1} s; waiting for it (detections paused)",
                    now.duration_since(last_frame_at).as_secs_f64()
                );
                outage = Some(now);
                summary.outages += 1;
            }
            // A standalone video worker that restarts makes a new segment: follow it.
            match reader.follow_replaced() {
                Ok(true) => {
                    info!(
                        segment = frames_loc.name(),
                        "the frame segment was recreated; re-attached"
                    );
                    last_number = 0;
                }
                Ok(false) => {}
                Err(e) => debug!("cannot re-attach yet: {e}"),
            }
            continue;
        }
        let t0 = Instant::now();
        let read = reader.read_zero_copy(|view| detect_in_place(view, &mut det))?;
        let (meta, result) = match read {
            None => continue,
            Some(ZeroCopy::Overwritten { frame_number }) => {
                summary.skipped += 1;
                debug!(
                    frame = frame_number,
                    "slot overwritten during detection; result discarded"
                );
                continue;
            }
            Some(ZeroCopy::Intact { meta, value }) => (meta, value),
        };
        let now = Instant::now();
        if let Some(since) = outage.take() {
            info!(
                writer_generation = meta.writer_generation,
                frame = meta.frame_number,
                "frames are back after {:.1} s; detections resume",
                now.duration_since(since).as_secs_f64()
            );
            tracker.reset();
            shots.reset();
        }
        last_frame_at = now;
        if last_number != 0 && meta.frame_number > last_number + 1 {
            summary.skipped += meta.frame_number - last_number - 1;
        }
        last_number = meta.frame_number;
        let found = match result {
            Ok(d) => d,
            Err(e) => {
                frame_errors += 1;
                // The same problem on every frame would flood the log: say it now and then.
                if frame_errors.is_power_of_two() {
                    warn!(errors = frame_errors, "frame not processed: {e}");
                }
                continue;
            }
        };
        let elapsed = t0.elapsed();
        tracker.set_table(found.table.map(|t| t.corners));
        let tracked = tracker.update(&found.balls, meta.capture_ns);
        moving_numbers.clear();
        moving_numbers.extend(tracked.iter().filter(|t| t.moving).filter_map(|t| t.number));
        let finished = shots.update(&FrameMotion {
            frame_number: meta.frame_number,
            t_ns: meta.capture_ns,
            unix_s: unix_time_of(meta.capture_ns),
            any_moving: tracker.motion(),
            moving: &moving_numbers,
            pocketed: tracker.pocketed(),
        });
        if let Some(shot) = &finished {
            info!(
                shot = shot.id,
                frames = shot.end_frame - shot.start_frame,
                balls_moved = ?shot.balls_moved,
                pocketed = ?shot.pocketed,
                cue_ball_first_hit = ?shot.cue_ball_first_hit,
                "shot ended"
            );
        }
        let record = DetectionsJson {
            frame_number: meta.frame_number,
            capture_ts_ns: meta.capture_ns,
            processed_ts_ns: shm_core::monotonic_ns(),
            table: TableJson {
                corners: found.table.map(|t| t.corners.to_vec()).unwrap_or_default(),
            },
            balls: tracked
                .iter()
                .map(|t| BallJson {
                    x: round2(t.ball.x),
                    y: round2(t.ball.y),
                    radius: round2(t.ball.radius),
                    kind: t.ball.kind,
                    id: Some(t.id),
                    vx: Some(round2(t.vx)),
                    vy: Some(round2(t.vy)),
                    number: t.number,
                    number_confidence: round2(t.number_confidence),
                    moving: t.moving,
                })
                .collect(),
            table_found: found.table.is_some(),
            detect_ms: round2(elapsed.as_secs_f32() * 1e3),
            motion: if tracker.motion() {
                Motion::Moving
            } else {
                Motion::Still
            },
            pocketed: tracker.pocketed().to_vec(),
            shot: shots.recent(meta.capture_ns).cloned(),
            cue: found.cue.map(|c| CueJson {
                tip: [round2(c.tip[0]), round2(c.tip[1])],
                angle_deg: round2(c.angle_deg),
                confidence: round2(c.confidence),
            }),
            table_source: found.table_source,
        };
        json.clear();
        serde_json::to_writer(&mut json, &record)
            .expect("serialising plain data into a Vec cannot fail");
        if json.len() > DETECTIONS_CAPACITY {
            warn!(
                bytes = json.len(),
                "detections of frame {} do not fit the channel; dropped", meta.frame_number
            );
            continue;
        }
        out.publish(&json, PublishMeta::bytes(meta.capture_ns))?;
        summary.processed += 1;
        stats_processed += 1;
        detect_ms.push(elapsed.as_secs_f32() * 1e3);
        latency_ms.push(shm_core::monotonic_ns().saturating_sub(meta.capture_ns) as f32 * 1e-6);
        if stats_at.elapsed() >= STATS_EVERY {
            let secs = stats_at.elapsed().as_secs_f64();
            info!(
                fps = format!("{:.1}", stats_processed as f64 / secs),
                balls = found.balls.len(),
                table = found.table.is_some(),
                skipped = summary.skipped,
                detect_p50_ms = format!("{:.2}", detect_ms.p(0.5)),
                detect_p99_ms = format!("{:.2}", detect_ms.p(0.99)),
                capture_to_publish_p50_ms = format!("{:.2}", latency_ms.p(0.5)),
                capture_to_publish_p99_ms = format!("{:.2}", latency_ms.p(0.99)),
                "vision stats"
            );
            stats_at = Instant::now();
            stats_processed = 0;
        }
    }
    info!(
        processed = summary.processed,
        skipped = summary.skipped,
        outages = summary.outages,
        "stopping"
    );
    Ok(summary)
}

/// The wall-clock time (Unix seconds) of a CLOCK_MONOTONIC instant in the recent past.
fn unix_time_of(mono_ns: u64) -> f64 {
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let age = shm_core::monotonic_ns().saturating_sub(mono_ns) as f64 * 1e-9;
    now_unix - age
}

/// `vision.table_corners` as the detector takes them (the config crate has checked that there
/// are four, inside the frame, clockwise).
fn fixed_corners(config: &Config) -> Option<[[f32; 2]; 4]> {
    let c = config.vision.table_corners.as_ref()?;
    if c.len() != 4 {
        return None;
    }
    Some([0, 1, 2, 3].map(|i| [c[i][0] as f32, c[i][1] as f32]))
}

/// Two decimals are far below the detector's accuracy and keep the JSON short.
fn round2(v: f32) -> f32 {
    (v * 100.0).round() / 100.0
}
