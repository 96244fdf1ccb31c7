//! `billiards-video-worker`: captures frames into the frame segment. See the library crate
//! for what it does; this file parses arguments, sets up logging and maps errors to exit
//! codes.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use billiards_supervised::stop::{self, BlockedCalls};
use billiards_supervised::{fail, wait_for_start};
use billiards_video_worker::{
    run, Finish, RunOptions, DEFAULT_MAX_READ_FAILURES, MAX_READ_FAILURES_ENV,
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

fn main() -> ExitCode {
    let args = Args::parse();
    let span = billiards_supervised::init_logging("video");
    let _span = span.enter();
    if std::env::var_os("OPENCV_LOG_LEVEL").is_none() {
        // Our own messages say what failed; OpenCV's warnings would only repeat it.
        let _ = opencv::core::set_log_level(opencv::core::LogLevel::LOG_LEVEL_ERROR);
    }
    if let Some(Command::Calibrate(c)) = args.command {
        return calibrate(c);
    }

    // No SA_RESTART: a capture call blocked in a system call (a camera's `select`) returns
    // with EINTR, so the loop notices the stop sooner.
    let stop = match stop::install(BlockedCalls::Interrupt) {
        Ok(s) => s,
        Err(e) => return fail(exit_codes::FAILURE, &e.to_string()),
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
