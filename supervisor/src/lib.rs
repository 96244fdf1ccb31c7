//! billiards-supervisor: one command that starts, watches, restarts, stops and reports the
//! tree of worker processes (video, vision, stream).
//!
//! This crate owns the process tree: spawning workers in their own process groups with the
//! parent-death signal set, reaping and classifying every exit, restart backoff and the
//! "failed" limit, the watchdog (frame progress of the writer, reader heartbeats), the ordered
//! stop, the control socket's server ([`server`]; the protocol itself is the `billiards-protocol` crate,
//! re-exported as [`control`], [`status`] and [`worker`]), the single-instance
//! lock ([`instance`]) and systemd notification ([`notify`]). It creates the shared-memory
//! segments before the workers start and unlinks what is left after they stop, but it only
//! *observes* them (through `shm_core::Monitor`): it never reads or writes frames, and it knows
//! nothing of cameras, images or HTTP. It must not depend on OpenCV.

pub mod commands;
pub mod control;
pub mod exit;
pub mod instance;
pub mod notify;
pub mod output;
pub mod policy;
pub mod server;
pub mod spawn;
pub mod table;
pub mod tree;

pub use protocol::{status, worker};

use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context;
use config::{Config, Loaded};
use shm_core::{CreateMode, Monitor, SegmentLocation, SegmentSpec};
use tokio::sync::mpsc;

pub use control::{ClientError, Request, Response};
pub use status::Status;
pub use worker::WorkerName;

pub use billiards_detections::{DETECTIONS_CAPACITY, DETECTIONS_SLOTS};

/// A command-line or request problem that maps to exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit code for an error chain, per the SPEC: 2 for a bad config or usage, 3 when no
/// supervisor is running, 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    use config::exit_codes;
    for cause in err.chain() {
        if cause.downcast_ref::<config::ConfigError>().is_some()
            || cause.downcast_ref::<UsageError>().is_some()
        {
            return exit_codes::USAGE;
        }
        if let Some(ClientError::NotRunning { .. }) = cause.downcast_ref::<ClientError>() {
            return exit_codes::NOT_RUNNING;
        }
    }
    exit_codes::FAILURE
}

/// Stop requests from outside: the first starts a clean stop, a second one kills at once.
pub struct Shutdown {
    rx: mpsc::UnboundedReceiver<String>,
}

impl Shutdown {
    /// A shutdown source fed by hand (tests, embedding): send the name of the "signal".
    pub fn channel() -> (mpsc::UnboundedSender<String>, Shutdown) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, Shutdown { rx })
    }

    /// Listens for SIGTERM, SIGINT and SIGHUP. Must be called inside a tokio runtime.
    pub fn from_signals() -> io::Result<Shutdown> {
        use tokio::signal::unix::{signal, SignalKind};
        let (tx, shutdown) = Shutdown::channel();
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        tokio::spawn(async move {
            loop {
                let name = tokio::select! {
                    Some(()) = term.recv() => "SIGTERM",
                    Some(()) = int.recv() => "SIGINT",
                    Some(()) = hup.recv() => "SIGHUP",
                    else => return,
                };
                if tx.send(name.to_string()).is_err() {
                    return;
                }
            }
        });
        Ok(shutdown)
    }

    /// The next stop request; never returns once every sender is gone.
    pub async fn recv(&mut self) -> String {
        match self.rx.recv().await {
            Some(s) => s,
            None => std::future::pending().await,
        }
    }
}

/// The shared-memory segments of the tree. Dropping it unlinks whatever is left of them, on
/// every exit path.
struct Segments {
    frames: SegmentLocation,
    detections: Option<SegmentLocation>,
}

impl Segments {
    /// Creates the frame segment (and the detections channel when vision is enabled), mode
    /// 0600. Holding the instance lock, anything already there was left by a tree that died.
    fn create(config: &Config) -> anyhow::Result<Segments> {
        let frames = billiards_supervised::frames_segment(config)?;
        create_fresh(&frames.location, &frames.spec)?;
        let mut segments = Segments {
            frames: frames.location,
            detections: None,
        };
        if config.vision.enabled {
            let det = billiards_supervised::detections_channel(config)?;
            create_fresh(&det.location, &det.spec)?;
            segments.detections = Some(det.location);
        }
        Ok(segments)
    }
}

/// A live process that still uses the segment (its writer or a reader), if any. Waits up to
/// two seconds for users to go: the workers of a supervisor that was just SIGKILLed take up to
/// a second to notice and exit.
fn live_user(loc: &SegmentLocation) -> Option<(&'static str, u32)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let snap = shm_core::Monitor::open(loc).ok()?.snapshot();
        let user = if snap.writer.alive && snap.writer.pid != 0 {
            Some(("writer", snap.writer.pid))
        } else {
            snap.readers
                .iter()
                .find(|r| r.alive)
                .map(|r| ("reader", r.pid))
        };
        match user {
            Some(u) if std::time::Instant::now() >= deadline => return Some(u),
            Some(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
            None => return None,
        }
    }
}

