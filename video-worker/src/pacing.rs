//! Real-time pacing on monotonic deadlines: frame k is due at start + k * period, so timing
//! errors never accumulate, and a source that falls behind skips frames instead of drifting.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Longest single sleep, so a stop request is seen quickly.
const SLEEP_SLICE: Duration = Duration::from_millis(50);

/// Deadlines for a fixed frame rate.
#[derive(Debug)]
pub(crate) struct Pacer {
    period: Duration,
    next: Option<Instant>,
}

/// What [`Pacer::wait`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pace {
    /// The next frame is due; `skip` frames before it were missed because we were late.
    Due { skip: u64 },
    /// A stop was requested while waiting.
    Stopped,
}

impl Pacer {
    /// Deadlines `1 / fps` apart (fps must be positive and finite; falls back to 30).
    pub(crate) fn new(fps: f64) -> Pacer {
        let fps = if fps.is_finite() && fps > 0.0 {
            fps
        } else {
            30.0
        };
        Pacer {
            period: Duration::from_secs_f64(1.0 / fps),
            next: None,
        }
    }

    /// The frame period.
    #[cfg(test)]
    pub(crate) fn period(&self) -> Duration {
        self.period
    }

    /// Sleeps until the next deadline (the first call returns at once). When we are more
    /// than a period late, the frames whose time has passed are reported as `skip` and the
    /// deadline moves past them.
    pub(crate) fn wait(&mut self, stop: &AtomicBool) -> Pace {
        let now = Instant::now();
        let due = *self.next.get_or_insert(now);
        if now < due {
            loop {
                if stop.load(Ordering::Relaxed) {
                    return Pace::Stopped;
                }
                let now = Instant::now();
                if now >= due {
                    break;
                }
                std::thread::sleep((due - now).min(SLEEP_SLICE));
            }
            self.next = Some(due + self.period);
            return Pace::Due { skip: 0 };
        }
        let late = now - due;
        let skip = (late.as_nanos() / self.period.as_nanos().max(1)) as u64;
        self.next = Some(due + self.period * (skip as u32).saturating_add(1));
        Pace::Due { skip }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paces_without_drift() {
        let stop = AtomicBool::new(false);
        let mut p = Pacer::new(100.0);
        let start = Instant::now();
        for _ in 0..30 {
            assert!(matches!(p.wait(&stop), Pace::Due { .. }));
        }
        let took = start.elapsed();
        // 29 periods after the first (immediate) frame; generous on a busy machine.
        assert!(took >= Duration::from_millis(289), "{took:?}");
        assert!(took < Duration::from_millis(1000), "{took:?}");
    }

    #[test]
    fn late_frames_are_skipped() {
        let stop = AtomicBool::new(false);
        let mut p = Pacer::new(100.0);
        assert_eq!(p.wait(&stop), Pace::Due { skip: 0 });
        std::thread::sleep(Duration::from_millis(45));
        match p.wait(&stop) {
            Pace::Due { skip } => assert!((3..=6).contains(&skip), "skip {skip}"),
            Pace::Stopped => panic!("not stopped"),
        }
    }

    #[test]
    fn stop_interrupts_the_wait() {
        let stop = AtomicBool::new(false);
        let mut p = Pacer::new(0.5);
        assert_eq!(p.wait(&stop), Pace::Due { skip: 0 });
        stop.store(true, Ordering::Relaxed);
        let t = Instant::now();
        assert_eq!(p.wait(&stop), Pace::Stopped);
        assert!(t.elapsed() < Duration::from_millis(200));
    }

    #[test]
    fn bad_fps_falls_back() {
        assert_eq!(
            Pacer::new(f64::NAN).period(),
            Duration::from_secs_f64(1.0 / 30.0)
        );
        assert_eq!(
            Pacer::new(0.0).period(),
            Duration::from_secs_f64(1.0 / 30.0)
        );
    }
}
