//! Exit codes shared by every binary of the product, so that the supervisor can classify a
//! worker's exit without parsing its logs.

/// Clean stop, or a finished non-looping file source.
pub const OK: i32 = 0;
/// Any other failure.
pub const FAILURE: i32 = 1;
/// Bad configuration or command-line usage.
pub const USAGE: i32 = 2;
/// `status`, `stop`, `restart`: no supervisor is running.
pub const NOT_RUNNING: i32 = 3;
/// Video worker: the camera (or video file) could not be opened or stopped delivering frames.
pub const SOURCE_UNAVAILABLE: i32 = 10;
/// Vision/stream worker: the frame segment did not appear within `video.attach_timeout_sec`.
pub const VIDEO_NOT_AVAILABLE: i32 = 11;
/// Any worker: the shared-memory segment exists but is invalid (bad magic, version or sizes).
pub const SEGMENT_INVALID: i32 = 12;

/// A worker that exits with a failure code prints one line that contains this tag followed by
/// the reason in words (e.g. `exit-reason: camera unavailable: /dev/video9: no such device`);
/// the supervisor keeps the text after the tag of the last such line as `last_exit.reason`.
pub const EXIT_REASON_TAG: &str = "exit-reason: ";