fn create_fresh(loc: &SegmentLocation, spec: &SegmentSpec) -> anyhow::Result<()> {
    if let (Some(path), Some((role, pid))) = (loc.existing_path(), live_user(loc)) {
        anyhow::bail!(
            "segment {} at {} is in use by a live {role} (pid {pid}): another billiards-supervisor \
             tree uses the same name; give each tree its own video.shm_name and \
             vision.detections_shm_name, or stop the other tree",
            loc.name(),
            path.display()
        );
    }
    let mode = match loc.existing_path() {
        Some(path) => {
            tracing::warn!(
                "found a stale segment {} at {} (left by a supervisor that died); recreating it",
                loc.name(),
                path.display()
            );
            CreateMode::ReplaceExisting
        }
        None => CreateMode::Exclusive,
    };
    let info = shm_core::create(loc, spec, mode)?;
    tracing::info!(
        "created segment {} at {} ({} bytes, {} slots)",
        info.name,
        info.path.display(),
        info.size_bytes,
        info.spec.slot_count
    );
    Ok(())
}

impl Drop for Segments {
    fn drop(&mut self) {
        for loc in std::iter::once(&self.frames).chain(self.detections.as_ref()) {
            match shm_core::unlink(loc) {
                Ok(true) => tracing::info!("unlinked segment {}", loc.name()),
                Ok(false) => {}
                Err(e) => tracing::error!("{e}"),
            }
        }
    }
}

/// The executable of every enabled worker; a missing one is a clear error.
fn resolve_binaries(config: &Config) -> anyhow::Result<[Option<PathBuf>; 3]> {
    let exe = std::env::current_exe().context("cannot find the supervisor's own executable")?;
    let dir = config.worker_dir(&exe);
    let enabled = |w: WorkerName| match w {
        WorkerName::Video => true,
        WorkerName::Vision => config.vision.enabled,
        WorkerName::Stream => config.stream.enabled,
    };
    let mut out: [Option<PathBuf>; 3] = Default::default();
    for w in WorkerName::ALL.into_iter().filter(|&w| enabled(w)) {
        let path = dir.join(w.binary());
        if !path.is_file() {
            anyhow::bail!(
                "the {w} worker's executable {} does not exist: build it (cargo build -p {}) or set \
                 supervisor.worker_dir to the directory that holds it",
                path.display(),
                w.binary()
            );
        }
        check_binary(&path)?;
        out[w.index()] = Some(path);
    }
    Ok(out)
}

/// Refuses a worker binary, or the directory that holds it, that another user could have
/// planted or changed: we would run their code. Checked at start and before every spawn.
pub fn check_binary(path: &Path) -> Result<(), config::ConfigError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        config::trust::check_path(dir, "worker directory")?;
    }
    config::trust::check_path(path, "worker binary")
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// How long a stopping supervisor waits for answers already decided to reach their clients.
const ANSWER_FLUSH: std::time::Duration = std::time::Duration::from_millis(250);

/// Runs the tree in the foreground until `shutdown` (or a `stop` request) ends it, then stops
/// every worker in order and removes the segments, the socket and the runtime files.
///
/// Drive it on a current-thread runtime on the main thread (see [`spawn::spawn_worker`] for
/// why the spawning thread must live as long as the supervisor).
pub async fn run(loaded: Loaded, mut shutdown: Shutdown) -> anyhow::Result<()> {
    let config = loaded.config;
    let socket = absolute(&config.control_socket_path());
    let instance = instance::Instance::acquire(&socket)?;
    let binaries = resolve_binaries(&config)?;
    let mut effective = config.clone();
    effective.supervisor.control_socket = socket.display().to_string();
    instance.write_config(&effective.to_toml())?;
    let segments = Segments::create(&config)?;
    let frames =
        Monitor::open(&segments.frames).context("cannot observe the frame segment just created")?;
    let detections = match &segments.detections {
        Some(loc) => {
            Some(Monitor::open(loc).context("cannot observe the detections segment just created")?)
        }
        None => None,
    };
    let listener = server::bind(&socket)
        .with_context(|| format!("cannot listen on the control socket {}", socket.display()))?;
    let (control_tx, control_rx) = mpsc::channel(16);
    let (answered_tx, mut answered_rx) = mpsc::channel::<()>(1);
    let server = tokio::spawn(server::serve(listener, control_tx, answered_tx));
    let (exit_tx, exit_rx) = mpsc::unbounded_channel();
    let config_origin = match loaded.origin.path() {
        Some(p) => absolute(p).display().to_string(),
        None => loaded.origin.display(),
    };
    tracing::info!(
        pid = std::process::id(),
        "billiards-supervisor starting (config {config_origin}, control socket {})",
        socket.display()
    );
    let setup = tree::TreeSetup {
        config,
        config_origin,
        socket: socket.clone(),
        config_file: instance.config_file().to_path_buf(),
        binaries,
    };
    let mut tree = tree::Tree::new(
        setup,
        frames,
        detections,
        exit_tx,
        notify::Notifier::from_env(),
    );
    tree.run(&mut shutdown, exit_rx, control_rx).await;
    server.abort();
    // The accept loop's sender is gone once the task is; then wait (briefly: a client that
    // never sends its request must not hold the exit) for the answers already decided, above
    // all the `stop` that ended the loop, to be written.
    let _ = server.await;
    let _ = tokio::time::timeout(ANSWER_FLUSH, answered_rx.recv()).await;
    drop(tree);
    drop(segments);
    drop(instance);
    tracing::info!("stopped cleanly");
    Ok(())
}
