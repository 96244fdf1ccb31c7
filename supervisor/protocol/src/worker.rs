//! The names of the three workers and what the supervisor knows about each kind.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One of the three workers of the tree, in start order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerName {
    /// Captures frames and is the only writer of the frame segment.
    Video,
    /// Reads frames, writes detections.
    Vision,
    /// Reads frames and detections, serves HTTP.
    Stream,
}

impl WorkerName {
    /// Every worker, in start order (the stop order is the reverse).
    pub const ALL: [WorkerName; 3] = [WorkerName::Video, WorkerName::Vision, WorkerName::Stream];

    /// The name used in commands, logs and the status JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerName::Video => "video",
            WorkerName::Vision => "vision",
            WorkerName::Stream => "stream",
        }
    }

    /// The file name of the worker's executable.
    pub fn binary(self) -> &'static str {
        match self {
            WorkerName::Video => "billiards-video-worker",
            WorkerName::Vision => "billiards-vision-worker",
            WorkerName::Stream => "billiards-stream-worker",
        }
    }

    /// Position in [`WorkerName::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The config key that turns this worker off (the video worker cannot be turned off; its
    /// section is named instead).
    pub fn enabled_key(self) -> &'static str {
        match self {
            WorkerName::Video => "video",
            WorkerName::Vision => "vision.enabled",
            WorkerName::Stream => "stream.enabled",
        }
    }

    /// Whether this worker reads the frame segment (and so heartbeats in its reader table).
    pub fn is_reader(self) -> bool {
        !matches!(self, WorkerName::Video)
    }
}

impl fmt::Display for WorkerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A worker name that is not `video`, `vision` or `stream`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown worker {0:?}: expected one of video, vision, stream")]
pub struct UnknownWorker(pub String);

impl FromStr for WorkerName {
    type Err = UnknownWorker;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "video" => Ok(WorkerName::Video),
            "vision" => Ok(WorkerName::Vision),
            "stream" => Ok(WorkerName::Stream),
            other => Err(UnknownWorker(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_text_and_json() {
        for w in WorkerName::ALL {
            assert_eq!(w.as_str().parse::<WorkerName>().unwrap(), w);
            let json = serde_json::to_string(&w).unwrap();
            assert_eq!(json, format!("\"{}\"", w.as_str()));
            assert_eq!(WorkerName::ALL[w.index()], w);
        }
        let err = "audio".parse::<WorkerName>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown worker \"audio\": expected one of video, vision, stream"
        );
    }
}
