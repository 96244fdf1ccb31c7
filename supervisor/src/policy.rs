//! Restart policy: exponential backoff and the "too many restarts" limit.
//!
//! Pure bookkeeping on `Instant`s, so it is tested without processes or sleeping.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use config::SupervisorConfig;

/// A worker that ran at least this long before it exited starts again from the initial delay.
pub const HEALTHY_RUN: Duration = Duration::from_secs(30);

/// The limits of [`SupervisorConfig`] as durations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RestartPolicy {
    /// First restart delay.
    pub initial: Duration,
    /// Largest restart delay.
    pub max: Duration,
    /// More restarts than this within `window`: failed.
    pub restart_max: u32,
    /// Window of `restart_max`.
    pub window: Duration,
}

impl RestartPolicy {
    /// The policy of a validated config.
    pub fn from_config(c: &SupervisorConfig) -> Self {
        RestartPolicy {
            initial: Duration::from_millis(c.restart_backoff_initial_ms),
            max: Duration::from_millis(c.restart_backoff_max_ms.max(c.restart_backoff_initial_ms)),
            restart_max: c.restart_max,
            window: Duration::from_secs_f64(c.restart_window_sec),
        }
    }
}

/// What to do after a worker exited unexpectedly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start it again after this delay.
    RestartAfter(Duration),
    /// It exited `crashes` times within the window: give up until asked.
    Fail {
        /// Exits counted in the window, this one included.
        crashes: usize,
    },
}

/// Per-worker restart accounting.
#[derive(Debug, Clone, Default)]
pub struct RestartTracker {
    /// When each counted exit happened, oldest first, pruned to the window.
    crashes: VecDeque<Instant>,
    /// Exits since the last healthy run; the exponent of the backoff.
    consecutive: u32,
}

impl RestartTracker {
    /// Records an unexpected exit at `now` of a process that had been running (ready) for
    /// `ran_for` (`None` if it never became ready) and says what to do.
    ///
    /// Every exit counts towards the limit, also one after a long run; only the backoff
    /// delay resets after [`HEALTHY_RUN`].
    pub fn on_exit(
        &mut self,
        policy: &RestartPolicy,
        now: Instant,
        ran_for: Option<Duration>,
    ) -> Decision {
        if ran_for.is_some_and(|d| d >= HEALTHY_RUN) {
            self.consecutive = 0;
        }
        while let Some(&oldest) = self.crashes.front() {
            if now.saturating_duration_since(oldest) > policy.window {
                self.crashes.pop_front();
            } else {
                break;
            }
        }
        self.crashes.push_back(now);
        if self.crashes.len() > policy.restart_max as usize {
            return Decision::Fail {
                crashes: self.crashes.len(),
            };
        }
        let delay = backoff_delay(policy, self.consecutive);
        self.consecutive = self.consecutive.saturating_add(1);
        Decision::RestartAfter(delay)
    }

    /// Records an exit because the video source (camera or file) is unavailable and says
    /// what to do: try again after the largest delay, for as long as it takes.
    ///
    /// Such an exit is not counted towards `restart_max`: an unplugged camera is a state of
    /// the world the operator fixes by plugging it in, not a crash loop, and frames must flow
    /// again by themselves when it is back. Retrying at `max` keeps that cheap. Counted exits
    /// and the backoff exponent are left as they were, so a real crash loop around it still
    /// ends in `failed`.
    pub fn on_source_unavailable(&mut self, policy: &RestartPolicy) -> Decision {
        Decision::RestartAfter(policy.max)
    }

    /// Forgets everything: after `restart WORKER` revives a failed worker.
    pub fn reset(&mut self) {
        self.crashes.clear();
        self.consecutive = 0;
    }

    /// Exits counted in the current window (as of the last [`RestartTracker::on_exit`]).
    pub fn recent_exits(&self) -> usize {
        self.crashes.len()
    }
}

