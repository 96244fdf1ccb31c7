//! One error enum per operation. Messages are lowercase and say what to fix.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// A segment name that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    /// Empty name.
    #[error("segment name is empty; use a name like \"billiards_video\"")]
    Empty,
    /// Longer than 200 bytes.
    #[error("segment name {name:?} is {len} bytes long; use at most 200")]
    TooLong {
        /// The name.
        name: String,
        /// Its length.
        len: usize,
    },
    /// A character other than letters, digits, `_`, `-`, `.`; or a leading `.`.
    #[error("segment name {name:?} may use only letters, digits, '_', '-' and '.', and must not start with '.'")]
    BadChar {
        /// The name.
        name: String,
    },
}

/// Why a segment could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The segment already exists and the mode was exclusive.
    #[error("segment {name} already exists at {path}; another process may be using it, or remove the stale one")]
    Exists {
        /// The segment name.
        name: String,
        /// Where it exists.
        path: PathBuf,
    },
    /// The spec describes no possible segment.
    #[error("cannot create segment {name}: {reason}")]
    InvalidSpec {
        /// The segment name.
        name: String,
        /// What is wrong with the spec.
        reason: String,
    },
    /// The operating system refused.
    #[error("cannot create segment {name}: {op} {path}: {cause}")]
    Io {
        /// The segment name.
        name: String,
        /// What was being done.
        op: &'static str,
        /// The shm object or file.
        path: PathBuf,
        /// The OS error (part of the message, so not chained as a source as well).
        cause: io::Error,
    },
}

/// Why a segment could not be removed.
#[derive(Debug, thiserror::Error)]
#[error("cannot remove segment {name} at {path}: {cause}")]
pub struct UnlinkError {
    /// The segment name.
    pub name: String,
    /// The shm object or file.
    pub path: PathBuf,
    /// The OS error (part of the message, so not chained as a source as well).
    pub cause: io::Error,
}

/// Why a reader (or monitor) could not attach.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// No segment appeared within the timeout.
    #[error("segment {name} not found after {:.1} s", .waited.as_secs_f64())]
    NotFound {
        /// The segment name.
        name: String,
        /// How long we waited.
        waited: Duration,
    },
    /// The segment exists but is not a valid segment of this version.
    #[error("segment {name} at {path} is invalid: {reason}; remove it so that its creator makes a new one")]
    Invalid {
        /// The segment name.
        name: String,
        /// Where it is.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// All reader entries are taken by live processes.
    #[error("segment {name} has no free reader entry (all {capacity} are used by live processes)")]
    ReaderTableFull {
        /// The segment name.
        name: String,
        /// Entries in the table.
        capacity: usize,
    },
    /// The operating system refused.
    #[error("cannot open segment {name} at {path}: {cause}")]
    Io {
        /// The segment name.
        name: String,
        /// The shm object or file.
        path: PathBuf,
        /// The OS error (part of the message, so not chained as a source as well).
        cause: io::Error,
    },
}

/// Why a writer could not open a segment.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The segment is missing, invalid or inaccessible.
    #[error(transparent)]
    Attach(#[from] AttachError),
    /// The segment does not exist (or its creator has not finished initialising it).
    #[error("segment {name} does not exist; create it before opening it as the writer")]
    Missing {
        /// The segment name.
        name: String,
    },
    /// The segment's geometry differs from the configured one.
    #[error("segment {name} holds {found} but the writer asks for {expected}; recreate the segment with the new geometry")]
    SpecMismatch {
        /// The segment name.
        name: String,
        /// What the segment holds.
        found: String,
        /// What was asked.
        expected: String,
    },
    /// Another live process is the writer.
    #[error(
        "segment {name} already has a live writer (pid {pid}); only one writer may run per segment"
    )]
    WriterActive {
        /// The segment name.
        name: String,
        /// The other writer.
        pid: u32,
    },
    /// The header's latest frame number leaves no next one (only a corrupted or hostile
    /// segment says so).
    #[error("segment {name} says its latest frame is {latest}, which leaves no next frame number; the segment is corrupt; unlink it so that its creator makes it anew")]
    Exhausted {
        /// The segment name.
        name: String,
        /// The latest frame number found in the header.
        latest: u64,
    },
}

/// Why a frame could not be published.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PublishError {
    /// The payload does not fit a slot.
    #[error("payload of {len} bytes does not fit a slot of {capacity} bytes")]
    TooLarge {
        /// Payload size.
        len: usize,
        /// Slot capacity.
        capacity: usize,
    },
    /// The metadata contradicts the payload.
    #[error("invalid frame metadata: {0}")]
    InvalidMeta(String),
    /// Every frame number has been used (the segment's header was corrupted).
    #[error("no frame number is left after u64::MAX; the segment's header was corrupted, recreate the segment")]
    Exhausted,
}

/// Why a read failed (as opposed to finding nothing new).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReadError {
    /// A slot's metadata is impossible: someone other than the writer changed the segment.
    #[error("segment {name} is corrupt: {reason}")]
    Corrupt {
        /// The segment name.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    /// shm-core knows segments, writers and readers, not who runs them: no message may send
    /// the user to a worker, the supervisor or a camera.
    #[test]
    fn messages_name_no_process_of_the_product() {
        let source = include_str!("error.rs");
        // Each `#[error(...)]` attribute, joined across its lines.
        let mut messages = Vec::new();
        let mut open: Option<String> = None;
        for line in source.lines().map(str::trim) {
            if let Some(m) = open.as_mut() {
                m.push_str(line);
            } else if line.starts_with("#[error(") {
                open = Some(line.to_string());
            }
            if open.is_some() && line.ends_with(")]") {
                messages.extend(open.take());
            }
        }
        assert!(messages.len() >= 15, "found only {messages:?}");
        for m in &messages {
            // Quoted examples (a segment name like \"billiards_video\") are names, not advice.
            let words: String = m.split("\\\"").step_by(2).collect();
            let lower = words.to_lowercase();
            for word in [
                "video",
                "vision",
                "stream",
                "supervisor",
                "worker",
                "camera",
            ] {
                assert!(!lower.contains(word), "shm-core knows no {word}: {m}");
            }
        }
    }
}
