//! The event loop: owns every worker's state, spawns, watches, restarts and stops them.
//!
//! Everything runs on one thread (a current-thread runtime): exits arrive from reaper tasks,
//! requests from the control socket, signals from the caller, and a timer drives readiness,
//! the watchdog and restart delays. No state is shared, so there are no locks.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use config::Config;
use shm_core::{Monitor, SegmentSnapshot};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
use tokio::sync::mpsc;

use crate::control::{Request, Response};
use crate::exit::{self, ExitKind};
use crate::notify::Notifier;
use crate::policy::{Decision, RestartPolicy, RestartTracker};
use crate::server::ControlMsg;
use crate::spawn::{self, Exited};
use crate::status::{
    LastExit, ShmStatus, Status, SupervisorStatus, WorkerState, WorkerStats, WorkerStatus,
};
use crate::worker::WorkerName;
use crate::Shutdown;

/// Watch period while something is starting or stopping (readiness is noticed this fast).
const FAST_WATCH: Duration = Duration::from_millis(100);
/// Watch period otherwise. The watchdog limits are seconds; this keeps idle CPU negligible.
const SLOW_WATCH: Duration = Duration::from_millis(250);
/// How often CPU and RSS of the tree are sampled.
const SYS_REFRESH: Duration = Duration::from_secs(2);
/// Window of the frames-per-second estimate.
const FPS_WINDOW: Duration = Duration::from_secs(3);

/// Where the tree's pieces are.
#[derive(Debug, Clone)]
pub struct TreeSetup {
    /// The validated configuration.
    pub config: Config,
    /// Where it came from, as shown in `status`.
    pub config_origin: String,
    /// The control socket.
    pub socket: PathBuf,
    /// The effective config file handed to the workers.
    pub config_file: PathBuf,
    /// Executable of each enabled worker, indexed by [`WorkerName::index`].
    pub binaries: [Option<PathBuf>; 3],
}

/// Where the stop sequence is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Readers were asked to stop; the writer waits for them.
    StoppingReaders,
    /// The writer was asked to stop (and to unlink the frame segment).
    StoppingVideo,
    /// Nothing runs any more.
    Done,
}

