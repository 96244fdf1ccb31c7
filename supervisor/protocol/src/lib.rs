//! The control protocol between the supervisor and its clients (the CLI, the stream worker,
//! tests and tools), defined once: the messages ([`Request`], [`Response`]), the status JSON
//! of the SPEC ([`status`]), the worker names ([`WorkerName`]), the framing ([`frame`]) and a
//! blocking ([`client`]) and an async ([`async_client`], feature `tokio`) client.
//!
//! A Unix stream socket; each message is a 4-byte big-endian length followed by that many
//! bytes of JSON, at most [`MAX_MESSAGE_BYTES`]. The client sends one request and reads one
//! response; after answering `stop`, the server keeps the connection open until it has
//! finished stopping, so a client that reads on until end-of-file knows the tree is down (see
//! [`client::stop_and_wait`]). The whole protocol is described in `docs/control-protocol.md`.
//!
//! This crate knows the shape of the messages and nothing of how the supervisor runs the tree,
//! of shared memory or of OpenCV; it must stay light enough for any process to link.

#![forbid(unsafe_code)]

#[cfg(feature = "tokio")]
pub mod async_client;
pub mod client;
pub mod frame;
pub mod message;
pub mod status;
pub mod worker;

pub use client::{request, stop_and_wait, ClientError};
pub use frame::{read_frame, write_frame, FrameError, MAX_MESSAGE_BYTES};
pub use message::{Request, Response};
pub use status::Status;
pub use worker::{UnknownWorker, WorkerName};
