//! Readers: copy-out and zero-copy reads of the newest frame, futex waits, the reader table,
//! and following a segment that was replaced ([`Reader::follow_replaced`]).

mod held;

pub use held::HeldFrame;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::latency::LatencyWindow;
use crate::location::SegmentLocation;
use crate::segment::{map_existing, map_waiting, MapFailure, SegmentInfo};
use crate::sys::{self, Access, FrameView, Mapping, Ordering, ReaderEntry, SlotMeta};
use crate::writer::{writer_state, WriterState};
use crate::{layout::READER_CAPACITY, AttachError, PixelFormat, ReadError};

/// How often a reader refreshes its latency percentiles in its table entry.
const STATS_INTERVAL_NS: u64 = 500_000_000;
/// Longest single futex sleep, so the heartbeat stays fresh during a long wait.
const MAX_SLEEP: Duration = Duration::from_millis(250);
/// Copy attempts in `read_latest` before giving up for this call (the writer lapped us).
const COPY_ATTEMPTS: usize = 4;

/// What [`Reader::peek_latest`] saw.
pub(super) enum Peek {
    /// No frame newer than the last one read.
    Nothing,
    /// The writer was rewriting the header of frame `frame_number`'s slot.
    Torn { frame_number: u64 },
    /// The newest frame: its slot, the slot's sequence when the header was read, the header.
    Frame {
        slot: usize,
        seq: u64,
        meta: FrameMeta,
    },
}

/// How often [`Reader::follow_replaced`] looks whether the segment's name refers to a new
/// segment: the one policy of every reader that outlives its writer. A reader shows the old,
/// dead segment at most this long (plus the wait that timed out) after a new one is ready;
/// each look is one `stat(2)`.
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(250);

/// Metadata of one delivered frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FrameMeta {
    /// Number of the frame (1 for the first frame of a segment; continues across writers).
    pub frame_number: u64,
    /// When it was captured (CLOCK_MONOTONIC ns).
    pub capture_ns: u64,
    /// When it was published (CLOCK_MONOTONIC ns).
    pub publish_ns: u64,
    /// Payload bytes.
    pub len: usize,
    /// Width in pixels (0 for bytes).
    pub width: u32,
    /// Height in pixels (0 for bytes).
    pub height: u32,
    /// Bytes per row (0 for bytes).
    pub stride: u32,
    /// Payload format.
    pub format: PixelFormat,
    /// Generation of the writer that published it.
    pub writer_generation: u32,
}

/// How to attach.
#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// How long to wait for the segment to appear.
    pub timeout: Duration,
    /// Shown in the reader table (at most 16 bytes are kept).
    pub reader_name: String,
}

impl AttachOptions {
    /// Attach as `reader_name`, waiting up to `timeout`.
    pub fn new(reader_name: &str, timeout: Duration) -> AttachOptions {
        AttachOptions {
            timeout,
            reader_name: reader_name.into(),
        }
    }
}

/// Result of a zero-copy read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZeroCopy<R> {
    /// The slot was not written while the closure looked at it: `value` is good.
    Intact {
        /// The frame.
        meta: FrameMeta,
        /// What the closure returned.
        value: R,
    },
    /// The writer overwrote the slot meanwhile: discard whatever the closure computed.
    Overwritten {
        /// The frame that was lost.
        frame_number: u64,
    },
}

/// This reader's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReaderStats {
    /// Frames delivered.
    pub frames_read: u64,
    /// Frames published between two delivered frames that this reader never saw.
    pub frames_missed: u64,
    /// Reads that found their slot overwritten (retried or reported, never delivered).
    pub torn_retries: u64,
    /// Median publish-to-read latency over the last 512 frames.
    pub latency_p50_ns: u64,
    /// 99th percentile of the same.
    pub latency_p99_ns: u64,
}

/// A reader of a segment. It holds one entry of the reader table until dropped.
pub struct Reader {
    // An Arc so that a [`HeldFrame`] can keep the mapping alive after the reader is gone.
    map: Arc<Mapping>,
    info: SegmentInfo,
    /// Where the segment was found, and the name in the reader table: to follow a replacement.
    loc: SegmentLocation,
    reader_name: String,
    /// When `follow_replaced` may look again (CLOCK_MONOTONIC ns).
    next_follow_ns: u64,
    entry: usize,
    last_seen: u64,
    stats: ReaderStats,
    latency: LatencyWindow,
    last_stats_ns: u64,
}

