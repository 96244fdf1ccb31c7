//! The event loop: owns every worker's state, spawns, watches, restarts and stops them.
//!
//! Everything runs on one thread (a current-thread runtime): exits arrive from reaper tasks,
//! requests from the control socket, signals from the caller, and a timer drives readiness,
//! the watchdog and restart delays. No state is shared, so there are no locks.
//!
//! This module holds the state machine: every change of a worker's state is made here. Its
//! parts live beside it:
//! - [`process`]: the state of one process, which a new spawn replaces as a whole;
//! - [`watchdog`]: the watchdog's verdicts, pure functions of times and of what the frame
//!   segment shows;
//! - [`report`]: the status JSON, the summary line, frame rates, CPU and RSS.

mod process;
mod report;
mod watchdog;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use config::Config;
use shm_core::{Monitor, SegmentSnapshot};
use tokio::sync::mpsc;

use crate::control::{Request, Response};
use crate::exit::{self, ExitKind};
use crate::notify::Notifier;
use crate::policy::{Decision, RestartPolicy, RestartTracker};
use crate::server::ControlMsg;
use crate::spawn::{self, Exited};
use crate::status::{LastExit, WorkerState};
use crate::worker::WorkerName;
use crate::Shutdown;

use process::{Intent, Process};
use report::{summary_line, Usage};
use watchdog::{Limits, Verdict};

/// Watch period while something is starting or stopping (readiness is noticed this fast).
const FAST_WATCH: Duration = Duration::from_millis(100);
/// Watch period otherwise. The watchdog limits are seconds; this keeps idle CPU negligible.
const SLOW_WATCH: Duration = Duration::from_millis(250);

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

/// Everything the supervisor knows about one worker, across its processes.
#[derive(Debug)]
struct Worker {
    name: WorkerName,
    enabled: bool,
    state: WorkerState,
    /// The running process, if any.
    proc: Option<Process>,
    spawns: u32,
    restarts: u32,
    last_exit: Option<LastExit>,
    restart_at: Option<Instant>,
    tracker: RestartTracker,
}

impl Worker {
    fn new(name: WorkerName, enabled: bool) -> Worker {
        Worker {
            name,
            enabled,
            state: if enabled {
                WorkerState::Starting
            } else {
                WorkerState::Stopped
            },
            proc: None,
            spawns: 0,
            restarts: 0,
            last_exit: None,
            restart_at: None,
            tracker: RestartTracker::default(),
        }
    }
}

