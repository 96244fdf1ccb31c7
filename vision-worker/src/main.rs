//! `billiards-vision-worker`: table and ball detection on the frames in shared memory. See the
//! library crate for what it does; this file parses arguments, sets up logging and maps errors
//! to exit codes:
//!
//! | code | when |
//! |---|---|
//! | 0 | stopped by SIGTERM/SIGINT |
//! | 2 | bad configuration or arguments |
//! | 11 | the frame segment did not appear within `video.attach_timeout_sec` |
//! | 12 | a segment is invalid (bad magic, version, sizes, or contents) |
//! | 1 | anything else |
//!
//! A failure exit first prints one stderr line `exit-reason: <why>`.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use billiards_supervised::fail;
use billiards_supervised::stop::{self, BlockedCalls};
use billiards_vision_worker::worker::{run, RunOptions};
use clap::Parser;
use config::exit_codes;
use tracing::info;

/// Detects the table and the balls in the frames of the frame segment and publishes them on
/// the detections channel.
#[derive(Debug, Parser)]
#[command(name = "billiards-vision-worker", version)]
struct Args {
    /// Configuration file (default: $BILLIARDS_CONFIG, ./billiards.toml, built-in defaults).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Started by the supervisor: the detections channel already exists.
    #[arg(long)]
    supervised: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let span = billiards_supervised::init_logging("vision");
    let _span = span.enter();
    if std::env::var_os("OPENCV_LOG_LEVEL").is_none() {
        let _ = opencv::core::set_log_level(opencv::core::LogLevel::LOG_LEVEL_ERROR);
    }
    // SA_RESTART: the loop's waits are timed (at most 100 ms), so it sees the flag soon anyway.
    let stop = match stop::install(BlockedCalls::Restart) {
        Ok(s) => s,
        Err(e) => return fail(exit_codes::FAILURE, &e.to_string()),
    };
    let loaded = match config::load(args.config.as_deref()) {
        Ok(l) => l,
        Err(e) => return fail(exit_codes::USAGE, &format!("invalid configuration: {e}")),
    };
    info!(config = %loaded.origin.display(), supervised = args.supervised, "configuration loaded");
    let opts = RunOptions {
        supervised: args.supervised,
    };
    match run(&loaded.config, &opts, stop) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(e.exit_code(), &e.to_string()),
    }
}
