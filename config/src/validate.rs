//! The validation rules. Each broken rule is reported as `key = value: rule`.

use crate::{CalibrationConfig, CameraConfig, Config, SourceConfig, SourceKind};

/// The longest path a Unix socket can bind: `sun_path` holds 108 bytes including the NUL.
pub(crate) const MAX_SOCKET_PATH: usize = 107;

/// Every broken rule of `c`, in key order.
pub(crate) fn problems(c: &Config) -> Vec<String> {
    let mut p = Problems(Vec::new());
    let v = &c.video;
    p.shm_name("video.shm_name", &v.shm_name);
    p.check("video.slots", v.slots, v.slots >= 2, "must be at least 2");
    p.check("video.slots", v.slots, v.slots <= 64, "must be at most 64");
    for (key, value, max) in [
        ("video.width", v.width, 7680),
        ("video.height", v.height, 4320),
    ] {
        p.check(key, value, value > 0, "must be greater than 0");
        p.check(key, value, value % 2 == 0, "must be even");
        p.check(key, value, value <= max, &format!("must be at most {max}"));
    }
    p.check(
        "video.fps",
        v.fps,
        (1..=240).contains(&v.fps),
        "must be between 1 and 240",
    );
    p.positive("video.attach_timeout_sec", v.attach_timeout_sec);
    let s = &v.source;
    if s.kind == SourceKind::File && s.path.is_empty() {
        p.push(
            "video.source.path",
            "\"\"",
            "must name a video file when video.source.kind = \"file\"",
        );
    }
    if s.kind == SourceKind::Camera && !s.path.is_empty() && !s.path.starts_with("/dev/") {
        p.push(
            "video.source.path",
            &format!("{:?}", s.path),
            "must be a device path like \"/dev/video0\" when video.source.kind = \"camera\"",
        );
    }
    distortion(&mut p, s);
    calibration(&mut p, &v.calibration);
    camera(&mut p, &v.camera);

    p.shm_name("vision.detections_shm_name", &c.vision.detections_shm_name);
    if c.vision.detections_shm_name == v.shm_name {
        p.push(
            "vision.detections_shm_name",
            &format!("{:?}", c.vision.detections_shm_name),
            "must differ from video.shm_name",
        );
    }

    if let Some(corners) = &c.vision.table_corners {
        table_corners(&mut p, corners, v.width, v.height);
    }

    let st = &c.stream;
    if !listen_is_valid(&st.listen) {
        p.push(
            "stream.listen",
            &format!("{:?}", st.listen),
            "must be a socket address like \"127.0.0.1:8080\", \"[::1]:8080\" or \"localhost:8080\"",
        );
    }
    p.check(
        "stream.jpeg_quality",
        st.jpeg_quality,
        (1..=100).contains(&st.jpeg_quality),
        "must be between 1 and 100",
    );
    p.check(
        "stream.max_fps",
        st.max_fps,
        (1..=60).contains(&st.max_fps),
        "must be between 1 and 60",
    );
    p.check(
        "stream.max_clients",
        st.max_clients,
        (1..=10_000).contains(&st.max_clients),
        "must be between 1 and 10000",
    );
    p.check(
        "stream.h264_bitrate_kbps",
        st.h264_bitrate_kbps,
        (200..=20_000).contains(&st.h264_bitrate_kbps),
        "must be between 200 and 20000",
    );
    p.check(
        "stream.h264_keyframe_sec",
        st.h264_keyframe_sec,
        st.h264_keyframe_sec.is_finite() && (0.1..=60.0).contains(&st.h264_keyframe_sec),
        "must be between 0.1 and 60",
    );
    if st
        .auth_token
        .chars()
        .any(|ch| ch.is_whitespace() || ch.is_control())
    {
        p.push(
            "stream.auth_token",
            "\"...\"",
            "must not contain whitespace or control characters",
        );
    }

    for host in &st.allowed_hosts {
        if !host_name_is_valid(host) {
            p.push(
                "stream.allowed_hosts",
                &format!("{host:?}"),
                "must be a host name without port, like \"camera.local\" (IP literals and localhost are always allowed)",
            );
        }
    }
    p.positive("stream.client_stall_sec", st.client_stall_sec);
    p.check(
        "stream.max_connections_per_ip",
        st.max_connections_per_ip,
        st.max_connections_per_ip <= 100_000,
        "must be at most 100000 (0 = no limit)",
    );

    let su = &c.supervisor;
    if su.control_socket.len() > MAX_SOCKET_PATH {
        p.push(
            "supervisor.control_socket",
            &format!("{:?}", su.control_socket),
            &format!(
                "is {} bytes long; a Unix socket path must be at most {MAX_SOCKET_PATH} bytes \
                 (choose a shorter directory)",
                su.control_socket.len()
            ),
        );
    }
    p.positive("supervisor.shutdown_timeout_sec", su.shutdown_timeout_sec);
    p.check(
        "supervisor.restart_backoff_initial_ms",
        su.restart_backoff_initial_ms,
        su.restart_backoff_initial_ms > 0,
        "must be greater than 0",
    );
    p.check(
        "supervisor.restart_backoff_max_ms",
        su.restart_backoff_max_ms,
        su.restart_backoff_max_ms >= su.restart_backoff_initial_ms,
        "must be at least supervisor.restart_backoff_initial_ms",
    );
    // restart_max = 0 is allowed: a worker is "failed" at its first unexpected exit.
    p.positive("supervisor.restart_window_sec", su.restart_window_sec);

    p.positive("watchdog.frame_timeout_sec", c.watchdog.frame_timeout_sec);
    p.positive(
        "watchdog.heartbeat_timeout_sec",
        c.watchdog.heartbeat_timeout_sec,
    );
    p.0
}

