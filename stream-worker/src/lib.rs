//! billiards-stream-worker: MJPEG streaming, JSON APIs, Prometheus metrics and the live
//! dashboard over HTTP (SPEC "HTTP").
//!
//! This crate owns the HTTP side of the product: one reader of the frame segment per process
//! (a dedicated thread handing frames to the async side through a latest-value channel), JPEG
//! encoding once per frame per watched (quality, overlay) variant shared by all of that
//! variant's clients, per-client pacing that skips rather than queues, the detections overlay,
//! auth, `/metrics`, `/api/status` (relayed from the supervisor's control socket), the
//! dashboard page, and the H.264 live view ([`h264`]: OpenH264 once per watched bitrate,
//! fragmented MP4 over a WebSocket).
//!
//! It must not know how frames are captured or how detections are computed: it only reads the
//! frame segment and the detections channel through `shm-core`, and the supervisor's status
//! through its control socket. The server never writes to shared memory; only [`feed`], a
//! synthetic writer for the process tests and the `stream-load` load generator, does.
//!
//! Binaries: `billiards-stream-worker` (the worker) and `stream-load` (load generator and
//! measurements, see `src/bin/stream-load.rs`).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod conn;
pub mod control;
pub mod dashboard;
pub mod detections;
pub mod encode;
pub mod feed;
pub mod frames;
pub mod h264;
pub mod host;
pub mod hub;
pub mod metrics;
pub mod multipart;
pub mod nosignal;
pub mod pool;
pub mod push;
pub mod query;
pub mod routes;
pub mod server;
pub mod shots;
pub mod shutdown;
pub mod stream;

pub use server::{run, RunError};
