//! Counters, gauges and histograms of the stream worker, rendered in the Prometheus text
//! exposition format (version 0.0.4) for `GET /metrics`.
//!
//! Everything is a lock-free atomic updated on the hot path, except the sliding latency window
//! that feeds the dashboard's p50/p99 (a short mutex per sent part).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use serde_json::Value;
use shm_core::LatencyWindow;

/// `Content-Type` of `/metrics`.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the publish-to-send latency histogram.
const LATENCY_BOUNDS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.02, 0.033, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];
/// Upper bounds (seconds) of the JPEG encode-time histogram.
const ENCODE_BOUNDS: &[f64] = &[
    0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25,
];
/// HTTP status codes counted one by one; anything else is counted as `other`.
const CODES: &[u16] = &[200, 400, 401, 404, 405, 500, 502, 503];

/// A cumulative histogram with fixed buckets, in nanoseconds internally, seconds outside.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One per bound plus `+Inf`; not cumulative (summed when rendered).
    counts: Vec<AtomicU64>,
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one observation of `ns` nanoseconds.
    pub fn observe_ns(&self, ns: u64) {
        let secs = ns as f64 / 1e9;
        let i = self
            .bounds
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// Mean of all observations in seconds (0 when empty).
    pub fn mean_secs(&self) -> f64 {
        let n = self.count();
        if n == 0 {
            0.0
        } else {
            self.sum_ns.load(Relaxed) as f64 / 1e9 / n as f64
        }
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.counts[self.bounds.len()].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_ns.load(Relaxed) as f64 / 1e9);
        // The total is the sum of the buckets read above, so the exposition stays consistent
        // even while other threads observe.
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// An `f64` gauge stored as bits in an atomic.
#[derive(Debug, Default)]
pub struct GaugeF64(AtomicU64);

impl GaugeF64 {
    /// Sets the value.
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Relaxed);
    }
    /// The value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Relaxed))
    }
}

/// Every metric of the stream worker.
#[derive(Debug)]
pub struct Metrics {
    /// Frames read from the frame segment.
    pub frames_read: AtomicU64,
    /// Frames published by the writer that the reader never saw (it was busy or slow).
    pub frames_missed: AtomicU64,
    /// Frames read per second, measured over the last two seconds.
    pub input_fps: GaugeF64,
    /// Frame number of the newest frame read (0 = none yet).
    pub last_frame_number: AtomicU64,
    /// CLOCK_MONOTONIC publish time of the newest frame read (0 = none yet).
    pub last_publish_ns: AtomicU64,
    /// CLOCK_MONOTONIC capture time of the newest frame read.
    pub last_capture_ns: AtomicU64,
    /// Whether the segment's writer process is alive.
    pub video_up: AtomicBool,
    /// Writer generation of the newest frame (bumped by every video-worker start).
    pub writer_generation: AtomicU64,
    /// JPEG encodes done (one per frame per watched variant, plus snapshots).
    pub encodes: AtomicU64,
    /// Encodes that failed.
    pub encode_errors: AtomicU64,
    /// Frames a variant did not encode because the previous encode was still running.
    pub encode_skipped: AtomicU64,
    /// Encode time.
    pub encode_seconds: Histogram,
    /// Variants (quality, overlay) currently encoded.
    pub variants: AtomicI64,
    /// Stream clients connected now.
    pub clients: AtomicI64,
    /// Stream clients accepted since start.
    pub clients_total: AtomicU64,
    /// Stream clients refused with 503 (over `stream.max_clients`).
    pub clients_rejected: AtomicU64,
    /// TCP connections open now.
    pub connections: AtomicI64,
    /// Multipart parts handed to clients' sockets.
    pub parts_sent: AtomicU64,
    /// Bytes of parts and snapshots handed to clients' sockets.
    pub bytes_sent: AtomicU64,
    /// Frames a client did not get because it was slower than the source (or paced lower).
    pub client_skipped: AtomicU64,
    /// Frame publish (by the video worker) to hand-off to a client's socket.
    pub send_latency: Histogram,
    /// Recent publish-to-send latencies for the dashboard's p50/p99.
    pub send_latency_window: Mutex<LatencyWindow>,
    /// Snapshots served.
    pub snapshots: AtomicU64,
    /// Detection results read from the detections channel.
    pub detections_read: AtomicU64,
    /// The H.264 live view (`/stream/h264`).
    pub h264: crate::h264::H264Metrics,
    responses: Vec<AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            frames_read: AtomicU64::new(0),
            frames_missed: AtomicU64::new(0),
            input_fps: GaugeF64::default(),
            last_frame_number: AtomicU64::new(0),
            last_publish_ns: AtomicU64::new(0),
            last_capture_ns: AtomicU64::new(0),
            video_up: AtomicBool::new(false),
            writer_generation: AtomicU64::new(0),
            encodes: AtomicU64::new(0),
            encode_errors: AtomicU64::new(0),
            encode_skipped: AtomicU64::new(0),
            encode_seconds: Histogram::new(ENCODE_BOUNDS),
            variants: AtomicI64::new(0),
            clients: AtomicI64::new(0),
            clients_total: AtomicU64::new(0),
            clients_rejected: AtomicU64::new(0),
            connections: AtomicI64::new(0),
            parts_sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            client_skipped: AtomicU64::new(0),
            send_latency: Histogram::new(LATENCY_BOUNDS),
            send_latency_window: Mutex::new(LatencyWindow::new(512)),
            snapshots: AtomicU64::new(0),
            detections_read: AtomicU64::new(0),
            h264: Default::default(),
            responses: (0..=CODES.len()).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// Things `/metrics` shows that are not counters of this module.
#[derive(Debug, Default)]
pub struct Extra {
    /// CLOCK_MONOTONIC now.
    pub now_ns: u64,
    /// The supervisor's status JSON, when it answered.
    pub supervisor_status: Option<Value>,
    /// Live tokio tasks.
    pub tasks: Option<usize>,
    /// This process's resources.
    pub process: ProcessStats,
}

/// Resources of this process, read from `/proc/self`.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    /// User + system CPU time in seconds.
    pub cpu_seconds: f64,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// Threads.
    pub threads: u64,
}

