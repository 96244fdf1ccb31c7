//! Every unsafe operation and every atomic of shm-core lives here: the memory mappings, the
//! `#[repr(C)]` structures laid over them, the seqlock, the futex and the copy routine.
//! The rest of the crate is safe code on top of the small API of this module.
//!
//! # Memory orderings
//! The segment is shared with other processes, so each ordering below pairs with an operation
//! in another process running this same code.
//!
//! * Slot seqlock (writer): `seq` is stored odd with `Relaxed`, followed by a full (`SeqCst`)
//!   fence, so no payload store can be seen before the odd value. A `Release` fence would not
//!   do: the payload is copied with `memcpy`, which uses non-temporal stores for large
//!   frames, and on x86_64 a non-temporal store may become visible before an earlier
//!   ordinary store; `mfence` (what the SeqCst fence emits) orders them. Payload and metadata are then
//!   written; `seq` is stored even with `Release`, so a reader that sees the even value with
//!   `Acquire` also sees the whole payload. Pairs with the reader's `Acquire` load of `seq`
//!   before the copy and its `Acquire` fence + load after it.
//! * Slot seqlock (reader): `Acquire` load of `seq` (pairs with the writer's final `Release`
//!   store), copy, then an `Acquire` fence and a `Relaxed` reload of `seq`; the fence keeps the
//!   payload loads before the reload, so a changed sequence reveals any overlap with a write
//!   (pairs with the writer's odd store + full fence). Sequence arithmetic wraps, so a
//!   corrupted sequence value cannot overflow.
//! * `latest`: stored `SeqCst` after the slot is complete, loaded `Acquire` by readers (pairs
//!   with that store, making the slot's even sequence visible). Both sides of the wake-up
//!   handshake use `SeqCst` (`latest` store / `waiters` load in the writer, `waiters`
//!   increment / `latest` load in the reader): the single total order guarantees that either
//!   the reader sees the new frame or the writer sees the waiter and calls `FUTEX_WAKE`.
//! * `wake` is the futex word: incremented (`Release`) by the writer before it checks
//!   `waiters`, read (`Acquire`) by the reader before it registers as a waiter; `FUTEX_WAIT`
//!   compares it in the kernel, so a wake-up between the reader's check and its sleep makes
//!   the wait return at once instead of being lost.
//! * Counters and statistics (heartbeats, frames read, latencies) are `Relaxed`: they are
//!   advisory numbers for `status`, not used to order other memory.
//! * Reader-table entries are claimed with a `compare_exchange` on `pid` (`AcqRel`), so two
//!   processes never claim the same entry; releasing stores 0 with `Release`.
//!
//! # Why the copy-out is inline assembly (x86_64) or relaxed atomic words
//! A reader may copy a slot while the writer laps it. Plain Rust loads of memory that another
//! thread writes are a data race, i.e. undefined behaviour, even if the result is discarded.
//! On x86_64 the copy is inline assembly (`rep movsb` for small payloads, SSE2 loads with
//! non-temporal stores for frames): the compiler treats an asm block as an opaque memory read,
//! so no Rust-level load races, and the copy runs at or above `memcpy` speed. Elsewhere, the copy uses `Relaxed` `AtomicU64` loads (atomic loads race
//! with nothing by definition and are allowed on read-only mappings up to pointer size). In
//! both cases the bytes are trusted only after the sequence re-check says the slot was not
//! written meanwhile.

use std::ffi::c_void;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::ptr::NonNull;
use std::time::Duration;

pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use crate::layout::{Geometry, HEADER_BYTES, READERS_OFFSET, READER_CAPACITY, READER_ENTRY_BYTES};

/// The part of the header fixed at creation.
#[repr(C, align(64))]
pub(crate) struct HeaderFixed {
    pub magic: AtomicU64,
    pub version: AtomicU32,
    pub header_bytes: AtomicU32,
    pub slot_count: AtomicU32,
    pub reader_capacity: AtomicU32,
    pub slot_capacity: AtomicU64,
    pub slot_stride: AtomicU64,
    pub data_offset: AtomicU64,
    pub total_bytes: AtomicU64,
    pub width: AtomicU32,
    pub height: AtomicU32,
    pub format: AtomicU32,
    pub reserved: AtomicU32,
    pub created_ns: AtomicU64,
}

