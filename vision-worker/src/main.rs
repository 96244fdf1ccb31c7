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

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use billiards_vision_worker::signals;
use billiards_vision_worker::worker::{run, RunOptions};
use clap::Parser;
use config::exit_codes;
use tracing::{error, info};

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

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    let span = tracing::info_span!("worker", worker = "vision");
    let _span = span.enter();
    if std::env::var_os("OPENCV_LOG_LEVEL").is_none() {
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
    info!(config = %loaded.origin.display(), supervised = args.supervised, "configuration loaded");
    let opts = RunOptions {
        supervised: args.supervised,
    };
    match run(&loaded.config, &opts, stop) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(e.exit_code(), &e.to_string()),
    }
}
