//! Configuration of billiards-supervisor: the TOML schema of `SPEC.md`, where it is looked up,
//! how it is validated and how the effective configuration is printed back.
//!
//! This crate owns the schema, the defaults, the lookup order (`--config`, `$BILLIARDS_CONFIG`,
//! `./billiards.toml`, built-in defaults), the `VIDEO_FILE` override and every validation rule.
//! It knows nothing of shared memory, processes or OpenCV: every other crate reads a [`Config`]
//! and trusts that it was validated here.
//!
//! Errors name the file, the key, the value and the rule, e.g.
//! `billiards.toml: video.slots = 1: must be at least 2`.

#![forbid(unsafe_code)]

mod validate;

pub mod trust;

pub mod exit_codes;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Environment variable that names the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "BILLIARDS_CONFIG";
/// Environment variable that replaces the video source with a looping file source.
pub const VIDEO_FILE_ENV: &str = "VIDEO_FILE";
/// Set by the supervisor on a video worker it starts during a restart backoff: the
/// CLOCK_MONOTONIC time (ns) before which the worker must not open its source. Loading the
/// process (OpenCV's libraries) then overlaps the backoff instead of following it.
pub const START_AT_ENV: &str = "BILLIARDS_START_AT_NS";
/// The file looked up in the working directory when neither `--config` nor the env var is set.
pub const DEFAULT_CONFIG_FILE: &str = "billiards.toml";

/// The whole configuration. Every key is optional; defaults are those of the SPEC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[video]`: the frame segment and the capture source.
    pub video: VideoConfig,
    /// `[vision]`: the detection worker.
    pub vision: VisionConfig,
    /// `[stream]`: the HTTP worker.
    pub stream: StreamConfig,
    /// `[supervisor]`: the process tree.
    pub supervisor: SupervisorConfig,
    /// `[watchdog]`: liveness limits.
    pub watchdog: WatchdogConfig,
}

/// `[video]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VideoConfig {
    /// POSIX shared-memory name of the frame segment (no leading slash).
    pub shm_name: String,
    /// Number of frame slots in the segment (at least 2).
    pub slots: u32,
    /// Width of every delivered frame, in pixels (even).
    pub width: u32,
    /// Height of every delivered frame, in pixels (even).
    pub height: u32,
    /// Frames per second asked of the source.
    pub fps: u32,
    /// How long readers wait for the segment to appear before failing.
    pub attach_timeout_sec: f64,
    /// Directory of the file-backed fallback when `/dev/shm` is unusable; "" = default.
    pub fallback_dir: String,
    /// `[video.source]`.
    pub source: SourceConfig,
    /// `[video.calibration]`: lens undistortion of every source.
    pub calibration: CalibrationConfig,
    /// `[video.camera]`: V4L2 controls applied at every open of a camera source.
    pub camera: CameraConfig,
}

impl Default for VideoConfig {
    fn default() -> Self {
        Self {
            shm_name: "billiards_video".into(),
            slots: 3,
            width: 1280,
            height: 720,
            fps: 30,
            attach_timeout_sec: 5.0,
            fallback_dir: String::new(),
            source: SourceConfig::default(),
            calibration: CalibrationConfig::default(),
            camera: CameraConfig::default(),
        }
    }
}

/// What kind of source the video worker captures from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A rendered billiards table, deterministic from `seed`.
    #[default]
    Synthetic,
    /// A video file read through OpenCV.
    File,
    /// A V4L2 camera.
    Camera,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceKind::Synthetic => "synthetic",
            SourceKind::File => "file",
            SourceKind::Camera => "camera",
        })
    }
}

