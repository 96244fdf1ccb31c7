//! The human form of `status`: a summary of the supervisor and one row per worker.

use std::fmt::Write;

use crate::status::{Status, WorkerStatus};

/// Formats the status for a terminal. `now_unix_s` is used for "ago" in LAST-EXIT.
pub fn render(status: &Status, now_unix_s: f64) -> String {
    let s = &status.supervisor;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "billiards-supervisor pid {}, up {}, config {}, socket {}",
        s.pid,
        duration(s.uptime_s),
        s.config_path,
        s.control_socket
    );
    let _ = writeln!(
        out,
        "frames {} ({}): {}x{}, {} slots, {}, {} reader{}, {} frames published",
        s.shm.name,
        s.shm.path,
        s.shm.width,
        s.shm.height,
        s.shm.slots,
        bytes(s.shm.size_bytes),
        s.shm.readers,
        if s.shm.readers == 1 { "" } else { "s" },
        s.shm.frames_published
    );
    out.push('\n');
    let header = [
        "NAME",
        "STATE",
        "PID",
        "UPTIME",
        "RESTARTS",
        "CPU%",
        "RSS",
        "FPS",
        "LATENCY-p99",
        "LAST-EXIT",
    ];
    let rows: Vec<[String; 10]> = status.workers.iter().map(|w| row(w, now_unix_s)).collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (i, cell) in r.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ", w = widths[i]);
            }
        }
        l.trim_end().to_string()
    };
    out.push_str(&line(&header));
    out.push('\n');
    for r in &rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        out.push_str(&line(&cells));
        out.push('\n');
    }
    out
}

fn row(w: &WorkerStatus, now_unix_s: f64) -> [String; 10] {
    let running = w.pid.is_some();
    let dash = || "-".to_string();
    let state = match w.stats.restart_in_s {
        Some(t) => format!("{} ({t:.1}s)", w.state),
        None => w.state.to_string(),
    };
    [
        w.name.clone(),
        state,
        w.pid.map_or_else(dash, |p| p.to_string()),
        if running {
            duration(w.uptime_s)
        } else {
            dash()
        },
        w.restarts.to_string(),
        if running {
            format!("{:.1}", w.cpu_percent)
        } else {
            dash()
        },
        if running { bytes(w.rss_bytes) } else { dash() },
        if running {
            format!("{:.1}", w.stats.fps)
        } else {
            dash()
        },
        if running {
            format!("{:.1}ms", w.stats.latency_p99_ms)
        } else {
            dash()
        },
        match &w.last_exit {
            None => dash(),
            Some(e) => format!(
                "{} ({} ago)",
                e.describe(),
                duration((now_unix_s - e.at_unix_s).max(0.0))
            ),
        },
    ]
}

/// `12.3s`, `4m05s`, `2h03m`, `3d04h`.
pub fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "-".into();
    }
    if secs < 60.0 {
        return format!("{secs:.1}s");
    }
    let s = secs as u64;
    match s {
        0..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// `512B`, `1.5K`, `12.3M`, `1.2G` (powers of 1024).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["K", "M", "G", "T"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::*;

    #[test]
    fn units() {
        assert_eq!(duration(1.25), "1.2s");
        assert_eq!(duration(65.0), "1m05s");
        assert_eq!(duration(3_725.0), "1h02m");
        assert_eq!(duration(90_000.0), "1d01h");
        assert_eq!(duration(f64::NAN), "-");
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(1536), "1.5K");
        assert_eq!(bytes(12 * 1024 * 1024 + 300 * 1024), "12.3M");
    }

    #[test]
    fn renders_a_row_per_worker_with_the_issue_columns() {
        let worker = |name: &str, state, pid: Option<u32>, last_exit| WorkerStatus {
            name: name.into(),
            state,
            pid,
            uptime_s: 65.0,
            restarts: 1,
            last_exit,
            cpu_percent: 12.34,
            rss_bytes: 20 * 1024 * 1024,
            stats: WorkerStats {
                fps: 29.97,
                latency_p99_ms: 3.21,
                ..WorkerStats::default()
            },
        };
        let status = Status {
            supervisor: SupervisorStatus {
                pid: 10,
                uptime_s: 70.0,
                config_path: "/etc/billiards.toml".into(),
                control_socket: "/run/b.sock".into(),
                shm: ShmStatus {
                    name: "billiards_video".into(),
                    path: "/dev/shm/billiards_video".into(),
                    size_bytes: 8 * 1024 * 1024,
                    slots: 3,
                    width: 1280,
                    height: 720,
                    readers: 2,
                    frames_published: 1234,
                },
            },
            workers: vec![
                worker("video", WorkerState::Running, Some(11), None),
                worker(
                    "vision",
                    WorkerState::Failed,
                    None,
                    Some(LastExit {
                        code: Some(11),
                        signal: None,
                        reason: "watchdog: no heartbeat for 5.0s".into(),
                        at_unix_s: 100.0,
                        detail: None,
                    }),
                ),
            ],
        };
        let text = render(&status, 112.0);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("billiards-supervisor pid 10, up 1m10s"),
            "{text}"
        );
        assert!(
            lines[1].contains("1280x720, 3 slots, 8.0M, 2 readers, 1234 frames published"),
            "{text}"
        );
        assert_eq!(
            lines[3].split_whitespace().collect::<Vec<_>>(),
            [
                "NAME",
                "STATE",
                "PID",
                "UPTIME",
                "RESTARTS",
                "CPU%",
                "RSS",
                "FPS",
                "LATENCY-p99",
                "LAST-EXIT"
            ]
        );
        assert_eq!(
            lines[4].split_whitespace().collect::<Vec<_>>(),
            ["video", "running", "11", "1m05s", "1", "12.3", "20.0M", "30.0", "3.2ms", "-"]
        );
        assert!(lines[5].starts_with("vision"), "{text}");
        assert!(lines[5].contains("failed"), "{text}");
        assert!(
            lines[5].ends_with("watchdog: no heartbeat for 5.0s (12.0s ago)"),
            "{text}"
        );
        // Columns line up: every row's PID column starts where the header's does.
        let col = lines[3].find("PID").unwrap();
        assert_eq!(&lines[4][col..col + 2], "11");
    }
}
