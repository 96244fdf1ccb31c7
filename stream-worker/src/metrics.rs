//! Counters, gauges and histograms of the stream worker, rendered in the Prometheus text
//! exposition format (version 0.0.4) for `GET /metrics`.
//!
//! Everything is a lock-free atomic updated on the hot path, except the sliding latency window
//! that feeds the dashboard's p50/p99 (a short mutex per sent part).
//!
//! Each series is declared once, in [`FAMILIES`]: its name, help text, type and how to read
//! it from [`Metrics`] or [`Extra`]; [`Metrics::render`] is a loop over that table. Adding a
//! metric is a field of [`Metrics`] (its `Default` is derived) and one entry in the table.

use std::fmt::{self, Write as _};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use protocol::status::{Status, WorkerState, WorkerStatus};
use shm_core::LatencyWindow;

/// `Content-Type` of `/metrics`.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// HTTP status codes counted one by one; anything else is counted as `other`.
const CODES: [u16; 9] = [200, 400, 401, 403, 404, 405, 500, 502, 503];

/// The upper bounds (seconds) of a histogram's buckets.
pub trait Buckets {
    /// Increasing upper bounds; `+Inf` is implied.
    const BOUNDS: &'static [f64];
}

/// Buckets of the publish-to-send latency histogram.
#[derive(Debug)]
pub struct LatencyBuckets;

impl Buckets for LatencyBuckets {
    const BOUNDS: &'static [f64] = &[
        0.001, 0.002, 0.005, 0.01, 0.02, 0.033, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
    ];
}

/// Buckets of the JPEG encode-time histogram.
#[derive(Debug)]
pub struct EncodeBuckets;

impl Buckets for EncodeBuckets {
    const BOUNDS: &'static [f64] = &[
        0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25,
    ];
}

/// A cumulative histogram with the fixed buckets `B`, in nanoseconds internally, seconds
/// outside.
#[derive(Debug)]
pub struct Histogram<B> {
    /// One per bound plus `+Inf`; not cumulative (summed when rendered).
    counts: Vec<AtomicU64>,
    sum_ns: AtomicU64,
    count: AtomicU64,
    buckets: PhantomData<B>,
}

impl<B: Buckets> Default for Histogram<B> {
    fn default() -> Self {
        Histogram {
            counts: (0..=B::BOUNDS.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
            buckets: PhantomData,
        }
    }
}

impl<B: Buckets> Histogram<B> {
    /// Records one observation of `ns` nanoseconds.
    pub fn observe_ns(&self, ns: u64) {
        let secs = ns as f64 / 1e9;
        let i = B::BOUNDS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(B::BOUNDS.len());
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

    /// The buckets as they stand now, for rendering.
    fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: B::BOUNDS,
            counts: self.counts.iter().map(|c| c.load(Relaxed)).collect(),
            sum_ns: self.sum_ns.load(Relaxed),
        }
    }
}

/// The buckets of a histogram read once (not cumulative, `+Inf` last).
struct HistogramSnapshot {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum_ns: u64,
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

/// The most recent publish-to-send latencies, for the dashboard's p50/p99.
#[derive(Debug)]
struct RecentLatencies(Mutex<LatencyWindow>);

impl Default for RecentLatencies {
    fn default() -> Self {
        RecentLatencies(Mutex::new(LatencyWindow::new(512)))
    }
}

/// Every metric of the stream worker; [`FAMILIES`] says how each is shown.
#[derive(Debug, Default)]
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
    pub encode_seconds: Histogram<EncodeBuckets>,
    /// Variants (quality, overlay) currently encoded.
    pub variants: AtomicI64,
    /// Stream clients connected now.
    pub clients: AtomicI64,
    /// Clients (video streams and WebSocket push clients) accepted since start.
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
    pub send_latency: Histogram<LatencyBuckets>,
    /// Recent publish-to-send latencies for the dashboard's p50/p99.
    send_latency_window: RecentLatencies,
    /// Snapshots served.
    pub snapshots: AtomicU64,
    /// Detection results read from the detections channel.
    pub detections_read: AtomicU64,
    /// The H.264 live view (`/stream/h264`).
    pub h264: crate::h264::H264Metrics,
    /// HTTP responses per code of [`CODES`], then `other`.
    responses: [AtomicU64; CODES.len() + 1],
}