impl ProcessStats {
    /// Reads this process's figures; a figure that cannot be read is 0.
    pub fn current() -> ProcessStats {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        ProcessStats {
            cpu_seconds: shm_core::process_cpu_ns() as f64 / 1e9,
            rss_bytes: field("VmRSS:") * 1024,
            open_fds: std::fs::read_dir("/proc/self/fd")
                .map(|d| d.count() as u64)
                .unwrap_or(0),
            threads: field("Threads:"),
        }
    }
}

impl Metrics {
    /// Counts one HTTP response by status code.
    pub fn count_response(&self, code: u16) {
        let i = CODES.iter().position(|&c| c == code).unwrap_or(CODES.len());
        self.responses[i].fetch_add(1, Relaxed);
    }

    /// Records the publish-to-send latency of one part.
    pub fn record_send_latency(&self, ns: u64) {
        self.send_latency.observe_ns(ns);
        if let Ok(mut w) = self.send_latency_window.lock() {
            w.record(ns);
        }
    }

    /// (p50, p99) of recent publish-to-send latencies, in nanoseconds.
    pub fn send_latency_percentiles(&self) -> (u64, u64) {
        self.send_latency_window
            .lock()
            .map(|mut w| w.percentiles())
            .unwrap_or((0, 0))
    }

    /// Age in seconds of the newest frame read (by publish time), None before the first frame.
    pub fn frame_age_secs(&self, now_ns: u64) -> Option<f64> {
        match self.last_publish_ns.load(Relaxed) {
            0 => None,
            t => Some(now_ns.saturating_sub(t) as f64 / 1e9),
        }
    }

