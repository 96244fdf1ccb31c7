//! Fixtures for whole-tree process tests: run the real binaries in a private temp dir with
//! unique segment names, a private control socket and a free port, and leave nothing behind.
//!
//! This crate knows the product only from the outside (the SPEC's commands, config and status
//! JSON, plus `supervisor::control` to ask the supervisor). Every guard here cleans
//! up in `Drop`, so a failing test still kills and reaps its processes and unlinks its
//! segments.
//!
//! The binaries are found beside the test executable (`target/<profile>/`, the parent of
//! `deps/`). Cargo does not build other packages' binaries for a test, so build them first:
//! `cargo build -p billiards-supervisor -p billiards-video-worker -p billiards-vision-worker
//! -p billiards-stream-worker -p billiards-tests`.

#![forbid(unsafe_code)]

use std::fs::File;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

pub use config::Config;
pub use supervisor::control::{self, ClientError, Request, Response};
pub use supervisor::status::{Status, WorkerState, WorkerStatus};

/// The directory holding the built binaries: `target/<profile>/`.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe has a parent").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// The path of a built binary; panics with the cargo command that builds it.
pub fn binary(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.is_file(),
        "{} is not built; run `cargo build -p {}` (with --release for benches) first",
        path.display(),
        package_of(name)
    );
    path
}

fn package_of(binary: &str) -> &str {
    match binary {
        "billiards-fake-worker" => "billiards-tests",
        other => other,
    }
}

/// The supervisor and the three real workers.
pub const TREE_BINARIES: [&str; 4] = [
    "billiards-supervisor",
    "billiards-video-worker",
    "billiards-vision-worker",
    "billiards-stream-worker",
];

/// A name unique to this process and call: `prefix_PID_N`.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Polls `f` every 20 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` is a live (not zombie) process.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Pids of live processes whose command line contains `needle`.
pub fn pids_with_arg(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me && pid_alive(pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: libc::c_int) {
    // A vanished pid only yields ESRCH, which a test that signals a dying process ignores.
    if let Ok(sig) = nix::sys::signal::Signal::try_from(sig) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
    }
}

/// Limits how many trees run at once: the machine has two cores and each tree is four
/// processes; too many at once would make every timing in the tests meaningless.
static TREES: Mutex<u32> = Mutex::new(0);
static TREES_FREED: Condvar = Condvar::new();
const MAX_TREES: u32 = 2;

/// Held while a test runs a tree.
pub struct TreePermit(());

impl TreePermit {
    /// Waits for a free place.
    pub fn acquire() -> TreePermit {
        let mut n = TREES.lock().unwrap_or_else(|e| e.into_inner());
        while *n >= MAX_TREES {
            n = TREES_FREED.wait(n).unwrap_or_else(|e| e.into_inner());
        }
        *n += 1;
        TreePermit(())
    }
}

impl Drop for TreePermit {
    fn drop(&mut self) {
        let mut n = TREES.lock().unwrap_or_else(|e| e.into_inner());
        *n -= 1;
        TREES_FREED.notify_one();
    }
}

/// One test's private world: a temp dir (holding the control socket, configs and logs),
/// unique segment names and a free port. Dropping it kills every process whose command line
/// mentions the temp dir (the supervisor's workers get `--config <dir>/...`), unlinks the
/// segments and removes the dir.
pub struct TestEnv {
    dir: tempfile::TempDir,
    /// The frame segment name.
    pub shm_name: String,
    /// The detections segment name.
    pub detections_name: String,
    /// The control socket.
    pub socket: PathBuf,
    /// The stream worker's port.
    pub port: u16,
    /// Where the segments' file-backed fallback would go (inside the temp dir).
    pub fallback_dir: PathBuf,
    /// Directory `supervisor.worker_dir` points at when not the target dir.
    pub worker_dir: Option<PathBuf>,
    _permit: TreePermit,
}

impl TestEnv {
    /// A fresh world for the test `name`.
    pub fn new(name: &str) -> TestEnv {
        let permit = TreePermit::acquire();
        let dir = tempfile::Builder::new()
            .prefix(&format!("billiards-{name}-"))
            .tempdir()
            .expect("create temp dir");
        let tag = unique(name);
        let socket = dir.path().join("supervisor.sock");
        let fallback_dir = dir.path().join("shm");
        std::fs::create_dir_all(&fallback_dir).expect("create fallback dir");
        let mut env = TestEnv {
            shm_name: format!("bt_{tag}_video"),
            detections_name: format!("bt_{tag}_det"),
            socket,
            port: free_port(),
            fallback_dir,
            worker_dir: None,
            dir,
            _permit: permit,
        };
        // A development aid, never set in CI: run the tree tests against the scripted
        // stand-in for all workers ("1") or some ("vision,stream"), e.g. while a worker is
        // being rewritten.
        match std::env::var("BILLIARDS_TESTS_FAKE_WORKERS").as_deref() {
            Ok("1") => env.use_fake_workers(),
            Ok(list) if !list.is_empty() => {
                let roles: Vec<&str> = list.split(',').map(str::trim).collect();
                env.use_fake_workers_for(&roles);
            }
            _ => {}
        }
        env
    }

