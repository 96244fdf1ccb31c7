//! What the tree reports: the status JSON, the one-line summary for logs and systemd, the
//! frame rates and the CPU and RSS of the workers.
//!
//! Reporting only reads the tree's state; it never changes a worker's state.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use shm_core::{Monitor, SegmentSnapshot};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use super::{Phase, Tree, Worker};
use crate::status::{ShmStatus, Status, SupervisorStatus, WorkerState, WorkerStats, WorkerStatus};
use crate::worker::WorkerName;

/// How often CPU and RSS of the tree are sampled.
const SYS_REFRESH: Duration = Duration::from_secs(2);
/// A `status` request samples a process it has no figures for, but at most this often, so a
/// client polling status cannot make us spin.
const SYS_REFRESH_UNSEEN: Duration = Duration::from_millis(500);
/// Window of the frames-per-second estimate.
const FPS_WINDOW: Duration = Duration::from_secs(3);

/// Counter samples for a rate estimate.
#[derive(Debug, Default, Clone)]
pub(super) struct RateMeter {
    samples: VecDeque<(Instant, u64)>,
}

impl RateMeter {
    /// Records the counter's `value` at `now`. A counter that went back (a new reader entry)
    /// starts the estimate over.
    pub fn push(&mut self, now: Instant, value: u64) {
        if self.samples.back().is_some_and(|&(_, v)| value < v) {
            self.samples.clear();
        }
        self.samples.push_back((now, value));
        while self.samples.len() > 2
            && self
                .samples
                .front()
                .is_some_and(|&(t, _)| now.duration_since(t) > FPS_WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// Per second over the window; 0 until the samples span 200 ms.
    pub fn rate(&self) -> f64 {
        match (self.samples.front(), self.samples.back()) {
            (Some(&(t0, v0)), Some(&(t1, v1)))
                if t1.duration_since(t0) >= Duration::from_millis(200) =>
            {
                (v1 - v0) as f64 / t1.duration_since(t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

/// CPU and RSS of the workers and of the supervisor, sampled now and then.
pub(super) struct Usage {
    sys: System,
    /// The pids of the last sample.
    pids: Vec<Pid>,
    last: Option<Instant>,
}

impl Usage {
    /// Nothing sampled yet.
    pub fn new() -> Usage {
        // sysinfo keeps /proc/<pid>/stat open by default; we refresh rarely, so do not.
        sysinfo::set_open_files_limit(0);
        Usage {
            sys: System::new(),
            pids: Vec::new(),
            last: None,
        }
    }

    /// Samples `workers` (and the supervisor) when the last sample is [`SYS_REFRESH`] old.
    pub fn refresh_if_due(&mut self, now: Instant, workers: impl Iterator<Item = u32>) {
        if self
            .last
            .is_none_or(|t| now.duration_since(t) >= SYS_REFRESH)
        {
            self.refresh(now, workers);
        }
    }

    /// Samples the supervisor and `workers`.
    fn refresh(&mut self, now: Instant, workers: impl Iterator<Item = u32>) {
        self.last = Some(now);
        let mut pids: Vec<Pid> = workers.map(Pid::from_u32).collect();
        pids.push(Pid::from_u32(std::process::id()));
        // Asking again for the pids of the last round lets sysinfo drop the dead ones, so its
        // table does not grow with every restart.
        let mut ask = pids.clone();
        ask.extend(self.pids.iter().filter(|p| !pids.contains(p)));
        self.sys.refresh_processes_specifics(
            ProcessesToUpdate::Some(&ask),
            true,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        self.pids = pids;
    }

    /// CPU (percent of one core) and RSS (bytes) of `pid` as of the last sample.
    fn of(&self, pid: u32) -> Option<(f64, u64)> {
        self.sys
            .process(Pid::from_u32(pid))
            .map(|p| (f64::from(p.cpu_usage()), p.memory()))
    }
}

impl Tree {
    /// The pids of the running workers.
    fn worker_pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.workers
            .iter()
            .filter_map(|s| s.proc.as_ref())
            .map(|p| p.pid)
    }

    /// Samples CPU and RSS when it is time to.
    pub(super) fn sample_usage(&mut self, now: Instant) {
        let pids: Vec<u32> = self.worker_pids().collect();
        self.usage.refresh_if_due(now, pids.into_iter());
    }

    /// The status JSON as of now.
    pub fn status(&mut self, now: Instant) -> Status {
        // A process started since the last sample has no CPU/RSS yet: sample now.
        let pids: Vec<u32> = self.worker_pids().collect();
        let unseen = pids.iter().any(|&p| self.usage.of(p).is_none());
        if unseen
            && self
                .usage
                .last
                .is_none_or(|t| now.duration_since(t) >= SYS_REFRESH_UNSEEN)
        {
            self.usage.refresh(now, pids.into_iter());
        }
        let snap = self.frames.snapshot();
        let det = self.detections.as_ref().map(Monitor::snapshot);
        let info = &snap.info;
        let shm = ShmStatus {
            name: info.name.clone(),
            path: info.path.display().to_string(),
            size_bytes: info.size_bytes as u64,
            slots: info.spec.slot_count,
            width: info.spec.width,
            height: info.spec.height,
            readers: snap.readers.iter().filter(|r| r.alive).count() as u32,
            frames_published: snap.frames_published,
        };
        let workers = self
            .workers
            .iter()
            .filter(|s| s.enabled)
            .map(|s| {
                let mut w = worker_status(s, &self.usage, &snap, det.as_ref(), now);
                if matches!(s.name, WorkerName::Vision) {
                    // The config says which; the detections say it per frame.
                    let fixed = self.setup.config.vision.table_corners.is_some();
                    w.stats.table_source = Some(if fixed { "fixed" } else { "found" }.into());
                }
                w
            })
            .collect();
        Status {
            supervisor: SupervisorStatus {
                pid: std::process::id(),
                uptime_s: now.duration_since(self.started).as_secs_f64(),
                config_path: self.setup.config_origin.clone(),
                control_socket: self.setup.socket.display().to_string(),
                shm,
            },
            workers,
        }
    }
}

/// The `workers` entry of `s`.
fn worker_status(
    s: &Worker,
    usage: &Usage,
    snap: &SegmentSnapshot,
    det: Option<&SegmentSnapshot>,
    now: Instant,
) -> WorkerStatus {
    let pid = s.proc.as_ref().map(|p| p.pid);
    let (cpu_percent, rss_bytes) = pid.and_then(|p| usage.of(p)).unwrap_or((0.0, 0));
    let fps = s.proc.as_ref().map_or(0.0, |p| p.rate.rate());
    let mut stats = WorkerStats {
        restart_in_s: s
            .restart_at
            .filter(|_| s.state == WorkerState::Backoff)
            .map(|t| t.saturating_duration_since(now).as_secs_f64()),
        ..WorkerStats::default()
    };
    match s.name {
        WorkerName::Video => {
            stats.frames = snap.frames_published;
            stats.dropped = snap.frames_dropped;
            stats.latency_p50_ms = ns_to_ms(snap.writer_latency_p50_ns);
            stats.latency_p99_ms = ns_to_ms(snap.writer_latency_p99_ns);
            stats.writer_generation = Some(snap.writer.generation);
            stats.fps = fps;
        }
        _ => {
            if let Some(e) = pid.and_then(|p| snap.readers.iter().find(|r| r.pid == p)) {
                stats.fps = fps;
                stats.frames = e.frames_read;
                stats.dropped = e.frames_missed;
                stats.latency_p50_ms = ns_to_ms(e.latency_p50_ns);
                stats.latency_p99_ms = ns_to_ms(e.latency_p99_ns);
                stats.heartbeat_age_s = Some(e.heartbeat_age.as_secs_f64());
            }
            if let (WorkerName::Vision, Some(d)) = (s.name, det) {
                stats.detections = Some(d.frames_published);
                stats.detection_latency_p50_ms = Some(ns_to_ms(d.writer_latency_p50_ns));
                stats.detection_latency_p99_ms = Some(ns_to_ms(d.writer_latency_p99_ns));
            }
        }
    }
    WorkerStatus {
        name: s.name.to_string(),
        state: s.state,
        pid,
        uptime_s: s.proc.as_ref().map_or(0.0, |p| p.uptime(now).as_secs_f64()),
        restarts: s.restarts,
        last_exit: s.last_exit.clone(),
        cpu_percent,
        rss_bytes,
        stats,
    }
}

/// `video running, vision running, stream backoff (killed by SIGKILL)`.
pub(super) fn summary_line(workers: &[Worker], phase: Phase) -> String {
    let mut parts: Vec<String> = workers
        .iter()
        .filter(|s| s.enabled)
        .map(|s| match (&s.state, &s.last_exit) {
            (WorkerState::Failed | WorkerState::Backoff, Some(e)) => {
                format!("{} {} ({})", s.name, s.state, e.reason)
            }
            _ => format!("{} {}", s.name, s.state),
        })
        .collect();
    if phase != Phase::Running {
        parts.insert(0, "stopping:".into());
    }
    parts.join(", ")
}

fn ns_to_ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::LastExit;

    #[test]
    fn rate_meter_measures_over_the_window() {
        let mut m = RateMeter::default();
        let t0 = Instant::now();
        assert_eq!(m.rate(), 0.0);
        for i in 0..=20u64 {
            m.push(t0 + Duration::from_millis(250 * i), 100 + 30 * i / 4);
        }
        // 30 per second (7.5 per 250 ms, integer-rounded).
        assert!((m.rate() - 30.0).abs() < 1.5, "{}", m.rate());
        // A counter that goes back (a new reader entry) restarts the estimate.
        m.push(t0 + Duration::from_secs(6), 3);
        assert_eq!(m.rate(), 0.0);
    }

    #[test]
    fn summary_names_failures() {
        let mut video = Worker::new(WorkerName::Video, true);
        video.state = WorkerState::Failed;
        video.last_exit = Some(LastExit {
            code: Some(10),
            signal: None,
            reason: "camera unavailable: /dev/video99".into(),
            at_unix_s: 0.0,
            detail: None,
        });
        let vision = Worker::new(WorkerName::Vision, false);
        let mut stream = Worker::new(WorkerName::Stream, true);
        stream.state = WorkerState::Running;
        assert_eq!(
            summary_line(&[video, vision, stream], Phase::Running),
            "video failed (camera unavailable: /dev/video99), stream running"
        );
    }
}
