//! The watchdog's verdicts: is a process ready, healthy, or to be restarted?
//!
//! Pure bookkeeping on `Instant`s and on what the segment's control region showed (the
//! newest frame number, a reader's heartbeat age), so it is tested without processes or
//! sleeping. Acting on a verdict (state changes, logs, signals) is the tree's business.

use std::time::{Duration, Instant};

use config::Config;

/// The watchdog limits of the config, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Limits {
    /// `watchdog.frame_timeout_sec`: the writer published nothing new for this long.
    pub frame_timeout_sec: f64,
    /// `watchdog.heartbeat_timeout_sec`: a reader's entry is this old, or gone this long.
    pub heartbeat_timeout_sec: f64,
    /// `video.attach_timeout_sec`: part of every start-up limit.
    pub attach_timeout_sec: f64,
}

impl Limits {
    /// The limits of a validated config.
    pub fn from_config(c: &Config) -> Limits {
        Limits {
            frame_timeout_sec: c.watchdog.frame_timeout_sec,
            heartbeat_timeout_sec: c.watchdog.heartbeat_timeout_sec,
            attach_timeout_sec: c.video.attach_timeout_sec,
        }
    }

    /// Time the video worker has for its first frame.
    fn video_startup_sec(&self) -> f64 {
        self.frame_timeout_sec + self.attach_timeout_sec
    }

    /// Time a reader has to enter the frame segment's reader table.
    fn reader_startup_sec(&self) -> f64 {
        self.attach_timeout_sec + self.heartbeat_timeout_sec
    }
}

/// What one look at a process found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Nothing changed that needs acting on.
    Fine,
    /// It became ready at this look (first frame published, or attached as a reader).
    Ready,
    /// It must be ended and restarted; the reason goes into `last_exit`.
    Fire(String),
}

/// What the watchdog remembers about one process between two looks. A new process starts
/// with a new one, so nothing of a previous process is carried over.
#[derive(Debug, Clone)]
pub(super) struct Watch {
    /// When its start-up limit starts counting: the spawn, or the end of the backoff it was
    /// spawned during.
    pub started_at: Instant,
    /// When it became ready, `None` before.
    pub ready_at: Option<Instant>,
    /// Video: newest frame number when this process was spawned (ready = a newer one).
    baseline: u64,
    /// Video: newest frame number seen and when it changed.
    progress: Option<(u64, Instant)>,
    /// Readers: since when the reader-table entry is missing.
    missing_since: Option<Instant>,
}

impl Watch {
    /// A process whose start-up limit counts from `started_at`. `baseline` is the newest
    /// frame number at its spawn (only the video worker's watch uses it).
    pub fn new(started_at: Instant, baseline: u64) -> Watch {
        Watch {
            started_at,
            ready_at: None,
            baseline,
            progress: None,
            missing_since: None,
        }
    }

    /// A look at the video worker, which had published `latest` frames by `now`.
    pub fn look_video(&mut self, limits: &Limits, latest: u64, now: Instant) -> Verdict {
        match self.ready_at {
            None if latest > self.baseline => {
                self.ready_at = Some(now);
                self.progress = Some((latest, now));
                Verdict::Ready
            }
            None => {
                let limit = limits.video_startup_sec();
                if secs_since(now, self.started_at) > limit {
                    Verdict::Fire(format!("watchdog: no first frame within {limit:.1}s"))
                } else {
                    Verdict::Fine
                }
            }
            Some(_) => {
                let (seen, since) = self.progress.unwrap_or((latest, now));
                let limit = limits.frame_timeout_sec;
                if latest != seen {
                    self.progress = Some((latest, now));
                    Verdict::Fine
                } else if secs_since(now, since) > limit {
                    Verdict::Fire(format!("watchdog: no frame for {limit:.1}s"))
                } else {
                    Verdict::Fine
                }
            }
        }
    }

