//! The vision worker: table and ball detection on frames from shared memory.
//!
//! It owns the detector ([`detect`]), the detections JSON ([`model`]), the loop that reads the
//! newest frame from the frame segment and publishes one detections record per processed
//! frame on the detections channel ([`worker`]), the ball tracker with numbers, motion and
//! pockets ([`track`], [`identify`]), shot detection ([`shots`]), an
//! independent scene generator for tests ([`scene`]) and the accuracy scoring ([`eval`], and
//! [`sequence`] over time).
//!
//! It must not know how frames are captured or rendered (the video worker's business), how the
//! detections are served (the stream worker's), nor how workers are supervised: it only
//! heartbeats in the frame segment's reader table and exits with the documented codes.

#![warn(missing_docs)]

pub mod detect;
pub mod eval;
pub mod identify;
pub mod model;
pub mod scene;
pub mod sequence;
pub mod shots;
pub mod track;
pub mod worker;