    /// The input fps as it stands now: the measured rate, or 0 once frames stopped arriving.
    pub fn current_input_fps(&self, now_ns: u64) -> f64 {
        match self.frame_age_secs(now_ns) {
            Some(age) if age < 2.0 => self.input_fps.get(),
            _ => 0.0,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self, extra: &Extra) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let o = &mut out;
        let ld = |a: &AtomicU64| a.load(Relaxed);
        counter(
            o,
            "billiards_stream_frames_total",
            "Frames read from the frame segment.",
            ld(&self.frames_read),
        );
        counter(o, "billiards_stream_frames_missed_total", "Frames the video worker published that this reader never read (dropped before streaming).", ld(&self.frames_missed));
        gauge(
            o,
            "billiards_stream_input_fps",
            "Frames per second read from the frame segment, over the last 2 s.",
            self.current_input_fps(extra.now_ns),
        );
        gauge(
            o,
            "billiards_stream_last_frame_number",
            "Frame number of the newest frame read.",
            ld(&self.last_frame_number) as f64,
        );
        if let Some(age) = self.frame_age_secs(extra.now_ns) {
            gauge(
                o,
                "billiards_stream_frame_age_seconds",
                "Time since the newest frame read was published.",
                age,
            );
        }
        gauge(
            o,
            "billiards_stream_video_up",
            "1 when the video worker (the segment's writer) is alive.",
            f64::from(u8::from(self.video_up.load(Relaxed))),
        );
        gauge(
            o,
            "billiards_stream_writer_generation",
            "Writer generation of the newest frame (one per video-worker start).",
            ld(&self.writer_generation) as f64,
        );
        counter(
            o,
            "billiards_stream_encodes_total",
            "JPEG encodes (once per frame per watched quality/overlay variant, plus snapshots).",
            ld(&self.encodes),
        );
        counter(
            o,
            "billiards_stream_encode_errors_total",
            "JPEG encodes that failed.",
            ld(&self.encode_errors),
        );
        counter(
            o,
            "billiards_stream_encode_skipped_total",
            "Frames a variant skipped because its previous encode was still running.",
            ld(&self.encode_skipped),
        );
        self.encode_seconds.render(
            o,
            "billiards_stream_encode_seconds",
            "Time to draw the overlay and encode one JPEG.",
        );
        gauge(
            o,
            "billiards_stream_variants",
            "Quality/overlay variants being encoded now (one per combination some client watches).",
            self.variants.load(Relaxed) as f64,
        );
        gauge(
            o,
            "billiards_stream_clients",
            "Stream clients (GET /stream/video) connected now.",
            self.clients.load(Relaxed) as f64,
        );
        counter(
            o,
            "billiards_stream_clients_total",
            "Stream clients accepted since start.",
            ld(&self.clients_total),
        );
        counter(
            o,
            "billiards_stream_clients_rejected_total",
            "Stream clients refused with 503 because stream.max_clients were connected.",
            ld(&self.clients_rejected),
        );
        gauge(
            o,
            "billiards_stream_connections",
            "HTTP connections open now.",
            self.connections.load(Relaxed) as f64,
        );
        counter(
            o,
            "billiards_stream_parts_sent_total",
            "JPEG parts handed to stream clients' sockets.",
            ld(&self.parts_sent),
        );
        counter(
            o,
            "billiards_stream_bytes_sent_total",
            "Bytes of JPEG parts and snapshots handed to clients' sockets.",
            ld(&self.bytes_sent),
        );
        counter(o, "billiards_stream_client_dropped_frames_total", "Frames stream clients did not get because they were slower than the source or asked a lower fps.", ld(&self.client_skipped));
        self.send_latency.render(
            o,
            "billiards_stream_send_latency_seconds",
            "Time from a frame's publish by the video worker to its hand-off to a client's socket.",
        );
        counter(
            o,
            "billiards_stream_snapshots_total",
            "Snapshots served.",
            ld(&self.snapshots),
        );
        counter(
            o,
            "billiards_stream_detections_total",
            "Detection results read from the detections channel.",
            ld(&self.detections_read),
        );

        let _ = writeln!(
            o,
            "# HELP billiards_stream_http_responses_total HTTP responses by status code."
        );
        let _ = writeln!(o, "# TYPE billiards_stream_http_responses_total counter");
        for (i, code) in CODES.iter().enumerate() {
            let _ = writeln!(
                o,
                "billiards_stream_http_responses_total{{code=\"{code}\"}} {}",
                ld(&self.responses[i])
            );
        }
        let _ = writeln!(
            o,
            "billiards_stream_http_responses_total{{code=\"other\"}} {}",
            ld(&self.responses[CODES.len()])
        );

        if let Some(tasks) = extra.tasks {
            gauge(
                o,
                "billiards_stream_tasks",
                "Live async tasks in the stream worker.",
                tasks as f64,
            );
        }
        let p = &extra.process;
        counter_f(
            o,
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            p.cpu_seconds,
        );
        gauge(
            o,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            p.rss_bytes as f64,
        );
        gauge(
            o,
            "process_open_fds",
            "Number of open file descriptors.",
            p.open_fds as f64,
        );
        gauge(
            o,
            "process_threads",
            "Number of OS threads.",
            p.threads as f64,
        );

        self.h264.render(o);
        render_supervisor(o, extra.supervisor_status.as_ref());
        out
    }
}

/// The supervisor's view: whether it answered, and restarts and state per worker.
fn render_supervisor(o: &mut String, status: Option<&Value>) {
    gauge(
        o,
        "billiards_supervisor_up",
        "1 when the supervisor answered the status request on its control socket.",
        f64::from(u8::from(status.is_some())),
    );
    let Some(workers) = status
        .and_then(|s| s.get("workers"))
        .and_then(Value::as_array)
    else {
        return;
    };
    let named = || {
        workers.iter().filter_map(|w| {
            let name = w.get("name")?.as_str()?;
            // Worker names come from the supervisor; keep only label-safe characters.
            let name: String = name
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .collect();
            Some((name, w))
        })
    };
    let _ = writeln!(o, "# HELP billiards_worker_restarts_total Restarts of each worker, as counted by the supervisor.");
    let _ = writeln!(o, "# TYPE billiards_worker_restarts_total counter");
    for (name, w) in named() {
        let restarts = w.get("restarts").and_then(Value::as_u64).unwrap_or(0);
        let _ = writeln!(
            o,
            "billiards_worker_restarts_total{{worker=\"{name}\"}} {restarts}"
        );
    }
    let _ = writeln!(
        o,
        "# HELP billiards_worker_up 1 when the supervisor reports the worker running."
    );
    let _ = writeln!(o, "# TYPE billiards_worker_up gauge");
    for (name, w) in named() {
        let up = w.get("state").and_then(Value::as_str) == Some("running");
        let _ = writeln!(
            o,
            "billiards_worker_up{{worker=\"{name}\"}} {}",
            u8::from(up)
        );
    }
}