    /// A look at a reader whose reader-table entry had this heartbeat age at `now` (`None`:
    /// it has no entry).
    pub fn look_reader(
        &mut self,
        limits: &Limits,
        heartbeat_age: Option<Duration>,
        now: Instant,
    ) -> Verdict {
        let limit = limits.heartbeat_timeout_sec;
        match (self.ready_at, heartbeat_age) {
            (None, Some(_)) => {
                self.ready_at = Some(now);
                Verdict::Ready
            }
            (None, None) => {
                let startup = limits.reader_startup_sec();
                if secs_since(now, self.started_at) > startup {
                    Verdict::Fire(format!(
                        "watchdog: not attached to the frame segment within {startup:.1}s"
                    ))
                } else {
                    Verdict::Fine
                }
            }
            (Some(_), Some(age)) => {
                self.missing_since = None;
                if age.as_secs_f64() > limit {
                    Verdict::Fire(format!("watchdog: no heartbeat for {limit:.1}s"))
                } else {
                    Verdict::Fine
                }
            }
            (Some(_), None) => {
                let since = *self.missing_since.get_or_insert(now);
                if secs_since(now, since) > limit {
                    Verdict::Fire(format!(
                        "watchdog: no heartbeat for {limit:.1}s (left the reader table)"
                    ))
                } else {
                    Verdict::Fine
                }
            }
        }
    }
}