/// The part of the header the writer updates.
#[repr(C, align(64))]
pub(crate) struct HeaderWriter {
    pub writer_pid: AtomicU32,
    pub writer_generation: AtomicU32,
    pub heartbeat_ns: AtomicU64,
    pub latest: AtomicU64,
    pub frames_dropped: AtomicU64,
    pub latency_p50_ns: AtomicU64,
    pub latency_p99_ns: AtomicU64,
    pub stopping: AtomicU32,
    pub reserved: AtomicU32,
}

/// The wake-up words, on their own cache line because readers write `waiters`.
#[repr(C, align(64))]
pub(crate) struct HeaderWake {
    pub wake: AtomicU32,
    pub waiters: AtomicU32,
}

/// Page 0 of the segment.
#[repr(C)]
pub(crate) struct Header {
    pub fixed: HeaderFixed,
    pub writer: HeaderWriter,
    pub wake: HeaderWake,
}

/// One entry of the reader table.
#[repr(C, align(128))]
pub(crate) struct ReaderEntry {
    pub pid: AtomicU32,
    pub claims: AtomicU32,
    pub name: [AtomicU64; 2],
    pub attached_ns: AtomicU64,
    pub heartbeat_ns: AtomicU64,
    pub frames_read: AtomicU64,
    pub frames_missed: AtomicU64,
    pub torn_retries: AtomicU64,
    pub last_latency_ns: AtomicU64,
    pub latency_p50_ns: AtomicU64,
    pub latency_p99_ns: AtomicU64,
}

/// Metadata of one slot, guarded by `seq`.
#[repr(C, align(128))]
pub(crate) struct SlotMeta {
    pub seq: AtomicU64,
    pub frame_number: AtomicU64,
    pub capture_ns: AtomicU64,
    pub publish_ns: AtomicU64,
    pub len: AtomicU64,
    pub width: AtomicU32,
    pub height: AtomicU32,
    pub stride: AtomicU32,
    pub format: AtomicU32,
    pub generation: AtomicU32,
    pub reserved: AtomicU32,
}

const _: () = {
    assert!(std::mem::size_of::<Header>() <= HEADER_BYTES);
    assert!(std::mem::size_of::<ReaderEntry>() == READER_ENTRY_BYTES);
    assert!(std::mem::size_of::<SlotMeta>() == crate::layout::SLOT_META_BYTES);
    assert!(READERS_OFFSET.is_multiple_of(128));
};

/// Whether the pixel region is mapped writable.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Access {
    /// Writer and creator: everything read-write.
    ReadWrite,
    /// Reader: control region read-write (reader table, waiters), data read-only.
    ReadOnlyData,
    /// Monitor: control region only, no data mapping.
    ControlOnly,
}

/// A mapping of a whole segment, split into the control region (header, reader table, slot
/// metadata) and the data region (slot payloads). Both are unmapped on drop.
pub(crate) struct Mapping {
    ctrl: NonNull<u8>,
    data: Option<NonNull<u8>>,
    geometry: Geometry,
}

// SAFETY: the mapping is plain shared memory; every access through it goes through atomics
// (control region) or the seqlock-checked copy (data region), so it may be used from any thread.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only hands out atomics and raw pointers.
unsafe impl Sync for Mapping {}

fn map_region(
    fd: &impl AsFd,
    offset: usize,
    len: usize,
    writable: bool,
) -> io::Result<NonNull<u8>> {
    let prot = if writable {
        libc::PROT_READ | libc::PROT_WRITE
    } else {
        libc::PROT_READ
    };
    let off =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a fresh shared mapping of `len` bytes at a kernel-chosen address; it aliases no
    // Rust object. `offset` is page-aligned (Geometry guarantees it) and the file is at least
    // `offset + len` long (checked by the callers against fstat before mapping).
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            libc::MAP_SHARED,
            fd.as_fd().as_raw_fd(),
            off,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::from(io::ErrorKind::Other))
}

fn unmap_region(p: NonNull<u8>, len: usize) {
    // SAFETY: `p`/`len` are exactly what map_region returned and nothing refers to the region
    // any more (only called from Drop or after a failed validation).
    unsafe {
        libc::munmap(p.as_ptr().cast::<c_void>(), len);
    }
}

