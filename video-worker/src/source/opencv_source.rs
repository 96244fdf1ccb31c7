//! File and camera capture through OpenCV's videoio (FFmpeg backend for files, V4L2 for
//! cameras), written into the slot through a matrix header over the slot memory so that
//! OpenCV's final copy (or the resize) lands in shared memory directly.

use std::ffi::c_void;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::sync::atomic::AtomicBool;

use config::VideoConfig;
use opencv::core::{Mat, Size, CV_8UC3};
use opencv::prelude::*;
use opencv::{imgproc, videoio};
use tracing::{debug, info, warn};

use super::controls::{camera_controls, show};
use super::{FrameSource, Next};
use crate::pacing::{Pace, Pacer};
use crate::WorkerError;

enum Kind {
    File {
        path: String,
        looping: bool,
        pacer: Pacer,
        /// Frames grabbed since the file was (re)opened or rewound.
        since_rewind: u64,
        /// Times the file was played to its end.
        loops: u64,
    },
    Camera {
        device: String,
        /// Nominal frame period in ms, to spot frames the driver dropped.
        period_ms: f64,
        last_ts_ms: Option<f64>,
    },
}

pub(crate) struct CvSource {
    cap: videoio::VideoCapture,
    kind: Kind,
    width: i32,
    height: i32,
    /// The source already delivers BGR8 frames of the target size: retrieve into the slot.
    direct: bool,
    /// The captured frame when it must be converted or resized into the slot.
    frame: Mat,
    /// Colour-conversion scratch.
    converted: Mat,
    /// A matrix header per slot address (created once; the slots stay mapped while we run).
    slot_mats: Vec<(usize, Mat)>,
    resize_logged: bool,
    skipped: u64,
    description: String,
}

fn unavailable(kind: &'static str, device: &str, why: impl Into<String>) -> WorkerError {
    WorkerError::SourceUnavailable {
        kind,
        device: device.to_string(),
        why: why.into(),
    }
}

fn io_words(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let s = e.to_string();
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_lowercase().collect::<String>() + c.as_str())
                .unwrap_or(s)
        }
    }
}

/// Why a camera device cannot be opened, in words.
fn diagnose_device(device: &str) -> String {
    match std::fs::metadata(device) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => "no such device".into(),
        Err(e) => io_words(&e),
        Ok(m) if !m.file_type().is_char_device() => {
            "not a video device (not a character device)".into()
        }
        Ok(_) => match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(device)
        {
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                "permission denied (is the user in the video group?)".into()
            }
            Err(e) => io_words(&e),
            Ok(_) => {
                "the V4L2 backend cannot capture from it (busy, or not a capture device)".into()
            }
        },
    }
}

fn fourcc_name(v: f64) -> String {
    let n = v as u32;
    if n == 0 {
        return "none".into();
    }
    n.to_le_bytes()
        .iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
        .collect()
}

fn prop(cap: &videoio::VideoCapture, id: i32) -> f64 {
    cap.get(id).unwrap_or(0.0)
}

/// Sets every control of `[video.camera]` (see [`camera_controls`]) and logs, in one line,
/// what was asked and what the camera reports afterwards: drivers clamp or ignore values
/// silently, so the reported side is the truth.
fn apply_controls(cap: &mut videoio::VideoCapture, v: &VideoConfig, device: &str) {
    let controls = camera_controls(v);
    let mut asked = Vec::with_capacity(controls.len());
    let mut refused = Vec::new();
    for c in &controls {
        asked.push(format!("{}={}", c.name, show(c.prop, c.value)));
        if !cap.set(c.prop, c.value).unwrap_or(false) {
            refused.push(c.name);
        }
    }
    // Read back after every set: a later control (the format) can reset an earlier one.
    let reported: Vec<String> = controls
        .iter()
        .map(|c| format!("{}={}", c.name, show(c.prop, prop(cap, c.prop))))
        .collect();
    info!(
        device = %device,
        asked = %asked.join(" "),
        reported = %reported.join(" "),
        refused = %refused.join(" "),
        "camera controls applied"
    );
    if !refused.is_empty() {
        warn!(
            device = %device,
            "the camera refused {}; `v4l2-ctl -d {device} --list-ctrls` shows what it supports",
            refused.join(", ")
        );
    }
}

fn is_open(cap: &opencv::Result<videoio::VideoCapture>) -> bool {
    cap.as_ref()
        .map(|c| c.is_opened().unwrap_or(false))
        .unwrap_or(false)
}

