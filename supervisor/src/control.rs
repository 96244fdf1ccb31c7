//! The control protocol, as the supervisor's own modules name it. Everything is defined in
//! the `billiards-protocol` crate (shared with the CLI's clients and the stream worker); this
//! module only re-exports it.

pub use protocol::client::{request, status, stop_and_wait, ClientError};
pub use protocol::frame::{async_frame, read_frame, write_frame, FrameError, MAX_MESSAGE_BYTES};
pub use protocol::message::{Request, Response};
