//! The status JSON of the SPEC (`status --json`, `GET /api/status`), as serde types.
//!
//! The field names and nesting are the SPEC's contract; extra keys are allowed (the SPEC says
//! "workers' `stats` may carry more keys"), so additions are optional fields that are left out
//! when empty. Clients deserialise leniently: unknown keys are ignored.

use serde::{Deserialize, Serialize};

/// The whole status document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The supervisor itself and the frame segment.
    pub supervisor: SupervisorStatus,
    /// One entry per enabled worker, in start order (video, vision, stream); a worker the
    /// config disables is not part of the tree and not listed.
    pub workers: Vec<WorkerStatus>,
}

/// `supervisor` in the status JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SupervisorStatus {
    /// Pid of the supervisor.
    pub pid: u32,
    /// Seconds since the supervisor started.
    pub uptime_s: f64,
    /// Where the configuration came from (a path, or `(built-in defaults)`).
    pub config_path: String,
    /// Path of the control socket.
    pub control_socket: String,
    /// The frame segment.
    pub shm: ShmStatus,
}

/// `supervisor.shm`: the frame segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShmStatus {
    /// POSIX shm name.
    pub name: String,
    /// Where the segment lives (`/dev/shm/NAME` or the fallback file).
    pub path: String,
    /// Size of the mapping in bytes.
    pub size_bytes: u64,
    /// Number of frame slots.
    pub slots: u32,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Live entries in the reader table.
    pub readers: u32,
    /// Frames published since the segment was created.
    pub frames_published: u64,
}

/// The lifecycle state of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    /// Spawned, not ready yet (or waiting for the video worker's first frame).
    Starting,
    /// Ready and watched.
    Running,
    /// Exited; waiting for the restart delay.
    Backoff,
    /// Asked to stop; waiting for it to exit.
    Stopping,
    /// Not running and not going to be restarted by itself.
    Stopped,
    /// Restarted too often; not restarted until `restart WORKER`.
    Failed,
}

impl WorkerState {
    /// The word used in the JSON and the table.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Starting => "starting",
            WorkerState::Running => "running",
            WorkerState::Backoff => "backoff",
            WorkerState::Stopping => "stopping",
            WorkerState::Stopped => "stopped",
            WorkerState::Failed => "failed",
        }
    }
}