fn encode_name(name: &str) -> [u64; 2] {
    let mut b = [0u8; 16];
    let n = name.len().min(16);
    b[..n].copy_from_slice(&name.as_bytes()[..n]);
    [
        u64::from_le_bytes(b[..8].try_into().unwrap_or_default()),
        u64::from_le_bytes(b[8..].try_into().unwrap_or_default()),
    ]
}

pub(crate) fn decode_name(words: [u64; 2]) -> String {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&words[0].to_le_bytes());
    b[8..].copy_from_slice(&words[1].to_le_bytes());
    let end = b.iter().position(|&c| c == 0).unwrap_or(16);
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn claim_entry(map: &Mapping, name: &str) -> Option<usize> {
    let me = sys::my_pid();
    let now = sys::monotonic_ns();
    for i in 0..READER_CAPACITY {
        let e = map.reader_entry(i);
        let pid = e.pid.load(Ordering::Acquire);
        if pid != 0 && sys::pid_alive(pid) {
            continue;
        }
        // AcqRel: exactly one process wins a free or dead entry; pairs with the Release store
        // of 0 in Reader::drop.
        if e.pid
            .compare_exchange(pid, me, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let words = encode_name(name);
            e.name[0].store(words[0], Ordering::Relaxed);
            e.name[1].store(words[1], Ordering::Relaxed);
            e.claims.fetch_add(1, Ordering::Relaxed);
            for c in [
                &e.frames_read,
                &e.frames_missed,
                &e.torn_retries,
                &e.last_latency_ns,
                &e.latency_p50_ns,
                &e.latency_p99_ns,
            ] {
                c.store(0, Ordering::Relaxed);
            }
            e.attached_ns.store(now, Ordering::Relaxed);
            e.heartbeat_ns.store(now, Ordering::Relaxed);
            return Some(i);
        }
    }
    None
}

/// A consistent copy of a slot's metadata, or None when the slot no longer holds `latest`.
fn read_meta(m: &SlotMeta, latest: u64) -> Option<FrameMeta> {
    let frame_number = m.frame_number.load(Ordering::Relaxed);
    if frame_number != latest {
        return None;
    }
    Some(FrameMeta {
        frame_number,
        capture_ns: m.capture_ns.load(Ordering::Relaxed),
        publish_ns: m.publish_ns.load(Ordering::Relaxed),
        len: usize::try_from(m.len.load(Ordering::Relaxed)).unwrap_or(usize::MAX),
        width: m.width.load(Ordering::Relaxed),
        height: m.height.load(Ordering::Relaxed),
        stride: m.stride.load(Ordering::Relaxed),
        // An unknown format is reported by validate_meta below.
        format: PixelFormat::from_u32(m.format.load(Ordering::Relaxed))
            .unwrap_or(PixelFormat::Bytes),
        writer_generation: m.generation.load(Ordering::Relaxed),
    })
}

impl Reader {
    /// Attaches to the segment, waiting up to `opts.timeout` for it to appear, and claims a
    /// reader-table entry.
    pub fn attach(loc: &SegmentLocation, opts: AttachOptions) -> Result<Reader, AttachError> {
        let (map, info) = map_waiting(loc, Access::ReadOnlyData, opts.timeout)?;
        Reader::with_mapping(loc, &opts.reader_name, map, info)
    }

    fn with_mapping(
        loc: &SegmentLocation,
        reader_name: &str,
        map: Mapping,
        info: SegmentInfo,
    ) -> Result<Reader, AttachError> {
        let entry = claim_entry(&map, reader_name).ok_or_else(|| AttachError::ReaderTableFull {
            name: loc.name().into(),
            capacity: READER_CAPACITY,
        })?;
        Ok(Reader {
            map: Arc::new(map),
            info,
            loc: loc.clone(),
            reader_name: reader_name.into(),
            next_follow_ns: 0,
            entry,
            last_seen: 0,
            stats: ReaderStats::default(),
            latency: LatencyWindow::new(512),
            last_stats_ns: 0,
        })
    }

