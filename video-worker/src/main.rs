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
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Computes a lens calibration from chessboard photos and writes it for
    /// [video.calibration] (code in the library's `calibrate` module).
    Calibrate(CalibrateArgs),
}

#[derive(Debug, clap::Args)]
struct CalibrateArgs {
    /// Directory of photos of the chessboard, taken with the camera at its running size.
    #[arg(long, value_name = "DIR")]
    images: PathBuf,
    /// Inner corners of the board, COLSxROWS (9x6 for a board of 10 by 7 squares).
    #[arg(long, value_name = "COLSxROWS")]
    board: billiards_video_worker::calibrate::Board,
    /// Side of one square in millimetres.
    #[arg(long, value_name = "S")]
    square_mm: f64,
    /// Lens model to fit.
    #[arg(long, value_enum, default_value = "pinhole")]
    model: Model,
    /// Calibration file to write (.yaml, .yml or .json).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Model {
    Pinhole,
    Fisheye,
}

fn calibrate(args: CalibrateArgs) -> ExitCode {
    use billiards_video_worker::calibrate;
    let opts = calibrate::CalibrateOptions {
        images: args.images,
        board: args.board,
        square_mm: args.square_mm,
        model: match args.model {
            Model::Pinhole => config::LensModel::Pinhole,
            Model::Fisheye => config::LensModel::Fisheye,
        },
        out: args.out,
    };
    match calibrate::run(&opts) {
        Ok(r) => {
            let k = &r.calibration.camera_matrix;
            println!("images with a board: {} of {}", r.used, r.total);
            println!("RMS reprojection error: {:.4} px", r.rms);
            println!(
                "fx = {:.3}, fy = {:.3}, cx = {:.3}, cy = {:.3}, image {}x{}",
                k[0], k[4], k[2], k[5], r.calibration.image_width, r.calibration.image_height
            );
            println!("dist_coeffs = {:?}", r.calibration.dist_coeffs);
            println!(
                "written to {} (set [video.calibration] file = {:?}, model = \"{}\")",
                opts.out.display(),
                opts.out.display().to_string(),
                opts.model
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!("calibrate: {e}");
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
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
    if let Some(Command::Calibrate(c)) = args.command {
        return calibrate(c);
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
