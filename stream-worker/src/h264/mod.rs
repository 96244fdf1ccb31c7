//! The low-bandwidth live view (SPEC "Low-bandwidth live view (H.264)"): `GET /stream/h264`
//! upgrades to a WebSocket that carries a fragmented-MP4 H.264 stream.
//!
//! - [`yuv`]: BGR to I420, the encoder's input, in integer arithmetic.
//! - [`encoder`]: one OpenH264 encoder (built from source, see docs/DEPLOYMENT.md for the
//!   licence) with the live view's settings.
//! - [`fmp4`]: the init segment and one `moof` + `mdat` fragment per frame.
//! - [`hub`]: one encoder per watched bitrate on the shared encoder pool, keyframe policy.
//! - [`ws`]: the WebSocket endpoint and the per-client sender, which skips to the next
//!   keyframe rather than queueing.
//! - [`metrics`]: the figures `/metrics` shows.
//!
//! It knows nothing of JPEG, the overlay or the dashboard; it reads frames from the same
//! latest-value channel as the JPEG encoders.

pub mod encoder;
pub mod fmp4;
pub mod hub;
pub mod metrics;
pub mod ws;
pub mod yuv;

pub use hub::{H264Hub, H264Settings};
pub use metrics::H264Metrics;
