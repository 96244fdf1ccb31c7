//! The vision worker: table and ball detection on frames from shared memory.
//!
//! It owns the detector ([`detect`]), the detections JSON ([`model`]), the loop that reads the
//! newest frame from the frame segment and publishes one detections record per processed
//! frame on the detections channel ([`worker`]), a small ball tracker ([`track`]), an
//! independent scene generator for tests ([`scene`]) and the accuracy scoring ([`eval`]).
//!
//! It must not know how frames are captured or rendered (the video worker's business), how the
//! detections are served (the stream worker's), nor how workers are supervised: it only
//! heartbeats in the frame segment's reader table and exits with the documented codes.

#![warn(missing_docs)]

pub mod detect;
pub mod eval;
pub mod model;
pub mod scene;
pub mod track;
pub mod worker;
