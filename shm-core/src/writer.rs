//! The single writer of a segment.

use std::time::Duration;

use serde::Serialize;

use crate::latency::LatencyWindow;
use crate::location::SegmentLocation;
use crate::segment::{map_existing, spec_matches, MapFailure, SegmentInfo};
use crate::sys::{self, Access, Mapping, Ordering};
use crate::{OpenError, PixelFormat, PublishError, SegmentSpec};

/// How often the writer refreshes its latency percentiles in the header.
const STATS_INTERVAL_NS: u64 = 500_000_000;

/// Metadata the writer attaches to a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishMeta {
    /// When the frame was captured (CLOCK_MONOTONIC ns).
    pub capture_ns: u64,
    /// Width in pixels (0 for bytes).
    pub width: u32,
    /// Height in pixels (0 for bytes).
    pub height: u32,
    /// Bytes per row (0 for bytes).
    pub stride: u32,
    /// Payload format.
    pub format: PixelFormat,
}

impl PublishMeta {
    /// A tightly packed BGR8 frame.
    pub fn bgr(width: u32, height: u32, capture_ns: u64) -> PublishMeta {
        PublishMeta {
            capture_ns,
            width,
            height,
            stride: width * 3,
            format: PixelFormat::Bgr8,
        }
    }

    /// An opaque message (e.g. JSON) tied to the frame captured at `capture_ns`.
    pub fn bytes(capture_ns: u64) -> PublishMeta {
        PublishMeta {
            capture_ns,
            width: 0,
            height: 0,
            stride: 0,
            format: PixelFormat::Bytes,
        }
    }

    /// Checks that the metadata describes a payload of `len` bytes.
    pub(crate) fn check(&self, len: usize) -> Result<(), String> {
        let Some(bpp) = self.format.bytes_per_pixel() else {
            return Ok(());
        };
        let row = u64::from(self.width) * u64::from(bpp);
        if u64::from(self.stride) < row {
            return Err(format!(
                "stride {} is less than width {} x {bpp} bytes",
                self.stride, self.width
            ));
        }
        let need = u64::from(self.stride) * u64::from(self.height);
        if need > len as u64 {
            return Err(format!(
                "{}x{} frame with stride {} needs {need} bytes but the payload has {len}",
                self.width, self.height, self.stride
            ));
        }
        Ok(())
    }
}

/// What a segment says about its writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WriterState {
    /// Pid of the last writer (0: none since creation, or it closed cleanly).
    pub pid: u32,
    /// Whether that pid is a live process.
    pub alive: bool,
    /// Incremented by every writer that opens the segment.
    pub generation: u32,
    /// Number of the newest published frame (0: none yet).
    pub latest_frame: u64,
    /// Time since the writer's last heartbeat or publish.
    pub heartbeat_age: Option<Duration>,
}

pub(crate) fn writer_state(map: &Mapping) -> WriterState {
    let w = &map.header().writer;
    let pid = w.writer_pid.load(Ordering::Acquire);
    let hb = w.heartbeat_ns.load(Ordering::Relaxed);
    WriterState {
        pid,
        alive: sys::pid_alive(pid),
        generation: w.writer_generation.load(Ordering::Relaxed),
        // Pairs with the writer's SeqCst store of latest.
        latest_frame: w.latest.load(Ordering::Acquire),
        heartbeat_age: (hb != 0)
            .then(|| Duration::from_nanos(sys::monotonic_ns().saturating_sub(hb))),
    }
}

/// The only writer of a segment. Opening it records this process as the writer, bumps the
/// generation and continues the previous writer's frame numbering.
pub struct Writer {
    map: Mapping,
    info: SegmentInfo,
    generation: u32,
    next: u64,
    latency: LatencyWindow,
    last_stats_ns: u64,
}

impl Writer {
    /// Opens an existing segment for writing; its geometry must equal `expected`.
    pub fn open(loc: &SegmentLocation, expected: &SegmentSpec) -> Result<Writer, OpenError> {
        let (map, info) = match map_existing(loc, Access::ReadWrite) {
            Ok(m) => m,
            Err(MapFailure::Fatal(e)) => return Err(e.into()),
            Err(MapFailure::Missing) | Err(MapFailure::Initialising) => {
                return Err(OpenError::Missing {
                    name: loc.name().into(),
                })
            }
        };
        spec_matches(&info, expected).map_err(|(found, expected)| OpenError::SpecMismatch {
            name: loc.name().into(),
            found,
            expected,
        })?;
        let w = &map.header().writer;
        let me = std::process::id();
        let old = w.writer_pid.load(Ordering::Acquire);
        if old != 0 && old != me && sys::pid_alive(old) {
            return Err(OpenError::WriterActive {
                name: loc.name().into(),
                pid: old,
            });
        }
        // Release: readers that see our pid also see the generation bump below... advisory only.
        w.writer_pid.store(me, Ordering::Release);
        let generation = w
            .writer_generation
            .fetch_add(1, Ordering::AcqRel)
            .wrapping_add(1);
        // We are the only writer now, so latest cannot move under us. The header is shared
        // memory, so a hostile or corrupted one may say anything: no frame number follows
        // u64::MAX.
        let latest = w.latest.load(Ordering::Acquire);
        let next = latest.checked_add(1).ok_or_else(|| OpenError::Exhausted {
            name: loc.name().into(),
            latest,
        })?;
        w.heartbeat_ns.store(sys::monotonic_ns(), Ordering::Relaxed);
        Ok(Writer {
            map,
            info,
            generation,
            next,
            latency: LatencyWindow::new(512),
            last_stats_ns: 0,
        })
    }