/// `[video.source]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// Which source.
    pub kind: SourceKind,
    /// File source: the video file; camera source: `/dev/videoN` (or use `device`).
    pub path: String,
    /// Camera index when `path` is empty.
    pub device: u32,
    /// File source: restart at the end.
    #[serde(rename = "loop")]
    pub looping: bool,
    /// Synthetic source: seed of the deterministic scene.
    pub seed: u64,
    /// Synthetic source (extension of the SPEC, for tests and benchmarks): lens distortion
    /// `[k1, k2, p1, p2(, k3)]` applied to the rendered table, through the camera matrix of
    /// [`SourceConfig::synthetic_camera_matrix`]. Empty = an ideal lens.
    pub distortion: Vec<f64>,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            kind: SourceKind::Synthetic,
            path: String::new(),
            device: 0,
            looping: true,
            seed: 1,
            distortion: Vec::new(),
        }
    }
}

impl SourceConfig {
    /// The camera device this source names: `path` when set, else `/dev/video{device}`.
    pub fn camera_device(&self) -> String {
        if self.path.is_empty() {
            format!("/dev/video{}", self.device)
        } else {
            self.path.clone()
        }
    }

    /// The camera matrix `[fx, 0, cx, 0, fy, cy, 0, 0, 1]` (row-major) through which the
    /// synthetic source applies `distortion` to a `width` x `height` frame: focal length
    /// `width` pixels (about 53 degrees across) and the principal point at the image centre
    /// (OpenCV puts pixel centres on integer coordinates, hence the `- 1`). A calibration
    /// file with this matrix and the same coefficients undoes the distortion exactly.
    pub fn synthetic_camera_matrix(width: u32, height: u32) -> [f64; 9] {
        let f = width as f64;
        let cx = (width as f64 - 1.0) / 2.0;
        let cy = (height as f64 - 1.0) / 2.0;
        [f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0]
    }
}

/// The lens model of a calibration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LensModel {
    /// OpenCV's pinhole model with radial and tangential terms (4, 5, 8, 12 or 14
    /// coefficients).
    #[default]
    Pinhole,
    /// OpenCV's fisheye (equidistant) model, 4 coefficients.
    Fisheye,
}

impl fmt::Display for LensModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LensModel::Pinhole => "pinhole",
            LensModel::Fisheye => "fisheye",
        })
    }
}

/// Which camera matrix the undistorted frames are rendered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Framing {
    /// The calibration's own camera matrix: the centre keeps its scale.
    #[default]
    Same,
    /// Zoomed out so every source pixel is kept (alpha 1; black corners may appear).
    All,
    /// Zoomed in so only valid pixels are shown (alpha 0; the edges are cropped).
    Valid,
}

impl fmt::Display for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Framing::Same => "same",
            Framing::All => "all",
            Framing::Valid => "valid",
        })
    }
}

/// `[video.calibration]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CalibrationConfig {
    /// OpenCV FileStorage file (YAML/JSON) with `camera_matrix`, `dist_coeffs`,
    /// `image_width` and `image_height`; "" = frames are not undistorted.
    pub file: String,
    /// Lens model of the file's coefficients.
    pub model: LensModel,
    /// Camera matrix of the undistorted frames.
    pub framing: Framing,
}

impl CalibrationConfig {
    /// Whether frames are undistorted at all.
    pub fn enabled(&self) -> bool {
        !self.file.is_empty()
    }
}

/// The pixel format asked of a camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CameraFormat {
    /// Motion JPEG: the highest sizes and rates over USB 2.
    #[default]
    Mjpg,
    /// Uncompressed YUYV 4:2:2: no JPEG artefacts, but USB bandwidth limits size and rate.
    Yuyv,
    /// Whatever the driver picks.
    Any,
}

impl fmt::Display for CameraFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CameraFormat::Mjpg => "mjpg",
            CameraFormat::Yuyv => "yuyv",
            CameraFormat::Any => "any",
        })
    }
}

/// `[video.camera]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CameraConfig {
    /// Pixel format asked of the camera.
    pub format: CameraFormat,
    /// Driver queue depth; 1 = lowest latency.
    pub buffers: u32,
    /// Let the camera choose the exposure.
    pub auto_exposure: bool,
    /// Exposure when `auto_exposure` is false, in V4L2 `exposure_time_absolute` units
    /// (100 us).
    pub exposure: i64,
    /// Let the camera choose the white balance.
    pub auto_white_balance: bool,
    /// White balance in kelvin when `auto_white_balance` is false.
    pub white_balance_k: u32,
    /// Sensor gain; -1 = leave the camera's value.
    pub gain: i64,
    /// Manual focus position; -1 = autofocus (or leave it).
    pub focus: i64,
}