/// The event loop's state.
pub struct Tree {
    setup: TreeSetup,
    policy: RestartPolicy,
    limits: Limits,
    workers: [Worker; 3],
    frames: Monitor,
    detections: Option<Monitor>,
    exit_tx: mpsc::UnboundedSender<Exited>,
    next_spawn_id: u64,
    phase: Phase,
    /// A second stop signal: SIGKILL instead of waiting.
    force: bool,
    started: Instant,
    last_watch: Option<Instant>,
    usage: Usage,
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
        let workers = WorkerName::ALL.map(|w| Worker::new(w, enabled(w)));
        let next_ping = notifier
            .as_ref()
            .and_then(Notifier::watchdog_every)
            .map(|_| Instant::now());
        Tree {
            policy: RestartPolicy::from_config(&setup.config.supervisor),
            limits: Limits::from_config(&setup.config),
            setup,
            workers,
            frames,
            detections,
            exit_tx,
            next_spawn_id: 1,
            phase: Phase::Running,
            force: false,
            started: Instant::now(),
            last_watch: None,
            usage: Usage::new(),
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
        if self.worker(WorkerName::Video).enabled {
            self.spawn(WorkerName::Video, Instant::now());
        }
        // The segments exist already (the caller created them): the readers start now, not
        // after the first frame, so the dashboard answers (with "no signal") even while the
        // camera is missing. Their heartbeats come from waiting, not from frames.
        self.release_readers(Instant::now());
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

    fn worker(&self, w: WorkerName) -> &Worker {
        &self.workers[w.index()]
    }

    fn worker_mut(&mut self, w: WorkerName) -> &mut Worker {
        &mut self.workers[w.index()]
    }

    fn grace(&self) -> Duration {
        Duration::from_secs_f64(self.setup.config.supervisor.shutdown_timeout_sec)
    }

    fn watch_period(&self) -> Duration {
        let busy = self.phase != Phase::Running
            || self.workers.iter().any(|s| {
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
        for s in &self.workers {
            if let Some(t) = s.restart_at {
                wake = wake.min(t);
            }
            if let Some(t) = s.proc.as_ref().and_then(Process::kill_deadline) {
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
            if let Some(p) = self.worker_mut(w).proc.as_mut() {
                if let Some(waited) = p.kill_due(now) {
                    tracing::warn!(
                        "{w} worker (pid {}) did not exit {:.1}s after SIGTERM; sending SIGKILL",
                        p.pid,
                        waited.as_secs_f64()
                    );
                    p.kill();
                }
            }
        }
        if self.phase == Phase::Running {
            for w in WorkerName::ALL {
                let s = self.worker(w);
                if s.state == WorkerState::Backoff && s.restart_at.is_some_and(|t| t <= now) {
                    let s = self.worker_mut(w);
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
    /// `config::START_AT_ENV`) to open nothing before `now + delay`, and the worker stays in
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
        let s = self.worker_mut(w);
        debug_assert!(s.proc.is_none(), "{w} worker spawned while one runs");
        s.restart_at = None;
        if s.spawns > 0 {
            s.restarts += 1;
        }
        s.spawns += 1;
        match result {
            Ok(group) => {
                let pid = group.pid();
                s.state = WorkerState::Starting;
                if let Some(d) = delay {
                    s.state = WorkerState::Backoff;
                    s.restart_at = Some(now + d);
                }
                // Its start-up watchdog counts from the end of the backoff.
                let started_at = now + delay.unwrap_or_default();
                s.proc = Some(Process::new(group, spawn_id, started_at, baseline));
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
                self.after_crash(w, now, None, &reason, false);
            }
        }
    }

    /// Starts the readers (at start, once the segments exist).
    fn release_readers(&mut self, now: Instant) {
        for w in [WorkerName::Vision, WorkerName::Stream] {
            let s = self.worker(w);
            if s.enabled && s.proc.is_none() && s.spawns == 0 && self.phase == Phase::Running {
                self.spawn(w, now);
            }
        }
    }

    // ---------------------------------------------------------------- exits

    fn on_exit(&mut self, e: Exited, now: Instant) {
        let w = e.worker;
        let source = self.setup.config.video.source.clone();
        let s = self.worker_mut(w);
        let Some(proc) = s.proc.take_if(|p| p.spawn_id == e.spawn_id) else {
            return;
        };
        // Anything else left in its process group was killed by the reaper task before it
        // reaped the leader; the group id may belong to someone else by now.
        let classified = exit::classify(w, e.status, e.exit_reason.as_deref(), &source);
        let intent = proc.intent;
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
        let ran_for = proc.watch.ready_at.map(|t| now.duration_since(t));
        let pid = proc.pid;
        if self.phase != Phase::Running || intent == Intent::Stop {
            tracing::info!(
                "{w} worker (pid {pid}) stopped ({})",
                exit::describe(e.status)
            );
            self.worker_mut(w).state = WorkerState::Stopped;
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
                self.after_crash(w, now, ran_for, &reason, false);
            }
            Intent::None | Intent::Stop => {
                if classified.kind == ExitKind::Finished {
                    tracing::info!("{w} worker (pid {pid}) finished: {reason}; not restarting it");
                    self.worker_mut(w).state = WorkerState::Stopped;
                    return;
                }
                let unavailable = classified.kind == ExitKind::SourceUnavailable;
                if unavailable {
                    tracing::warn!(
                        "{w} worker (pid {pid}) exited: {reason}; waiting for the source to appear"
                    );
                } else {
                    tracing::warn!("{w} worker (pid {pid}) exited unexpectedly: {reason}");
                }
                self.after_crash(w, now, ran_for, &reason, unavailable);
            }
        }
    }

    /// Applies the restart policy after an unexpected end. `source_unavailable`: the video
    /// source is missing, which is retried at the largest delay and never counted.
    fn after_crash(
        &mut self,
        w: WorkerName,
        now: Instant,
        ran_for: Option<Duration>,
        reason: &str,
        source_unavailable: bool,
    ) {
        let policy = self.policy;
        let s = self.worker_mut(w);
        let decision = if source_unavailable {
            s.tracker.on_source_unavailable(&policy)
        } else {
            s.tracker.on_exit(&policy, now, ran_for)
        };
        match decision {
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
        self.sample_usage(now);
    }

    fn watch_video(&mut self, snap: &SegmentSnapshot, now: Instant) {
        let latest = snap.frames_published;
        let limits = self.limits;
        let s = self.worker_mut(WorkerName::Video);
        let Some(p) = s.proc.as_mut() else {
            return;
        };
        p.rate.push(now, latest);
        if p.is_ending() {
            return;
        }
        let pid = p.pid;
        match p.watch.look_video(&limits, latest, now) {
            Verdict::Fine => {}
            Verdict::Ready => {
                s.state = WorkerState::Running;
                let ms = now.duration_since(p.watch.started_at).as_millis();
                tracing::info!("video worker (pid {pid}) is ready: frame {latest} published {ms} ms after start");
            }
            Verdict::Fire(reason) => self.fire_watchdog(WorkerName::Video, reason, now),
        }
    }

    fn watch_reader(&mut self, w: WorkerName, snap: &SegmentSnapshot, now: Instant) {
        let limits = self.limits;
        let s = self.worker_mut(w);
        let Some(p) = s.proc.as_mut() else {
            return;
        };
        let pid = p.pid;
        let entry = snap.readers.iter().find(|r| r.pid == pid);
        if let Some(e) = entry {
            p.rate.push(now, e.frames_read);
        }
        if p.is_ending() {
            return;
        }
        match p
            .watch
            .look_reader(&limits, entry.map(|e| e.heartbeat_age), now)
        {
            Verdict::Fine => {}
            Verdict::Ready => {
                s.state = WorkerState::Running;
                let ms = now.duration_since(p.watch.started_at).as_millis();
                tracing::info!("{w} worker (pid {pid}) is ready: attached to the frame segment {ms} ms after start");
            }
            Verdict::Fire(reason) => self.fire_watchdog(w, reason, now),
        }
    }

    fn fire_watchdog(&mut self, w: WorkerName, reason: String, now: Instant) {
        let Some(p) = self.worker_mut(w).proc.as_mut() else {
            return;
        };
        tracing::warn!("{reason}: restarting {w} worker (pid {})", p.pid);
        p.intent = Intent::Watchdog(reason);
        self.terminate(w, now);
    }

    /// SIGTERM (and SIGCONT, so a stopped process sees it) to the worker's process group,
    /// SIGKILL after the grace; at once SIGKILL when forced.
    fn terminate(&mut self, w: WorkerName, now: Instant) {
        let grace = self.grace();
        let force = self.force;
        let s = self.worker_mut(w);
        let Some(p) = s.proc.as_mut() else {
            return;
        };
        s.state = WorkerState::Stopping;
        if force {
            p.kill();
        } else {
            p.terminate(now, grace);
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
                if self.worker(w).proc.is_some() {
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
        for s in &mut self.workers {
            s.restart_at = None;
            if s.proc.is_none() && matches!(s.state, WorkerState::Backoff | WorkerState::Starting) {
                s.state = WorkerState::Stopped;
            }
        }
        for w in [WorkerName::Stream, WorkerName::Vision] {
            self.stop_worker(w, now);
        }
        self.advance_stop(now);
    }

    /// Ends `w`'s process, if it has one, as part of the tree's stop.
    fn stop_worker(&mut self, w: WorkerName, now: Instant) {
        if let Some(p) = self.worker_mut(w).proc.as_mut() {
            p.intent = Intent::Stop;
            self.terminate(w, now);
        }
    }

    fn advance_stop(&mut self, now: Instant) {
        if self.phase == Phase::StoppingReaders
            && self.worker(WorkerName::Vision).proc.is_none()
            && self.worker(WorkerName::Stream).proc.is_none()
        {
            // A clean stop: the writer unlinks the frame segment when it exits.
            self.frames.mark_stopping();
            self.phase = Phase::StoppingVideo;
            self.stop_worker(WorkerName::Video, now);
        }
        if self.phase == Phase::StoppingVideo && self.worker(WorkerName::Video).proc.is_none() {
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
        if !self.worker(w).enabled {
            return Response::Error(format!(
                "the {w} worker is disabled in the config ({} = false)",
                w.enabled_key()
            ));
        }
        tracing::info!("restart of the {w} worker requested");
        let s = self.worker_mut(w);
        s.tracker.reset();
        s.restart_at = None;
        if let Some(p) = s.proc.as_mut() {
            if p.intent == Intent::None {
                p.intent = Intent::Restart;
            }
            self.terminate(w, now);
        } else {
            self.spawn(w, now);
        }
        Response::Ok
    }

    // ---------------------------------------------------------------- systemd

    fn notify(&mut self, now: Instant) {
        if !self.ready_sent
            && self.phase == Phase::Running
            && self.workers.iter().filter(|s| s.enabled).all(|s| {
                s.proc.as_ref().is_some_and(|p| p.ready_at().is_some())
                    || matches!(s.state, WorkerState::Failed | WorkerState::Stopped)
            })
        {
            self.ready_sent = true;
            tracing::info!(
                "startup complete after {} ms: {}",
                now.duration_since(self.started).as_millis(),
                summary_line(&self.workers, self.phase)
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
        let line = summary_line(&self.workers, self.phase);
        if line != self.status_line {
            n.send(&format!("STATUS={line}"));
            self.status_line = line;
        }
    }
}

impl Drop for Tree {
    /// On an error or panic path, leave no worker behind (the normal path has none left).
    fn drop(&mut self) {
        for s in &self.workers {
            if let Some(p) = &s.proc {
                p.group.signal(libc::SIGKILL);
            }
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