fn counter(o: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
}

fn counter_f(o: &mut String, name: &str, help: &str, v: f64) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
}

fn gauge(o: &mut String, name: &str, help: &str, v: f64) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses the exposition into (series, value) pairs, checking every line's shape.
    fn parse(text: &str) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        for line in text.lines() {
            if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect(line);
            let v: f64 = value.parse().expect(line);
            out.push((series.to_string(), v));
        }
        out
    }

    fn value(samples: &[(String, f64)], series: &str) -> f64 {
        samples
            .iter()
            .find(|(s, _)| s == series)
            .unwrap_or_else(|| panic!("{series} missing"))
            .1
    }

    #[test]
    fn exposition_is_well_formed_and_histograms_are_cumulative() {
        let m = Metrics::default();
        m.frames_read.store(7, Relaxed);
        m.clients.store(3, Relaxed);
        m.record_send_latency(1_500_000); // 1.5 ms
        m.record_send_latency(40_000_000); // 40 ms
        m.record_send_latency(9_000_000_000); // 9 s: +Inf
        m.count_response(200);
        m.count_response(418);
        let text = m.render(&Extra {
            now_ns: 10,
            ..Extra::default()
        });
        let s = parse(&text);
        assert_eq!(value(&s, "billiards_stream_frames_total"), 7.0);
        assert_eq!(value(&s, "billiards_stream_clients"), 3.0);
        assert_eq!(
            value(
                &s,
                "billiards_stream_send_latency_seconds_bucket{le=\"0.001\"}"
            ),
            0.0
        );
        assert_eq!(
            value(
                &s,
                "billiards_stream_send_latency_seconds_bucket{le=\"0.002\"}"
            ),
            1.0
        );
        assert_eq!(
            value(
                &s,
                "billiards_stream_send_latency_seconds_bucket{le=\"0.05\"}"
            ),
            2.0
        );
        assert_eq!(
            value(
                &s,
                "billiards_stream_send_latency_seconds_bucket{le=\"+Inf\"}"
            ),
            3.0
        );
        assert_eq!(
            value(&s, "billiards_stream_send_latency_seconds_count"),
            3.0
        );
        assert_eq!(
            value(&s, "billiards_stream_http_responses_total{code=\"200\"}"),
            1.0
        );
        assert_eq!(
            value(&s, "billiards_stream_http_responses_total{code=\"other\"}"),
            1.0
        );
        assert_eq!(value(&s, "billiards_supervisor_up"), 0.0);
        // Every TYPE line names a family that has samples.
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split_whitespace().nth(2).unwrap();
            assert!(
                s.iter().any(|(series, _)| series.starts_with(name)),
                "{name}"
            );
        }
    }

    #[test]
    fn supervisor_restarts_per_worker_are_rendered() {
        let status = serde_json::json!({"workers": [
            {"name": "video", "state": "running", "restarts": 2},
            {"name": "vision", "state": "backoff", "restarts": 5},
            {"name": "stream\"}", "state": "running", "restarts": 0},
        ]});
        let text = Metrics::default().render(&Extra {
            supervisor_status: Some(status),
            ..Extra::default()
        });
        let s = parse(&text);
        assert_eq!(value(&s, "billiards_supervisor_up"), 1.0);
        assert_eq!(
            value(&s, "billiards_worker_restarts_total{worker=\"video\"}"),
            2.0
        );
        assert_eq!(
            value(&s, "billiards_worker_restarts_total{worker=\"vision\"}"),
            5.0
        );
        assert_eq!(
            value(&s, "billiards_worker_restarts_total{worker=\"stream\"}"),
            0.0
        );
        assert_eq!(value(&s, "billiards_worker_up{worker=\"vision\"}"), 0.0);
    }

    #[test]
    fn frame_age_and_fps_fall_to_zero_when_frames_stop() {
        let m = Metrics::default();
        assert_eq!(m.frame_age_secs(5), None);
        m.last_publish_ns.store(1_000_000_000, Relaxed);
        m.input_fps.set(30.0);
        assert_eq!(m.current_input_fps(1_500_000_000), 30.0);
        assert_eq!(m.current_input_fps(4_000_000_000), 0.0);
        assert_eq!(m.frame_age_secs(4_000_000_000), Some(3.0));
    }

    #[test]
    fn process_stats_are_read() {
        let p = ProcessStats::current();
        assert!(p.rss_bytes > 0 && p.open_fds > 0 && p.threads > 0, "{p:?}");
    }
}
