//! One process of a worker: everything that lives exactly as long as it does.
//!
//! A new spawn gets a new [`Process`], so nothing of the previous process (watchdog memory,
//! frame rate, why we were ending it) can leak into the next one. Which worker it belongs
//! to, its restart accounting and its lifecycle state live in the tree.

use std::time::{Duration, Instant};

use crate::spawn::Group;

use super::report::RateMeter;
use super::watchdog::Watch;

/// Why we are ending a process ourselves.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Intent {
    /// Nothing: an exit is unexpected.
    None,
    /// The watchdog fired; the reason goes into `last_exit`.
    Watchdog(String),
    /// `restart WORKER`.
    Restart,
    /// The tree is stopping.
    Stop,
}

/// A running process of a worker.
#[derive(Debug)]
pub(super) struct Process {
    /// Its pid, also its process-group id.
    pub pid: u32,
    /// Its process group, signalled only while the leader is unreaped.
    pub group: Group,
    /// Which spawn it is; an exit report with another id is about an older process.
    pub spawn_id: u64,
    /// Why we are ending it, if we are.
    pub intent: Intent,
    /// Readiness and the watchdog's memory.
    pub watch: Watch,
    /// Frames published (video) or read (readers), for the fps in `status`.
    pub rate: RateMeter,
    /// When SIGTERM was sent (we are ending it).
    term_at: Option<Instant>,
    /// When SIGKILL is due if it has not exited.
    kill_at: Option<Instant>,
    killed: bool,
}

impl Process {
    /// A process just spawned as `pid`. Its start-up limit counts from `started_at`;
    /// `baseline` is the newest frame number at its spawn.
    pub fn new(group: Group, spawn_id: u64, started_at: Instant, baseline: u64) -> Process {
        Process {
            pid: group.pid(),
            group,
            spawn_id,
            intent: Intent::None,
            watch: Watch::new(started_at, baseline),
            rate: RateMeter::default(),
            term_at: None,
            kill_at: None,
            killed: false,
        }
    }

    /// We asked it to end (for any reason): the watchdog leaves it alone.
    pub fn is_ending(&self) -> bool {
        self.intent != Intent::None || self.term_at.is_some()
    }

    /// When it became ready, `None` before.
    pub fn ready_at(&self) -> Option<Instant> {
        self.watch.ready_at
    }

    /// How long it has run (0 while its backoff lasts).
    pub fn uptime(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.watch.started_at)
    }

    /// When its SIGKILL is due, if one is and has not been sent.
    pub fn kill_deadline(&self) -> Option<Instant> {
        self.kill_at.filter(|_| !self.killed)
    }

    /// SIGTERM (and SIGCONT, so a stopped process sees it) to its process group, once; the
    /// SIGKILL falls due `grace` later.
    pub fn terminate(&mut self, now: Instant, grace: Duration) {
        if self.term_at.is_none() {
            self.term_at = Some(now);
            self.kill_at = Some(now + grace);
            self.group.signal(libc::SIGTERM);
            self.group.signal(libc::SIGCONT);
        }
    }

    /// SIGKILL to its process group, once.
    pub fn kill(&mut self) {
        if !self.killed {
            self.killed = true;
            self.group.signal(libc::SIGKILL);
        }
    }

    /// Its SIGKILL is due at `now`: how long ago SIGTERM was sent.
    pub fn kill_due(&self, now: Instant) -> Option<Duration> {
        self.kill_deadline().filter(|&t| t <= now)?;
        Some(
            self.term_at
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t)),
        )
    }
}
