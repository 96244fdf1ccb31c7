//! The vision worker's detections, as read from its shared-memory channel: the latest result
//! (raw JSON for `/api/detections`, parsed for the overlay) and why there is none.
//!
//! A dedicated thread blocks in [`shm_core::Reader::wait_next`] on the detections segment; when
//! the segment is missing (vision disabled, not started yet) it keeps retrying, so the stream
//! never depends on the vision worker being there. A standalone vision worker that restarts
//! creates the segment anew: the thread follows it ([`shm_core::Reader::follow_replaced`]).

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use shm_core::{AttachError, AttachOptions, Reader, SegmentLocation};
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::shots::ShotLog;

pub use billiards_detections::BallKind;

/// One detected ball, in frame pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ball {
    /// Centre x.
    pub x: f64,
    /// Centre y.
    pub y: f64,
    /// Radius.
    pub radius: f64,
    /// Classification.
    #[serde(default = "unknown_kind")]
    pub kind: BallKind,
}

fn unknown_kind() -> BallKind {
    BallKind::Unknown
}

/// The table's playing surface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// Corners in frame pixels, in drawing order.
    pub corners: Vec<[f64; 2]>,
}

/// One vision result (SPEC "Detections JSON"); unknown keys are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detections {
    /// The frame the result is about.
    pub frame_number: u64,
    /// That frame's capture time (CLOCK_MONOTONIC ns).
    pub capture_ts_ns: u64,
    /// When the vision worker finished (CLOCK_MONOTONIC ns).
    #[serde(default)]
    pub processed_ts_ns: u64,
    /// The table, when found.
    #[serde(default)]
    pub table: Option<Table>,
    /// The balls found.
    #[serde(default)]
    pub balls: Vec<Ball>,
    /// The newest finished shot, repeated for a while after it ended.
    #[serde(default)]
    pub shot: Option<billiards_detections::ShotJson>,
}

impl Detections {
    /// Number of balls of each kind, in the order cue, eight, solid, stripe, unknown.
    pub fn counts(&self) -> [(BallKind, usize); 5] {
        let mut c = [
            (BallKind::Cue, 0),
            (BallKind::Eight, 0),
            (BallKind::Solid, 0),
            (BallKind::Stripe, 0),
            (BallKind::Unknown, 0),
        ];
        for b in &self.balls {
            if let Some(e) = c.iter_mut().find(|(k, _)| *k == b.kind) {
                e.1 += 1;
            }
        }
        c
    }
}

/// The newest result read.
#[derive(Debug, Clone)]
pub struct Latest {
    /// The JSON as the vision worker wrote it.
    pub json: Bytes,
    /// The same, parsed.
    pub parsed: Detections,
}

/// Why `/api/detections` has nothing to answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Unavailable {
    /// `vision.enabled = false`.
    #[error("vision worker is disabled (vision.enabled = false); no detections are produced")]
    Disabled,
    /// Nothing read yet; says why (segment missing, no writer, bad data).
    #[error("no detections yet: {0}")]
    Nothing(String),
    /// The newest result is older than the freshness limit.
    #[error("no fresh detections: the newest (frame {frame_number}) is {age_s:.1} s old, more than watchdog.frame_timeout_sec = {limit_s:.1} s; is the vision worker running?")]
    Stale {
        /// Its frame.
        frame_number: u64,
        /// Its age.
        age_s: f64,
        /// The limit.
        limit_s: f64,
    },
}

/// Shared state between the detections thread and the HTTP side.
#[derive(Debug)]
pub struct DetectionsHub {
    enabled: bool,
    latest: Mutex<Option<Arc<Latest>>>,
    /// Why nothing is there, when nothing is.
    problem: Mutex<String>,
    /// Every new result, for the push API: it forwards each one the moment it is read.
    pushed: tokio::sync::watch::Sender<Option<Arc<Latest>>>,
    /// The shots the results announced (`/api/shots`, the push API's `shot`).
    pub shots: ShotLog,
}

impl DetectionsHub {
    /// A hub for the channel `segment`; `enabled` = `vision.enabled`.
    pub fn new(enabled: bool, segment: &str) -> DetectionsHub {
        DetectionsHub {
            enabled,
            latest: Mutex::new(None),
            problem: Mutex::new(format!(
                "waiting for the detections segment {segment}; is the vision worker running?"
            )),
            pushed: tokio::sync::watch::Sender::new(None),
            shots: ShotLog::default(),
        }
    }