/// The fixed header fields, copied out of a mapping for validation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawHeader {
    pub magic: u64,
    pub version: u32,
    pub header_bytes: u32,
    pub slot_count: u32,
    pub reader_capacity: u32,
    pub slot_capacity: u64,
    pub slot_stride: u64,
    pub data_offset: u64,
    pub total_bytes: u64,
    pub width: u32,
    pub height: u32,
    pub format: u32,
}

/// Maps the first page of `fd` and copies the fixed header out of it. The caller has checked
/// that the file holds at least `HEADER_BYTES`.
pub(crate) fn read_raw_header(fd: &impl AsFd) -> io::Result<RawHeader> {
    let p = map_region(fd, 0, HEADER_BYTES, false)?;
    // SAFETY: the page is mapped and at least size_of::<Header>() long (const assert above);
    // Header consists of atomics only, so a shared reference is valid whatever the bytes are.
    let f = unsafe { &(*p.as_ptr().cast::<Header>()).fixed };
    let raw = RawHeader {
        magic: f.magic.load(Ordering::Acquire), // pairs with the creator's Release store of magic
        version: f.version.load(Ordering::Relaxed),
        header_bytes: f.header_bytes.load(Ordering::Relaxed),
        slot_count: f.slot_count.load(Ordering::Relaxed),
        reader_capacity: f.reader_capacity.load(Ordering::Relaxed),
        slot_capacity: f.slot_capacity.load(Ordering::Relaxed),
        slot_stride: f.slot_stride.load(Ordering::Relaxed),
        data_offset: f.data_offset.load(Ordering::Relaxed),
        total_bytes: f.total_bytes.load(Ordering::Relaxed),
        width: f.width.load(Ordering::Relaxed),
        height: f.height.load(Ordering::Relaxed),
        format: f.format.load(Ordering::Relaxed),
    };
    unmap_region(p, HEADER_BYTES);
    Ok(raw)
}

