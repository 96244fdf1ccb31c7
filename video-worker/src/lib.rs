//! billiards-video-worker: captures frames from a camera, a video file or the synthetic
//! table and publishes them into the frame segment, of which it is the only writer.
//!
//! This crate owns the capture sources (OpenCV videoio for cameras and files, and the
//! [`synthetic`] renderer, which the vision worker's tests also use for ground truth), their
//! real-time pacing, resizing to the configured size, and the worker's lifecycle: signals,
//! exit codes, and whether the segment is unlinked on the way out.
//!
//! It does not know who reads the frames, how the supervisor restarts it, or the segment's
//! memory layout: all of that is behind `shm-core`'s [`shm_core::Writer`]. Under the
//! supervisor (`--supervised`) the segment already exists; standalone, the worker creates it
//! and unlinks it on exit.
//!
//! Exit codes (see [`config::exit_codes`]): 0 after SIGTERM/SIGINT or at the end of a
//! non-looping file; 2 for a bad configuration; 10 when the camera or file is unavailable (an
//! open failure, or [`DEFAULT_MAX_READ_FAILURES`] consecutive read failures, overridable with
//! `BILLIARDS_MAX_READ_FAILURES`); 12 when the segment is invalid; 1 otherwise. Before a
//! failure exit the worker prints one stderr line `exit-reason: <why>`, e.g.
//! `exit-reason: camera unavailable: /dev/video99: no such device`.

#![warn(missing_docs)]

pub mod calibrate;
pub mod calibration;
mod error;
mod pacing;
mod source;
pub mod synthetic;
mod worker;

pub use error::WorkerError;
pub use worker::{
    run, Finish, RunOptions, DEFAULT_MAX_READ_FAILURES, MAX_READ_FAILURES_ENV, STAMP_FRAMES_ENV,
};
