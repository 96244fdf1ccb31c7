//! Zero-copy reads that span more than a closure: a slot held in place and checked when it is
//! released. Made for callers that cannot run their work inside
//! [`Reader::read_zero_copy`]'s closure, such as a Python `with` block.

use std::sync::Arc;

use super::{Peek, Reader, COPY_ATTEMPTS};
use crate::sys::{self, FrameView, Mapping};
use crate::{FrameMeta, ReadError, ZeroCopy};

/// A frame looked at in place, from [`Reader::hold_latest`] until [`Reader::release`].
///
/// It owns a reference to the whole mapping, so the memory behind [`HeldFrame::view`] stays
/// mapped for as long as this value or a clone lives, even after the reader is dropped: a
/// pointer taken from the view can never dangle while its `HeldFrame` is kept alongside it.
/// The bytes are trustworthy only while the writer has not lapped the reader, which
/// [`HeldFrame::is_intact`] and [`Reader::release`] tell; the payload is mapped read-only.
#[derive(Clone)]
pub struct HeldFrame {
    map: Arc<Mapping>,
    slot: usize,
    seq: u64,
    meta: FrameMeta,
    held_ns: u64,
}

impl std::fmt::Debug for HeldFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldFrame")
            .field("slot", &self.slot)
            .field("seq", &self.seq)
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl HeldFrame {
    /// The frame's metadata (read and validated when it was held).
    pub fn meta(&self) -> &FrameMeta {
        &self.meta
    }

    /// The payload in place. Its pointer stays valid for as long as this `HeldFrame` lives.
    pub fn view(&self) -> FrameView<'_> {
        self.map.view(self.slot, self.meta.len, self.meta)
    }

    /// Whether the writer has not touched the slot since it was held: everything read from
    /// the view so far is the frame of [`HeldFrame::meta`].
    pub fn is_intact(&self) -> bool {
        sys::seq_read_validate(self.map.slot_meta(self.slot), self.seq)
    }
}

impl Reader {
    /// Holds the newest frame in place for a zero-copy read that ends with
    /// [`Reader::release`]. `Ok(None)` when no frame newer than the last one read is there, or
    /// when the writer kept rewriting the slot before it could be held. Nothing of the payload
    /// is read here: the slot's sequence and metadata are checked, and the payload is judged
    /// at release.
    pub fn hold_latest(&mut self) -> Result<Option<HeldFrame>, ReadError> {
        for _ in 0..COPY_ATTEMPTS {
            let (slot, seq, meta) = match self.peek_latest()? {
                Peek::Nothing => return Ok(None),
                Peek::Torn { .. } => {
                    self.torn();
                    continue;
                }
                Peek::Frame { slot, seq, meta } => (slot, seq, meta),
            };
            return Ok(Some(HeldFrame {
                map: Arc::clone(&self.map),
                slot,
                seq,
                meta,
                held_ns: sys::monotonic_ns(),
            }));
        }
        Ok(None)
    }

    /// Ends a zero-copy read begun by [`Reader::hold_latest`]: `Intact` when the slot was not
    /// written meanwhile (the frame counts as read), else `Overwritten` (the frame counts as
    /// missed and whatever was computed from it must be discarded). The held frame's memory
    /// stays mapped either way.
    pub fn release(&mut self, held: &HeldFrame) -> ZeroCopy<()> {
        let meta = held.meta;
        if held.is_intact() {
            self.delivered(&meta, held.held_ns);
            ZeroCopy::Intact { meta, value: () }
        } else {
            self.lost(meta.frame_number);
            ZeroCopy::Overwritten {
                frame_number: meta.frame_number,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::*;

    fn segment(name: &str) -> (SegmentLocation, SegmentSpec, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let loc = SegmentLocation::new(name, dir.path()).unwrap();
        let spec = SegmentSpec::frames(16, 8, 2);
        create(&loc, &spec, CreateMode::ReplaceExisting).unwrap();
        (loc, spec, dir)
    }

    fn frame(fill: u8) -> Vec<u8> {
        vec![fill; 16 * 8 * 3]
    }

    #[test]
    fn held_frame_is_intact_until_the_writer_laps_it() {
        let (loc, spec, _dir) = segment(&format!("held-lap-{}", std::process::id()));
        let mut w = Writer::open(&loc, &spec).unwrap();
        let mut r =
            Reader::attach(&loc, AttachOptions::new("held", Duration::from_secs(1))).unwrap();
        assert!(r.hold_latest().unwrap().is_none(), "nothing published yet");
        w.publish(&frame(7), PublishMeta::bgr(16, 8, monotonic_ns()))
            .unwrap();
        let held = r.hold_latest().unwrap().expect("frame 1 is there");
        assert_eq!(held.meta().frame_number, 1);
        let mut b = [0u8; 4];
        held.view().copy_at(0, &mut b);
        assert_eq!(b, [7; 4]);
        // Frame 2 goes to the other slot: frame 1 is still intact.
        w.publish(&frame(8), PublishMeta::bgr(16, 8, monotonic_ns()))
            .unwrap();
        assert!(held.is_intact());
        // Frame 3 reuses frame 1's slot.
        w.publish(&frame(9), PublishMeta::bgr(16, 8, monotonic_ns()))
            .unwrap();
        assert!(!held.is_intact());
        assert_eq!(r.release(&held), ZeroCopy::Overwritten { frame_number: 1 });
        assert_eq!(r.stats().torn_retries, 1);
        assert_eq!(r.stats().frames_read, 0);
        let next = r.hold_latest().unwrap().expect("frame 3");
        assert_eq!(next.meta().frame_number, 3);
        assert!(matches!(r.release(&next), ZeroCopy::Intact { .. }));
        assert_eq!(r.stats().frames_read, 1);
        assert_eq!(
            r.stats().frames_missed,
            1 + 1,
            "frame 1 lost, frame 2 skipped"
        );
        assert!(r.hold_latest().unwrap().is_none(), "frame 3 was read");
        drop((w, r));
        unlink(&loc).unwrap();
    }

    #[test]
    fn held_frame_keeps_the_mapping_after_the_reader_is_dropped() {
        let (loc, spec, _dir) = segment(&format!("held-keep-{}", std::process::id()));
        let mut w = Writer::open(&loc, &spec).unwrap();
        let mut r =
            Reader::attach(&loc, AttachOptions::new("held", Duration::from_secs(1))).unwrap();
        w.publish(&frame(5), PublishMeta::bgr(16, 8, monotonic_ns()))
            .unwrap();
        let held = r.hold_latest().unwrap().unwrap();
        drop(r);
        drop(w);
        unlink(&loc).unwrap();
        // The reader, the writer and the name are gone; the held mapping is still readable.
        let mut b = vec![0u8; 16 * 8 * 3];
        held.view().copy_to(&mut b);
        assert!(b.iter().all(|&x| x == 5));
        assert!(held.is_intact());
    }
}