    /// Stores a new result.
    pub fn set(&self, latest: Latest) {
        if let Some(shot) = &latest.parsed.shot {
            if self.shots.record(shot) {
                info!(
                    shot = shot.id,
                    start_frame = shot.start_frame,
                    end_frame = shot.end_frame,
                    "shot recorded"
                );
            }
        }
        let latest = Arc::new(latest);
        if let Ok(mut l) = self.latest.lock() {
            *l = Some(latest.clone());
        }
        self.pushed.send_replace(Some(latest));
    }

    /// Follows new results as they are read (the newest only: a slow follower skips).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Option<Arc<Latest>>> {
        self.pushed.subscribe()
    }

    fn set_problem(&self, p: String) {
        if let Ok(mut cur) = self.problem.lock() {
            *cur = p;
        }
    }

    /// The newest result whose capture time is within `limit_ns` of `now_ns`.
    pub fn fresh(&self, now_ns: u64, limit_ns: u64) -> Result<Arc<Latest>, Unavailable> {
        if !self.enabled {
            return Err(Unavailable::Disabled);
        }
        let latest = self.latest.lock().ok().and_then(|l| l.clone());
        match latest {
            None => Err(Unavailable::Nothing(
                self.problem.lock().map(|p| p.clone()).unwrap_or_default(),
            )),
            Some(l) => {
                let age = now_ns.saturating_sub(l.parsed.capture_ts_ns);
                if age <= limit_ns {
                    Ok(l)
                } else {
                    Err(Unavailable::Stale {
                        frame_number: l.parsed.frame_number,
                        age_s: age as f64 / 1e9,
                        limit_s: limit_ns as f64 / 1e9,
                    })
                }
            }
        }
    }
}

/// Parses and checks one payload of the channel.
pub fn parse(json: &[u8]) -> Result<Detections, String> {
    let d: Detections = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    Ok(d)
}