impl std::fmt::Display for WorkerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of `workers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// `video`, `vision` or `stream`.
    pub name: String,
    /// Lifecycle state.
    pub state: WorkerState,
    /// Pid of the running process, `null` when none runs.
    pub pid: Option<u32>,
    /// Seconds since the running process was spawned (0 when none runs).
    pub uptime_s: f64,
    /// How many times the supervisor restarted this worker.
    pub restarts: u32,
    /// How the previous process ended, `null` before the first exit.
    pub last_exit: Option<LastExit>,
    /// CPU use, percent of one core.
    pub cpu_percent: f64,
    /// Resident memory in bytes.
    pub rss_bytes: u64,
    /// Throughput and latency.
    pub stats: WorkerStats,
}

/// `last_exit`: how a worker process ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastExit {
    /// Exit code, when it exited by itself.
    pub code: Option<i32>,
    /// Signal number, when a signal ended it.
    pub signal: Option<i32>,
    /// Why, in words (`killed by SIGKILL`, `watchdog: no frame for 2.0s`, ...).
    pub reason: String,
    /// When, in seconds since the Unix epoch.
    pub at_unix_s: f64,
    /// More about the reason when the worker gave it (`no such device` after
    /// `camera unavailable: /dev/video9`); absent otherwise. An extension of the SPEC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl LastExit {
    /// The reason with its detail, for people.
    pub fn describe(&self) -> String {
        match &self.detail {
            Some(d) => format!("{} ({d})", self.reason),
            None => self.reason.clone(),
        }
    }
}

/// `stats` of a worker. The first five keys are the SPEC's; the rest are extensions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerStats {
    /// Frames per second over the last few seconds (published for video, read for readers).
    pub fps: f64,
    /// Frames published (video) or read (readers).
    pub frames: u64,
    /// Frames dropped by the writer (video) or missed by the reader.
    pub dropped: u64,
    /// Median latency in ms: capture to publish (video), capture to read (readers).
    pub latency_p50_ms: f64,
    /// 99th-percentile latency in ms, same meaning.
    pub latency_p99_ms: f64,
    /// Vision: capture to detections published, median, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection_latency_p50_ms: Option<f64>,
    /// Vision: capture to detections published, 99th percentile, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection_latency_p99_ms: Option<f64>,
    /// Vision: detection results published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detections: Option<u64>,
    /// Readers: age of the reader-table heartbeat in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_age_s: Option<f64>,
    /// Video: generation of the writer (bumped by every writer start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer_generation: Option<u32>,
    /// Seconds until the next restart while in `backoff`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_in_s: Option<f64>,
    /// Vision: where its table comes from: `fixed` (`vision.table_corners` in the config) or
    /// `found` (found on a clear view and held). Each detections record says it per frame
    /// (`table_source`, also `none` while no table is found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_source: Option<String>,
}

impl Status {
    /// The entry of one worker, if present.
    pub fn worker(&self, name: &str) -> Option<&WorkerStatus> {
        self.workers.iter().find(|w| w.name == name)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small status with every SPEC key, for this crate's tests.
    pub(crate) fn sample() -> Status {
        Status {
            supervisor: SupervisorStatus {
                pid: 1,
                uptime_s: 1.0,
                config_path: "/etc/billiards.toml".into(),
                control_socket: "/run/billiards/supervisor.sock".into(),
                shm: ShmStatus {
                    name: "billiards_video".into(),
                    path: "/dev/shm/billiards_video".into(),
                    size_bytes: 0,
                    slots: 3,
                    width: 1280,
                    height: 720,
                    readers: 2,
                    frames_published: 0,
                },
            },
            workers: vec![WorkerStatus {
                name: "video".into(),
                state: WorkerState::Running,
                pid: Some(2),
                uptime_s: 1.0,
                restarts: 0,
                last_exit: None,
                cpu_percent: 0.0,
                rss_bytes: 0,
                stats: WorkerStats {
                    fps: 30.0,
                    ..WorkerStats::default()
                },
            }],
        }
    }

    /// The SPEC's example, key for key: the serialised form must have exactly these keys.
    #[test]
    fn serialises_to_the_spec_shape() {
        let spec: serde_json::Value = serde_json::from_str(
            r#"{"supervisor": {"pid": 1, "uptime_s": 1.0, "config_path": "/etc/billiards.toml",
                "control_socket": "/run/billiards/supervisor.sock",
                "shm": {"name": "billiards_video", "path": "/dev/shm/billiards_video", "size_bytes": 0,
                        "slots": 3, "width": 1280, "height": 720, "readers": 2, "frames_published": 0}},
               "workers": [{"name": "video", "state": "running", "pid": 2, "uptime_s": 1.0, "restarts": 0,
                 "last_exit": null, "cpu_percent": 0.0, "rss_bytes": 0,
                 "stats": {"fps": 30.0, "frames": 0, "dropped": 0, "latency_p50_ms": 0.0, "latency_p99_ms": 0.0}}]}"#,
        )
        .unwrap();
        assert_eq!(serde_json::to_value(sample()).unwrap(), spec);
        let back: Status = serde_json::from_value(spec).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn table_source_is_an_optional_extension() {
        let mut s = sample();
        s.workers[0].stats.table_source = Some("fixed".into());
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["workers"][0]["stats"]["table_source"], "fixed");
        let back: Status = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
        let plain = serde_json::to_value(sample()).unwrap();
        assert!(plain["workers"][0]["stats"].get("table_source").is_none());
    }

    #[test]
    fn last_exit_has_the_spec_keys() {
        let e = LastExit {
            code: None,
            signal: Some(9),
            reason: "killed by SIGKILL".into(),
            at_unix_s: 1.5,
            detail: None,
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"code": null, "signal": 9, "reason": "killed by SIGKILL", "at_unix_s": 1.5})
        );
    }

    #[test]
    fn states_are_the_spec_words() {
        for (s, w) in [
            (WorkerState::Starting, "starting"),
            (WorkerState::Running, "running"),
            (WorkerState::Backoff, "backoff"),
            (WorkerState::Stopping, "stopping"),
            (WorkerState::Stopped, "stopped"),
            (WorkerState::Failed, "failed"),
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(w));
            assert_eq!(s.as_str(), w);
        }
    }
}
