//! Frame sources: the synthetic table, a video file, a V4L2 camera. A source first waits for
//! and captures a frame ([`FrameSource::next`], outside the shared-memory slot), then writes
//! it straight into the slot the writer offers ([`FrameSource::fill`]).

mod controls;
mod opencv_source;
mod synthetic_source;
mod undistorted;

use std::sync::atomic::AtomicBool;

use std::path::Path;

use config::{Config, SourceKind};
use tracing::info;

use crate::calibration::{Calibration, CalibrationError, Remapper};
use crate::WorkerError;

pub(crate) use opencv_source::CvSource;
pub(crate) use synthetic_source::SyntheticSource;

/// What [`FrameSource::next`] found.
#[derive(Debug)]
pub(crate) enum Next {
    /// A frame is ready for [`FrameSource::fill`]; captured at `capture_ns` (CLOCK_MONOTONIC).
    Frame { capture_ns: u64 },
    /// A non-looping file ended.
    End,
    /// This read failed (counts towards the consecutive-failure limit).
    Failed(String),
    /// The source is gone for good (e.g. a file that no longer decodes).
    Unavailable(String),
    /// A stop was requested while waiting.
    Stopped,
}

/// A source of BGR8 frames of exactly the configured size.
pub(crate) trait FrameSource {
    /// How the source shows up in logs, e.g. `file /data/a.avi (640x360 @ 25 fps, looping)`.
    fn describe(&self) -> &str;
    /// What to call the source in `<kind> unavailable: <device>: <why>`.
    fn identity(&self) -> (&'static str, &str);
    /// Waits until the next frame is due (or available) and captures it.
    fn next(&mut self, stop: &AtomicBool) -> Next;
    /// Writes the captured frame into `slot` (exactly width * height * 3 bytes). An error
    /// abandons the slot: nothing is published.
    fn fill(&mut self, slot: &mut [u8]) -> Result<(), String>;
    /// Frames skipped since the last call because capture lagged.
    fn take_skipped(&mut self) -> u64;
}

/// Opens the configured source, undistorted when `[video.calibration]` names a file. Camera
/// and file failures are [`WorkerError::SourceUnavailable`]; the calibration is read and
/// checked first, so a bad one is reported even while the camera is missing.
pub(crate) fn open(config: &Config) -> Result<Box<dyn FrameSource>, WorkerError> {
    let v = &config.video;
    let undistort = if v.calibration.enabled() {
        let started = std::time::Instant::now();
        let file = Path::new(&v.calibration.file);
        let cal = Calibration::load(file)?;
        cal.check(file, v.calibration.model, v.width as i32, v.height as i32)?;
        let remap = Remapper::undistort(&cal, &v.calibration)?;
        info!(
            file = %file.display(),
            model = %v.calibration.model,
            framing = %v.calibration.framing,
            kernel = %remap.kernel(),
            took_ms = started.elapsed().as_millis() as u64,
            "undistortion maps computed"
        );
        Some(remap)
    } else {
        None
    };
    let source: Box<dyn FrameSource> = match v.source.kind {
        SourceKind::Synthetic => Box::new(SyntheticSource::new(v)?),
        SourceKind::File => Box::new(CvSource::open_file(v)?),
        SourceKind::Camera => Box::new(CvSource::open_camera(v)?),
    };
    Ok(match undistort {
        None => source,
        Some(remap) => {
            let what = format!(
                "{}, {}, framing {}",
                v.calibration.file, v.calibration.model, v.calibration.framing
            );
            Box::new(
                undistorted::Undistorted::new(source, remap, &what).map_err(|e| {
                    CalibrationError::Maps {
                        file: v.calibration.file.clone().into(),
                        why: e.message,
                    }
                })?,
            )
        }
    })
}
