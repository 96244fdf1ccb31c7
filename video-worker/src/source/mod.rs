//! Frame sources: the synthetic table, a video file, a V4L2 camera. A source first waits for
//! and captures a frame ([`FrameSource::next`], outside the shared-memory slot), then writes
//! it straight into the slot the writer offers ([`FrameSource::fill`]).

mod opencv_source;
mod synthetic_source;

use std::sync::atomic::AtomicBool;

use config::{Config, SourceKind};

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

/// Opens the configured source. Camera and file failures are
/// [`WorkerError::SourceUnavailable`].
pub(crate) fn open(config: &Config) -> Result<Box<dyn FrameSource>, WorkerError> {
    let v = &config.video;
    Ok(match v.source.kind {
        SourceKind::Synthetic => Box::new(SyntheticSource::new(v)?),
        SourceKind::File => Box::new(CvSource::open_file(v)?),
        SourceKind::Camera => Box::new(CvSource::open_camera(v)?),
    })
}
