//! The capture loop and the worker's lifecycle: open the source, open (or, standalone,
//! create) the frame segment, publish until stopped, and decide whether to unlink.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use billiards_supervised::{frames_segment, ParentWatch, Segment, PARENT_POLL};
use config::Config;
use nix::sys::signal::{SigSet, Signal};
use shm_core::{CreateMode, Monitor, PublishMeta, SegmentLocation, Writer};
use tracing::{debug, info, warn};

use crate::source::{self, FrameSource, Next};
use crate::WorkerError;

/// Consecutive read failures after which the source counts as unavailable.
pub const DEFAULT_MAX_READ_FAILURES: u32 = 30;
/// Environment variable that overrides [`DEFAULT_MAX_READ_FAILURES`].
pub const MAX_READ_FAILURES_ENV: &str = "BILLIARDS_MAX_READ_FAILURES";
/// Environment variable that, set to `1`, stamps each frame's number (little-endian u64) into
/// its first and last 8 bytes, so an outside reader (the chaos run) can prove it never gets a
/// frame mixed from two writes. Off by default: it changes two pixels at each end.
pub const STAMP_FRAMES_ENV: &str = "BILLIARDS_STAMP_FRAMES";

/// How long the capture loop gets to notice a stop before the guard ends the process.
const STOP_GRACE: Duration = Duration::from_millis(700);
/// Pause between failed reads, so a dead camera does not spin.
const FAILURE_PAUSE: Duration = Duration::from_millis(20);
/// Period of the debug stats line.
const STATS_EVERY: Duration = Duration::from_secs(10);

/// How the worker runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// Run under the supervisor: the segment exists already, and is unlinked on a clean
    /// stop only when the supervisor asked for a full stop.
    pub supervised: bool,
    /// Consecutive read failures that make the source unavailable (at least 1).
    pub max_read_failures: u32,
    /// Stamp frame numbers into the frames (see [`STAMP_FRAMES_ENV`]).
    pub stamp_frames: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            supervised: false,
            max_read_failures: DEFAULT_MAX_READ_FAILURES,
            stamp_frames: false,
        }
    }
}

/// Why the worker stopped cleanly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// SIGTERM or SIGINT.
    Stopped,
    /// A non-looping video file ended.
    EndOfFile,
    /// The supervisor that started us is gone (supervised mode only).
    SupervisorGone,
}

/// State shared with the stop guard thread.
struct Shared {
    /// `run` has returned (or is returning).
    done: AtomicBool,
    /// A standalone worker created the segment (so it may unlink it).
    created: AtomicBool,
    parent_gone: AtomicBool,
    frames: AtomicU64,
    dropped: AtomicU64,
    /// Held while a frame is being written into a slot, so the guard never ends the process
    /// in the middle of a publish (which would leave the slot's sequence odd).
    publishing: Mutex<()>,
}

struct DoneOnDrop(Arc<Shared>);

impl Drop for DoneOnDrop {
    fn drop(&mut self) {
        self.0.done.store(true, Ordering::SeqCst);
    }
}

/// Unlinks a segment a standalone worker created, on every way out of `run`.
struct CreatedSegment(SegmentLocation);

impl Drop for CreatedSegment {
    fn drop(&mut self) {
        match shm_core::unlink(&self.0) {
            Ok(_) => debug!(segment = self.0.name(), "frame segment unlinked"),
            Err(e) => warn!("{e}"),
        }
    }
}