/// Why we are ending a process ourselves.
#[derive(Debug, Clone, PartialEq)]
enum Intent {
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
#[derive(Debug, Clone)]
struct Proc {
    pid: u32,
    spawn_id: u64,
    spawned_at: Instant,
    ready_at: Option<Instant>,
    /// When SIGTERM was sent (we are ending it).
    term_at: Option<Instant>,
    /// When SIGKILL is due if it has not exited.
    kill_at: Option<Instant>,
    killed: bool,
}

/// Counter samples for a rate estimate.
#[derive(Debug, Default, Clone)]
struct RateMeter {
    samples: VecDeque<(Instant, u64)>,
}

impl RateMeter {
    fn push(&mut self, now: Instant, value: u64) {
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

    fn rate(&self) -> f64 {
        match (self.samples.front(), self.samples.back()) {
            (Some(&(t0, v0)), Some(&(t1, v1)))
                if t1.duration_since(t0) >= Duration::from_millis(200) =>
            {
                (v1 - v0) as f64 / t1.duration_since(t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    fn clear(&mut self) {
        self.samples.clear();
    }
}

/// Everything the supervisor knows about one worker.
#[derive(Debug)]
struct Slot {
    name: WorkerName,
    enabled: bool,
    state: WorkerState,
    proc: Option<Proc>,
    intent: Intent,
    spawns: u32,
    restarts: u32,
    last_exit: Option<LastExit>,
    restart_at: Option<Instant>,
    tracker: RestartTracker,
    /// Video: newest frame number when this process was spawned (readiness = a newer one).
    baseline: u64,
    /// Video: newest frame number seen and when it changed.
    progress: Option<(u64, Instant)>,
    /// Readers: since when the reader-table entry is missing.
    missing_since: Option<Instant>,
    rate: RateMeter,
}

impl Slot {
    fn new(name: WorkerName, enabled: bool) -> Slot {
        Slot {
            name,
            enabled,
            state: if enabled {
                WorkerState::Starting
            } else {
                WorkerState::Stopped
            },
            proc: None,
            intent: Intent::None,
            spawns: 0,
            restarts: 0,
            last_exit: None,
            restart_at: None,
            tracker: RestartTracker::default(),
            baseline: 0,
            progress: None,
            missing_since: None,
            rate: RateMeter::default(),
        }
    }
}

/// The event loop's state.
pub struct Tree {
    setup: TreeSetup,
    policy: RestartPolicy,
    slots: [Slot; 3],
    frames: Monitor,
    detections: Option<Monitor>,
    exit_tx: mpsc::UnboundedSender<Exited>,
    next_spawn_id: u64,
    /// The video worker has published since this supervisor started (readers may start).
    readers_released: bool,
    phase: Phase,
    /// A second stop signal: SIGKILL instead of waiting.
    force: bool,
    started: Instant,
    last_watch: Option<Instant>,
    sys: System,
    sys_pids: Vec<Pid>,
    last_sys: Option<Instant>,
    notifier: Option<Notifier>,
    ready_sent: bool,
    status_line: String,
    next_ping: Option<Instant>,
}

impl Tree {
    /// A tree with nothing running yet. `frames` and `detections` observe the segments the
    /// caller created.
    pub fn new(
        setup: TreeSetup,
        frames: Monitor,
        detections: Option<Monitor>,
        exit_tx: mpsc::UnboundedSender<Exited>,
        notifier: Option<Notifier>,
    ) -> Tree {
        let enabled = |w: WorkerName| setup.binaries[w.index()].is_some();
        let slots = WorkerName::ALL.map(|w| Slot::new(w, enabled(w)));
        // sysinfo keeps /proc/<pid>/stat open by default; we refresh rarely, so do not.
        sysinfo::set_open_files_limit(0);
        let next_ping = notifier
            .as_ref()
            .and_then(Notifier::watchdog_every)
            .map(|_| Instant::now());
        Tree {
            policy: RestartPolicy::from_config(&setup.config.supervisor),
            setup,
            slots,
            frames,
            detections,
            exit_tx,
            next_spawn_id: 1,
            readers_released: false,
            phase: Phase::Running,
            force: false,
            started: Instant::now(),
            last_watch: None,
            sys: System::new(),
            sys_pids: Vec::new(),
            last_sys: None,
            notifier,
            ready_sent: false,
            status_line: String::new(),
            next_ping,
        }
    }

    /// Starts the tree and runs until it is stopped (signal or `stop`).
    pub async fn run(
        &mut self,
        shutdown: &mut Shutdown,
        mut exits: mpsc::UnboundedReceiver<Exited>,
        mut control: mpsc::Receiver<ControlMsg>,
    ) {
        if self.slot(WorkerName::Video).enabled {
            self.spawn(WorkerName::Video, Instant::now());
        }
        loop {
            let now = Instant::now();
            self.service(now);
            if self.phase == Phase::Done {
                break;
            }
            let wake = self.next_wakeup(now);
            tokio::select! {
                Some(e) = exits.recv() => self.on_exit(e, Instant::now()),
                Some(msg) = control.recv() => {
                    let answer = self.on_request(msg.request, Instant::now());
                    let _ = msg.reply.send(answer);
                }
                signal = shutdown.recv() => self.on_signal(&signal, Instant::now()),
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
        if let Some(n) = &self.notifier {
            n.send("STATUS=stopped");
        }
    }

    fn slot(&self, w: WorkerName) -> &Slot {
        &self.slots[w.index()]
    }

    fn slot_mut(&mut self, w: WorkerName) -> &mut Slot {
        &mut self.slots[w.index()]
    }

    fn grace(&self) -> Duration {
        Duration::from_secs_f64(self.setup.config.supervisor.shutdown_timeout_sec)
    }

    fn watch_period(&self) -> Duration {
        let busy = self.phase != Phase::Running
            || self.slots.iter().any(|s| {
                s.enabled && matches!(s.state, WorkerState::Starting | WorkerState::Stopping)
            });
        if busy {
            FAST_WATCH
        } else {
            SLOW_WATCH
        }
    }

    fn next_wakeup(&self, now: Instant) -> Instant {
        let mut wake = self.last_watch.map_or(now, |t| t + self.watch_period());
        for s in &self.slots {
            if let Some(t) = s.restart_at {
                wake = wake.min(t);
            }
            if let Some(t) = s
                .proc
                .as_ref()
                .filter(|p| !p.killed)
                .and_then(|p| p.kill_at)
            {
                wake = wake.min(t);
            }
        }
        if let Some(t) = self.next_ping {
            wake = wake.min(t);
        }
        wake.max(now)
    }

    /// Everything time-driven: kill deadlines, restart delays, watching, systemd.
    fn service(&mut self, now: Instant) {
        for w in WorkerName::ALL {
            let s = self.slot_mut(w);
            if let Some(p) = s.proc.as_mut() {
                if !p.killed && p.kill_at.is_some_and(|t| t <= now) {
                    p.killed = true;
                    let waited = p
                        .term_at
                        .map_or(0.0, |t| now.duration_since(t).as_secs_f64());
                    tracing::warn!(
                        "{w} worker (pid {}) did not exit {waited:.1}s after SIGTERM; sending SIGKILL",
                        p.pid
                    );
                    signal_group(p.pid, libc::SIGKILL);
                }
            }
        }
        if self.phase == Phase::Running {
            for w in WorkerName::ALL {
                let s = self.slot(w);
                if s.state == WorkerState::Backoff && s.restart_at.is_some_and(|t| t <= now) {
                    let s = self.slot_mut(w);
                    s.restart_at = None;
                    if s.proc.is_some() {
                        // Started early (see after_crash); its backoff is over now.
                        s.state = WorkerState::Starting;
                    } else {
                        self.spawn(w, now);
                    }
                }
            }
        }
        if self
            .last_watch
            .is_none_or(|t| now.duration_since(t) >= self.watch_period())
        {
            self.last_watch = Some(now);
            self.watch(now);
        }
        self.advance_stop(now);
        self.notify(now);
    }

    // ---------------------------------------------------------------- spawning

    fn spawn(&mut self, w: WorkerName, now: Instant) {
        self.spawn_at(w, now, None);
    }

    /// Spawns `w`; with `delay`, the process is started now but told (through
    /// `config::START_AT_ENV`) to open nothing before `now + delay`, and the slot stays in
    /// `backoff` until then.
    fn spawn_at(&mut self, w: WorkerName, now: Instant, delay: Option<Duration>) {
        let Some(binary) = self.setup.binaries[w.index()].clone() else {
            return;
        };
        let baseline = self.frames.snapshot().frames_published;
        let spawn_id = self.next_spawn_id;
        self.next_spawn_id += 1;
        let result = spawn::spawn_worker(
            w,
            &binary,
            &self.setup.config_file,
            spawn_id,
            delay.map(|d| shm_core::monotonic_ns() + d.as_nanos() as u64),
            self.exit_tx.clone(),
        );
        let s = self.slot_mut(w);
        s.restart_at = None;
        s.intent = Intent::None;
        s.missing_since = None;
        s.progress = None;
        s.rate.clear();
        s.baseline = baseline;
        if s.spawns > 0 {
            s.restarts += 1;
        }
        s.spawns += 1;
        match result {
            Ok(pid) => {
                s.state = WorkerState::Starting;
                if let Some(d) = delay {
                    s.state = WorkerState::Backoff;
                    s.restart_at = Some(now + d);
                }
                s.proc = Some(Proc {
                    pid,
                    spawn_id,
                    // Its start-up watchdog counts from the end of the backoff.
                    spawned_at: now + delay.unwrap_or_default(),
                    ready_at: None,
                    term_at: None,
                    kill_at: None,
                    killed: false,
                });
                tracing::info!("started {w} worker (pid {pid})");
            }
            Err(e) => {
                let reason = format!("cannot start {}: {e}", binary.display());
                tracing::error!("{reason}");
                s.last_exit = Some(LastExit {
                    code: None,
                    signal: None,
                    reason: reason.clone(),
                    at_unix_s: unix_now(),
                    detail: None,
                });
                self.after_crash(w, now, None, &reason);
            }
        }
    }

    /// Starts the readers once the video worker has published (or lets them stop waiting).
    fn release_readers(&mut self, now: Instant) {
        self.readers_released = true;
        for w in [WorkerName::Vision, WorkerName::Stream] {
            let s = self.slot(w);
            if s.enabled && s.proc.is_none() && s.spawns == 0 && self.phase == Phase::Running {
                self.spawn(w, now);
            }
        }
    }

    // ---------------------------------------------------------------- exits

    fn on_exit(&mut self, e: Exited, now: Instant) {
        let w = e.worker;
        let source = self.setup.config.video.source.clone();
        let s = self.slot_mut(w);
        let Some(proc) = s.proc.take_if(|p| p.spawn_id == e.spawn_id) else {
            return;
        };
        // Anything else left in its process group goes with it.
        signal_group(proc.pid, libc::SIGKILL);
        let classified = exit::classify(w, e.status, e.exit_reason.as_deref(), &source);
        let intent = std::mem::replace(&mut s.intent, Intent::None);
        let (reason, detail) = match &intent {
            Intent::Watchdog(r) => (r.clone(), None),
            Intent::Restart => (
                format!("restarted on request ({})", exit::describe(e.status)),
                None,
            ),
            Intent::Stop => (format!("stopped ({})", exit::describe(e.status)), None),
            Intent::None => (classified.reason.clone(), classified.detail.clone()),
        };
        let last_exit = LastExit {
            code: e.status.code,
            signal: e.status.signal,
            reason,
            at_unix_s: unix_now(),
            detail,
        };
        // What the logs and the crash record say: the reason with the worker's detail.
        let reason = last_exit.describe();
        s.last_exit = Some(last_exit);
        let ran_for = proc.ready_at.map(|t| now.duration_since(t));
        let pid = proc.pid;
        if self.phase != Phase::Running || intent == Intent::Stop {
            tracing::info!(
                "{w} worker (pid {pid}) stopped ({})",
                exit::describe(e.status)
            );
            self.slot_mut(w).state = WorkerState::Stopped;
            return;
        }
        match intent {
            Intent::Restart => {
                tracing::info!(
                    "{w} worker (pid {pid}) ended for a requested restart; starting it again"
                );
                self.spawn(w, now);
            }
            Intent::Watchdog(_) => {
                tracing::warn!("{w} worker (pid {pid}) ended after the watchdog fired: {reason}");
                self.after_crash(w, now, ran_for, &reason);
            }
            Intent::None | Intent::Stop => {
                if classified.kind == ExitKind::Finished {
                    tracing::info!("{w} worker (pid {pid}) finished: {reason}; not restarting it");
                    self.slot_mut(w).state = WorkerState::Stopped;
                    self.video_gone_before_ready(now);
                    return;
                }
                tracing::warn!("{w} worker (pid {pid}) exited unexpectedly: {reason}");
                self.after_crash(w, now, ran_for, &reason);
            }
        }
    }

    /// Applies the restart policy after an unexpected end.
    fn after_crash(
        &mut self,
        w: WorkerName,
        now: Instant,
        ran_for: Option<Duration>,
        reason: &str,
    ) {
        let policy = self.policy;
        let s = self.slot_mut(w);
        match s.tracker.on_exit(&policy, now, ran_for) {
            Decision::RestartAfter(delay) => {
                s.state = WorkerState::Backoff;
                s.restart_at = Some(now + delay);
                tracing::info!("restarting {w} worker in {} ms", delay.as_millis());
                if w == WorkerName::Video && self.phase == Phase::Running && !delay.is_zero() {
                    // The video worker takes ~150 ms just to load (OpenCV's libraries): start
                    // the process now so that happens during the backoff, and let it open the
                    // source when the backoff ends. Frames return that much sooner.
                    self.spawn_at(w, now, Some(delay));
                }
            }
            Decision::Fail { crashes } => {
                s.state = WorkerState::Failed;
                s.restart_at = None;
                tracing::error!(
                    "{w} worker FAILED: it ended {crashes} times within {}s (supervisor.restart_max = {}); \
                     not restarting it until `billiards-supervisor restart {w}`. Last reason: {reason}",
                    policy.window.as_secs_f64(),
                    policy.restart_max
                );
                if w == WorkerName::Video {
                    self.video_gone_before_ready(now);
                }
            }
        }
    }

    /// The video worker will not publish soon (failed or finished): readers that never started
    /// stop waiting for it.
    fn video_gone_before_ready(&mut self, _now: Instant) {
        if self.readers_released {
            return;
        }
        for w in [WorkerName::Vision, WorkerName::Stream] {
            let s = self.slot_mut(w);
            if s.enabled && s.spawns == 0 && s.state == WorkerState::Starting {
                s.state = WorkerState::Stopped;
            }
        }
    }

    // ---------------------------------------------------------------- watching

    fn watch(&mut self, now: Instant) {
        let snap = self.frames.snapshot();
        self.watch_video(&snap, now);
        for w in [WorkerName::Vision, WorkerName::Stream] {
            self.watch_reader(w, &snap, now);
        }
        if self
            .last_sys
            .is_none_or(|t| now.duration_since(t) >= SYS_REFRESH)
        {
            self.refresh_sys(now);
        }
    }

    /// Samples CPU and RSS of the workers and of the supervisor.
    fn refresh_sys(&mut self, now: Instant) {
        self.last_sys = Some(now);
        let mut pids: Vec<Pid> = self
            .slots
            .iter()
            .filter_map(|s| s.proc.as_ref())
            .map(|p| Pid::from_u32(p.pid))
            .collect();
        pids.push(Pid::from_u32(std::process::id()));
        // Asking again for the pids of the last round lets sysinfo drop the dead ones, so its
        // table does not grow with every restart.
        let mut ask = pids.clone();
        ask.extend(self.sys_pids.iter().filter(|p| !pids.contains(p)));
        self.sys.refresh_processes_specifics(
            ProcessesToUpdate::Some(&ask),
            true,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        self.sys_pids = pids;
    }

    fn watch_video(&mut self, snap: &SegmentSnapshot, now: Instant) {
        let latest = snap.frames_published;
        let frame_timeout = self.setup.config.watchdog.frame_timeout_sec;
        let startup_limit = frame_timeout + self.setup.config.video.attach_timeout_sec;
        let s = self.slot_mut(WorkerName::Video);
        s.rate.push(now, latest);
        let Some(p) = s.proc.as_mut() else {
            return;
        };
        if s.intent != Intent::None || p.term_at.is_some() {
            return;
        }
        let pid = p.pid;
        match p.ready_at {
            None if latest > s.baseline => {
                p.ready_at = Some(now);
                s.progress = Some((latest, now));
                s.state = WorkerState::Running;
                let ms = now.duration_since(p.spawned_at).as_millis();
                tracing::info!("video worker (pid {pid}) is ready: frame {latest} published {ms} ms after start");
                if !self.readers_released {
                    self.release_readers(now);
                }
            }
            None => {
                if now.duration_since(p.spawned_at).as_secs_f64() > startup_limit {
                    let reason = format!("watchdog: no first frame within {startup_limit:.1}s");
                    self.fire_watchdog(WorkerName::Video, reason, now);
                }
            }
            Some(_) => {
                let (seen, since) = s.progress.unwrap_or((latest, now));
                if latest != seen {
                    s.progress = Some((latest, now));
                } else if now.duration_since(since).as_secs_f64() > frame_timeout {
                    let reason = format!("watchdog: no frame for {frame_timeout:.1}s");
                    self.fire_watchdog(WorkerName::Video, reason, now);
                }
            }
        }
    }

    fn watch_reader(&mut self, w: WorkerName, snap: &SegmentSnapshot, now: Instant) {
        let hb_timeout = self.setup.config.watchdog.heartbeat_timeout_sec;
        let startup_limit = self.setup.config.video.attach_timeout_sec + hb_timeout;
        let s = self.slot_mut(w);
        let Some(p) = s.proc.as_mut() else {
            return;
        };
        let pid = p.pid;
        let entry = snap.readers.iter().find(|r| r.pid == pid);
        if let Some(e) = entry {
            s.rate.push(now, e.frames_read);
        }
        if s.intent != Intent::None || p.term_at.is_some() {
            return;
        }
        match (p.ready_at, entry) {
            (None, Some(_)) => {
                p.ready_at = Some(now);
                s.state = WorkerState::Running;
                let ms = now.duration_since(p.spawned_at).as_millis();
                tracing::info!("{w} worker (pid {pid}) is ready: attached to the frame segment {ms} ms after start");
            }
            (None, None) => {
                if now.duration_since(p.spawned_at).as_secs_f64() > startup_limit {
                    let reason = format!(
                        "watchdog: not attached to the frame segment within {startup_limit:.1}s"
                    );
                    self.fire_watchdog(w, reason, now);
                }
            }
            (Some(_), Some(e)) => {
                s.missing_since = None;
                if e.heartbeat_age.as_secs_f64() > hb_timeout {
                    let reason = format!("watchdog: no heartbeat for {hb_timeout:.1}s");
                    self.fire_watchdog(w, reason, now);
                }
            }
            (Some(_), None) => {
                let since = *s.missing_since.get_or_insert(now);
                if now.duration_since(since).as_secs_f64() > hb_timeout {
                    let reason = format!(
                        "watchdog: no heartbeat for {hb_timeout:.1}s (left the reader table)"
                    );
                    self.fire_watchdog(w, reason, now);
                }
            }
        }
    }

    fn fire_watchdog(&mut self, w: WorkerName, reason: String, now: Instant) {
        if let Some(p) = &self.slot(w).proc {
            tracing::warn!("{reason}: restarting {w} worker (pid {})", p.pid);
        }
        self.slot_mut(w).intent = Intent::Watchdog(reason);
        self.terminate(w, now);
    }

    /// SIGTERM (and SIGCONT, so a stopped process sees it) to the worker's process group,
    /// SIGKILL after the grace; at once SIGKILL when forced.
    fn terminate(&mut self, w: WorkerName, now: Instant) {
        let grace = self.grace();
        let force = self.force;
        let s = self.slot_mut(w);
        let Some(p) = s.proc.as_mut() else {
            return;
        };
        s.state = WorkerState::Stopping;
        if force {
            if !p.killed {
                p.killed = true;
                signal_group(p.pid, libc::SIGKILL);
            }
            return;
        }
        if p.term_at.is_none() {
            p.term_at = Some(now);
            p.kill_at = Some(now + grace);
            signal_group(p.pid, libc::SIGTERM);
            signal_group(p.pid, libc::SIGCONT);
        }
    }

    // ---------------------------------------------------------------- stopping

    fn on_signal(&mut self, signal: &str, now: Instant) {
        if self.phase == Phase::Running {
            tracing::info!("received {signal}: stopping the tree");
            self.begin_stop(now);
        } else if !self.force {
            tracing::warn!("received {signal} again while stopping: killing every worker now");
            self.force = true;
            for w in WorkerName::ALL {
                if self.slot(w).proc.is_some() {
                    self.terminate(w, now);
                }
            }
        }
    }

    fn begin_stop(&mut self, now: Instant) {
        if self.phase != Phase::Running {
            return;
        }
        if let Some(n) = &self.notifier {
            n.send("STOPPING=1");
        }
        tracing::info!("stopping: stream and vision first, then video");
        self.phase = Phase::StoppingReaders;
        for s in &mut self.slots {
            s.restart_at = None;
            if s.proc.is_none() && matches!(s.state, WorkerState::Backoff | WorkerState::Starting) {
                s.state = WorkerState::Stopped;
            }
        }
        for w in [WorkerName::Stream, WorkerName::Vision] {
            if self.slot(w).proc.is_some() {
                self.slot_mut(w).intent = Intent::Stop;
                self.terminate(w, now);
            }
        }
        self.advance_stop(now);
    }

    fn advance_stop(&mut self, now: Instant) {
        if self.phase == Phase::StoppingReaders
            && self.slot(WorkerName::Vision).proc.is_none()
            && self.slot(WorkerName::Stream).proc.is_none()
        {
            // A clean stop: the writer unlinks the frame segment when it exits.
            self.frames.mark_stopping();
            self.phase = Phase::StoppingVideo;
            if self.slot(WorkerName::Video).proc.is_some() {
                self.slot_mut(WorkerName::Video).intent = Intent::Stop;
                self.terminate(WorkerName::Video, now);
            }
        }
        if self.phase == Phase::StoppingVideo && self.slot(WorkerName::Video).proc.is_none() {
            self.phase = Phase::Done;
        }
    }

    // ---------------------------------------------------------------- requests

    fn on_request(&mut self, request: Request, now: Instant) -> Response {
        match request {
            Request::Ping => Response::Pong {
                pid: std::process::id(),
            },
            Request::Status => Response::Status(Box::new(self.status(now))),
            Request::Stop => {
                if self.phase == Phase::Running {
                    tracing::info!("stop requested over the control socket");
                    self.begin_stop(now);
                }
                Response::Ok
            }
            Request::Restart { worker } => self.restart(worker, now),
        }
    }

    fn restart(&mut self, w: WorkerName, now: Instant) -> Response {
        if self.phase != Phase::Running {
            return Response::Error("the supervisor is stopping; nothing is restarted".into());
        }
        if !self.slot(w).enabled {
            return Response::Error(format!(
                "the {w} worker is disabled in the config ({} = false)",
                w.enabled_key()
            ));
        }
        tracing::info!("restart of the {w} worker requested");
        let released = self.readers_released;
        let s = self.slot_mut(w);
        s.tracker.reset();
        s.restart_at = None;
        if s.proc.is_some() {
            if s.intent == Intent::None {
                s.intent = Intent::Restart;
            }
            self.terminate(w, now);
        } else if w.is_reader() && !released {
            // Starts with the others once the video worker publishes.
            s.state = WorkerState::Starting;
        } else {
            self.spawn(w, now);
        }
        Response::Ok
    }

    /// The status JSON as of now.
    pub fn status(&mut self, now: Instant) -> Status {
        // A process started since the last sample has no CPU/RSS yet; sample now (at most
        // every half second, so a client polling status cannot make us spin).
        let unseen = self
            .slots
            .iter()
            .filter_map(|s| s.proc.as_ref())
            .any(|p| self.sys.process(Pid::from_u32(p.pid)).is_none());
        if unseen
            && self
                .last_sys
                .is_none_or(|t| now.duration_since(t) >= Duration::from_millis(500))
        {
            self.refresh_sys(now);
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
            .slots
            .iter()
            .filter(|s| s.enabled)
            .map(|s| self.worker_status(s, &snap, det.as_ref(), now))
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

    fn worker_status(
        &self,
        s: &Slot,
        snap: &SegmentSnapshot,
        det: Option<&SegmentSnapshot>,
        now: Instant,
    ) -> WorkerStatus {
        let pid = s.proc.as_ref().map(|p| p.pid);
        let process = pid.and_then(|p| self.sys.process(Pid::from_u32(p)));
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
                if pid.is_some() {
                    stats.fps = s.rate.rate();
                }
            }
            _ => {
                if let Some(e) = pid.and_then(|p| snap.readers.iter().find(|r| r.pid == p)) {
                    stats.fps = s.rate.rate();
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
            uptime_s: s
                .proc
                .as_ref()
                .map_or(0.0, |p| now.duration_since(p.spawned_at).as_secs_f64()),
            restarts: s.restarts,
            last_exit: s.last_exit.clone(),
            cpu_percent: process.map_or(0.0, |p| f64::from(p.cpu_usage())),
            rss_bytes: process.map_or(0, |p| p.memory()),
            stats,
        }
    }

    // ---------------------------------------------------------------- systemd

    fn notify(&mut self, now: Instant) {
        if !self.ready_sent
            && self.phase == Phase::Running
            && self.slots.iter().filter(|s| s.enabled).all(|s| {
                s.proc.as_ref().is_some_and(|p| p.ready_at.is_some())
                    || matches!(s.state, WorkerState::Failed | WorkerState::Stopped)
            })
        {
            self.ready_sent = true;
            tracing::info!(
                "startup complete after {} ms: {}",
                now.duration_since(self.started).as_millis(),
                summary_line(&self.slots, self.phase)
            );
            if let Some(n) = &self.notifier {
                n.send("READY=1");
            }
        }
        let Some(n) = &self.notifier else {
            return;
        };
        if let Some(t) = self.next_ping {
            if t <= now {
                n.send("WATCHDOG=1");
                self.next_ping = n.watchdog_every().map(|d| now + d);
            }
        }
        let line = summary_line(&self.slots, self.phase);
        if line != self.status_line {
            n.send(&format!("STATUS={line}"));
            self.status_line = line;
        }
    }
}

impl Drop for Tree {
    /// On an error or panic path, leave no worker behind (the normal path has none left).
    fn drop(&mut self) {
        for s in &self.slots {
            if let Some(p) = &s.proc {
                signal_group(p.pid, libc::SIGKILL);
            }
        }
    }
}

/// `video running, vision running, stream backoff (killed by SIGKILL)`.
fn summary_line(slots: &[Slot], phase: Phase) -> String {
    let mut parts: Vec<String> = slots
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

/// Sends `sig` to the process group `pgid` (the worker's pid), falling back to the pid.
fn signal_group(pgid: u32, sig: libc::c_int) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill/killpg take plain integers; a vanished group only yields ESRCH.
    unsafe {
        if libc::killpg(pgid, sig) != 0 {
            libc::kill(pgid, sig);
        }
    }
}

fn ns_to_ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut video = Slot::new(WorkerName::Video, true);
        video.state = WorkerState::Failed;
        video.last_exit = Some(LastExit {
            code: Some(10),
            signal: None,
            reason: "camera unavailable: /dev/video99".into(),
            at_unix_s: 0.0,
            detail: None,
        });
        let vision = Slot::new(WorkerName::Vision, false);
        let mut stream = Slot::new(WorkerName::Stream, true);
        stream.state = WorkerState::Running;
        assert_eq!(
            summary_line(&[video, vision, stream], Phase::Running),
            "video failed (camera unavailable: /dev/video99), stream running"
        );
    }
}