    /// The segment.
    pub fn info(&self) -> &SegmentInfo {
        &self.info
    }

    /// Whether the segment's name now refers to another segment than the one this reader maps:
    /// it was unlinked and created anew (a standalone writer that restarts does that). False
    /// while the name refers to nothing (unlinked, not created again yet), and when a writer
    /// restarts on the same segment, which readers simply keep reading.
    pub fn replaced(&self) -> bool {
        self.loc
            .current_object()
            .is_some_and(|id| id != self.info.object)
    }

    /// Follows a replaced segment: when the name refers to a new segment ([`Self::replaced`])
    /// and that one is initialised, this reader moves to it (a new reader-table entry there;
    /// the old entry is released) and `Ok(true)` is returned. The new segment numbers its
    /// frames from 1: [`Self::last_frame_number`] and [`Self::stats`] start again, and
    /// [`Self::info`] describes the new segment, whose geometry may differ.
    ///
    /// Call it whenever a wait for the next frame timed out. It looks at most every
    /// [`FOLLOW_INTERVAL`] and returns `Ok(false)` in between, while the segment was not
    /// replaced, and while the new one is still being initialised. A writer that restarts on
    /// the existing segment never makes a reader move. `Err` when the new segment cannot be
    /// used (invalid, or its reader table is full): the reader stays where it is and tries
    /// again after the interval.
    pub fn follow_replaced(&mut self) -> Result<bool, AttachError> {
        let now = sys::monotonic_ns();
        if now < self.next_follow_ns {
            return Ok(false);
        }
        self.next_follow_ns =
            now.saturating_add(u64::try_from(FOLLOW_INTERVAL.as_nanos()).unwrap_or(u64::MAX));
        if !self.replaced() {
            return Ok(false);
        }
        let (map, info) = match map_existing(&self.loc, Access::ReadOnlyData) {
            Ok(m) => m,
            // Unlinked again, or its creator has not finished: look again next time.
            Err(MapFailure::Missing) | Err(MapFailure::Initialising) => return Ok(false),
            Err(MapFailure::Fatal(e)) => return Err(e),
        };
        let mut fresh = Reader::with_mapping(&self.loc, &self.reader_name, map, info)?;
        fresh.next_follow_ns = self.next_follow_ns;
        // Dropping the old reader releases its entry in the old segment's table.
        *self = fresh;
        Ok(true)
    }

    /// The number of the last frame this reader was handed (0: none yet).
    pub fn last_frame_number(&self) -> u64 {
        self.last_seen
    }

    /// This reader's counters.
    pub fn stats(&self) -> ReaderStats {
        self.stats
    }

    /// The writer fields of the header (pid, liveness, generation, latest frame, heartbeat).
    pub fn writer(&self) -> WriterState {
        writer_state(&self.map)
    }

    fn entry(&self) -> &ReaderEntry {
        self.map.reader_entry(self.entry)
    }

    /// Tells the supervisor's watchdog this reader is alive.
    pub fn heartbeat(&self) {
        self.entry()
            .heartbeat_ns
            .store(sys::monotonic_ns(), Ordering::Relaxed);
    }

    fn latest(&self) -> u64 {
        // Pairs with the writer's SeqCst store: the slot it names is complete.
        self.map.header().writer.latest.load(Ordering::Acquire)
    }

    fn validate_meta(&self, m: &FrameMeta, raw_format: u32) -> Result<(), ReadError> {
        let corrupt = |reason: String| ReadError::Corrupt {
            name: self.info.name.clone(),
            reason,
        };
        if m.len > self.info.spec.slot_capacity {
            return Err(corrupt(format!(
                "frame {} claims {} bytes but slots hold {}",
                m.frame_number, m.len, self.info.spec.slot_capacity
            )));
        }
        if PixelFormat::from_u32(raw_format).is_none() {
            return Err(corrupt(format!(
                "frame {} has unknown format {raw_format}",
                m.frame_number
            )));
        }
        let meta = crate::PublishMeta {
            capture_ns: m.capture_ns,
            width: m.width,
            height: m.height,
            stride: m.stride,
            format: m.format,
        };
        meta.check(m.len)
            .map_err(|r| corrupt(format!("frame {}: {r}", m.frame_number)))
    }