impl Mapping {
    /// Maps a segment whose geometry was validated against the file's size.
    pub(crate) fn map(fd: &impl AsFd, geometry: Geometry, access: Access) -> io::Result<Mapping> {
        let ctrl = map_region(fd, 0, geometry.data_offset, true)?;
        let data = match access {
            Access::ControlOnly => None,
            Access::ReadWrite | Access::ReadOnlyData => {
                match map_region(
                    fd,
                    geometry.data_offset,
                    geometry.data_len(),
                    access == Access::ReadWrite,
                ) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        unmap_region(ctrl, geometry.data_offset);
                        return Err(e);
                    }
                }
            }
        };
        Ok(Mapping {
            ctrl,
            data,
            geometry,
        })
    }

    pub(crate) fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    pub(crate) fn header(&self) -> &Header {
        // SAFETY: the control region starts with the header page (data_offset >= HEADER_BYTES,
        // checked by Geometry) and Header is made of atomics only.
        unsafe { &*self.ctrl.as_ptr().cast::<Header>() }
    }

    pub(crate) fn reader_entry(&self, i: usize) -> &ReaderEntry {
        assert!(i < READER_CAPACITY, "reader index {i} out of range");
        // SAFETY: the reader table lies inside the control region (Geometry checks
        // READERS_OFFSET + table size <= data_offset); the index is bounds-checked above;
        // ReaderEntry is made of atomics only.
        unsafe {
            &*self
                .ctrl
                .as_ptr()
                .add(READERS_OFFSET + i * READER_ENTRY_BYTES)
                .cast::<ReaderEntry>()
        }
    }

    pub(crate) fn slot_meta(&self, slot: usize) -> &SlotMeta {
        assert!(slot < self.geometry.slot_count, "slot {slot} out of range");
        // SAFETY: Geometry places slot_count metadata blocks inside the control region; the
        // index is bounds-checked above; SlotMeta is made of atomics only.
        unsafe {
            &*self
                .ctrl
                .as_ptr()
                .add(self.geometry.slot_meta_offset(slot))
                .cast::<SlotMeta>()
        }
    }

    /// Start of a slot's payload, or None without a data mapping.
    pub(crate) fn slot_data(&self, slot: usize) -> Option<*mut u8> {
        assert!(slot < self.geometry.slot_count, "slot {slot} out of range");
        let d = self.data?;
        // SAFETY: slot * slot_stride + slot_capacity <= data_len by Geometry, so the pointer
        // stays inside the data mapping.
        Some(unsafe { d.as_ptr().add(slot * self.geometry.slot_stride) })
    }

    /// Writes `slot` under its seqlock: the sequence is odd while `fill` writes the payload
    /// (the whole slot capacity is offered) and the metadata, even again afterwards.
    ///
    /// `&mut self` makes the writer unique within this process; `Writer::open` refuses a
    /// second live writer process, so no other process writes the slot meanwhile.
    pub(crate) fn write_slot<R>(
        &mut self,
        slot: usize,
        fill: impl FnOnce(&mut [u8], &SlotMeta) -> R,
    ) -> R {
        let p = self
            .slot_data(slot)
            .expect("writer mapping has a data region");
        let meta = self.slot_meta(slot);
        let odd = seq_begin_write(meta);
        // SAFETY: p..p+slot_capacity lies inside the writable data mapping (Geometry); this is
        // the only Rust reference to it (unique writer, see above). Readers in other processes
        // only read it with the race-tolerant copy below and validate by sequence.
        let payload = unsafe { std::slice::from_raw_parts_mut(p, self.geometry.slot_capacity) };
        let r = fill(payload, meta);
        seq_end_write(meta, odd);
        r
    }

    /// Copies the first `dst.len()` bytes of `slot`'s payload (at most its capacity) into `dst`.
    /// The caller validates the result with the slot's sequence.
    pub(crate) fn copy_slot(&self, slot: usize, dst: &mut [u8]) {
        let p = self
            .slot_data(slot)
            .expect("reader mapping has a data region");
        assert!(
            dst.len() <= self.geometry.slot_capacity,
            "copy larger than a slot"
        );
        // SAFETY: the range is inside the data mapping (length checked above).
        unsafe { copy_from_shared(p, dst) }
    }

    /// A view of `len` bytes of `slot` for a zero-copy read.
    pub(crate) fn view(&self, slot: usize, len: usize, meta: FrameMetaLike) -> FrameView<'_> {
        let ptr = self
            .slot_data(slot)
            .expect("reader mapping has a data region");
        assert!(
            len <= self.geometry.slot_capacity,
            "view larger than a slot"
        );
        FrameView {
            ptr,
            len,
            meta,
            _map: std::marker::PhantomData,
        }
    }
}

/// The metadata type handed out with a view (defined in the reader module).
pub(crate) type FrameMetaLike = crate::reader::FrameMeta;

/// A slot seen in place during [`Reader::read_zero_copy`](crate::Reader::read_zero_copy).
///
/// The writer may overwrite the slot while the view is in use if the reader is slower than
/// `slot_count - 1` frame periods; the read then reports
/// [`ZeroCopy::Overwritten`](crate::ZeroCopy::Overwritten), and whatever was computed from the
/// bytes must be thrown away.
pub struct FrameView<'a> {
    ptr: *mut u8,
    len: usize,
    meta: FrameMetaLike,
    _map: std::marker::PhantomData<&'a Mapping>,
}

impl FrameView<'_> {
    /// The frame's metadata (read and validated before the view was made).
    pub fn meta(&self) -> &FrameMetaLike {
        &self.meta
    }

    /// Start of the payload; valid for `meta().len` bytes while the closure runs. Readers map
    /// it read-only: writing through it faults.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies the payload (or its first `dst.len()` bytes) into `dst`, tolerating a
    /// concurrent writer.
    pub fn copy_to(&self, dst: &mut [u8]) {
        let n = dst.len().min(self.len);
        // SAFETY: ptr..ptr+n is inside the data mapping, which outlives 'a.
        unsafe { copy_from_shared(self.ptr, &mut dst[..n]) }
    }

    /// Copies `dst.len()` bytes starting at `offset` of the payload (clamped to the payload).
    pub fn copy_at(&self, offset: usize, dst: &mut [u8]) {
        let start = offset.min(self.len);
        let n = dst.len().min(self.len - start);
        // SAFETY: start..start+n lies inside the payload (clamped above), inside the mapping.
        unsafe { copy_from_shared(self.ptr.add(start), &mut dst[..n]) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if let Some(d) = self.data {
            unmap_region(d, self.geometry.data_len());
        }
        unmap_region(self.ctrl, self.geometry.data_offset);
    }
}

