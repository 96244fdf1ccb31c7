//! A read-only observer of a segment for the supervisor and `status`.

use std::time::Duration;

use serde::Serialize;

use crate::layout::READER_CAPACITY;
use crate::location::SegmentLocation;
use crate::reader::decode_name;
use crate::segment::{map_waiting, SegmentInfo};
use crate::sys::{self, Access, Mapping, Ordering};
use crate::writer::{writer_state, WriterState};
use crate::AttachError;

/// Observes a segment's header and reader table without claiming an entry and without mapping
/// the payloads.
pub struct Monitor {
    map: Mapping,
    info: SegmentInfo,
}

/// A reader-table entry in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReaderSnapshot {
    /// Index of the entry.
    pub slot: usize,
    /// Pid of the reader.
    pub pid: u32,
    /// The name it attached with.
    pub name: String,
    /// Whether the pid is a live process.
    pub alive: bool,
    /// Time since its last heartbeat.
    pub heartbeat_age: Duration,
    /// Frames it read.
    pub frames_read: u64,
    /// Frames it missed.
    pub frames_missed: u64,
    /// Reads that found their slot overwritten.
    pub torn_retries: u64,
    /// Its publish-to-read latency, median.
    pub latency_p50_ns: u64,
    /// Its publish-to-read latency, 99th percentile.
    pub latency_p99_ns: u64,
}

/// Everything `status` needs from a segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentSnapshot {
    /// The segment.
    pub info: SegmentInfo,
    /// Its writer.
    pub writer: WriterState,
    /// Number of the newest frame (frames are numbered from 1 across writers).
    pub frames_published: u64,
    /// The writer's dropped-frame counter.
    pub frames_dropped: u64,
    /// Capture-to-publish latency of the writer, median.
    pub writer_latency_p50_ns: u64,
    /// Capture-to-publish latency of the writer, 99th percentile.
    pub writer_latency_p99_ns: u64,
    /// Entries in use.
    pub readers: Vec<ReaderSnapshot>,
}

impl Monitor {
    /// Opens an existing segment; fails at once if it is not there.
    pub fn open(loc: &SegmentLocation) -> Result<Monitor, AttachError> {
        let (map, info) = map_waiting(loc, Access::ControlOnly, Duration::ZERO)?;
        Ok(Monitor { map, info })
    }

    /// The segment.
    pub fn info(&self) -> &SegmentInfo {
        &self.info
    }

    /// The writer fields of the header.
    pub fn writer(&self) -> WriterState {
        writer_state(&self.map)
    }

    /// Reads the header and the reader table.
    pub fn snapshot(&self) -> SegmentSnapshot {
        let w = &self.map.header().writer;
        let now = sys::monotonic_ns();
        let readers = (0..READER_CAPACITY)
            .filter_map(|i| {
                let e = self.map.reader_entry(i);
                let pid = e.pid.load(Ordering::Acquire);
                (pid != 0).then(|| ReaderSnapshot {
                    slot: i,
                    pid,
                    name: decode_name([
                        e.name[0].load(Ordering::Relaxed),
                        e.name[1].load(Ordering::Relaxed),
                    ]),
                    alive: sys::pid_alive(pid),
                    heartbeat_age: Duration::from_nanos(
                        now.saturating_sub(e.heartbeat_ns.load(Ordering::Relaxed)),
                    ),
                    frames_read: e.frames_read.load(Ordering::Relaxed),
                    frames_missed: e.frames_missed.load(Ordering::Relaxed),
                    torn_retries: e.torn_retries.load(Ordering::Relaxed),
                    latency_p50_ns: e.latency_p50_ns.load(Ordering::Relaxed),
                    latency_p99_ns: e.latency_p99_ns.load(Ordering::Relaxed),
                })
            })
            .collect();
        let writer = writer_state(&self.map);
        SegmentSnapshot {
            info: self.info.clone(),
            frames_published: writer.latest_frame,
            writer,
            frames_dropped: w.frames_dropped.load(Ordering::Relaxed),
            writer_latency_p50_ns: w.latency_p50_ns.load(Ordering::Relaxed),
            writer_latency_p99_ns: w.latency_p99_ns.load(Ordering::Relaxed),
            readers,
        }
    }

    /// Tells the writer that this is a full stop: it unlinks the segment when it exits.
    pub fn mark_stopping(&self) {
        // Pairs with the Acquire load in Writer::stop_requested.
        self.map
            .header()
            .writer
            .stopping
            .store(1, Ordering::Release);
    }
}

#[cfg(test)]
impl Monitor {
    /// Overwrites an entry's pid, to simulate a reader process that died.
    pub(crate) fn forge_reader_pid_for_test(&self, slot: usize, pid: u32) {
        self.map
            .reader_entry(slot)
            .pid
            .store(pid, Ordering::Release);
    }
}
