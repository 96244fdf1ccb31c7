//! A stand-in worker with scripted behaviour, used only by the supervisor's process tests for
//! what the real workers cannot be made to do on purpose. Its role comes from the name it is
//! run under (`billiards-video-worker`, ... via symlinks); it takes the workers' arguments
//! (`--config PATH --supervised`).
//!
//! - video: publishes blank frames at `video.fps` to the existing frame segment; a camera
//!   source exits 10 with an `exit-reason:` line, like the real worker; on SIGTERM it exits 0,
//!   unlinking the segment when the supervisor asked for a full stop.
//! - vision/stream: attach as readers and read every frame (heartbeating) until SIGTERM.
//! - `FAKE_IGNORE_SIGTERM=<role>[,<role>]`: that role ignores SIGTERM (tests the SIGKILL grace).
//! - `FAKE_EXIT_AFTER_MS=<role>:<ms>`: that role exits 0 by itself after so long.
//! - `FAKE_CHATTER=<role>[,<role>]`: that role writes 200-byte lines to stderr without pause
//!   (tests a supervisor whose own stderr is not read).
//! - `FAKE_GRANDCHILD=<role>[,<role>]`: that role starts `sleep 1000` in its process group,
//!   holding its output pipes, and prints `grandchild pid N`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use billiards_supervised::stop::BlockedCalls;
use nix::sys::signal::{signal, SigHandler, Signal};
use shm_core::{AttachOptions, PublishMeta, Reader, SegmentLocation, SegmentSpec, Writer};

/// Never set: the stop flag of a role that ignores SIGTERM.
static NEVER: AtomicBool = AtomicBool::new(false);

fn role() -> String {
    let argv0 = std::env::args().next().unwrap_or_default();
    let name = PathBuf::from(argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for r in ["video", "vision", "stream"] {
        if name.contains(r) {
            return r.to_string();
        }
    }
    "video".to_string()
}

fn env_has_role(var: &str, role: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v.split(',').any(|r| r.trim() == role))
}

fn exit_after(role: &str) -> Option<Duration> {
    let v = std::env::var("FAKE_EXIT_AFTER_MS").ok()?;
    let (r, ms) = v.split_once(':')?;
    (r == role).then(|| ms.parse().ok().map(Duration::from_millis))?
}

fn main() {
    let role = role();
    let args: Vec<String> = std::env::args().collect();
    let config_path = args
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let loaded = match config::load(config_path.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fake {role}: exit-reason: {e}");
            std::process::exit(config::exit_codes::USAGE);
        }
    };
    let c = loaded.config;
    let term: &'static AtomicBool = if env_has_role("FAKE_IGNORE_SIGTERM", &role) {
        // SAFETY: SIG_IGN installs no handler code, so nothing can run in signal context.
        unsafe { signal(Signal::SIGTERM, SigHandler::SigIgn) }.expect("ignore SIGTERM");
        &NEVER
    } else {
        billiards_supervised::stop::install(BlockedCalls::Restart).expect("install SIGTERM")
    };
    let loc = SegmentLocation::new(&c.video.shm_name, c.shm_fallback_dir()).expect("segment name");
    let started = Instant::now();
    let done = |t: &Instant| {
        term.load(Ordering::SeqCst) || exit_after(&role).is_some_and(|d| t.elapsed() >= d)
    };
    eprintln!("fake {role} worker running (pid {})", std::process::id());
    if env_has_role("FAKE_CHATTER", &role) {
        std::thread::spawn(|| {
            let line = "x".repeat(200);
            loop {
                eprintln!("chatter {line}");
            }
        });
    }
    if env_has_role("FAKE_GRANDCHILD", &role) {
        // Inherits our stdout/stderr (the supervisor's pipes) and our process group.
        match std::process::Command::new("sleep").arg("1000").spawn() {
            Ok(c) => eprintln!("grandchild pid {}", c.id()),
            Err(e) => eprintln!("cannot start the grandchild: {e}"),
        }
    }
    if role == "video" {
        if c.video.source.kind == config::SourceKind::Camera {
            eprintln!(
                "ERROR fake video: exit-reason: camera unavailable: {}: the fake worker has no cameras",
                c.video.source.camera_device()
            );
            std::process::exit(config::exit_codes::SOURCE_UNAVAILABLE);
        }
        let spec = SegmentSpec::frames(c.video.width, c.video.height, c.video.slots);
        let mut w = Writer::open(&loc, &spec).expect("open the frame segment as writer");
        let frame = vec![0u8; spec.slot_capacity];
        let period = Duration::from_secs_f64(1.0 / f64::from(c.video.fps));
        while !done(&started) {
            let capture = shm_core::monotonic_ns();
            w.publish(
                &frame,
                PublishMeta::bgr(c.video.width, c.video.height, capture),
            )
            .expect("publish");
            std::thread::sleep(period);
        }
        if w.stop_requested() {
            drop(w);
            let _ = shm_core::unlink(&loc);
        }
    } else {
        let timeout = Duration::from_secs_f64(c.video.attach_timeout_sec);
        let mut r = match Reader::attach(&loc, AttachOptions::new(&role, timeout)) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("fake {role}: exit-reason: {e}");
                std::process::exit(config::exit_codes::VIDEO_NOT_AVAILABLE);
            }
        };
        let mut buf = Vec::new();
        while !done(&started) {
            if r.wait_next(Duration::from_millis(100)).unwrap_or(false) {
                let _ = r.read_latest(&mut buf);
            }
        }
    }
    eprintln!("fake {role} worker exiting");
}