/// Starts writing a slot: makes its sequence odd. Returns the odd value.
pub(crate) fn seq_begin_write(meta: &SlotMeta) -> u64 {
    let s = meta.seq.load(Ordering::Relaxed);
    // An odd value left by a writer that died mid-write is moved on by 2 so that a reader that
    // loaded it still sees a change.
    // Wrapping: a hostile or corrupted segment may hold any value; 2^64 is even, so the
    // parity (the seqlock's meaning) survives the wrap.
    let odd = if s.is_multiple_of(2) {
        s.wrapping_add(1)
    } else {
        s.wrapping_add(2)
    };
    meta.seq.store(odd, Ordering::Relaxed);
    // A full fence, not just Release: pairs with the reader's Acquire fence before its
    // re-check, so payload stores below cannot be observed before the odd sequence. The
    // payload is filled by `memcpy`, which uses non-temporal stores for large copies, and on
    // x86_64 those may pass an earlier ordinary store; a Release fence compiles to nothing
    // there, while SeqCst emits `mfence`, which also orders non-temporal stores.
    fence(Ordering::SeqCst);
    odd
}

/// Finishes writing a slot: makes its sequence even again.
pub(crate) fn seq_end_write(meta: &SlotMeta, odd: u64) {
    // Pairs with the reader's Acquire load of seq: the payload is visible to whoever sees it.
    // The non-temporal stores of a large payload copy are drained by the `sfence` that ends
    // glibc's streaming `memcpy`, so this Release store comes after them.
    meta.seq.store(odd.wrapping_add(1), Ordering::Release);
}

/// A reader's first look at a slot's sequence; None while it is being written.
pub(crate) fn seq_read_begin(meta: &SlotMeta) -> Option<u64> {
    // Pairs with seq_end_write's Release store.
    let s = meta.seq.load(Ordering::Acquire);
    s.is_multiple_of(2).then_some(s)
}

/// Whether a slot's sequence is still `s` after the reader's accesses.
pub(crate) fn seq_read_validate(meta: &SlotMeta, s: u64) -> bool {
    // Keeps the payload loads before the reload; pairs with seq_begin_write's Release fence.
    fence(Ordering::Acquire);
    meta.seq.load(Ordering::Relaxed) == s
}