/// The thread that follows the detections channel.
#[derive(Debug)]
pub struct DetectionsReader {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DetectionsReader {
    /// Starts following `loc`, storing results into `hub`.
    pub fn start(
        loc: SegmentLocation,
        hub: Arc<DetectionsHub>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<DetectionsReader> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let span = tracing::Span::current();
        let thread = std::thread::Builder::new()
            .name("detections-reader".into())
            .spawn(move || {
                // Threads do not inherit the caller's span; keep `worker=stream` on our lines.
                let _span = span.entered();
                follow(&loc, &hub, &metrics, &stop2)
            })?;
        Ok(DetectionsReader {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it (at most one wait period).
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for DetectionsReader {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn follow(loc: &SegmentLocation, hub: &DetectionsHub, metrics: &Metrics, stop: &AtomicBool) {
    let name = loc.name().to_string();
    let mut logged_missing = false;
    while !stop.load(Relaxed) {
        let opts = AttachOptions::new("stream-detections", Duration::from_millis(500));
        let mut reader = match Reader::attach(loc, opts) {
            Ok(r) => r,
            Err(e) => {
                let p = match &e {
                    AttachError::NotFound { .. } => format!(
                        "detections segment {name} not found; is the vision worker running?"
                    ),
                    // Attach errors carry paths and OS errors: the log gets them, HTTP
                    // clients only the gist.
                    _ => format!(
                        "cannot attach to the detections segment {name}; the stream worker's log says why"
                    ),
                };
                if !logged_missing {
                    info!(segment = %name, "detections unavailable: {e}");
                    logged_missing = true;
                }
                hub.set_problem(p);
                sleep_unless_stopped(Duration::from_millis(500), stop);
                continue;
            }
        };
        info!(segment = %name, "following the detections channel");
        logged_missing = false;
        hub.set_problem(format!(
            "detections segment {name} has no result yet; is the vision worker running?"
        ));
        read_until_stopped(&mut reader, hub, metrics, stop);
    }
}

/// Reads results until asked to stop, following the segment when it is replaced; returns
/// early (for the caller to attach again) only when waiting fails.
fn read_until_stopped(
    reader: &mut Reader,
    hub: &DetectionsHub,
    metrics: &Metrics,
    stop: &AtomicBool,
) {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut bad_payloads = 0u64;
    let mut follow_errors = 0u64;
    while !stop.load(Relaxed) {
        match reader.wait_next(Duration::from_millis(250)) {
            Ok(true) => match reader.read_latest(&mut buf) {
                Ok(Some(meta)) => {
                    let payload = &buf[..meta.len.min(buf.len())];
                    match parse(payload) {
                        Ok(parsed) => {
                            metrics.detections_read.fetch_add(1, Relaxed);
                            hub.set(Latest {
                                json: Bytes::copy_from_slice(payload),
                                parsed,
                            });
                        }
                        Err(e) => {
                            bad_payloads += 1;
                            if bad_payloads.is_power_of_two() {
                                warn!(count = bad_payloads, "invalid detections JSON ignored: {e}");
                            }
                            hub.set_problem(format!("the vision worker wrote invalid JSON: {e}"));
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    warn!("reading detections failed: {e}");
                    sleep_unless_stopped(Duration::from_millis(250), stop);
                }
            },
            Ok(false) => match reader.follow_replaced() {
                Ok(true) => info!(
                    segment = %reader.info().name,
                    "the detections segment was re-created; following the new one"
                ),
                Ok(false) => {}
                Err(e) => {
                    follow_errors += 1;
                    if follow_errors.is_power_of_two() {
                        warn!(
                            count = follow_errors,
                            "cannot follow the re-created detections segment: {e}"
                        );
                    }
                }
            },
            Err(e) => {
                warn!("waiting for detections failed: {e}; re-attaching");
                reader.heartbeat();
                sleep_unless_stopped(Duration::from_millis(500), stop);
                return;
            }
        }
    }
}

fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) {
    let end = Instant::now() + d;
    while !stop.load(Relaxed) {
        let now = Instant::now();
        if now >= end {
            break;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// Where the detections channel lives for a configuration.
pub fn location(
    config: &config::Config,
) -> Result<SegmentLocation, billiards_supervised::SegmentNameError> {
    Ok(billiards_supervised::detections_channel(config)?.location)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"frame_number": 7, "capture_ts_ns": 1000, "processed_ts_ns": 2000,
        "table": {"corners": [[0,0],[10,0],[10,5],[0,5]]},
        "balls": [{"x": 1.0, "y": 2.0, "radius": 3.0, "kind": "cue"},
                  {"x": 1.0, "y": 2.0, "radius": 3.0, "kind": "stripe"},
                  {"x": 1.0, "y": 2.0, "radius": 3.0, "kind": "stripe"},
                  {"x": 1.0, "y": 2.0, "radius": 3.0, "kind": "striped-ish"}],
        "extra": "ignored"}"#;

    #[test]
    fn sample_parses_and_counts_by_kind() {
        let d = parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(d.frame_number, 7);
        assert_eq!(d.table.as_ref().unwrap().corners.len(), 4);
        let c = d.counts();
        assert_eq!(c[0], (BallKind::Cue, 1));
        assert_eq!(c[3], (BallKind::Stripe, 2));
        assert_eq!(c[4], (BallKind::Unknown, 1));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"{",
            b"[]",
            b"\xff\xfe",
            br#"{"frame_number": -1}"#,
        ] {
            assert!(parse(bad).is_err());
        }
        let d = parse(br#"{"frame_number": 1, "capture_ts_ns": 2, "table": null}"#).unwrap();
        assert!(d.table.is_none() && d.balls.is_empty());
    }

    #[test]
    fn freshness_follows_the_limit() {
        let hub = DetectionsHub::new(true, "d");
        assert!(matches!(hub.fresh(0, 10), Err(Unavailable::Nothing(_))));
        let parsed = parse(SAMPLE.as_bytes()).unwrap();
        hub.set(Latest {
            json: Bytes::from_static(SAMPLE.as_bytes()),
            parsed,
        });
        assert!(hub.fresh(1500, 1000).is_ok());
        let e = hub.fresh(5_000_000_000, 2_000_000_000).unwrap_err();
        assert!(matches!(
            e,
            Unavailable::Stale {
                frame_number: 7,
                ..
            }
        ));
        assert!(e.to_string().contains("watchdog.frame_timeout_sec"), "{e}");
        let off = DetectionsHub::new(false, "d");
        assert_eq!(off.fresh(0, 10).unwrap_err(), Unavailable::Disabled);
    }
}