/// Watches for a stop (signal, or the supervisor gone) and, if the capture loop is stuck in
/// a blocking capture call for longer than [`STOP_GRACE`], ends the process itself: waits for
/// any publish in flight, unlinks a segment we created, exits 0.
fn spawn_stop_guard(
    stop: &'static AtomicBool,
    shared: Arc<Shared>,
    loc: SegmentLocation,
    standalone: bool,
    parent: Option<ParentWatch>,
) {
    let spawned = std::thread::Builder::new()
        .name("stop-guard".into())
        .spawn(move || {
            // Leave the signals to the capture thread, whose blocking calls they interrupt.
            let mut set = SigSet::empty();
            set.add(Signal::SIGTERM);
            set.add(Signal::SIGINT);
            let _ = set.thread_block();
            loop {
                if shared.done.load(Ordering::SeqCst) {
                    return;
                }
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Some(watch) = parent {
                    if watch.gone() {
                        warn!(
                            supervisor_pid = watch.parent_pid(),
                            "the supervisor is gone; stopping"
                        );
                        shared.parent_gone.store(true, Ordering::SeqCst);
                        stop.store(true, Ordering::SeqCst);
                        break;
                    }
                }
                std::thread::sleep(PARENT_POLL);
            }
            let deadline = Instant::now() + STOP_GRACE;
            while Instant::now() < deadline {
                if shared.done.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _publishing = shared.publishing.lock().unwrap_or_else(|p| p.into_inner());
            if shared.done.load(Ordering::SeqCst) {
                return;
            }
            if standalone && shared.created.load(Ordering::SeqCst) {
                if let Err(e) = shm_core::unlink(&loc) {
                    warn!("{e}");
                }
            }
            warn!(
                frames = shared.frames.load(Ordering::Relaxed),
                dropped = shared.dropped.load(Ordering::Relaxed),
                "capture did not return within {} ms of the stop request; exiting without it",
                STOP_GRACE.as_millis()
            );
            // SAFETY: _exit ends the process at once. Unlike exit(), it runs no atexit handlers
            // or C++ static destructors, which could race with OpenCV code still running on
            // the capture thread. No publish is in flight (we hold the publishing lock).
            unsafe { libc::_exit(config::exit_codes::OK) }
        });
    if let Err(e) = spawned {
        warn!("cannot start the stop guard thread ({e}); a blocked camera may delay stopping");
    }
}

/// Captures and publishes until stopped. `stop` is set by the signal handlers (see
/// [`billiards_supervised::stop::install`]); it is polled between frames and while pacing, so a stop
/// takes effect within a frame period (at most ~1 s even if a capture call blocks).
pub fn run(
    config: &Config,
    opts: &RunOptions,
    stop: &'static AtomicBool,
) -> Result<Finish, WorkerError> {
    let v = &config.video;
    let Segment {
        location: loc,
        spec,
    } = frames_segment(config)?;
    let standalone = !opts.supervised;
    let shared = Arc::new(Shared {
        done: AtomicBool::new(false),
        created: AtomicBool::new(false),
        parent_gone: AtomicBool::new(false),
        frames: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        publishing: Mutex::new(()),
    });
    let _done = DoneOnDrop(shared.clone());
    let parent = ParentWatch::new(opts.supervised);
    spawn_stop_guard(stop, shared.clone(), loc.clone(), standalone, parent);
    info!(
        source = %v.source.kind,
        segment = v.shm_name.as_str(),
        size = %format!("{}x{}", v.width, v.height),
        fps = v.fps,
        slots = v.slots,
        supervised = opts.supervised,
        "video worker starting"
    );
    let finish = |shared: &Shared| {
        if shared.parent_gone.load(Ordering::SeqCst) {
            Finish::SupervisorGone
        } else {
            Finish::Stopped
        }
    };

    let mut source = source::open(config)?;
    if stop.load(Ordering::SeqCst) {
        return Ok(finish(&shared));
    }

    let mut created = None;
    if standalone {
        if let Ok(m) = Monitor::open(&loc) {
            let w = m.writer();
            if w.alive && w.pid != 0 && w.pid != std::process::id() {
                return Err(WorkerError::InUse {
                    name: v.shm_name.clone(),
                    pid: w.pid,
                });
            }
        }
        shm_core::create(&loc, &spec, CreateMode::ReplaceExisting)?;
        created = Some(CreatedSegment(loc.clone()));
        shared.created.store(true, Ordering::SeqCst);
    }
    let mut writer = Writer::open(&loc, &spec)?;
    info!(
        path = %writer.info().path.display(),
        fallback = writer.info().fallback,
        generation = writer.generation(),
        next_frame = writer.next_frame_number(),
        source = source.describe(),
        "publishing frames"
    );

    let mut stats = LoopStats::new();
    let result = capture(
        &mut writer,
        source.as_mut(),
        stop,
        opts,
        &shared,
        &mut stats,
    );
    let unlink = result.is_ok() && opts.supervised && writer.stop_requested();
    drop(writer);
    stats.log_final(source.describe(), &result);
    if unlink {
        match shm_core::unlink(&loc) {
            Ok(_) => info!(
                segment = loc.name(),
                "full stop requested: frame segment unlinked"
            ),
            Err(e) => warn!("{e}"),
        }
    }
    drop(created);
    result.map(|r| match r {
        Finish::Stopped => finish(&shared),
        other => other,
    })
}

/// Counters and timings of the loop, for the logs.
struct LoopStats {
    started: Instant,
    cpu_start_ns: u64,
    frames: u64,
    dropped: u64,
    publish_ns: u64,
    fill_ns: u64,
    window_start: Instant,
    window_frames: u64,
}

impl LoopStats {
    fn new() -> Self {
        LoopStats {
            started: Instant::now(),
            cpu_start_ns: shm_core::process_cpu_ns(),
            frames: 0,
            dropped: 0,
            publish_ns: 0,
            fill_ns: 0,
            window_start: Instant::now(),
            window_frames: 0,
        }
    }

    fn tick(&mut self) {
        self.window_frames += 1;
        let span = self.window_start.elapsed();
        if span >= STATS_EVERY {
            debug!(
                fps = (self.window_frames as f64 / span.as_secs_f64() * 10.0).round() / 10.0,
                frames = self.frames,
                dropped = self.dropped,
                "capture stats"
            );
            self.window_start = Instant::now();
            self.window_frames = 0;
        }
    }

    fn log_final(&self, source: &str, result: &Result<Finish, WorkerError>) {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let cpu_ns = shm_core::process_cpu_ns().saturating_sub(self.cpu_start_ns);
        let per = |ns: u64| {
            if self.frames == 0 {
                0.0
            } else {
                ns as f64 / self.frames as f64 / 1000.0
            }
        };
        let how = match result {
            Ok(Finish::Stopped) => billiards_supervised::stop::received()
                .map_or("stop requested".to_string(), |s| format!("{s} received")),
            Ok(Finish::EndOfFile) => "end of the video file".into(),
            Ok(Finish::SupervisorGone) => "supervisor gone".into(),
            Err(_) => "failure".into(),
        };
        let round = |x: f64, digits: i32| (x * 10f64.powi(digits)).round() / 10f64.powi(digits);
        info!(
            frames = self.frames,
            dropped = self.dropped,
            seconds = round(secs, 1),
            fps = round(self.frames as f64 / secs, 2),
            cpu_percent = round(cpu_ns as f64 / 1e9 / secs * 100.0, 2),
            fill_us_per_frame = round(per(self.fill_ns), 0),
            publish_overhead_us_per_frame =
                round(per(self.publish_ns.saturating_sub(self.fill_ns)), 1),
            source,
            "video worker stopped: {how}"
        );
    }
}

fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= end {
            return;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

fn capture(
    writer: &mut Writer,
    source: &mut dyn FrameSource,
    stop: &AtomicBool,
    opts: &RunOptions,
    shared: &Shared,
    stats: &mut LoopStats,
) -> Result<Finish, WorkerError> {
    let info = writer.info();
    let (w, h) = (info.spec.width, info.spec.height);
    let frame_len = w as usize * h as usize * 3;
    let max_failures = opts.max_read_failures.max(1);
    let mut consecutive = 0u32;
    let unavailable = |source: &dyn FrameSource, why: String| -> WorkerError {
        let (kind, device) = source.identity();
        WorkerError::SourceUnavailable {
            kind,
            device: device.to_string(),
            why,
        }
    };
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(Finish::Stopped);
        }
        let next = source.next(stop);
        let skipped = source.take_skipped();
        if skipped > 0 {
            writer.add_dropped(skipped);
            stats.dropped += skipped;
            shared.dropped.store(stats.dropped, Ordering::Relaxed);
            debug!(skipped, "capture lagged; frames skipped");
        }
        let failure = match next {
            Next::Stopped => return Ok(Finish::Stopped),
            Next::End => return Ok(Finish::EndOfFile),
            Next::Unavailable(why) => return Err(unavailable(source, why)),
            Next::Failed(why) => Some(why),
            Next::Frame { capture_ns } => {
                let meta = PublishMeta::bgr(w, h, capture_ns);
                let mut fill_error = None;
                let mut fill_ns = 0u64;
                let t0 = Instant::now();
                let number = writer.next_frame_number();
                let published = {
                    let _publishing = shared.publishing.lock().unwrap_or_else(|p| p.into_inner());
                    writer.publish_with(meta, |slot| {
                        let t = Instant::now();
                        let r = match slot.get_mut(..frame_len) {
                            Some(s) => source.fill(s),
                            None => Err(format!(
                                "slot holds {} bytes, a frame needs {frame_len}",
                                slot.len()
                            )),
                        };
                        fill_ns = t.elapsed().as_nanos() as u64;
                        match r {
                            Ok(()) => {
                                if opts.stamp_frames && frame_len >= 16 {
                                    slot[..8].copy_from_slice(&number.to_le_bytes());
                                    slot[frame_len - 8..frame_len]
                                        .copy_from_slice(&number.to_le_bytes());
                                }
                                frame_len
                            }
                            Err(e) => {
                                fill_error = Some(e);
                                // Nothing is published when fill reports 0 bytes of a frame.
                                0
                            }
                        }
                    })
                };
                stats.publish_ns += t0.elapsed().as_nanos() as u64;
                stats.fill_ns += fill_ns;
                match (published, fill_error) {
                    (_, Some(why)) => Some(why),
                    (Ok(_), None) => {
                        consecutive = 0;
                        stats.frames += 1;
                        shared.frames.store(stats.frames, Ordering::Relaxed);
                        stats.tick();
                        None
                    }
                    (Err(e), None) => return Err(e.into()),
                }
            }
        };
        if let Some(why) = failure {
            if stop.load(Ordering::Relaxed) {
                // A blocking read interrupted by the stop signal is not a camera failure.
                return Ok(Finish::Stopped);
            }
            consecutive += 1;
            writer.add_dropped(1);
            writer.heartbeat();
            stats.dropped += 1;
            shared.dropped.store(stats.dropped, Ordering::Relaxed);
            if consecutive == 1 {
                warn!(reason = why.as_str(), "read failed");
            } else {
                debug!(reason = why.as_str(), consecutive, "read failed again");
            }
            if consecutive >= max_failures {
                return Err(unavailable(
                    source,
                    format!("{consecutive} consecutive read failures (last: {why})"),
                ));
            }
            sleep_unless_stopped(FAILURE_PAUSE, stop);
        }
    }
}