/// Copies `dst.len()` bytes from shared memory at `src`, tolerating a concurrent writer (the
/// result is validated by the seqlock afterwards). See the module doc for why.
///
/// # Safety
/// `src..src + dst.len()` must lie inside a live mapping.
pub(crate) unsafe fn copy_from_shared(src: *const u8, dst: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller guarantees the source range; `dst` is a unique slice of the same length.
    unsafe {
        let len = dst.len();
        let d = dst.as_mut_ptr();
        if len < STREAMING_COPY_MIN {
            rep_movsb(src, d, len);
            return;
        }
        if std::arch::is_x86_feature_detected!("avx") {
            let i = stream_copy_avx(src, d, len);
            rep_movsb(src.add(i), d.add(i), len - i);
            return;
        }
        // Streaming stores need a 16-byte aligned destination: copy the head bytes first.
        let head = d.align_offset(16).min(len);
        rep_movsb(src, d, head);
        let body = (len - head) / 64 * 64;
        let mut i = head;
        while i < head + body {
            // Four unaligned 16-byte loads from the slot and four non-temporal stores: a frame
            // is larger than the caches, so bypassing them avoids read-for-ownership traffic
            // (measured on this machine: 0.26 ms per 1080p frame against 0.34-0.37 ms for
            // memcpy or `rep movsb`). The asm block is opaque to the compiler (see module doc).
            std::arch::asm!(
                "movdqu xmm0, [{s}]",
                "movdqu xmm1, [{s} + 16]",
                "movdqu xmm2, [{s} + 32]",
                "movdqu xmm3, [{s} + 48]",
                "movntdq [{d}], xmm0",
                "movntdq [{d} + 16], xmm1",
                "movntdq [{d} + 32], xmm2",
                "movntdq [{d} + 48], xmm3",
                s = in(reg) src.add(i),
                d = in(reg) d.add(i),
                out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
                options(nostack, preserves_flags)
            );
            i += 64;
        }
        // Streaming stores are weakly ordered: fence them before the caller uses the bytes.
        std::arch::asm!("sfence", options(nostack, preserves_flags));
        rep_movsb(src.add(i), d.add(i), len - i);
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        use std::sync::atomic::AtomicU8;
        let len = dst.len();
        // Bytes up to the first 8-aligned source address, then whole words, then the tail.
        let head = (src.align_offset(8)).min(len);
        let words = (len - head) / 8;
        for i in (0..head).chain(head + words * 8..len) {
            // SAFETY: i < len, inside the source range by the caller's contract.
            dst[i] = unsafe { &*src.add(i).cast::<AtomicU8>() }.load(Ordering::Relaxed);
        }
        for w in 0..words {
            let at = head + w * 8;
            // SAFETY: src+at is 8-aligned and at+8 <= len, inside the source range.
            let v = unsafe { &*src.add(at).cast::<AtomicU64>() }.load(Ordering::Relaxed);
            dst[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        }
    }
}

/// The streaming part of [`copy_from_shared`] with 32-byte AVX registers (about a tenth faster
/// than 16-byte ones for a 1080p frame on this project's machine): copies the head bytes up to
/// a 32-aligned destination, then 128-byte blocks, fenced; returns how many bytes it copied
/// (the caller copies the rest).
///
/// # Safety
/// The CPU must have AVX; `src..src + len` must lie inside a live mapping and `d..d + len` be
/// writable and not overlap it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn stream_copy_avx(src: *const u8, d: *mut u8, len: usize) -> usize {
    // SAFETY: the ranges are the caller's contract; every access below stays under `len`.
    unsafe {
        let head = d.align_offset(32).min(len);
        rep_movsb(src, d, head);
        let body = (len - head) / 128 * 128;
        let mut i = head;
        while i < head + body {
            // Same as the 16-byte loop in copy_from_shared, two registers wide; the destination
            // is 32-aligned here, as vmovntdq requires.
            std::arch::asm!(
                "vmovdqu ymm0, [{s}]",
                "vmovdqu ymm1, [{s} + 32]",
                "vmovdqu ymm2, [{s} + 64]",
                "vmovdqu ymm3, [{s} + 96]",
                "vmovntdq [{d}], ymm0",
                "vmovntdq [{d} + 32], ymm1",
                "vmovntdq [{d} + 64], ymm2",
                "vmovntdq [{d} + 96], ymm3",
                s = in(reg) src.add(i),
                d = in(reg) d.add(i),
                out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _,
                options(nostack, preserves_flags)
            );
            i += 128;
        }
        // Streaming stores are weakly ordered: fence them before the caller uses the bytes;
        // vzeroupper avoids the AVX-SSE transition penalty in the code that follows.
        std::arch::asm!("sfence", "vzeroupper", options(nostack, preserves_flags));
        i
    }
}

/// Sizes `buf` to `len` bytes for a frame copy. A buffer that must grow to a frame of several
/// megabytes is allocated anew and, before its pages are first touched, advised to use
/// transparent huge pages: a 1080p frame spans 1,519 small pages, and the copy's TLB misses
/// on the destination cost about a tenth of its time (measured with shm-bench). Best effort:
/// where THP is off, the advice changes nothing.
pub(crate) fn size_frame_buffer(buf: &mut Vec<u8>, len: usize) {
    const HUGE: usize = 2 << 20;
    if buf.capacity() < len && len >= 2 * HUGE {
        let fresh = Vec::<u8>::with_capacity(len);
        let start = fresh.as_ptr() as usize;
        let first = start.next_multiple_of(HUGE);
        let end = (start + len) / HUGE * HUGE;
        if end > first {
            // SAFETY: [first, end) lies inside `fresh`'s allocation (capacity >= len), which
            // this function owns; madvise only changes how its future page faults are served.
            unsafe {
                libc::madvise(first as *mut c_void, end - first, libc::MADV_HUGEPAGE);
            }
        }
        *buf = fresh;
    }
    buf.resize(len, 0);
}

