//! shm-core: the shared-memory latest-frame channel between the video worker (the one writer)
//! and its consumers (vision and stream workers, benchmarks, tests).
//!
//! A segment is a POSIX shared-memory object (or, when `/dev/shm` is unusable, a file-backed
//! mapping) with a header, a fixed reader table and N slots; the layout is drawn in
//! [`layout`](crate::layout) docs. The writer never waits for readers: it writes the slot
//! after the latest under a seqlock, publishes the frame number and wakes sleeping readers
//! through a futex in the mapping. Readers copy out (validated by the seqlock) or look at the
//! slot in place and are told afterwards whether it was overwritten. A writer that restarts
//! reuses the segment, so readers simply read on; a segment that was unlinked and created anew
//! under the same name is followed with [`Reader::follow_replaced`], one policy for every
//! reader.
//!
//! This crate owns the layout, the lifecycle of segments (create, open, attach, unlink) and the
//! synchronisation. It knows nothing of cameras, images, JSON or processes beyond pids: the
//! payload is bytes plus a little metadata. All unsafe code and atomics live in `sys`.
//!
//! ```no_run
//! use shm_core::*;
//! use std::time::Duration;
//! let loc = SegmentLocation::new("demo", "/tmp")?;
//! let spec = SegmentSpec::frames(640, 480, 3);
//! create(&loc, &spec, CreateMode::ReplaceExisting)?;
//! let mut w = Writer::open(&loc, &spec)?;
//! let mut r = Reader::attach(&loc, AttachOptions::new("doc", Duration::from_secs(1)))?;
//! let frame = vec![0u8; 640 * 480 * 3];
//! w.publish(&frame, PublishMeta::bgr(640, 480, monotonic_ns()))?;
//! let mut buf = Vec::new();
//! assert!(r.wait_next(Duration::from_secs(1))?);
//! let meta = r.read_latest(&mut buf)?.unwrap();
//! assert_eq!(meta.frame_number, 1);
//! drop((w, r));
//! unlink(&loc)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod latency;
pub mod layout;
mod location;
mod monitor;
mod reader;
mod segment;
mod sys;
mod writer;

pub use error::{
    AttachError, CreateError, NameError, OpenError, PublishError, ReadError, UnlinkError,
};
pub use latency::LatencyWindow;
pub use location::{SegmentLocation, FORCE_FALLBACK_ENV};
pub use monitor::{Monitor, ReaderSnapshot, SegmentSnapshot};
pub use reader::{
    AttachOptions, FrameMeta, HeldFrame, Reader, ReaderStats, ZeroCopy, FOLLOW_INTERVAL,
};
pub use segment::{create, unlink, CreateMode, SegmentInfo};
pub use sys::FrameView;
pub use sys::{monotonic_ns, process_cpu_ns};
pub use writer::{PublishMeta, Writer, WriterState};

use serde::{Deserialize, Serialize};

/// What a slot's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u32)]
pub enum PixelFormat {
    /// Opaque bytes (e.g. the detections JSON).
    Bytes = 0,
    /// 8-bit BGR, 3 bytes per pixel (OpenCV's default).
    Bgr8 = 1,
    /// 8-bit grey, 1 byte per pixel.
    Gray8 = 2,
}

impl PixelFormat {
    /// The format stored as `v`, if any.
    pub fn from_u32(v: u32) -> Option<PixelFormat> {
        match v {
            0 => Some(PixelFormat::Bytes),
            1 => Some(PixelFormat::Bgr8),
            2 => Some(PixelFormat::Gray8),
            _ => None,
        }
    }

    /// Bytes per pixel, None for opaque bytes.
    pub fn bytes_per_pixel(self) -> Option<u32> {
        match self {
            PixelFormat::Bytes => None,
            PixelFormat::Bgr8 => Some(3),
            PixelFormat::Gray8 => Some(1),
        }
    }

    /// Bytes of a tightly packed `width` x `height` frame, None for opaque bytes.
    pub fn frame_bytes(self, width: u32, height: u32) -> Option<u64> {
        self.bytes_per_pixel()
            .map(|b| u64::from(width) * u64::from(height) * u64::from(b))
    }
}

/// Geometry of a segment: `slot_count` slots of `slot_capacity` bytes, plus the nominal frame
/// size and format that `status` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SegmentSpec {
    /// Number of slots (2 or more for a useful latest-frame channel).
    pub slot_count: u32,
    /// Bytes per slot.
    pub slot_capacity: usize,
    /// Nominal frame width (0 for byte channels).
    pub width: u32,
    /// Nominal frame height (0 for byte channels).
    pub height: u32,
    /// Payload format.
    pub format: PixelFormat,
}

impl SegmentSpec {
    /// A frame channel of `slots` BGR8 frames of `width` x `height`.
    pub fn frames(width: u32, height: u32, slots: u32) -> SegmentSpec {
        SegmentSpec {
            slot_count: slots,
            slot_capacity: width as usize * height as usize * 3,
            width,
            height,
            format: PixelFormat::Bgr8,
        }
    }

    /// A channel of `slots` opaque messages of at most `capacity` bytes.
    pub fn bytes(capacity: usize, slots: u32) -> SegmentSpec {
        SegmentSpec {
            slot_count: slots,
            slot_capacity: capacity,
            width: 0,
            height: 0,
            format: PixelFormat::Bytes,
        }
    }

    /// Total size of a segment with this spec, or 0 when the spec is impossible.
    pub fn segment_bytes(&self) -> usize {
        layout::Geometry::compute(self.slot_count, self.slot_capacity)
            .map(|g| g.total_bytes)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests;
