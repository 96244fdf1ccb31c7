//! The client of the supervisor's control socket, for `/api/status` and the restart counters
//! of `/metrics`. The protocol is defined once, in the `billiards-protocol` crate; this module
//! re-exports the async status request and its error.

pub use protocol::async_client::status;
pub use protocol::ClientError as ControlError;
pub use protocol::MAX_MESSAGE_BYTES as MAX_MESSAGE;