impl CvSource {
    fn new(cap: videoio::VideoCapture, kind: Kind, v: &VideoConfig, description: String) -> Self {
        let (w, h) = (v.width as i32, v.height as i32);
        let sw = prop(&cap, videoio::CAP_PROP_FRAME_WIDTH) as i32;
        let sh = prop(&cap, videoio::CAP_PROP_FRAME_HEIGHT) as i32;
        CvSource {
            cap,
            kind,
            width: w,
            height: h,
            direct: sw == w && sh == h,
            frame: Mat::default(),
            converted: Mat::default(),
            slot_mats: Vec::with_capacity(v.slots as usize),
            resize_logged: false,
            skipped: 0,
            description,
        }
    }

    /// Opens `video.source.path` with the FFmpeg backend.
    pub(crate) fn open_file(v: &VideoConfig) -> Result<Self, WorkerError> {
        let path = v.source.path.clone();
        let fail = |why: String| unavailable("video file", &path, why);
        match std::fs::metadata(&path) {
            Err(e) => return Err(fail(io_words(&e))),
            Ok(m) if m.is_dir() => return Err(fail("is a directory, not a video file".into())),
            Ok(_) => {}
        }
        if let Err(e) = std::fs::File::open(&path) {
            return Err(fail(io_words(&e)));
        }
        let cap = videoio::VideoCapture::from_file(&path, videoio::CAP_FFMPEG);
        if !is_open(&cap) {
            return Err(fail(
                "OpenCV's FFmpeg backend cannot read it (not a video file, or an unsupported codec)".into(),
            ));
        }
        let cap = cap.map_err(|e| fail(e.message))?;
        let file_fps = prop(&cap, videoio::CAP_PROP_FPS);
        let fps = if file_fps.is_finite() && file_fps > 0.0 && file_fps <= 1000.0 {
            file_fps
        } else {
            v.fps as f64
        };
        let (sw, sh) = (
            prop(&cap, videoio::CAP_PROP_FRAME_WIDTH),
            prop(&cap, videoio::CAP_PROP_FRAME_HEIGHT),
        );
        let frames = prop(&cap, videoio::CAP_PROP_FRAME_COUNT);
        let description = format!(
            "file {path} ({sw}x{sh} @ {fps:.2} fps{}, {})",
            if file_fps == fps {
                ""
            } else {
                " from video.fps"
            },
            if v.source.looping { "looping" } else { "once" }
        );
        info!(path = %path, width = sw, height = sh, fps, frames, looping = v.source.looping, "video file opened");
        let kind = Kind::File {
            path,
            looping: v.source.looping,
            pacer: Pacer::new(fps),
            since_rewind: 0,
            loops: 0,
        };
        Ok(Self::new(cap, kind, v, description))
    }

    /// Opens the camera by index (`device`) or path with the V4L2 backend and applies the
    /// configured size, rate and `[video.camera]` controls.
    pub(crate) fn open_camera(v: &VideoConfig) -> Result<Self, WorkerError> {
        let device = v.source.camera_device();
        let cap = if v.source.path.is_empty() {
            videoio::VideoCapture::new(v.source.device as i32, videoio::CAP_V4L2)
        } else {
            videoio::VideoCapture::from_file(&v.source.path, videoio::CAP_V4L2)
        };
        if !is_open(&cap) {
            return Err(unavailable("camera", &device, diagnose_device(&device)));
        }
        let mut cap = cap.map_err(|e| unavailable("camera", &device, e.message))?;
        apply_controls(&mut cap, v, &device);
        let (gw, gh) = (
            prop(&cap, videoio::CAP_PROP_FRAME_WIDTH),
            prop(&cap, videoio::CAP_PROP_FRAME_HEIGHT),
        );
        let gfps = prop(&cap, videoio::CAP_PROP_FPS);
        let gfourcc = fourcc_name(prop(&cap, videoio::CAP_PROP_FOURCC));
        info!(
            device = %device,
            asked = %format!("{}x{} @ {} fps {}", v.width, v.height, v.fps, v.camera.format),
            got = %format!("{gw}x{gh} @ {gfps} fps {gfourcc}"),
            "camera opened"
        );
        let fps = if gfps.is_finite() && gfps > 0.0 {
            gfps
        } else {
            v.fps as f64
        };
        let description = format!("camera {device} (V4L2, {gw}x{gh} @ {gfps} fps {gfourcc})");
        let kind = Kind::Camera {
            device,
            period_ms: 1000.0 / fps,
            last_ts_ms: None,
        };
        Ok(Self::new(cap, kind, v, description))
    }