impl Default for CameraConfig {
    fn default() -> Self {
        Self {
            format: CameraFormat::Mjpg,
            buffers: 1,
            auto_exposure: true,
            exposure: 0,
            auto_white_balance: true,
            white_balance_k: 4600,
            gain: -1,
            focus: -1,
        }
    }
}

/// `[vision]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VisionConfig {
    /// Start the vision worker.
    pub enabled: bool,
    /// POSIX shared-memory name of the detections channel.
    pub detections_shm_name: String,
    /// The playing area's four corners in frame pixels, clockwise from the top-left one. When
    /// set, it fixes the table and table detection is skipped; when absent, the table found
    /// on a clear view is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_corners: Option<Vec<[f64; 2]>>,
}

impl Default for VisionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            detections_shm_name: "billiards_detections".into(),
            table_corners: None,
        }
    }
}

/// `[stream]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// Start the stream worker.
    pub enabled: bool,
    /// Socket address the HTTP server listens on.
    pub listen: String,
    /// JPEG quality for clients that do not ask (1..=100).
    pub jpeg_quality: u32,
    /// Highest frame rate sent to one client.
    pub max_fps: u32,
    /// Concurrent HTTP clients beyond which requests answer 503.
    pub max_clients: u32,
    /// Non-empty: every endpoint but `/healthz` needs this token.
    pub auth_token: String,
    /// Host names (without port) accepted in the `Host` header besides IP literals,
    /// `localhost` and the listen address; any other host gets 403 (DNS-rebinding defence).
    pub allowed_hosts: Vec<String>,
    /// Seconds a connection may go without write progress (the client not reading) before it
    /// is closed.
    pub client_stall_sec: f64,
    /// Most connections open at once from one peer address; 0 = no limit.
    pub max_connections_per_ip: u32,
    /// Serve the H.264 live view (`/stream/h264`).
    pub h264: bool,
    /// H.264 bitrate for clients that do not ask (`?bitrate_kbps=`), 200..=20000.
    pub h264_bitrate_kbps: u32,
    /// Longest time between H.264 keyframes, in seconds.
    pub h264_keyframe_sec: f64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "127.0.0.1:8080".into(),
            jpeg_quality: 85,
            max_fps: 30,
            max_clients: 64,
            auth_token: String::new(),
            allowed_hosts: Vec::new(),
            client_stall_sec: 10.0,
            max_connections_per_ip: 0,
            h264: true,
            h264_bitrate_kbps: 2500,
            h264_keyframe_sec: 2.0,
        }
    }
}

impl StreamConfig {
    /// The listen address; validated at load time, so this cannot fail on a loaded config.
    pub fn listen_addr(&self) -> Result<SocketAddr, std::net::AddrParseError> {
        self.listen.parse()
    }
}

/// `[supervisor]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisorConfig {
    /// Path of the control socket; "" = default (see [`Config::control_socket_path`]).
    pub control_socket: String,
    /// Directory of the worker binaries; "" = beside the supervisor executable.
    pub worker_dir: String,
    /// SIGTERM grace per worker before SIGKILL.
    pub shutdown_timeout_sec: f64,
    /// First restart delay.
    pub restart_backoff_initial_ms: u64,
    /// Largest restart delay.
    pub restart_backoff_max_ms: u64,
    /// More restarts than this within `restart_window_sec`: the worker is failed.
    pub restart_max: u32,
    /// Window of `restart_max`.
    pub restart_window_sec: f64,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            control_socket: String::new(),
            worker_dir: String::new(),
            shutdown_timeout_sec: 10.0,
            restart_backoff_initial_ms: 100,
            restart_backoff_max_ms: 5000,
            restart_max: 10,
            restart_window_sec: 60.0,
        }
    }
}

