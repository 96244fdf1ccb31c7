//! The segment layout: sizes and offsets, computed and validated in one place.
//!
//! ```text
//! offset 0            ┌──────────────────────────────────────────────────────────┐
//!                     │ header (1 page)                                          │
//!                     │  fixed:  magic "BILLSHM1", version, header size, slot    │
//!                     │          count, reader capacity, slot capacity, slot     │
//!                     │          stride, data offset, total size, width, height, │
//!                     │          pixel format, creation time                     │
//!                     │  writer: pid, generation, heartbeat ns, latest frame     │
//!                     │          number, dropped, capture→publish p50/p99,       │
//!                     │          stopping flag                                   │
//!                     │  wake:   futex word, waiter count (own cache line)       │
//! 4096                ├──────────────────────────────────────────────────────────┤
//!                     │ reader table: 64 entries x 128 B (pid, name, heartbeat,  │
//!                     │ frames read/missed, torn retries, latency p50/p99)       │
//! 12288               ├──────────────────────────────────────────────────────────┤
//!                     │ slot metadata: N x 128 B (seqlock sequence, frame number,│
//!                     │ capture/publish CLOCK_MONOTONIC ns, len, width, height,  │
//!                     │ stride, format, writer generation)                       │
//! data_offset         ├──────────────────────────────────────────────────────────┤
//! (page-aligned)      │ slot 0 payload (slot_stride = capacity rounded to a page)│
//!                     ├──────────────────────────────────────────────────────────┤
//!                     │ slot 1 payload ...                                       │
//!                     └──────────────────────────────────────────────────────────┘
//! ```
//!
//! Frame number `n` (starting at 1) lives in slot `n % N`, so the writer always writes the slot
//! after the latest one. Everything before `data_offset` is the control region (mapped
//! read-write by everyone); the payloads are mapped read-only by readers. The size depends on
//! the slot count and capacity only, never on the number of readers.

use crate::sys::RawHeader;
use crate::PixelFormat;

/// "BILLSHM1", little-endian.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"BILLSHM1");
/// Bumped on any incompatible layout change.
pub(crate) const VERSION: u32 = 1;
/// Page size assumed by the layout (every Linux target this runs on uses 4 KiB pages or a
/// divisor of the offsets below).
pub(crate) const PAGE: usize = 4096;
/// Size of the header page.
pub(crate) const HEADER_BYTES: usize = PAGE;
/// Entries in the reader table.
pub const READER_CAPACITY: usize = 64;
/// Size of one reader entry.
pub(crate) const READER_ENTRY_BYTES: usize = 128;
/// Offset of the reader table.
pub(crate) const READERS_OFFSET: usize = HEADER_BYTES;
/// Size of one slot's metadata block.
pub(crate) const SLOT_META_BYTES: usize = 128;
/// Offset of the slot metadata blocks.
pub(crate) const SLOT_META_OFFSET: usize = READERS_OFFSET + READER_CAPACITY * READER_ENTRY_BYTES;
/// Most slots a segment may have.
pub const MAX_SLOTS: u32 = 64;
/// Largest slot (1 GiB): far above 8K BGR, small enough that offsets never overflow.
pub const MAX_SLOT_CAPACITY: usize = 1 << 30;

/// Validated sizes and offsets of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub slot_count: usize,
    pub slot_capacity: usize,
    pub slot_stride: usize,
    pub data_offset: usize,
    pub total_bytes: usize,
}

fn page_align(n: usize) -> Option<usize> {
    n.checked_add(PAGE - 1).map(|v| v / PAGE * PAGE)
}

impl Geometry {
    /// The geometry of a segment with these slots, or why there can be none.
    pub(crate) fn compute(slot_count: u32, slot_capacity: usize) -> Result<Geometry, String> {
        if !(1..=MAX_SLOTS).contains(&slot_count) {
            return Err(format!(
                "slot count {slot_count} is outside 1..={MAX_SLOTS}"
            ));
        }
        if slot_capacity == 0 || slot_capacity > MAX_SLOT_CAPACITY {
            return Err(format!(
                "slot capacity {slot_capacity} is outside 1..={MAX_SLOT_CAPACITY}"
            ));
        }
        let n = slot_count as usize;
        // Bounded above (64 slots of at most 1 GiB), so none of this can overflow on 64-bit.
        let slot_stride = page_align(slot_capacity).ok_or("slot capacity overflows")?;
        let data_offset = page_align(SLOT_META_OFFSET + n * SLOT_META_BYTES).ok_or("overflow")?;
        let total_bytes = n
            .checked_mul(slot_stride)
            .and_then(|d| d.checked_add(data_offset))
            .ok_or("segment size overflows")?;
        Ok(Geometry {
            slot_count: n,
            slot_capacity,
            slot_stride,
            data_offset,
            total_bytes,
        })
    }