/// `video.source.distortion`: 4 or 5 finite pinhole coefficients, synthetic source only.
fn distortion(p: &mut Problems, s: &SourceConfig) {
    let d = &s.distortion;
    if d.is_empty() {
        return;
    }
    let shown = format!("{d:?}");
    let key = "video.source.distortion";
    if s.kind != SourceKind::Synthetic {
        p.push(
            key,
            &shown,
            "applies only to video.source.kind = \"synthetic\" (a real lens is undone with \
             [video.calibration])",
        );
    }
    if !(4..=5).contains(&d.len()) {
        p.push(
            key,
            &shown,
            "must hold 4 or 5 numbers: [k1, k2, p1, p2] or [k1, k2, p1, p2, k3]",
        );
    } else if d.iter().any(|x| !x.is_finite() || x.abs() > 10.0) {
        p.push(
            key,
            &shown,
            "every coefficient must be a number between -10 and 10",
        );
    }
}

/// `vision.table_corners`: four corners inside the frame, clockwise from the top-left one,
/// forming a convex quadrilateral that covers a real part of the frame.
fn table_corners(p: &mut Problems, corners: &[[f64; 2]], width: u32, height: u32) {
    let key = "vision.table_corners";
    let shown = format!("{corners:?}");
    if corners.len() != 4 {
        p.push(
            key,
            &shown,
            &format!(
                "must hold exactly 4 corners [[x, y], ...] (clockwise from the top-left one), \
                 not {}",
                corners.len()
            ),
        );
        return;
    }
    let (w, h) = (width as f64, height as f64);
    if let Some(c) = corners
        .iter()
        .find(|c| !(c[0].is_finite() && c[1].is_finite()))
    {
        p.push(
            key,
            &shown,
            &format!("corner {c:?} is not a finite number pair"),
        );
        return;
    }
    if let Some(c) = corners
        .iter()
        .find(|c| !(0.0..=w).contains(&c[0]) || !(0.0..=h).contains(&c[1]))
    {
        p.push(
            key,
            &shown,
            &format!(
                "corner {c:?} lies outside the {width}x{height} frame (video.width x \
                 video.height); corners are frame pixels"
            ),
        );
        return;
    }
    // With y pointing down, a clockwise convex quadrilateral turns the same way (positive
    // cross product) at every corner.
    let turns_clockwise = (0..4).all(|i| {
        let (a, b, c) = (corners[i], corners[(i + 1) % 4], corners[(i + 2) % 4]);
        (b[0] - a[0]) * (c[1] - b[1]) - (b[1] - a[1]) * (c[0] - b[0]) > 0.0
    });
    if !turns_clockwise {
        p.push(
            key,
            &shown,
            "must be a convex quadrilateral listed clockwise on screen (top-left, top-right, \
             bottom-right, bottom-left)",
        );
        return;
    }
    let area = 0.5
        * (0..4)
            .map(|i| {
                let (a, b) = (corners[i], corners[(i + 1) % 4]);
                a[0] * b[1] - b[0] * a[1]
            })
            .sum::<f64>();
    if area < 0.01 * w * h {
        p.push(
            key,
            &shown,
            "covers less than 1% of the frame; the playing area must be the table's cloth",
        );
    }
}

