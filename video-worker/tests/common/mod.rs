//! Helpers of the video worker's process tests: unique names, temp configs, test videos made
//! with OpenCV's VideoWriter, and guards that kill the worker and unlink segments even when a
//! test fails.

#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use opencv::core::{Mat, Scalar, Size, CV_8UC3};
use opencv::prelude::*;
use opencv::videoio;
use shm_core::{AttachOptions, CreateMode, Reader, SegmentLocation, SegmentSpec};

pub const BIN: &str = env!("CARGO_BIN_EXE_billiards-video-worker");

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A segment name no other test (or test process) uses.
pub fn unique_name(tag: &str) -> String {
    format!(
        "vwtest_{tag}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A temp dir holding the config, videos and the worker's stderr.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub shm_name: String,
}

impl Workspace {
    pub fn new(tag: &str) -> Self {
        Workspace {
            dir: tempfile::tempdir().expect("temp dir"),
            shm_name: unique_name(tag),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn location(&self) -> SegmentLocation {
        SegmentLocation::new(&self.shm_name, self.dir.path()).expect("segment name")
    }

    /// Writes a config with `video` lines (without shm_name / fallback_dir) and `source`
    /// lines for `[video.source]`.
    pub fn config(&self, video: &str, source: &str) -> PathBuf {
        let text = format!(
            "[video]\nshm_name = \"{}\"\nfallback_dir = \"{}\"\n{video}\n\n[video.source]\n{source}\n",
            self.shm_name,
            self.dir.path().display()
        );
        let p = self.path("billiards.toml");
        std::fs::write(&p, text).expect("write config");
        p
    }

    /// Creates the frame segment as the supervisor would, and a guard that unlinks it.
    pub fn create_segment(&self, width: u32, height: u32, slots: u32) -> SegmentGuard {
        let loc = self.location();
        shm_core::create(
            &loc,
            &SegmentSpec::frames(width, height, slots),
            CreateMode::Exclusive,
        )
        .expect("create segment");
        SegmentGuard(loc)
    }

    pub fn guard_segment(&self) -> SegmentGuard {
        SegmentGuard(self.location())
    }

    pub fn attach(&self, timeout: Duration) -> Reader {
        Reader::attach(&self.location(), AttachOptions::new("video-test", timeout))
            .expect("attach reader")
    }

    /// Starts the worker with this config; stderr goes to a file read by [`Worker::stderr`].
    pub fn spawn(&self, config: &Path, extra: &[&str]) -> Worker {
        self.spawn_env(config, extra, &[])
    }

    pub fn spawn_env(&self, config: &Path, extra: &[&str], env: &[(&str, &str)]) -> Worker {
        let stderr_path = self.path(&format!(
            "stderr-{}.log",
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let stderr = File::create(&stderr_path).expect("stderr file");
        let mut cmd = Command::new(BIN);
        cmd.arg("--config").arg(config).args(extra);
        cmd.env_remove("VIDEO_FILE")
            .env_remove("BILLIARDS_CONFIG")
            .env("RUST_LOG", "debug");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn video worker");
        Worker {
            child: Some(child),
            stderr_path,
        }
    }
}

/// Unlinks the segment when dropped.
pub struct SegmentGuard(pub SegmentLocation);

impl Drop for SegmentGuard {
    fn drop(&mut self) {
        let _ = shm_core::unlink(&self.0);
    }
}

/// A running worker; killed and reaped when dropped.
pub struct Worker {
    child: Option<Child>,
    stderr_path: PathBuf,
}

impl Worker {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).expect("signal worker");
    }

    /// Waits up to `timeout` for the exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Some(s) = child.try_wait().expect("try_wait") {
                return Some(s);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().expect("try_wait")
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if c.try_wait().ok().flatten().is_none() {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

/// Bit `b` of a frame index is drawn as column band `b` of the frame: white for 1, black
/// for 0. Survives JPEG and resizing.
pub const BANDS: i32 = 8;

pub fn encode_index(frame: &mut Mat, index: u32) {
    let (w, h) = (frame.cols(), frame.rows());
    frame
        .set_to(&Scalar::all(0.0), &opencv::core::no_array())
        .expect("clear");
    for b in 0..BANDS {
        if index >> b & 1 == 1 {
            let x0 = b * w / BANDS;
            let x1 = (b + 1) * w / BANDS;
            let rect = opencv::core::Rect::new(x0, 0, x1 - x0, h);
            let mut roi = Mat::roi_mut(frame, rect).expect("roi");
            roi.set_to(&Scalar::all(255.0), &opencv::core::no_array())
                .expect("fill");
        }
    }
}

/// Reads the index back from a packed BGR8 frame.
pub fn decode_index(data: &[u8], width: u32, height: u32) -> u32 {
    let mut index = 0;
    for b in 0..BANDS as u32 {
        let x = (2 * b + 1) * width / (2 * BANDS as u32);
        let y = height / 2;
        let i = ((y * width + x) * 3) as usize;
        let v = (data[i] as u32 + data[i + 1] as u32 + data[i + 2] as u32) / 3;
        if v > 128 {
            index |= 1 << b;
        }
    }
    index
}

/// Writes an MJPG AVI of `frames` frames whose pixels encode their index.
pub fn write_video(path: &Path, frames: u32, width: i32, height: i32, fps: f64) {
    let fourcc = videoio::VideoWriter::fourcc('M', 'J', 'P', 'G').expect("fourcc");
    let mut w = videoio::VideoWriter::new(
        path.to_str().expect("utf-8 path"),
        fourcc,
        fps,
        Size::new(width, height),
        true,
    )
    .expect("video writer");
    assert!(
        w.is_opened().expect("is_opened"),
        "cannot write {}",
        path.display()
    );
    let mut frame =
        Mat::new_rows_cols_with_default(height, width, CV_8UC3, Scalar::all(0.0)).expect("mat");
    for i in 0..frames {
        encode_index(&mut frame, i);
        w.write(&frame).expect("write frame");
    }
    w.release().expect("release writer");
}

/// Whether a segment file is left in /dev/shm or the fallback dir.
pub fn segment_exists(loc: &SegmentLocation) -> bool {
    loc.existing_path().is_some()
}
