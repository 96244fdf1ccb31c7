//! `billiards-video-worker`: captures frames into the frame segment. See the library crate
//! for what it does; this file parses arguments, sets up logging and maps errors to exit
//! codes.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use billiards_video_worker::{
    run, signals, Finish, RunOptions, DEFAULT_MAX_READ_FAILURES, MAX_READ_FAILURES_ENV,
};
use clap::Parser;
use config::exit_codes;
use tracing::{error, info};

/// Captures frames from a camera, a video file or a synthetic table into shared memory.
#[derive(Debug, Parser)]
#[command(name = "billiards-video-worker", version)]
struct Args {
    /// Configuration file (default: $BILLIARDS_CONFIG, ./billiards.toml, built-in defaults).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Started by the supervisor: the frame segment already exists.
    #[arg(long)]
    supervised: bool,
    /// Consecutive read failures after which the source counts as unavailable
    /// (default: $BILLIARDS_MAX_READ_FAILURES or 30).
    #[arg(long, value_name = "N", hide = true)]
    max_read_failures: Option<u32>,
}

fn init_logging() {
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
}

/// Prints the failure the way the supervisor reads it and returns the exit code.
fn fail(code: i32, reason: &str) -> ExitCode {
    let one_line = reason.replace('\n', "; ");
    error!("{one_line}");
    eprintln!("{}{one_line}", exit_codes::EXIT_REASON_TAG);
    ExitCode::from(code as u8)
}

fn max_read_failures(flag: Option<u32>) -> anyhow::Result<u32> {
    if let Some(n) = flag {
        return Ok(n.max(1));
    }
    match std::env::var(MAX_READ_FAILURES_ENV) {
        Ok(v) if !v.is_empty() => {
            v.trim().parse::<u32>().map(|n| n.max(1)).with_context(|| {
                format!("{MAX_READ_FAILURES_ENV}={v:?}: must be a positive integer")
            })
        }
        _ => Ok(DEFAULT_MAX_READ_FAILURES),
    }
}

/// Honours the supervisor's start time (see `config::START_AT_ENV`); false when a stop signal
/// came first. An unusable or far-off value is ignored with a warning rather than obeyed.
fn wait_for_start(stop: &std::sync::atomic::AtomicBool) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
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
    if wait > 60_000_000_000 {
        tracing::warn!(
            "ignoring {}: {wait} ns away, more than a minute",
            config::START_AT_ENV
        );
        return true;
    }
    while !stop.load(Relaxed) {
        let left = at.saturating_sub(shm_core::monotonic_ns());
        if left == 0 {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_nanos(left.min(20_000_000)));
    }
    false
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    let span = tracing::info_span!("worker", worker = "video");
    let _span = span.enter();
    if std::env::var_os("OPENCV_LOG_LEVEL").is_none() {
        // Our own messages say what failed; OpenCV's warnings would only repeat it.
        let _ = opencv::core::set_log_level(opencv::core::LogLevel::LOG_LEVEL_ERROR);
    }

    let stop = match signals::install() {
        Ok(s) => s,
        Err(e) => {
            return fail(
                exit_codes::FAILURE,
                &format!("cannot install signal handlers: {e}"),
            )
        }
    };
    let loaded = match config::load(args.config.as_deref()) {
        Ok(l) => l,
        Err(e) => return fail(exit_codes::USAGE, &format!("invalid configuration: {e}")),
    };
    let max_read_failures = match max_read_failures(args.max_read_failures) {
        Ok(n) => n,
        Err(e) => return fail(exit_codes::USAGE, &format!("{e:#}")),
    };
    info!(config = %loaded.origin.display(), "configuration loaded");
    let opts = RunOptions {
        supervised: args.supervised,
        max_read_failures,
        stamp_frames: std::env::var(billiards_video_worker::STAMP_FRAMES_ENV)
            .is_ok_and(|v| v == "1"),
    };
    if !wait_for_start(stop) {
        info!("stopped during the restart backoff, before opening the source");
        return ExitCode::SUCCESS;
    }
    match run(&loaded.config, &opts, stop) {
        Ok(Finish::EndOfFile) => {
            info!("end of the video file (video.source.loop = false); exiting");
            ExitCode::SUCCESS
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(e.exit_code(), &e.to_string()),
    }
}
