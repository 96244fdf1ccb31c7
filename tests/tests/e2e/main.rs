//! Whole-tree process tests: the real `billiards-supervisor` with the real workers (plus a
//! scripted stand-in worker for what real workers cannot be made to do on purpose).
//!
//! Build the binaries first (cargo builds only this package's binaries for its tests):
//! `cargo build -p billiards-supervisor -p billiards-video-worker -p billiards-vision-worker
//! -p billiards-stream-worker -p billiards-tests`, then `cargo test -p billiards-tests`.

mod chaos;
mod cli;
mod hardening;
mod lifecycle;
mod nosignal;
mod restarts;
mod scripted;