    /// Grabs one frame of the file, rewinding (or reopening) at the end when looping.
    fn grab_file(&mut self) -> Next {
        let Kind::File {
            path,
            looping,
            since_rewind,
            loops,
            ..
        } = &mut self.kind
        else {
            return Next::Failed("not a file source".into());
        };
        match self.cap.grab() {
            Ok(true) => {
                *since_rewind += 1;
                return Next::Frame {
                    capture_ns: shm_core::monotonic_ns(),
                };
            }
            Ok(false) => {}
            Err(e) => return Next::Failed(format!("cannot decode the next frame: {}", e.message)),
        }
        if *since_rewind == 0 {
            return Next::Unavailable("no frame could be decoded".into());
        }
        if !*looping {
            return Next::End;
        }
        *loops += 1;
        debug!(path = %path, frames = *since_rewind, loops = *loops, "end of file; starting again");
        *since_rewind = 0;
        let rewound = self
            .cap
            .set(videoio::CAP_PROP_POS_FRAMES, 0.0)
            .unwrap_or(false)
            && self.cap.grab().unwrap_or(false);
        if !rewound {
            // Some containers cannot seek; open the file again.
            let cap = videoio::VideoCapture::from_file(path.as_str(), videoio::CAP_FFMPEG);
            if !is_open(&cap) {
                return Next::Unavailable("cannot open it again to loop".into());
            }
            match cap {
                Ok(c) => self.cap = c,
                Err(e) => {
                    return Next::Unavailable(format!(
                        "cannot open it again to loop: {}",
                        e.message
                    ))
                }
            }
            if !self.cap.grab().unwrap_or(false) {
                return Next::Unavailable("no frame could be decoded after looping".into());
            }
        }
        *since_rewind = 1;
        Next::Frame {
            capture_ns: shm_core::monotonic_ns(),
        }
    }

    fn next_file(&mut self, stop: &AtomicBool) -> Next {
        let Kind::File { pacer, .. } = &mut self.kind else {
            return Next::Failed("not a file source".into());
        };
        let skip = match pacer.wait(stop) {
            Pace::Stopped => return Next::Stopped,
            Pace::Due { skip } => skip,
        };
        // Frames whose time has passed are decoded but not delivered, to stay in real time.
        for _ in 0..skip {
            match self.grab_file() {
                Next::Frame { .. } => self.skipped += 1,
                other => return other,
            }
        }
        self.grab_file()
    }

    fn next_camera(&mut self) -> Next {
        match self.cap.grab() {
            Ok(true) => {}
            Ok(false) => return Next::Failed("the camera delivered no frame".into()),
            Err(e) => return Next::Failed(format!("grab failed: {}", e.message)),
        }
        let capture_ns = shm_core::monotonic_ns();
        if let Kind::Camera {
            period_ms,
            last_ts_ms,
            ..
        } = &mut self.kind
        {
            // The driver's timestamps show frames it dropped because we read too late.
            let ts = prop(&self.cap, videoio::CAP_PROP_POS_MSEC);
            if ts > 0.0 {
                if let Some(last) = *last_ts_ms {
                    let gap = (ts - last) / *period_ms;
                    if gap > 1.5 {
                        self.skipped += (gap.round() as u64).saturating_sub(1);
                    }
                }
                *last_ts_ms = Some(ts);
            }
        }
        Next::Frame { capture_ns }
    }

    fn slot_mat(
        mats: &mut Vec<(usize, Mat)>,
        slot: &mut [u8],
        w: i32,
        h: i32,
    ) -> Result<usize, String> {
        let key = slot.as_mut_ptr() as usize;
        if let Some(i) = mats.iter().position(|(k, _)| *k == key) {
            return Ok(i);
        }
        // SAFETY: the slot is w*h*3 bytes (checked by the caller) and stays mapped for the
        // writer's lifetime; the header is only used inside `fill`, while the slot is ours.
        let mat = unsafe {
            Mat::new_rows_cols_with_data_unsafe(h, w, CV_8UC3, key as *mut c_void, w as usize * 3)
        }
        .map_err(|e| format!("cannot wrap the slot in a matrix: {}", e.message))?;
        mats.push((key, mat));
        Ok(mats.len() - 1)
    }