/// `[watchdog]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchdogConfig {
    /// A video worker publishing no frame this long is restarted.
    pub frame_timeout_sec: f64,
    /// A vision/stream worker not heartbeating this long is restarted.
    pub heartbeat_timeout_sec: f64,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        Self {
            frame_timeout_sec: 2.0,
            heartbeat_timeout_sec: 5.0,
        }
    }
}

/// Where the effective configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOrigin {
    /// `--config PATH`.
    Flag(PathBuf),
    /// `$BILLIARDS_CONFIG`.
    Env(PathBuf),
    /// `./billiards.toml`.
    WorkingDir(PathBuf),
    /// No file: built-in defaults.
    Defaults,
}

impl ConfigOrigin {
    /// The file, if the configuration came from one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            ConfigOrigin::Flag(p) | ConfigOrigin::Env(p) | ConfigOrigin::WorkingDir(p) => Some(p),
            ConfigOrigin::Defaults => None,
        }
    }

    /// How the origin is shown to users: the path, or `(built-in defaults)`.
    pub fn display(&self) -> String {
        match self.path() {
            Some(p) => p.display().to_string(),
            None => "(built-in defaults)".into(),
        }
    }
}

/// A loaded, validated configuration and where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated configuration, with the `VIDEO_FILE` override applied.
    pub config: Config,
    /// The file it was read from.
    pub origin: ConfigOrigin,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read config file: {cause}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error (part of the message, so not chained as a source as well).
        cause: std::io::Error,
    },
    /// The file is not valid TOML or does not fit the schema.
    #[error("{file}: {message}")]
    Parse {
        /// The file (or `(built-in defaults)`).
        file: String,
        /// What is wrong, naming the key and, where TOML gives it, the line and column.
        message: String,
    },
    /// The file (config, worker directory or worker binary) could have been planted or
    /// changed by another user.
    #[error("{}: refusing {what}: {why}; another user could change what runs (make it owned by this user or root and not writable by group or others, e.g. chmod go-w)", .path.display())]
    Untrusted {
        /// The file or directory.
        path: PathBuf,
        /// What it is ("config file", "worker directory", "worker binary").
        what: String,
        /// Who may write it.
        why: String,
    },
    /// A value breaks a rule. Every broken rule is listed, one per line.
    #[error("{}", .problems.iter().map(|p| format!("{file}: {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file (or `(built-in defaults)`).
        file: String,
        /// One entry per broken rule: `key = value: rule`.
        problems: Vec<String>,
    },
}

impl Config {
    /// Parses and validates a TOML document. `file` names it in errors.
    pub fn from_toml_str(text: &str, file: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            ConfigError::Parse {
                file: file.to_string(),
                message: describe_toml_error(text, &path, &inner),
            }
        })?;
        config.validate(file)?;
        Ok(config)
    }

    /// Checks every rule; lists every broken one.
    pub fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let problems = validate::problems(self);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                file: file.to_string(),
                problems,
            })
        }
    }

    /// The effective configuration as TOML (what `check-config` prints).
    pub fn to_toml(&self) -> String {
        // Serialising plain structs of strings, numbers and bools cannot fail.
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot serialise: {e}\n"))
    }

    /// Replaces the source with a looping file source, as `VIDEO_FILE=path` asks.
    pub fn apply_video_file(&mut self, path: &str) {
        self.video.source.kind = SourceKind::File;
        self.video.source.path = path.to_string();
        self.video.source.looping = true;
    }

    /// The control socket: the configured path, else `$XDG_RUNTIME_DIR/billiards/supervisor.sock`,
    /// else `/tmp/billiards-$UID/supervisor.sock`.
    pub fn control_socket_path(&self) -> PathBuf {
        if !self.supervisor.control_socket.is_empty() {
            return PathBuf::from(&self.supervisor.control_socket);
        }
        runtime_dir().join("supervisor.sock")
    }

    /// Directory of the file-backed shared-memory fallback: the configured one, else
    /// `$XDG_RUNTIME_DIR`, else `/tmp`.
    pub fn shm_fallback_dir(&self) -> PathBuf {
        if !self.video.fallback_dir.is_empty() {
            return PathBuf::from(&self.video.fallback_dir);
        }
        match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => PathBuf::from("/tmp"),
        }
    }

    /// Directory of the worker binaries: the configured one, else the directory of `exe`.
    pub fn worker_dir(&self, exe: &Path) -> PathBuf {
        if !self.supervisor.worker_dir.is_empty() {
            return PathBuf::from(&self.supervisor.worker_dir);
        }
        exe.parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

/// The per-user runtime directory of the product: `$XDG_RUNTIME_DIR/billiards` or
/// `/tmp/billiards-$UID`.
pub fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("billiards"),
        _ => PathBuf::from(format!("/tmp/billiards-{}", nix::unistd::getuid())),
    }
}