/// `initial * 2^n`, at most `max`.
pub fn backoff_delay(policy: &RestartPolicy, n: u32) -> Duration {
    let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
    policy.initial.saturating_mul(factor).min(policy.max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RestartPolicy {
        RestartPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
            restart_max: 4,
            window: Duration::from_secs(60),
        }
    }

    #[test]
    fn delay_doubles_up_to_the_max() {
        let p = policy();
        let got: Vec<u128> = (0..7).map(|n| backoff_delay(&p, n).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(backoff_delay(&p, 200), Duration::from_millis(1000));
    }

    #[test]
    fn more_than_restart_max_within_the_window_fails() {
        let p = policy();
        let mut t = RestartTracker::default();
        let t0 = Instant::now();
        let mut delays = Vec::new();
        for i in 0..4 {
            match t.on_exit(&p, t0 + Duration::from_secs(i), None) {
                Decision::RestartAfter(d) => delays.push(d.as_millis()),
                d => panic!("exit {i}: {d:?}"),
            }
        }
        assert_eq!(delays, [100, 200, 400, 800]);
        assert_eq!(
            t.on_exit(&p, t0 + Duration::from_secs(5), None),
            Decision::Fail { crashes: 5 }
        );
    }

    #[test]
    fn restart_max_zero_fails_at_the_first_exit() {
        let p = RestartPolicy {
            restart_max: 0,
            ..policy()
        };
        let mut t = RestartTracker::default();
        assert_eq!(
            t.on_exit(&p, Instant::now(), None),
            Decision::Fail { crashes: 1 }
        );
    }

    #[test]
    fn exits_outside_the_window_do_not_count() {
        let p = RestartPolicy {
            restart_max: 2,
            window: Duration::from_secs(10),
            ..policy()
        };
        let mut t = RestartTracker::default();
        let t0 = Instant::now();
        for i in 0..20u64 {
            // One exit every 6 s: at most two in any 10 s window.
            let d = t.on_exit(&p, t0 + Duration::from_secs(6 * i), None);
            assert!(matches!(d, Decision::RestartAfter(_)), "exit {i}: {d:?}");
            assert!(t.recent_exits() <= 2);
        }
    }

    #[test]
    fn a_healthy_run_resets_the_delay_but_still_counts() {
        let p = RestartPolicy {
            restart_max: 3,
            ..policy()
        };
        let mut t = RestartTracker::default();
        let t0 = Instant::now();
        assert_eq!(
            t.on_exit(&p, t0, None),
            Decision::RestartAfter(Duration::from_millis(100))
        );
        assert_eq!(
            t.on_exit(
                &p,
                t0 + Duration::from_secs(1),
                Some(Duration::from_secs(1))
            ),
            Decision::RestartAfter(Duration::from_millis(200))
        );
        // Ran 31 s: the delay starts over, but the exit is counted.
        assert_eq!(
            t.on_exit(
                &p,
                t0 + Duration::from_secs(33),
                Some(Duration::from_secs(31))
            ),
            Decision::RestartAfter(Duration::from_millis(100))
        );
        assert_eq!(
            t.on_exit(
                &p,
                t0 + Duration::from_secs(34),
                Some(Duration::from_secs(31))
            ),
            Decision::Fail { crashes: 4 }
        );
        t.reset();
        assert_eq!(t.recent_exits(), 0);
        assert_eq!(
            t.on_exit(&p, t0 + Duration::from_secs(35), None),
            Decision::RestartAfter(Duration::from_millis(100))
        );
    }

    #[test]
    fn an_unavailable_source_is_retried_at_the_max_forever() {
        let p = RestartPolicy {
            restart_max: 2,
            ..policy()
        };
        let mut t = RestartTracker::default();
        for _ in 0..100 {
            assert_eq!(
                t.on_source_unavailable(&p),
                Decision::RestartAfter(Duration::from_millis(1000))
            );
        }
        assert_eq!(t.recent_exits(), 0);
    }

    #[test]
    fn unavailable_exits_leave_crash_accounting_alone() {
        let p = RestartPolicy {
            restart_max: 2,
            ..policy()
        };
        let mut t = RestartTracker::default();
        let t0 = Instant::now();
        assert_eq!(
            t.on_exit(&p, t0, None),
            Decision::RestartAfter(Duration::from_millis(100))
        );
        t.on_source_unavailable(&p);
        t.on_source_unavailable(&p);
        // The backoff goes on from where the crashes left it, and crashes still fail.
        assert_eq!(
            t.on_exit(&p, t0 + Duration::from_secs(1), None),
            Decision::RestartAfter(Duration::from_millis(200))
        );
        assert_eq!(
            t.on_exit(&p, t0 + Duration::from_secs(2), None),
            Decision::Fail { crashes: 3 }
        );
    }

    #[test]
    fn from_config_uses_the_config_units() {
        let c = SupervisorConfig {
            restart_backoff_initial_ms: 50,
            restart_backoff_max_ms: 400,
            restart_max: 3,
            restart_window_sec: 1.5,
            ..SupervisorConfig::default()
        };
        let p = RestartPolicy::from_config(&c);
        assert_eq!(p.initial, Duration::from_millis(50));
        assert_eq!(p.max, Duration::from_millis(400));
        assert_eq!(p.restart_max, 3);
        assert_eq!(p.window, Duration::from_millis(1500));
    }
}