    /// Converts `frame` to BGR8 of the target size into `dst` (a header over the slot).
    fn convert_into(&mut self, idx: usize) -> Result<(), String> {
        let src: &Mat = match self.frame.channels() {
            3 => &self.frame,
            1 => {
                imgproc::cvt_color_def(&self.frame, &mut self.converted, imgproc::COLOR_GRAY2BGR)
                    .map_err(|e| e.message)?;
                &self.converted
            }
            4 => {
                imgproc::cvt_color_def(&self.frame, &mut self.converted, imgproc::COLOR_BGRA2BGR)
                    .map_err(|e| e.message)?;
                &self.converted
            }
            n => return Err(format!("unsupported frame with {n} channels")),
        };
        if src.depth() != opencv::core::CV_8U {
            return Err(format!(
                "unsupported frame depth {} (only 8-bit frames)",
                src.depth()
            ));
        }
        let dst = &mut self.slot_mats[idx].1;
        let before = dst.data();
        if src.rows() == self.height && src.cols() == self.width {
            src.copy_to(dst).map_err(|e| e.message)?;
        } else {
            if !self.resize_logged {
                self.resize_logged = true;
                info!(
                    from = %format!("{}x{}", src.cols(), src.rows()),
                    to = %format!("{}x{}", self.width, self.height),
                    "source frames have another size; resizing them"
                );
            }
            let shrink = src.cols() > self.width || src.rows() > self.height;
            let interpolation = if shrink {
                imgproc::INTER_AREA
            } else {
                imgproc::INTER_LINEAR
            };
            imgproc::resize(
                src,
                dst,
                Size::new(self.width, self.height),
                0.0,
                0.0,
                interpolation,
            )
            .map_err(|e| e.message)?;
        }
        if dst.data() != before {
            return Err("OpenCV reallocated the slot matrix".into());
        }
        Ok(())
    }
}

impl FrameSource for CvSource {
    fn describe(&self) -> &str {
        &self.description
    }

    fn identity(&self) -> (&'static str, &str) {
        match &self.kind {
            Kind::File { path, .. } => ("video file", path),
            Kind::Camera { device, .. } => ("camera", device),
        }
    }

    fn next(&mut self, stop: &AtomicBool) -> Next {
        let next = match self.kind {
            Kind::File { .. } => self.next_file(stop),
            Kind::Camera { .. } => self.next_camera(),
        };
        if let Next::Frame { .. } = next {
            if !self.direct {
                // Decode outside the slot; `fill` converts or resizes into it.
                match self.cap.retrieve(&mut self.frame, 0) {
                    Ok(true) if !self.frame.empty() => {}
                    Ok(_) => return Next::Failed("the frame could not be decoded".into()),
                    Err(e) => {
                        return Next::Failed(format!("cannot decode the frame: {}", e.message))
                    }
                }
            }
        }
        next
    }

    fn fill(&mut self, slot: &mut [u8]) -> Result<(), String> {
        let need = self.width as usize * self.height as usize * 3;
        if slot.len() != need {
            return Err(format!(
                "slot holds {} bytes, a frame needs {need}",
                slot.len()
            ));
        }
        let idx = Self::slot_mat(&mut self.slot_mats, slot, self.width, self.height)?;
        if self.direct {
            let dst = &mut self.slot_mats[idx].1;
            let before = dst.data();
            match self.cap.retrieve(dst, 0) {
                Ok(true) => {}
                Ok(false) => return Err("the frame could not be decoded".into()),
                Err(e) => return Err(format!("cannot decode the frame: {}", e.message)),
            }
            if dst.data() == before {
                return Ok(());
            }
            // The frame did not fit the slot (another size or pixel type): OpenCV gave the
            // header its own buffer. Keep that frame, restore the header, convert from now on.
            std::mem::swap(&mut self.frame, dst);
            self.slot_mats.remove(idx);
            let idx = Self::slot_mat(&mut self.slot_mats, slot, self.width, self.height)?;
            self.direct = false;
            if let Kind::Camera { device, .. } = &self.kind {
                warn!(device = %device, "camera frames are not {}x{} BGR; converting", self.width, self.height);
            }
            return self.convert_into(idx);
        }
        self.convert_into(idx)
    }

    fn take_skipped(&mut self) -> u64 {
        std::mem::take(&mut self.skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fourcc_names() {
        assert_eq!(fourcc_name(0x4750_4A4D as f64), "MJPG");
        assert_eq!(fourcc_name(0.0), "none");
    }

    #[test]
    fn devices_are_diagnosed_in_words() {
        assert_eq!(diagnose_device("/dev/video99"), "no such device");
        assert!(
            diagnose_device("/dev/null").contains("busy")
                || diagnose_device("/dev/null").contains("permission")
        );
        assert_eq!(
            diagnose_device("/etc/hostname"),
            "not a video device (not a character device)"
        );
    }
}