    /// The segment.
    pub fn info(&self) -> &SegmentInfo {
        &self.info
    }

    /// This writer's generation (1 for the first writer of a segment).
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The number the next published frame will get.
    pub fn next_frame_number(&self) -> u64 {
        self.next
    }

    /// Copies `data` into the next slot and publishes it; returns its frame number.
    pub fn publish(&mut self, data: &[u8], meta: PublishMeta) -> Result<u64, PublishError> {
        let capacity = self.info.spec.slot_capacity;
        if data.len() > capacity {
            return Err(PublishError::TooLarge {
                len: data.len(),
                capacity,
            });
        }
        meta.check(data.len()).map_err(PublishError::InvalidMeta)?;
        self.publish_with(meta, |slot| {
            slot[..data.len()].copy_from_slice(data);
            data.len()
        })
    }

    /// Lets `fill` write straight into the next slot (offered whole) and publishes it; `fill`
    /// returns how many bytes it wrote. If `fill` reports more than a slot holds, or bytes that
    /// contradict `meta`, nothing is published.
    pub fn publish_with(
        &mut self,
        meta: PublishMeta,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) -> Result<u64, PublishError> {
        let n = self.next;
        if n == 0 {
            // Only a hostile header can bring this about (2^64 frames); wrapping would reuse
            // frame numbers that readers have already seen.
            return Err(PublishError::Exhausted);
        }
        let slot = self.map.geometry().slot_of(n);
        let capacity = self.info.spec.slot_capacity;
        let generation = self.generation;
        let result = self.map.write_slot(slot, |payload, m| {
            let len = fill(payload);
            if len > capacity {
                return Err(PublishError::TooLarge { len, capacity });
            }
            meta.check(len).map_err(PublishError::InvalidMeta)?;
            // Inside the seqlock: readers validate these with the sequence. The frame number
            // is what tells a reader that the slot holds the frame `latest` names.
            m.frame_number.store(n, Ordering::Relaxed);
            m.capture_ns.store(meta.capture_ns, Ordering::Relaxed);
            m.len.store(len as u64, Ordering::Relaxed);
            m.width.store(meta.width, Ordering::Relaxed);
            m.height.store(meta.height, Ordering::Relaxed);
            m.stride.store(meta.stride, Ordering::Relaxed);
            m.format.store(meta.format as u32, Ordering::Relaxed);
            m.generation.store(generation, Ordering::Relaxed);
            let now = sys::monotonic_ns();
            m.publish_ns.store(now, Ordering::Relaxed);
            Ok(now)
        });
        let publish_ns = match result {
            Ok(t) => t,
            Err(e) => {
                // The slot now holds a frame number that `latest` never names; readers skip it.
                self.map
                    .slot_meta(slot)
                    .frame_number
                    .store(0, Ordering::Relaxed);
                return Err(e);
            }
        };
        let h = self.map.header();
        // SeqCst: one half of the wake-up handshake (see sys module doc).
        h.writer.latest.store(n, Ordering::SeqCst);
        h.writer.heartbeat_ns.store(publish_ns, Ordering::Relaxed);
        // Release: pairs with the reader's Acquire load of wake before it sleeps.
        h.wake.wake.fetch_add(1, Ordering::SeqCst);
        if h.wake.waiters.load(Ordering::SeqCst) > 0 {
            sys::futex_wake_all(&h.wake.wake);
        }
        // 0 (never a frame number) marks the numbering as used up; see the check above.
        self.next = n.checked_add(1).unwrap_or(0);
        self.latency
            .record(publish_ns.saturating_sub(meta.capture_ns));
        if publish_ns.saturating_sub(self.last_stats_ns) >= STATS_INTERVAL_NS {
            self.last_stats_ns = publish_ns;
            let (p50, p99) = self.latency.percentiles();
            h.writer.latency_p50_ns.store(p50, Ordering::Relaxed);
            h.writer.latency_p99_ns.store(p99, Ordering::Relaxed);
        }
        Ok(n)
    }

    /// Marks the writer alive without publishing (e.g. while a camera reconnects).
    pub fn heartbeat(&self) {
        self.map
            .header()
            .writer
            .heartbeat_ns
            .store(sys::monotonic_ns(), Ordering::Relaxed);
    }

    /// Adds to the writer's dropped-frame counter (capture failures, lag skips).
    pub fn add_dropped(&self, n: u64) {
        self.map
            .header()
            .writer
            .frames_dropped
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Whether the supervisor asked for a full stop (see `Monitor::mark_stopping`): the writer
    /// should unlink the segment on its way out.
    pub fn stop_requested(&self) -> bool {
        // Pairs with the Release store in Monitor::mark_stopping.
        self.map.header().writer.stopping.load(Ordering::Acquire) != 0
    }

    /// The writer fields of the header.
    pub fn state(&self) -> WriterState {
        writer_state(&self.map)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // A clean close says "no writer" (pid 0); a crash leaves the dead pid, which readers
        // and the supervisor detect with kill(pid, 0).
        let _ = self.map.header().writer.writer_pid.compare_exchange(
            std::process::id(),
            0,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }
}
