//! Why the worker stopped with a failure, and the exit code each reason maps to.

use config::exit_codes;

use crate::synthetic::SceneError;

/// A failure that ends the worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The camera or video file cannot be opened, or stopped delivering frames. Exit code
    /// [`exit_codes::SOURCE_UNAVAILABLE`]; the message is the supervisor's `last_exit.reason`.
    #[error("{kind} unavailable: {device}: {why}")]
    SourceUnavailable {
        /// `camera` or `video file`.
        kind: &'static str,
        /// The device path or file path.
        device: String,
        /// What went wrong, in words.
        why: String,
    },
    /// `[video.calibration]` names a file that cannot be used. Exit code
    /// [`exit_codes::USAGE`]: like a bad config, a restart cannot fix it.
    #[error("{0}")]
    Calibration(#[from] crate::calibration::CalibrationError),
    /// The synthetic scene cannot be built for this configuration.
    #[error("synthetic source: {0}")]
    Scene(#[from] SceneError),
    /// The lens distortion of the synthetic source cannot be built.
    #[error("synthetic source: video.source.distortion: cannot build the lens maps: {0}")]
    Distortion(String),
    /// `video.shm_name` is not usable as a segment name.
    #[error("frame segment: {0}")]
    Name(#[from] billiards_supervised::SegmentNameError),
    /// A standalone worker could not create the frame segment.
    #[error("frame segment: {0}")]
    Create(#[from] shm_core::CreateError),
    /// The frame segment could not be opened for writing.
    #[error("frame segment: {0}")]
    Open(#[from] shm_core::OpenError),
    /// A standalone worker found the segment in use by a live writer.
    #[error(
        "frame segment {name} is in use by a live video worker (pid {pid}); stop it (or the \
         supervisor) first, or set another video.shm_name"
    )]
    InUse {
        /// Segment name.
        name: String,
        /// The live writer.
        pid: u32,
    },
    /// Publishing failed for a reason other than the source (a bug or a corrupt segment).
    #[error("cannot publish a frame: {0}")]
    Publish(#[from] shm_core::PublishError),
}

impl WorkerError {
    /// The process exit code for this failure (see [`config::exit_codes`]).
    pub fn exit_code(&self) -> i32 {
        match self {
            WorkerError::SourceUnavailable { .. } => exit_codes::SOURCE_UNAVAILABLE,
            WorkerError::Calibration(_) => exit_codes::USAGE,
            WorkerError::Open(shm_core::OpenError::SpecMismatch { .. })
            | WorkerError::Open(shm_core::OpenError::Attach(shm_core::AttachError::Invalid {
                ..
            })) => exit_codes::SEGMENT_INVALID,
            _ => exit_codes::FAILURE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_failures_read_as_the_supervisor_expects() {
        let e = WorkerError::SourceUnavailable {
            kind: "camera",
            device: "/dev/video99".into(),
            why: "no such device".into(),
        };
        assert_eq!(
            e.to_string(),
            "camera unavailable: /dev/video99: no such device"
        );
        assert_eq!(e.exit_code(), 10);
        let e = WorkerError::InUse {
            name: "x".into(),
            pid: 5,
        };
        assert_eq!(e.exit_code(), 1);
    }
}