    /// The temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A small, fast config private to this test: 320x240 synthetic frames at 30 fps, quick
    /// backoff and a short grace. Tests change what they need and [`TestEnv::write_config`] it.
    pub fn config(&self) -> Config {
        let mut c = Config::default();
        c.video.shm_name = self.shm_name.clone();
        c.video.width = 320;
        c.video.height = 240;
        c.video.fps = 30;
        c.video.fallback_dir = self.fallback_dir.display().to_string();
        c.vision.detections_shm_name = self.detections_name.clone();
        c.stream.listen = format!("127.0.0.1:{}", self.port);
        c.supervisor.control_socket = self.socket.display().to_string();
        c.supervisor.shutdown_timeout_sec = 3.0;
        if let Some(d) = &self.worker_dir {
            c.supervisor.worker_dir = d.display().to_string();
        }
        c
    }

    /// Writes `config` to `<dir>/<file>` and returns the path.
    pub fn write_config_as(&self, config: &Config, file: &str) -> PathBuf {
        let path = self.dir().join(file);
        std::fs::write(&path, config.to_toml()).expect("write config");
        path
    }

    /// Writes `config` to `<dir>/billiards.toml` and returns the path.
    pub fn write_config(&self, config: &Config) -> PathBuf {
        self.write_config_as(config, "billiards.toml")
    }

    /// Uses scripted stand-in workers (`billiards-fake-worker` under the three worker names)
    /// instead of the real ones; see `src/bin/fake-worker.rs`.
    pub fn use_fake_workers(&mut self) {
        self.use_fake_workers_for(&["video", "vision", "stream"]);
    }

    /// Uses the stand-in worker for the `roles` listed (`video`, `vision`, `stream`) and the
    /// real binaries for the others.
    pub fn use_fake_workers_for(&mut self, roles: &[&str]) {
        let dir = self.dir().join("worker-bin");
        std::fs::create_dir_all(&dir).expect("create worker-bin");
        for role in ["video", "vision", "stream"] {
            let name = format!("billiards-{role}-worker");
            let link = dir.join(&name);
            let _ = std::fs::remove_file(&link);
            let target = if roles.contains(&role) {
                binary("billiards-fake-worker")
            } else {
                binary(&name)
            };
            std::os::unix::fs::symlink(&target, link).expect("symlink worker");
        }
        self.worker_dir = Some(dir);
    }

    /// Starts `billiards-supervisor start --config <config>`, its output going to a log file
    /// in the temp dir (printed if the test fails).
    pub fn start(&self, config: &Path) -> Proc {
        self.start_with(config, &[])
    }

    /// Like [`TestEnv::start`], with extra environment variables.
    pub fn start_with(&self, config: &Path, env: &[(&str, &str)]) -> Proc {
        let log = self.dir().join(format!("{}.log", unique("supervisor")));
        let mut cmd = Command::new(binary("billiards-supervisor"));
        cmd.arg("start").arg("--config").arg(config);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc::spawn(cmd, &log)
    }

    /// Runs `billiards-supervisor ARGS --config <config>` to completion (at most 60 s).
    pub fn cli(&self, config: &Path, args: &[&str]) -> CliOutput {
        let mut cmd = Command::new(binary("billiards-supervisor"));
        cmd.args(args).arg("--config").arg(config);
        run_cli(cmd)
    }

    /// Asks the supervisor for its status.
    pub fn status(&self) -> Result<Status, ClientError> {
        match control::request(&self.socket, &Request::Status, Duration::from_secs(5))? {
            Response::Status(s) => Ok(*s),
            other => panic!("unexpected answer to status: {other:?}"),
        }
    }

    /// Waits until `pred` holds for the status, and returns that status; panics with the
    /// last status seen after `timeout`.
    pub fn wait_status(
        &self,
        timeout: Duration,
        what: &str,
        mut pred: impl FnMut(&Status) -> bool,
    ) -> Status {
        let mut last = None;
        let found = wait_for(timeout, || {
            let s = self.status().ok()?;
            let ok = pred(&s);
            last = Some(s.clone());
            ok.then_some(s)
        });
        match found {
            Some(s) => s,
            None => panic!(
                "timed out after {:.1}s waiting for: {what}\nlast status: {}",
                timeout.as_secs_f64(),
                last.map_or("(none answered)".into(), |s| serde_json::to_string_pretty(
                    &s
                )
                .unwrap_or_default())
            ),
        }
    }

    /// Waits until every enabled worker is `running`.
    pub fn wait_running(&self, timeout: Duration) -> Status {
        self.wait_status(timeout, "every worker running", |s| {
            !s.workers.is_empty() && s.workers.iter().all(|w| w.state == WorkerState::Running)
        })
    }

