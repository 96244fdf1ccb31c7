//! The H.264 live view's figures for `/metrics`, kept in one struct (with its own small
//! histogram type) so the main metrics only hold it and call [`H264Metrics::render`].

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// A cumulative histogram with fixed buckets, in nanoseconds inside, seconds outside.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One per bound plus `+Inf`; not cumulative (summed when rendered).
    counts: Vec<AtomicU64>,
    sum_ns: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
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
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// Mean of all observations in seconds; 0 without any.
    pub fn mean_secs(&self) -> f64 {
        match self.count() {
            0 => 0.0,
            n => self.sum_ns.load(Relaxed) as f64 / 1e9 / n as f64,
        }
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.counts[self.bounds.len()].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_ns.load(Relaxed) as f64 / 1e9);
        // The count is the sum of the buckets read above, so the exposition stays consistent
        // while other threads observe.
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// Upper bounds (seconds) of the H.264 encode-time histogram.
const ENCODE_BOUNDS: &[f64] = &[
    0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25,
];
/// Upper bounds (seconds) of the publish-to-send latency histogram.
const LATENCY_BOUNDS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.033, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

/// Counters, gauges and histograms of `/stream/h264`.
#[derive(Debug)]
pub struct H264Metrics {
    /// WebSocket clients connected now.
    pub clients: AtomicI64,
    /// WebSocket clients accepted since start.
    pub clients_total: AtomicU64,
    /// Bitrates being encoded now.
    pub encoders: AtomicI64,
    /// Frames encoded.
    pub encodes: AtomicU64,
    /// Frames that failed to encode.
    pub encode_errors: AtomicU64,
    /// Frames an encoder did not take because the previous encode was still running.
    pub encode_skipped: AtomicU64,
    /// Keyframes produced.
    pub keyframes: AtomicU64,
    /// Keyframes forced because a client joined or fell behind.
    pub forced_keyframes: AtomicU64,
    /// Fragment bytes produced (once per bitrate, however many clients).
    pub bytes_encoded: AtomicU64,
    /// Encode time (conversion + OpenH264).
    pub encode_seconds: Histogram,
    /// Fragments written to clients' sockets.
    pub fragments_sent: AtomicU64,
    /// Bytes (init segments and fragments) written to clients' sockets.
    pub bytes_sent: AtomicU64,
    /// Fragments a client did not get: it was busy sending, or waited for a keyframe.
    pub client_skipped: AtomicU64,
    /// Frame publish (by the video worker) to the fragment written to a client's socket.
    pub send_latency: Histogram,
}

impl Default for H264Metrics {
    fn default() -> Self {
        H264Metrics {
            clients: AtomicI64::new(0),
            clients_total: AtomicU64::new(0),
            encoders: AtomicI64::new(0),
            encodes: AtomicU64::new(0),
            encode_errors: AtomicU64::new(0),
            encode_skipped: AtomicU64::new(0),
            keyframes: AtomicU64::new(0),
            forced_keyframes: AtomicU64::new(0),
            bytes_encoded: AtomicU64::new(0),
            encode_seconds: Histogram::new(ENCODE_BOUNDS),
            fragments_sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            client_skipped: AtomicU64::new(0),
            send_latency: Histogram::new(LATENCY_BOUNDS),
        }
    }
}

impl H264Metrics {
    /// Appends the H.264 metrics in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let g = |out: &mut String, name: &str, help: &str, v: i64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let c = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let v = v.load(Relaxed);
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        g(
            out,
            "billiards_stream_h264_clients",
            "H.264 WebSocket clients connected now (they also count in billiards_stream_clients).",
            self.clients.load(Relaxed),
        );
        c(
            out,
            "billiards_stream_h264_clients_total",
            "H.264 WebSocket clients accepted since start.",
            &self.clients_total,
        );
        g(
            out,
            "billiards_stream_h264_encoders",
            "Bitrates encoded now (one encoder each, shared by its clients).",
            self.encoders.load(Relaxed),
        );
        c(
            out,
            "billiards_stream_h264_encodes_total",
            "H.264 frames encoded (once per frame per watched bitrate).",
            &self.encodes,
        );
        c(
            out,
            "billiards_stream_h264_encode_errors_total",
            "H.264 encodes that failed.",
            &self.encode_errors,
        );
        c(
            out,
            "billiards_stream_h264_encode_skipped_total",
            "Frames an H.264 encoder skipped because it was still busy.",
            &self.encode_skipped,
        );
        c(
            out,
            "billiards_stream_h264_keyframes_total",
            "H.264 keyframes produced.",
            &self.keyframes,
        );
        c(
            out,
            "billiards_stream_h264_forced_keyframes_total",
            "H.264 keyframes forced because a client joined or fell behind.",
            &self.forced_keyframes,
        );
        c(
            out,
            "billiards_stream_h264_encoded_bytes_total",
            "fMP4 fragment bytes produced (once per bitrate).",
            &self.bytes_encoded,
        );
        self.encode_seconds.render(
            out,
            "billiards_stream_h264_encode_seconds",
            "Time to convert and encode one frame to H.264.",
        );
        c(
            out,
            "billiards_stream_h264_fragments_sent_total",
            "fMP4 fragments written to clients' sockets.",
            &self.fragments_sent,
        );
        c(
            out,
            "billiards_stream_h264_sent_bytes_total",
            "Bytes written to H.264 clients' sockets.",
            &self.bytes_sent,
        );
        c(
            out,
            "billiards_stream_h264_client_skipped_total",
            "Fragments a client did not get (it was behind, or waited for a keyframe).",
            &self.client_skipped,
        );
        self.send_latency.render(
            out,
            "billiards_stream_h264_send_latency_seconds",
            "Frame publish to its fragment written to a client's socket.",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_consistent_histograms() {
        let m = H264Metrics::default();
        m.clients.fetch_add(2, Relaxed);
        m.encode_seconds.observe_ns(3_000_000);
        m.encode_seconds.observe_ns(900_000_000);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("\nbilliards_stream_h264_clients 2\n"), "{out}");
        assert!(out.contains("billiards_stream_h264_encode_seconds_bucket{le=\"0.004\"} 1\n"));
        assert!(out.contains("billiards_stream_h264_encode_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(out.contains("billiards_stream_h264_encode_seconds_count 2\n"));
        assert_eq!(m.encode_seconds.count(), 2);
        assert!(out.contains("# TYPE billiards_stream_h264_send_latency_seconds histogram"));
    }
}