/// Finds, reads and validates the configuration in the SPEC's lookup order, then applies the
/// `VIDEO_FILE` override. `flag` is the `--config` argument.
pub fn load(flag: Option<&Path>) -> Result<Loaded, ConfigError> {
    let env = std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty());
    let origin = if let Some(p) = flag {
        ConfigOrigin::Flag(p.to_path_buf())
    } else if let Some(p) = env {
        ConfigOrigin::Env(PathBuf::from(p))
    } else if Path::new(DEFAULT_CONFIG_FILE).is_file() {
        ConfigOrigin::WorkingDir(PathBuf::from(DEFAULT_CONFIG_FILE))
    } else {
        ConfigOrigin::Defaults
    };
    let video_file = std::env::var(VIDEO_FILE_ENV).ok().filter(|v| !v.is_empty());
    load_from(origin, video_file.as_deref())
}

/// Reads and validates the configuration from `origin`, applying `video_file` as the
/// `VIDEO_FILE` override. Separate from [`load`] so tests need not touch the environment.
pub fn load_from(origin: ConfigOrigin, video_file: Option<&str>) -> Result<Loaded, ConfigError> {
    let mut config = match origin.path() {
        Some(path) => {
            let read_err = |cause| ConfigError::Read {
                path: path.to_path_buf(),
                cause,
            };
            // Checked on the open file (fstat), so the file read is the file checked.
            let mut file = std::fs::File::open(path).map_err(read_err)?;
            trust::check_metadata(path, "config file", &file.metadata().map_err(read_err)?)?;
            let mut text = String::new();
            std::io::Read::read_to_string(&mut file, &mut text).map_err(read_err)?;
            Config::from_toml_str(&text, &path.display().to_string())?
        }
        None => Config::default(),
    };
    if let Some(v) = video_file {
        config.apply_video_file(v);
        config.validate(&format!("{} (with {VIDEO_FILE_ENV})", origin.display()))?;
    }
    Ok(Loaded { config, origin })
}

/// Turns a TOML/serde error into `key: what is wrong (line L, column C)`.
fn describe_toml_error(text: &str, path: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim().to_string();
    let location = err.span().map(|span| {
        let (line, col) = line_col(text, span.start);
        format!(" (line {line}, column {col})")
    });
    let location = location.unwrap_or_default();
    if let Some(field) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
    {
        let key = if path == "." || path.is_empty() {
            field.to_string()
        } else {
            // serde_path_to_error's path stops at the table that holds the unknown key.
            let parent = path.trim_end_matches(&format!(".{field}"));
            if parent == field {
                field.to_string()
            } else {
                format!("{parent}.{field}")
            }
        };
        let expected = message
            .split_once(", expected ")
            .map(|(_, e)| format!(" (expected {e})"))
            .unwrap_or_default();
        return format!("{key}: unknown key{expected}{location}");
    }
    if path == "." || path.is_empty() {
        format!("{message}{location}")
    } else {
        format!("{path}: {message}{location}")
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests;