    /// Paths where this test's segments could exist (shm and fallback).
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        [&self.shm_name, &self.detections_name]
            .into_iter()
            .flat_map(|n| [PathBuf::from("/dev/shm").join(n), self.fallback_dir.join(n)])
            .collect()
    }

    /// Segments of this test that exist now.
    pub fn leftover_segments(&self) -> Vec<PathBuf> {
        self.segment_paths()
            .into_iter()
            .filter(|p| p.exists())
            .collect()
    }

    /// Live processes started for this test (their command line mentions the temp dir).
    pub fn live_processes(&self) -> Vec<u32> {
        pids_with_arg(&self.dir().display().to_string())
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        for pid in self.live_processes() {
            signal(pid, libc::SIGKILL);
        }
        for p in self.segment_paths() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The outcome of a CLI run.
#[derive(Debug)]
pub struct CliOutput {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs a command to completion with a 60 s limit (then kills it), capturing its output.
pub fn run_cli(mut cmd: Command) -> CliOutput {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    // wait_with_output drains both pipes while waiting, so a chatty command cannot block.
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let result = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(r) => r,
        Err(_) => {
            signal(pid, libc::SIGKILL);
            let _ = waiter.join();
            panic!("cli command did not finish within 60 s: {cmd:?}");
        }
    };
    let _ = waiter.join();
    let Output {
        status,
        stdout,
        stderr,
    } = result.expect("wait for cli command");
    CliOutput {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// A started process: killed (SIGKILL) and reaped when dropped. If the test is failing, its
/// log is printed first.
pub struct Proc {
    child: Option<Child>,
    log: Option<PathBuf>,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr going to `log`.
    pub fn spawn(mut cmd: Command, log: &Path) -> Proc {
        let out = File::create(log).expect("create log");
        let err = out.try_clone().expect("clone log");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
        Proc {
            child: Some(child),
            log: Some(log.to_path_buf()),
        }
    }

    /// Spawns `cmd` with stdout going to `log` and stderr to a pipe that is returned and
    /// never read by the test (a log reader that has stopped).
    pub fn spawn_stderr_unread(mut cmd: Command, log: &Path) -> (Proc, std::process::ChildStderr) {
        let out = File::create(log).expect("create log");
        cmd.stdin(Stdio::null()).stdout(out).stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
        let err = child.stderr.take().expect("stderr pipe");
        (
            Proc {
                child: Some(child),
                log: Some(log.to_path_buf()),
            },
            err,
        )
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends a signal.
    pub fn signal(&self, sig: libc::c_int) {
        signal(self.pid(), sig);
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit code (`None`: still running, or
    /// ended by a signal).
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        self.signal(libc::SIGTERM);
        self.wait_timeout(timeout).and_then(|s| s.code())
    }

    /// Waits for it to exit, at most `timeout`; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        wait_for(timeout, || child.try_wait().ok().flatten())
    }

    /// Everything it printed so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Some(p) = &self.log {
            if let Ok(mut f) = File::open(p) {
                let _ = f.read_to_string(&mut s);
            }
        }
        s
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        if std::thread::panicking() {
            if let Some(p) = &self.log {
                let log = self.log();
                let tail: Vec<&str> = log.lines().rev().take(80).collect();
                eprintln!("---- last lines of {} ----", p.display());
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
                eprintln!("---- end of log ----");
            }
        }
    }
}

/// The frame counter a reader sees: attaches as a reader named `name` and returns frames read
/// so far via [`FrameWatcher::read_new`].
pub struct FrameWatcher {
    reader: shm_core::Reader,
    buf: Vec<u8>,
}

impl FrameWatcher {
    /// Attaches to the test's frame segment (waiting up to 10 s for it).
    pub fn attach(env: &TestEnv, name: &str) -> FrameWatcher {
        let loc = shm_core::SegmentLocation::new(&env.shm_name, env.fallback_dir.clone())
            .expect("segment name");
        let reader = shm_core::Reader::attach(
            &loc,
            shm_core::AttachOptions::new(name, Duration::from_secs(10)),
        )
        .expect("attach to the frame segment");
        FrameWatcher {
            reader,
            buf: Vec::new(),
        }
    }

    /// Waits up to `timeout` for a frame newer than the last one read; returns its number.
    pub fn next_frame(&mut self, timeout: Duration) -> Option<u64> {
        self.next_meta(timeout).map(|m| m.frame_number)
    }

    /// Waits up to `timeout` for a frame newer than the last one read; returns its metadata.
    pub fn next_meta(&mut self, timeout: Duration) -> Option<shm_core::FrameMeta> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            if self
                .reader
                .wait_next(left.min(Duration::from_millis(100)))
                .ok()?
            {
                if let Ok(Some(meta)) = self.reader.read_latest(&mut self.buf) {
                    return Some(meta);
                }
            }
        }
    }

    /// Reads whatever is newest now, without waiting (to catch up before a measurement).
    pub fn catch_up(&mut self) -> Option<shm_core::FrameMeta> {
        self.reader.read_latest(&mut self.buf).ok().flatten()
    }
}