/// Seconds from `then` to `now`; 0 when `then` is still ahead (a start-up limit that counts
/// from the end of a backoff).
fn secs_since(now: Instant, then: Instant) -> f64 {
    now.saturating_duration_since(then).as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            frame_timeout_sec: 2.0,
            heartbeat_timeout_sec: 5.0,
            attach_timeout_sec: 10.0,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn fired(v: Verdict) -> String {
        match v {
            Verdict::Fire(reason) => reason,
            v => panic!("expected the watchdog to fire, got {v:?}"),
        }
    }

    #[test]
    fn video_is_ready_at_the_first_frame_after_its_spawn() {
        let t0 = Instant::now();
        let mut w = Watch::new(t0, 40);
        // Frames of the previous writer do not count.
        assert_eq!(w.look_video(&limits(), 40, t0 + ms(100)), Verdict::Fine);
        assert_eq!(w.ready_at, None);
        assert_eq!(w.look_video(&limits(), 41, t0 + ms(200)), Verdict::Ready);
        assert_eq!(w.ready_at, Some(t0 + ms(200)));
        // Ready once.
        assert_eq!(w.look_video(&limits(), 42, t0 + ms(300)), Verdict::Fine);
    }

    #[test]
    fn video_without_a_first_frame_fires_after_frame_plus_attach_timeout() {
        let t0 = Instant::now();
        let mut w = Watch::new(t0, 0);
        assert_eq!(w.look_video(&limits(), 0, t0 + ms(12_000)), Verdict::Fine);
        assert_eq!(
            fired(w.look_video(&limits(), 0, t0 + ms(12_001))),
            "watchdog: no first frame within 12.0s"
        );
    }

    #[test]
    fn video_startup_counts_from_the_end_of_its_backoff() {
        let t0 = Instant::now();
        // Spawned at t0 during a 5 s backoff: its start-up clock begins at t0 + 5 s.
        let mut w = Watch::new(t0 + ms(5_000), 0);
        assert_eq!(w.look_video(&limits(), 0, t0), Verdict::Fine);
        assert_eq!(w.look_video(&limits(), 0, t0 + ms(16_000)), Verdict::Fine);
        assert!(matches!(
            w.look_video(&limits(), 0, t0 + ms(17_001)),
            Verdict::Fire(_)
        ));
    }

    #[test]
    fn video_fires_when_frames_stop_and_not_while_they_come() {
        let t0 = Instant::now();
        let mut w = Watch::new(t0, 0);
        assert_eq!(w.look_video(&limits(), 1, t0), Verdict::Ready);
        // A new frame every 1.5 s keeps it alive for long.
        for i in 1..=20u64 {
            assert_eq!(
                w.look_video(&limits(), 1 + i, t0 + ms(1_500 * i)),
                Verdict::Fine
            );
        }
        let last = t0 + ms(30_000);
        assert_eq!(w.look_video(&limits(), 21, last + ms(2_000)), Verdict::Fine);
        assert_eq!(
            fired(w.look_video(&limits(), 21, last + ms(2_001))),
            "watchdog: no frame for 2.0s"
        );
    }

    #[test]
    fn reader_is_ready_when_it_enters_the_reader_table() {
        let t0 = Instant::now();
        let mut w = Watch::new(t0, 0);
        assert_eq!(w.look_reader(&limits(), None, t0 + ms(100)), Verdict::Fine);
        assert_eq!(
            w.look_reader(&limits(), Some(ms(0)), t0 + ms(200)),
            Verdict::Ready
        );
        assert_eq!(w.ready_at, Some(t0 + ms(200)));
        assert_eq!(
            w.look_reader(&limits(), Some(ms(100)), t0 + ms(300)),
            Verdict::Fine
        );
    }

    #[test]
    fn reader_not_attached_fires_after_attach_plus_heartbeat_timeout() {
        let t0 = Instant::now();
        let mut w = Watch::new(t0, 0);
        assert_eq!(
            w.look_reader(&limits(), None, t0 + ms(15_000)),
            Verdict::Fine
        );
        assert_eq!(
            fired(w.look_reader(&limits(), None, t0 + ms(15_001))),
            "watchdog: not attached to the frame segment within 15.0s"
        );
    }

    #[test]
    fn reader_with_an_old_heartbeat_fires() {
        let t0 = Instant::now();
        let mut w = Watch::new(t0, 0);
        assert_eq!(w.look_reader(&limits(), Some(ms(0)), t0), Verdict::Ready);
        assert_eq!(
            w.look_reader(&limits(), Some(ms(5_000)), t0 + ms(5_000)),
            Verdict::Fine
        );
        assert_eq!(
            fired(w.look_reader(&limits(), Some(ms(5_001)), t0 + ms(5_001))),
            "watchdog: no heartbeat for 5.0s"
        );
    }

    #[test]
    fn reader_gone_from_the_table_fires_after_the_heartbeat_timeout() {
        let t0 = Instant::now();
        let mut w = Watch::new(t0, 0);
        assert_eq!(w.look_reader(&limits(), Some(ms(0)), t0), Verdict::Ready);
        // Gone at 1 s: the clock starts at the first look that misses it.
        assert_eq!(
            w.look_reader(&limits(), None, t0 + ms(1_000)),
            Verdict::Fine
        );
        assert_eq!(
            w.look_reader(&limits(), None, t0 + ms(6_000)),
            Verdict::Fine
        );
        assert_eq!(
            fired(w.look_reader(&limits(), None, t0 + ms(6_001))),
            "watchdog: no heartbeat for 5.0s (left the reader table)"
        );
    }

    #[test]
    fn reader_back_in_the_table_restarts_the_missing_clock() {
        let t0 = Instant::now();
        let mut w = Watch::new(t0, 0);
        assert_eq!(w.look_reader(&limits(), Some(ms(0)), t0), Verdict::Ready);
        assert_eq!(
            w.look_reader(&limits(), None, t0 + ms(1_000)),
            Verdict::Fine
        );
        assert_eq!(
            w.look_reader(&limits(), Some(ms(0)), t0 + ms(4_000)),
            Verdict::Fine
        );
        // Missing again from 5 s: 5.9 s later is still within the limit counted from 5 s.
        assert_eq!(
            w.look_reader(&limits(), None, t0 + ms(5_000)),
            Verdict::Fine
        );
        assert_eq!(
            w.look_reader(&limits(), None, t0 + ms(10_000)),
            Verdict::Fine
        );
        assert!(matches!(
            w.look_reader(&limits(), None, t0 + ms(10_001)),
            Verdict::Fire(_)
        ));
    }

    #[test]
    fn limits_come_from_the_config_keys() {
        let mut c = Config::default();
        c.watchdog.frame_timeout_sec = 1.5;
        c.watchdog.heartbeat_timeout_sec = 4.0;
        c.video.attach_timeout_sec = 3.0;
        let l = Limits::from_config(&c);
        assert_eq!(l.video_startup_sec(), 4.5);
        assert_eq!(l.reader_startup_sec(), 7.0);
    }
}