/// Things `/metrics` shows that are not counters of this module.
#[derive(Debug, Default)]
pub struct Extra {
    /// CLOCK_MONOTONIC now.
    pub now_ns: u64,
    /// The supervisor's status, when it answered.
    pub supervisor_status: Option<Status>,
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
        if let Ok(mut w) = self.send_latency_window.0.lock() {
            w.record(ns);
        }
    }

    /// (p50, p99) of recent publish-to-send latencies, in nanoseconds.
    pub fn send_latency_percentiles(&self) -> (u64, u64) {
        self.send_latency_window
            .0
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

    /// The Prometheus text exposition: every family of [`FAMILIES`] that has samples now.
    pub fn render(&self, extra: &Extra) -> String {
        let mut out = String::with_capacity(8 * 1024);
        for family in FAMILIES {
            family.render(&mut out, self, extra);
        }
        self.h264.render(&mut out);
        out
    }
}

/// The Prometheus type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A sample's value: counts print as integers, measures as Rust prints an `f64` (so a whole
/// number has no decimal point).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    Int(u64),
    Float(f64),
}

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Num::Int(v) => write!(f, "{v}"),
            Num::Float(v) => write!(f, "{v}"),
        }
    }
}

/// Reads one sample of a family; `None` leaves the family out.
type ReadOne = fn(&Metrics, &Extra) -> Option<Num>;

/// Reads a family's samples, one per label value; `None` leaves the family out.
type ReadLabelled = fn(&Metrics, &Extra) -> Option<Vec<(String, Num)>>;

/// How a family reads its samples.
enum Read {
    /// One unlabelled sample; `None` leaves the family out.
    One(ReadOne),
    /// One sample per value of the label; `None` leaves the family out, an empty list shows
    /// only its HELP and TYPE lines.
    Labelled(&'static str, ReadLabelled),
    /// A histogram's buckets, sum and count.
    Histogram(fn(&Metrics) -> HistogramSnapshot),
}

/// One metric family of `/metrics`, declared once.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    read: Read,
}

impl Family {
    /// A counter that reads one value.
    const fn counter(name: &'static str, help: &'static str, read: ReadOne) -> Family {
        Family {
            name,
            help,
            kind: Kind::Counter,
            read: Read::One(read),
        }
    }

    /// A gauge that reads one value.
    const fn gauge(name: &'static str, help: &'static str, read: ReadOne) -> Family {
        Family {
            name,
            help,
            kind: Kind::Gauge,
            read: Read::One(read),
        }
    }