    fn delivered(&mut self, m: &FrameMeta, now: u64) {
        // Frame numbers come from shared memory, so a hostile header may put anything there:
        // saturating arithmetic, never an overflow panic.
        if self.last_seen != 0 && m.frame_number > self.last_seen.saturating_add(1) {
            self.stats.frames_missed = self
                .stats
                .frames_missed
                .saturating_add(m.frame_number - self.last_seen - 1);
        }
        self.last_seen = m.frame_number;
        self.stats.frames_read += 1;
        let lat = now.saturating_sub(m.publish_ns);
        self.latency.record(lat);
        let e = self.map.reader_entry(self.entry);
        e.frames_read
            .store(self.stats.frames_read, Ordering::Relaxed);
        e.frames_missed
            .store(self.stats.frames_missed, Ordering::Relaxed);
        e.last_latency_ns.store(lat, Ordering::Relaxed);
        e.heartbeat_ns.store(now, Ordering::Relaxed);
        if now.saturating_sub(self.last_stats_ns) >= STATS_INTERVAL_NS {
            self.last_stats_ns = now;
            let (p50, p99) = self.latency.percentiles();
            self.stats.latency_p50_ns = p50;
            self.stats.latency_p99_ns = p99;
            e.latency_p50_ns.store(p50, Ordering::Relaxed);
            e.latency_p99_ns.store(p99, Ordering::Relaxed);
        }
    }

    /// Frame `latest` was overwritten while it was looked at in place: it is gone for good, so
    /// count it (and any skipped before it) as missed and do not offer it again.
    fn lost(&mut self, latest: u64) {
        self.torn();
        // Saturating: `latest` comes from shared memory and may be below `last_seen`.
        self.stats.frames_missed =
            self.stats
                .frames_missed
                .saturating_add(if self.last_seen == 0 {
                    1
                } else {
                    latest.saturating_sub(self.last_seen)
                });
        self.entry()
            .frames_missed
            .store(self.stats.frames_missed, Ordering::Relaxed);
        self.last_seen = self.last_seen.max(latest);
    }

    fn torn(&mut self) {
        self.stats.torn_retries += 1;
        self.entry()
            .torn_retries
            .store(self.stats.torn_retries, Ordering::Relaxed);
    }

    /// Copies the newest frame into `buf` (resized to the frame's length; its capacity is
    /// reused). `Ok(None)` when no frame newer than the last one read is there, or when the
    /// writer kept overwriting the slot during the copy (then the next call tries again). A
    /// torn frame is never returned.
    pub fn read_latest(&mut self, buf: &mut Vec<u8>) -> Result<Option<FrameMeta>, ReadError> {
        for _ in 0..COPY_ATTEMPTS {
            let (slot, seq, meta) = match self.peek_latest()? {
                Peek::Nothing => return Ok(None),
                Peek::Torn { .. } => {
                    self.torn();
                    continue;
                }
                Peek::Frame { slot, seq, meta } => (slot, seq, meta),
            };
            sys::size_frame_buffer(buf, meta.len);
            self.map.copy_slot(slot, buf);
            if !sys::seq_read_validate(self.map.slot_meta(slot), seq) {
                self.torn();
                continue;
            }
            self.delivered(&meta, sys::monotonic_ns());
            return Ok(Some(meta));
        }
        Ok(None)
    }

    /// One look at the newest unread frame's header under its slot's seqlock: nothing new, a
    /// header torn by the writer (the caller counts it and may look again), or the frame's slot,
    /// sequence and validated metadata. The payload is the caller's to read and validate.
    pub(super) fn peek_latest(&mut self) -> Result<Peek, ReadError> {
        let latest = self.latest();
        if latest == 0 || latest == self.last_seen {
            return Ok(Peek::Nothing);
        }
        let slot = self.map.geometry().slot_of(latest);
        let sm = self.map.slot_meta(slot);
        let header = sys::seq_read_begin(sm).and_then(|seq| {
            let raw_format = sm.format.load(Ordering::Relaxed);
            let meta = read_meta(sm, latest)?;
            sys::seq_read_validate(sm, seq).then_some((seq, meta, raw_format))
        });
        let Some((seq, meta, raw_format)) = header else {
            return Ok(Peek::Torn {
                frame_number: latest,
            });
        };
        self.validate_meta(&meta, raw_format)?;
        Ok(Peek::Frame { slot, seq, meta })
    }

