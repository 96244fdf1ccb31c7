//! The worker side of supervision, defined once for the video, vision and stream workers:
//! the `exit-reason:` line the supervisor reads ([`fail`], [`exit_reason_line`]), logging set-up
//! with the worker's name as a field ([`init_logging`]), the stop flag set by SIGTERM/SIGINT
//! ([`stop`]), the parent-death watch ([`ParentWatch`]), waiting for the supervisor's start
//! time ([`wait_for_start`]) and the shared-memory segment names derived from the configuration
//! ([`segments`]), which the supervisor uses too.
//!
//! These are functions and types, not a framework that owns `main`: the three workers'
//! runtimes differ (a capture loop, a detection loop, a tokio server). This crate knows the
//! configuration, shm-core and the detections wire constants; it must not know OpenCV, tokio
//! or any one worker's logic.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use config::exit_codes::EXIT_REASON_TAG;

pub mod segments;
pub mod stop;

pub use segments::{detections_channel, frames_segment, Segment, SegmentNameError};

/// How often a supervised worker looks whether its supervisor is gone. The supervisor also
/// asks the kernel to kill its workers when it dies (`PR_SET_PDEATHSIG`); this watch covers a
/// supervisor started without that, and bounds how long a worker outlives it.
pub const PARENT_POLL: Duration = Duration::from_millis(100);

/// The longest start time in the future that [`wait_for_start`] obeys; anything further is
/// treated as a mistake and ignored.
pub const MAX_START_WAIT: Duration = Duration::from_secs(60);

/// Sets up `tracing` for a worker: to stderr, filtered by `RUST_LOG` (default `info`), colours
/// only on a terminal. Returns the span `worker{worker=NAME}` the caller enters (and, for a
/// multi-threaded runtime, enters on each of its threads) so every log line names the worker.
pub fn init_logging(worker: &'static str) -> tracing::Span {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // By default a failed log write is reported with eprintln!, which panics when stderr
        // is a closed pipe (`... 2>&1 | head`): a lost log line must not end the process.
        .log_internal_errors(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    tracing::info_span!("worker", worker)
}

/// The stderr line that tells the supervisor why a worker failed: the tag
/// [`EXIT_REASON_TAG`] and the reason, folded onto one line (the supervisor reads lines).
pub fn exit_reason_line(reason: &str) -> String {
    format!("{EXIT_REASON_TAG}{}", one_line(reason))
}

/// The reason with its line breaks folded to `; `, as the `exit-reason:` line carries it.
pub fn one_line(reason: &str) -> String {
    reason
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Logs the failure, prints the [`exit_reason_line`] on stderr and returns the exit code
/// (a code outside 0..=255 becomes 1, "any other failure").
pub fn fail(code: i32, reason: &str) -> ExitCode {
    let folded = one_line(reason);
    tracing::error!("{folded}");
    eprintln!("{EXIT_REASON_TAG}{folded}");
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Notices that the supervisor that started us is gone: our parent pid changes when the parent
/// dies (we are re-parented to init or a subreaper). Poll [`ParentWatch::gone`] at least every
/// [`PARENT_POLL`].
#[derive(Debug, Clone, Copy)]
pub struct ParentWatch {
    parent: nix::unistd::Pid,
}

impl ParentWatch {
    /// Remembers the current parent. `None` when not supervised: a worker started by hand has
    /// no supervisor to outlive.
    pub fn new(supervised: bool) -> Option<ParentWatch> {
        supervised.then(|| ParentWatch {
            parent: nix::unistd::getppid(),
        })
    }

    /// The parent's pid when the watch started.
    pub fn parent_pid(&self) -> i32 {
        self.parent.as_raw()
    }

    /// True once the parent we started under has died.
    pub fn gone(&self) -> bool {
        nix::unistd::getppid() != self.parent
    }
}

/// Honours the supervisor's start time (`config::START_AT_ENV`, a `CLOCK_MONOTONIC` time in
/// nanoseconds, set during a restart backoff): returns true at that time, or false when `stop`
/// was set first. An unusable value, or one more than [`MAX_START_WAIT`] away, is ignored with
/// a warning rather than obeyed.
pub fn wait_for_start(stop: &AtomicBool) -> bool {
    let Some(raw) = std::env::var_os(config::START_AT_ENV) else {
        return true;
    };
    let Some(at) = raw.to_str().and_then(|v| v.parse::<u64>().ok()) else {
        tracing::warn!(
            "ignoring {}={raw:?}: not a whole number",
            config::START_AT_ENV
        );
        return true;
    };
    let wait = at.saturating_sub(shm_core::monotonic_ns());
    if u128::from(wait) > MAX_START_WAIT.as_nanos() {
        tracing::warn!(
            "ignoring {}: {wait} ns away, more than a minute",
            config::START_AT_ENV
        );
        return true;
    }
    // Relaxed: the flag carries no data with it; we only need to see it eventually.
    while !stop.load(Ordering::Relaxed) {
        let left = at.saturating_sub(shm_core::monotonic_ns());
        if left == 0 {
            return true;
        }
        std::thread::sleep(Duration::from_nanos(left.min(20_000_000)));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_reason_line_is_one_line_after_the_tag() {
        assert_eq!(
            exit_reason_line("camera unavailable:\n/dev/video9: no such device\n"),
            "exit-reason: camera unavailable:; /dev/video9: no such device"
        );
        assert_eq!(exit_reason_line("plain"), "exit-reason: plain");
        assert!(!exit_reason_line("a\r\nb\n\nc").contains(['\n', '\r']));
    }

    #[test]
    fn an_unsupervised_worker_watches_no_parent_and_a_supervised_one_sees_its_parent_alive() {
        assert!(ParentWatch::new(false).is_none());
        let w = ParentWatch::new(true).expect("a watch");
        assert!(!w.gone());
        assert_eq!(w.parent_pid(), nix::unistd::getppid().as_raw());
    }

    #[test]
    fn a_set_stop_flag_ends_the_wait_for_a_start_time() {
        // Without the variable there is nothing to wait for; with a near start time and a set
        // flag the wait reports the stop. The variable is process-wide: both cases in one test.
        std::env::remove_var(config::START_AT_ENV);
        assert!(wait_for_start(&AtomicBool::new(false)));
        let soon = shm_core::monotonic_ns() + 5_000_000_000;
        std::env::set_var(config::START_AT_ENV, soon.to_string());
        assert!(!wait_for_start(&AtomicBool::new(true)));
        std::env::set_var(config::START_AT_ENV, "not a number");
        assert!(wait_for_start(&AtomicBool::new(true)));
        std::env::remove_var(config::START_AT_ENV);
    }
}