    /// Appends the family to `o`, unless it has nothing to show now.
    fn render(&self, o: &mut String, m: &Metrics, extra: &Extra) {
        let name = self.name;
        match &self.read {
            Read::One(read) => {
                let Some(v) = read(m, extra) else {
                    return;
                };
                self.header(o);
                let _ = writeln!(o, "{name} {v}");
            }
            Read::Labelled(label, read) => {
                let Some(samples) = read(m, extra) else {
                    return;
                };
                self.header(o);
                for (value, v) in samples {
                    let _ = writeln!(o, "{name}{{{label}=\"{value}\"}} {v}");
                }
            }
            Read::Histogram(read) => {
                let h = read(m);
                self.header(o);
                let mut cumulative = 0;
                for (count, bound) in h.counts.iter().zip(h.bounds) {
                    cumulative += count;
                    let _ = writeln!(o, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
                }
                cumulative += h.counts[h.bounds.len()];
                let _ = writeln!(o, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                let _ = writeln!(o, "{name}_sum {}", h.sum_ns as f64 / 1e9);
                // The total is the sum of the buckets read above, so the exposition stays
                // consistent even while other threads observe.
                let _ = writeln!(o, "{name}_count {cumulative}");
            }
        }
    }

    fn header(&self, o: &mut String) {
        let (name, help, kind) = (self.name, self.help, self.kind.as_str());
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
}

/// A count from a counter.
fn count(a: &AtomicU64) -> Option<Num> {
    Some(Num::Int(a.load(Relaxed)))
}

/// A measure for a gauge.
fn level(v: f64) -> Option<Num> {
    Some(Num::Float(v))
}

/// Worker entries of the supervisor's status, with their names reduced to label-safe
/// characters; `None` when the supervisor did not answer.
fn supervised_workers(extra: &Extra) -> Option<impl Iterator<Item = (String, &WorkerStatus)>> {
    let workers = &extra.supervisor_status.as_ref()?.workers;
    Some(workers.iter().map(|w| {
        // Worker names come from the supervisor; keep only label-safe characters.
        let name: String = w
            .name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        (name, w)
    }))
}

/// Every family of `/metrics`, in the order they are rendered.
static FAMILIES: &[Family] = &[
    Family::counter(
        "billiards_stream_frames_total",
        "Frames read from the frame segment.",
        |m, _| count(&m.frames_read),
    ),
    Family::counter(
        "billiards_stream_frames_missed_total",
        "Frames the video worker published that this reader never read (dropped before streaming).",
        |m, _| count(&m.frames_missed),
    ),
    Family::gauge(
        "billiards_stream_input_fps",
        "Frames per second read from the frame segment, over the last 2 s.",
        |m, x| level(m.current_input_fps(x.now_ns)),
    ),
    Family::gauge(
        "billiards_stream_last_frame_number",
        "Frame number of the newest frame read.",
        |m, _| level(m.last_frame_number.load(Relaxed) as f64),
    ),
    Family::gauge(
        "billiards_stream_frame_age_seconds",
        "Time since the newest frame read was published.",
        |m, x| m.frame_age_secs(x.now_ns).map(Num::Float),
    ),
    Family::gauge(
        "billiards_stream_video_up",
        "1 when the video worker (the segment's writer) is alive.",
        |m, _| level(f64::from(u8::from(m.video_up.load(Relaxed)))),
    ),
    Family::gauge(
        "billiards_stream_writer_generation",
        "Writer generation of the newest frame (one per video-worker start).",
        |m, _| level(m.writer_generation.load(Relaxed) as f64),
    ),
    Family::counter(
        "billiards_stream_encodes_total",
        "JPEG encodes (once per frame per watched quality/overlay variant, plus snapshots).",
        |m, _| count(&m.encodes),
    ),
    Family::counter(
        "billiards_stream_encode_errors_total",
        "JPEG encodes that failed.",
        |m, _| count(&m.encode_errors),
    ),
    Family::counter(
        "billiards_stream_encode_skipped_total",
        "Frames a variant skipped because its previous encode was still running.",
        |m, _| count(&m.encode_skipped),
    ),
    Family {
        name: "billiards_stream_encode_seconds",
        help: "Time to draw the overlay and encode one JPEG.",
        kind: Kind::Histogram,
        read: Read::Histogram(|m| m.encode_seconds.snapshot()),
    },
    Family::gauge(
        "billiards_stream_variants",
        "Quality/overlay variants being encoded now (one per combination some client watches).",
        |m, _| level(m.variants.load(Relaxed) as f64),
    ),
    Family::gauge(
        "billiards_stream_clients",
        "Clients connected now: video streams (GET /stream/video) and WebSocket push clients (GET /api/ws), which stream.max_clients caps together.",
        |m, _| level(m.clients.load(Relaxed) as f64),
    ),
    Family::counter(
        "billiards_stream_clients_total",
        "Clients (video streams and WebSocket push clients) accepted since start.",
        |m, _| count(&m.clients_total),
    ),
    Family::counter(
        "billiards_stream_clients_rejected_total",
        "Clients (video streams and WebSocket push clients) refused with 503 because stream.max_clients were connected.",
        |m, _| count(&m.clients_rejected),
    ),
    Family::gauge(
        "billiards_stream_connections",
        "HTTP connections open now.",
        |m, _| level(m.connections.load(Relaxed) as f64),
    ),
    Family::counter(
        "billiards_stream_parts_sent_total",
        "JPEG parts handed to stream clients' sockets.",
        |m, _| count(&m.parts_sent),
    ),
    Family::counter(
        "billiards_stream_bytes_sent_total",
        "Bytes of JPEG parts and snapshots handed to clients' sockets.",
        |m, _| count(&m.bytes_sent),
    ),
    Family::counter(
        "billiards_stream_client_dropped_frames_total",
        "Frames stream clients did not get because they were slower than the source or asked a lower fps.",
        |m, _| count(&m.client_skipped),
    ),
    Family {
        name: "billiards_stream_send_latency_seconds",
        help: "Time from a frame's publish by the video worker to its hand-off to a client's socket.",
        kind: Kind::Histogram,
        read: Read::Histogram(|m| m.send_latency.snapshot()),
    },
    Family::counter(
        "billiards_stream_snapshots_total",
        "Snapshots served.",
        |m, _| count(&m.snapshots),
    ),
    Family::counter(
        "billiards_stream_detections_total",
        "Detection results read from the detections channel.",
        |m, _| count(&m.detections_read),
    ),
    Family {
        name: "billiards_stream_http_responses_total",
        help: "HTTP responses by status code.",
        kind: Kind::Counter,
        read: Read::Labelled("code", |m, _| {
            let codes = CODES.iter().map(|c| c.to_string());
            let labels = codes.chain(std::iter::once("other".to_string()));
            Some(
                labels
                    .zip(&m.responses)
                    .map(|(code, n)| (code, Num::Int(n.load(Relaxed))))
                    .collect(),
            )
        }),
    },
    Family::gauge(
        "billiards_stream_tasks",
        "Live async tasks in the stream worker.",
        |_, x| x.tasks.map(|t| Num::Float(t as f64)),
    ),
    Family::counter(
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        |_, x| Some(Num::Float(x.process.cpu_seconds)),
    ),
    Family::gauge(
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        |_, x| level(x.process.rss_bytes as f64),
    ),
    Family::gauge(
        "process_open_fds",
        "Number of open file descriptors.",
        |_, x| level(x.process.open_fds as f64),
    ),
    Family::gauge(
        "process_threads",
        "Number of OS threads.",
        |_, x| level(x.process.threads as f64),
    ),
    // The supervisor's view: whether it answered, and restarts and state per worker.
    Family::gauge(
        "billiards_supervisor_up",
        "1 when the supervisor answered the status request on its control socket.",
        |_, x| level(f64::from(u8::from(x.supervisor_status.is_some()))),
    ),
    Family {
        name: "billiards_worker_restarts_total",
        help: "Restarts of each worker, as counted by the supervisor.",
        kind: Kind::Counter,
        read: Read::Labelled("worker", |_, x| {
            let workers = supervised_workers(x)?;
            Some(
                workers
                    .map(|(name, w)| {
                        (name, Num::Int(u64::from(w.restarts)))
                    })
                    .collect(),
            )
        }),
    },
    Family {
        name: "billiards_worker_up",
        help: "1 when the supervisor reports the worker running.",
        kind: Kind::Gauge,
        read: Read::Labelled("worker", |_, x| {
            let workers = supervised_workers(x)?;
            Some(
                workers
                    .map(|(name, w)| {
                        let up = w.state == WorkerState::Running;
                        (name, Num::Int(u64::from(up)))
                    })
                    .collect(),
            )
        }),
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::status::{ShmStatus, SupervisorStatus, WorkerStats};

    /// A status with these workers (name, state, restarts); the rest is filler.
    fn status_of(workers: &[(&str, WorkerState, u32)]) -> Status {
        Status {
            supervisor: SupervisorStatus {
                pid: 1,
                uptime_s: 1.0,
                config_path: "billiards.toml".into(),
                control_socket: "/tmp/billiards.sock".into(),
                shm: ShmStatus {
                    name: "billiards_video".into(),
                    path: "/dev/shm/billiards_video".into(),
                    size_bytes: 0,
                    slots: 3,
                    width: 640,
                    height: 480,
                    readers: 0,
                    frames_published: 0,
                },
            },
            workers: workers
                .iter()
                .map(|&(name, state, restarts)| WorkerStatus {
                    name: name.into(),
                    state,
                    pid: None,
                    uptime_s: 0.0,
                    restarts,
                    last_exit: None,
                    cpu_percent: 0.0,
                    rss_bytes: 0,
                    stats: WorkerStats::default(),
                })
                .collect(),
        }
    }

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
        let status = status_of(&[
            ("video", WorkerState::Running, 2),
            ("vision", WorkerState::Backoff, 5),
            ("stream\"}", WorkerState::Running, 0),
        ]);
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

    /// A `Metrics` with every series set to a distinct value, with tasks and a supervisor.
    fn populated() -> (Metrics, Extra) {
        let m = Metrics::default();
        let set = |a: &AtomicU64, v: u64| a.store(v, Relaxed);
        set(&m.frames_read, 101);
        set(&m.frames_missed, 3);
        m.input_fps.set(29.97);
        // Above 2^53: a gauge shows the nearest f64, as Prometheus stores it.
        set(&m.last_frame_number, (1 << 53) + 1);
        set(&m.last_publish_ns, 9_000_000_000);
        set(&m.last_capture_ns, 8_990_000_000);
        m.video_up.store(true, Relaxed);
        set(&m.writer_generation, 4);
        set(&m.encodes, 250);
        set(&m.encode_errors, 1);
        set(&m.encode_skipped, 2);
        for ns in [500_000, 3_000_000, 7_500_000, 300_000_000] {
            m.encode_seconds.observe_ns(ns);
        }
        m.variants.store(2, Relaxed);
        m.clients.store(5, Relaxed);
        set(&m.clients_total, 17);
        set(&m.clients_rejected, 6);
        m.connections.store(7, Relaxed);
        set(&m.parts_sent, 1234);
        set(&m.bytes_sent, 12_345_678_901);
        set(&m.client_skipped, 8);
        for ns in [800_000, 4_600_000, 6_900_000, 33_000_000, 7_000_000_000] {
            m.record_send_latency(ns);
        }
        set(&m.snapshots, 9);
        set(&m.detections_read, 77);
        for code in [200, 200, 400, 401, 404, 405, 500, 502, 503, 418] {
            m.count_response(code);
        }
        let extra = Extra {
            now_ns: 9_250_000_000,
            supervisor_status: Some(status_of(&[
                ("video", WorkerState::Running, 2),
                ("vision", WorkerState::Backoff, 5),
            ])),
            tasks: Some(12),
            process: ProcessStats {
                cpu_seconds: 1.25,
                rss_bytes: 80_000_000,
                open_fds: 14,
                threads: 6,
            },
        };
        (m, extra)
    }

    /// The exposition is a contract with scrapers and dashboards: this is what it was before
    /// the metrics were declared in one table, byte for byte. After adding a metric on
    /// purpose, `METRICS_GOLDEN_WRITE=<dir>` writes the new texts there to review and copy.
    #[test]
    fn exposition_matches_the_recorded_text() {
        let (m, extra) = populated();
        let text = m.render(&extra);
        let bare = Metrics::default().render(&Extra::default());
        if let Ok(dir) = std::env::var("METRICS_GOLDEN_WRITE") {
            std::fs::write(format!("{dir}/metrics_golden.txt"), &text).unwrap();
            std::fs::write(format!("{dir}/metrics_golden_bare.txt"), &bare).unwrap();
        }
        assert_eq!(text, include_str!("metrics_golden.txt"));
        assert_eq!(bare, include_str!("metrics_golden_bare.txt"));
    }

    #[test]
    fn process_stats_are_read() {
        let p = ProcessStats::current();
        assert!(p.rss_bytes > 0 && p.open_fds > 0 && p.threads > 0, "{p:?}");
    }
}