    /// Zero-copy read of the newest frame: `f` sees the slot in place, then the slot's sequence
    /// is checked. `Ok(None)` when nothing new is there.
    pub fn read_zero_copy<R>(
        &mut self,
        f: impl FnOnce(&FrameView<'_>) -> R,
    ) -> Result<Option<ZeroCopy<R>>, ReadError> {
        let (slot, s, meta) = match self.peek_latest()? {
            Peek::Nothing => return Ok(None),
            Peek::Frame { slot, seq, meta } => (slot, seq, meta),
            Peek::Torn { frame_number } => {
                // One look only: a torn header here means the writer is on this slot now.
                self.lost(frame_number);
                return Ok(Some(ZeroCopy::Overwritten { frame_number }));
            }
        };
        let now = sys::monotonic_ns();
        let value = f(&self.map.view(slot, meta.len, meta));
        if !sys::seq_read_validate(self.map.slot_meta(slot), s) {
            self.lost(meta.frame_number);
            return Ok(Some(ZeroCopy::Overwritten {
                frame_number: meta.frame_number,
            }));
        }
        self.delivered(&meta, now);
        Ok(Some(ZeroCopy::Intact { meta, value }))
    }

    /// Whether a frame newer than the last one read is there.
    fn ready(&self, order: Ordering) -> bool {
        let latest = self.map.header().writer.latest.load(order);
        latest != 0 && latest != self.last_seen
    }

    /// Blocks until a frame newer than the last one read is published (`Ok(true)`) or
    /// `timeout` passes (`Ok(false)`). Sleeps on the segment's futex, never polls; keeps this
    /// reader's heartbeat fresh while waiting.
    ///
    /// A wake-up costs one registration (`waiters` up and down) and one clock read: with 20
    /// readers on two cores every access to the shared wake line is a cross-core transfer, and
    /// the wake-up path is what the zero-copy benchmark measures.
    pub fn wait_next(&mut self, timeout: Duration) -> Result<bool, ReadError> {
        // Pairs with the writer's SeqCst store of latest: the slot it names is complete.
        if self.ready(Ordering::Acquire) {
            return Ok(true);
        }
        let h = self.map.header();
        let entry = self.map.reader_entry(self.entry);
        let mut now = sys::monotonic_ns();
        let deadline = now.saturating_add(u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX));
        loop {
            entry.heartbeat_ns.store(now, Ordering::Relaxed);
            // Acquire: pairs with the writer's increment; loaded before registering as a waiter
            // so a publish after this point changes the word and FUTEX_WAIT returns at once.
            let word = h.wake.wake.load(Ordering::Acquire);
            h.wake.waiters.fetch_add(1, Ordering::SeqCst);
            // SeqCst: the other half of the handshake with the writer's latest store and
            // waiters load (see the sys module doc).
            let ready = self.ready(Ordering::SeqCst);
            if !ready && now < deadline {
                let remaining = Duration::from_nanos(deadline - now);
                sys::futex_wait(&h.wake.wake, word, remaining.min(MAX_SLEEP));
            }
            h.wake.waiters.fetch_sub(1, Ordering::SeqCst);
            // Acquire: as above; a publish during the sleep is seen here without another
            // registration round.
            if ready || self.ready(Ordering::Acquire) {
                return Ok(true);
            }
            now = sys::monotonic_ns();
            if now >= deadline {
                return Ok(false);
            }
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let e = self.entry();
        e.heartbeat_ns.store(0, Ordering::Relaxed);
        // Release: pairs with the AcqRel claim of the next reader.
        let _ = e
            .pid
            .compare_exchange(sys::my_pid(), 0, Ordering::Release, Ordering::Relaxed);
    }
}
