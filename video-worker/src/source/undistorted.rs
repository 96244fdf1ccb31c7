//! Lens undistortion of any source: the source writes its frame into a private buffer, and
//! the remap writes the corrected frame into the slot (the only copy of the frame into
//! shared memory).

use std::sync::atomic::AtomicBool;

use opencv::core::{Mat, Scalar, CV_8UC3};
use opencv::prelude::*;

use super::{FrameSource, Next};
use crate::calibration::Remapper;

pub(crate) struct Undistorted {
    inner: Box<dyn FrameSource>,
    remap: Remapper,
    /// The source's frame before correction. Its address never changes, so sources that
    /// cache per-slot state (the synthetic renderer, the capture headers) keep one entry.
    raw: Mat,
    description: String,
}

impl Undistorted {
    pub(crate) fn new(
        inner: Box<dyn FrameSource>,
        remap: Remapper,
        what: &str,
    ) -> opencv::Result<Self> {
        let raw = Mat::new_rows_cols_with_default(
            remap.height(),
            remap.width(),
            CV_8UC3,
            Scalar::all(0.0),
        )?;
        let description = format!("{}, undistorted ({what})", inner.describe());
        Ok(Undistorted {
            inner,
            remap,
            raw,
            description,
        })
    }
}

impl FrameSource for Undistorted {
    fn describe(&self) -> &str {
        &self.description
    }

    fn identity(&self) -> (&'static str, &str) {
        self.inner.identity()
    }

    fn next(&mut self, stop: &AtomicBool) -> Next {
        self.inner.next(stop)
    }

    fn fill(&mut self, slot: &mut [u8]) -> Result<(), String> {
        let raw = self
            .raw
            .data_bytes_mut()
            .map_err(|e| format!("cannot reach the undistortion buffer: {}", e.message))?;
        self.inner.fill(raw)?;
        self.remap.remap_into(&self.raw, slot)
    }

    fn take_skipped(&mut self) -> u64 {
        self.inner.take_skipped()
    }
}