/// Copies below this size use `rep movsb` (the data is likely to be used from cache soon);
/// larger ones stream past the caches.
#[cfg(target_arch = "x86_64")]
const STREAMING_COPY_MIN: usize = 256 * 1024;

/// `rep movsb`: copies `n` bytes from `src` to `dst`.
///
/// # Safety
/// Both ranges must be valid for `n` bytes and must not overlap.
#[cfg(target_arch = "x86_64")]
unsafe fn rep_movsb(src: *const u8, dst: *mut u8, n: usize) {
    // SAFETY: the caller guarantees both ranges; the direction flag is clear per the ABI.
    unsafe {
        std::arch::asm!(
            "rep movsb",
            inout("rcx") n => _,
            inout("rsi") src => _,
            inout("rdi") dst => _,
            options(nostack, preserves_flags)
        );
    }
}

/// Sleeps while `*word == expected`, at most `timeout`. Spurious returns are fine: callers
/// re-check their condition. Non-private futex: the word is shared between processes.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: the word is a live, aligned u32 in shared memory; FUTEX_WAIT only reads it; the
    // timespec outlives the call. Errors (EAGAIN, EINTR, ETIMEDOUT) all mean "re-check".
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Wakes every process sleeping on `word`.
pub(crate) fn futex_wake_all(word: &AtomicU32) {
    // SAFETY: the word is a live, aligned u32; FUTEX_WAKE does not access user memory beyond
    // using the address as a key.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Whether a process exists (a zombie counts until reaped; EPERM means it exists).
pub(crate) fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing; it only checks existence and permission.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// CLOCK_MONOTONIC in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// This process's CPU time (user + system) in nanoseconds.
pub fn process_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer; the clock exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// This process's id.
pub(crate) fn my_pid() -> u32 {
    std::process::id()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path of the copy (short `rep movsb`, 16- and 32-byte streaming, the head up to
    /// an aligned destination, the tail) gives the source bytes, at every offset.
    #[test]
    fn copy_from_shared_is_exact_at_every_alignment_and_length() {
        let src: Vec<u8> = (0..(STREAMING_COPY_MIN_ANY + 8192))
            .map(|i| (i * 7 + i / 251) as u8)
            .collect();
        let mut dst = vec![0u8; src.len() + 64];
        for len in [
            0,
            1,
            63,
            4097,
            STREAMING_COPY_MIN_ANY,
            STREAMING_COPY_MIN_ANY + 4093,
        ] {
            for s_off in [0, 1, 31] {
                for d_off in [0, 3, 16, 33] {
                    dst.fill(0xEE);
                    let out = &mut dst[d_off..d_off + len];
                    // SAFETY: src[s_off..s_off + len] is inside `src`.
                    unsafe { copy_from_shared(src[s_off..].as_ptr(), out) };
                    assert!(
                        out == &src[s_off..s_off + len],
                        "len {len}, source offset {s_off}, destination offset {d_off}"
                    );
                    assert!(dst[..d_off].iter().all(|&b| b == 0xEE), "wrote before");
                    assert!(dst[d_off + len..].iter().all(|&b| b == 0xEE), "wrote after");
                }
            }
        }
    }

    #[test]
    fn a_frame_buffer_is_sized_and_keeps_its_allocation() {
        let mut buf = Vec::new();
        size_frame_buffer(&mut buf, 1920 * 1080 * 3);
        assert_eq!(buf.len(), 1920 * 1080 * 3);
        let at = buf.as_ptr();
        size_frame_buffer(&mut buf, 1280 * 720 * 3);
        size_frame_buffer(&mut buf, 1920 * 1080 * 3);
        assert_eq!(buf.len(), 1920 * 1080 * 3);
        assert_eq!(buf.as_ptr(), at, "a buffer large enough is not reallocated");
        let mut small = vec![1u8; 10];
        size_frame_buffer(&mut small, 100);
        assert_eq!(small.len(), 100);
        assert_eq!(small[..10], [1; 10]);
    }

    /// The streaming threshold on x86-64, a plain size elsewhere (the test covers both paths).
    #[cfg(target_arch = "x86_64")]
    const STREAMING_COPY_MIN_ANY: usize = STREAMING_COPY_MIN;
    #[cfg(not(target_arch = "x86_64"))]
    const STREAMING_COPY_MIN_ANY: usize = 256 * 1024;
}