    /// Checks a header read from a segment of `file_len` bytes; the error says what is wrong.
    pub(crate) fn validate(
        raw: &RawHeader,
        file_len: u64,
    ) -> Result<(Geometry, PixelFormat), String> {
        if raw.magic != MAGIC {
            return Err(format!(
                "bad magic {:#018x} (expected {MAGIC:#018x})",
                raw.magic
            ));
        }
        if raw.version != VERSION {
            return Err(format!(
                "layout version {} (this build reads version {VERSION})",
                raw.version
            ));
        }
        if raw.header_bytes as usize != HEADER_BYTES {
            return Err(format!(
                "header size {} (expected {HEADER_BYTES})",
                raw.header_bytes
            ));
        }
        if raw.reader_capacity as usize != READER_CAPACITY {
            return Err(format!(
                "reader table of {} entries (expected {READER_CAPACITY})",
                raw.reader_capacity
            ));
        }
        let capacity = usize::try_from(raw.slot_capacity)
            .map_err(|_| "slot capacity overflows".to_string())?;
        let g = Geometry::compute(raw.slot_count, capacity)?;
        if raw.slot_stride != g.slot_stride as u64 {
            return Err(format!(
                "slot stride {} (expected {})",
                raw.slot_stride, g.slot_stride
            ));
        }
        if raw.data_offset != g.data_offset as u64 {
            return Err(format!(
                "data offset {} (expected {})",
                raw.data_offset, g.data_offset
            ));
        }
        if raw.total_bytes != g.total_bytes as u64 {
            return Err(format!(
                "total size {} (expected {})",
                raw.total_bytes, g.total_bytes
            ));
        }
        if file_len != g.total_bytes as u64 {
            return Err(format!(
                "segment is {file_len} bytes but its header says {}",
                g.total_bytes
            ));
        }
        let format = PixelFormat::from_u32(raw.format)
            .ok_or_else(|| format!("unknown pixel format {}", raw.format))?;
        if let Some(need) = format.frame_bytes(raw.width, raw.height) {
            if need > capacity as u64 {
                return Err(format!(
                    "{}x{} {format:?} frames need {need} bytes but slots hold {capacity}",
                    raw.width, raw.height
                ));
            }
        }
        Ok((g, format))
    }

    /// Bytes of the data region.
    pub(crate) fn data_len(&self) -> usize {
        self.total_bytes - self.data_offset
    }

    /// Offset of a slot's metadata block.
    pub(crate) fn slot_meta_offset(&self, slot: usize) -> usize {
        SLOT_META_OFFSET + slot * SLOT_META_BYTES
    }

    /// The slot that holds frame `n`.
    pub(crate) fn slot_of(&self, frame_number: u64) -> usize {
        (frame_number % self.slot_count as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_1080p_slots_are_three_frames_plus_a_few_pages() {
        let frame = 1920 * 1080 * 3;
        let g = Geometry::compute(3, frame).unwrap();
        assert_eq!(g.data_offset % PAGE, 0);
        assert_eq!(g.slot_stride % PAGE, 0);
        assert!(g.total_bytes >= 3 * frame);
        assert!(g.total_bytes <= 3 * frame + 8 * PAGE, "{}", g.total_bytes);
        assert!(g.data_offset >= SLOT_META_OFFSET + 3 * SLOT_META_BYTES);
    }

    #[test]
    fn rejects_bad_counts() {
        assert!(Geometry::compute(0, 10).is_err());
        assert!(Geometry::compute(65, 10).is_err());
        assert!(Geometry::compute(2, 0).is_err());
        assert!(Geometry::compute(2, MAX_SLOT_CAPACITY + 1).is_err());
        assert!(Geometry::compute(64, MAX_SLOT_CAPACITY).is_ok());
    }

    #[test]
    fn slot_of_cycles() {
        let g = Geometry::compute(3, 100).unwrap();
        assert_eq!(
            (1..=6).map(|n| g.slot_of(n)).collect::<Vec<_>>(),
            vec![1, 2, 0, 1, 2, 0]
        );
    }
}