/// `[video.calibration]`: the file itself is read by the video worker at start.
fn calibration(p: &mut Problems, c: &CalibrationConfig) {
    if c.file.trim() != c.file || c.file.contains('\0') {
        p.push(
            "video.calibration.file",
            &format!("{:?}", c.file),
            "must be a file path without leading or trailing spaces",
        );
    }
}

/// `[video.camera]`.
fn camera(p: &mut Problems, c: &CameraConfig) {
    p.check(
        "video.camera.buffers",
        c.buffers,
        (1..=32).contains(&c.buffers),
        "must be between 1 and 32",
    );
    p.check(
        "video.camera.exposure",
        c.exposure,
        (0..=1_000_000).contains(&c.exposure),
        "must be between 0 and 1000000 (V4L2 exposure_time_absolute units of 100 us)",
    );
    if !c.auto_exposure && c.exposure == 0 {
        p.push(
            "video.camera.exposure",
            "0",
            "must be set (greater than 0) when video.camera.auto_exposure = false; \
             `v4l2-ctl --list-ctrls` shows the camera's range",
        );
    }
    p.check(
        "video.camera.white_balance_k",
        c.white_balance_k,
        (1000..=15_000).contains(&c.white_balance_k),
        "must be between 1000 and 15000 (kelvin)",
    );
    for (key, value) in [
        ("video.camera.gain", c.gain),
        ("video.camera.focus", c.focus),
    ] {
        p.check(
            key,
            value,
            (-1..=1_000_000).contains(&value),
            "must be -1 (leave the camera's value) or between 0 and 1000000",
        );
    }
}

/// An IP socket address, or `HOST:PORT` with a plain host name (resolved when the stream
/// worker binds, which reports a name that does not resolve).
fn listen_is_valid(listen: &str) -> bool {
    if listen.parse::<std::net::SocketAddr>().is_ok() {
        return true;
    }
    let Some((host, port)) = listen.rsplit_once(':') else {
        return false;
    };
    host_name_is_valid(host) && port.parse::<u16>().is_ok()
}

/// A DNS host name: dot-separated labels of letters, digits and '-', not all-numeric.
fn host_name_is_valid(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        // All-numeric dotted names are malformed IPv4 addresses, not host names.
        && !host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, key: &str, value: &str, rule: &str) {
        self.0.push(format!("{key} = {value}: {rule}"));
    }

    fn check(&mut self, key: &str, value: impl std::fmt::Display, ok: bool, rule: &str) {
        if !ok {
            self.push(key, &value.to_string(), rule);
        }
    }

    fn positive(&mut self, key: &str, value: f64) {
        if !(value.is_finite() && value > 0.0) {
            self.push(key, &value.to_string(), "must be a number greater than 0");
        } else if value > 86_400.0 {
            self.push(key, &value.to_string(), "must be at most 86400 (one day)");
        }
    }

    fn shm_name(&mut self, key: &str, name: &str) {
        let shown = format!("{name:?}");
        if name.is_empty() {
            self.push(key, &shown, "must not be empty");
        } else if name.len() > 200 {
            self.push(key, &shown, "must be at most 200 characters");
        } else if !name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-' || ch == '.')
            || name.starts_with('.')
        {
            self.push(
                key,
                &shown,
                "must use only letters, digits, '_', '-' and '.' (no '/'), and not start with '.'",
            );
        }
    }
}
