//! Starting one worker process: its own process group, the parent-death signal, output
//! passed through line by line with the worker's name, and a task that reaps it.
//!
//! Signals go only to a group whose leader is still our unreaped child: the reaper task waits
//! for the exit without reaping (a pidfd, else `waitid(WNOWAIT)`), kills what is left of the
//! group while the zombie still pins the pid (and so the group id), marks the group as gone,
//! and only then reaps. After that nobody signals the id again, so a process that reused the
//! pid is never hit.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc::UnboundedSender;

use crate::exit::{ExitReasonScanner, ExitStatus};
use crate::notify::NOTIFY_ENV;
use crate::output;
use crate::worker::WorkerName;

/// A line longer than this is passed through in pieces (bounds our memory per worker).
const MAX_LINE: usize = 16 * 1024;

/// How long to wait for a dead worker's output pipes to drain (a grandchild may hold them).
const DRAIN_TIMEOUT: Duration = Duration::from_millis(500);

/// The process group of a spawned worker (its pid is the group id: `process_group(0)`).
/// Signals are sent only while the leader is an unreaped child of ours.
#[derive(Debug, Clone)]
pub struct Group {
    pid: u32,
    /// Set by the reaper task just before it reaps the leader; from then on the id may be
    /// reused by an unrelated process.
    reaped: Arc<AtomicBool>,
}

impl Group {
    /// The worker's pid, also the group id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the leader has been reaped (the id is no longer ours).
    pub fn is_reaped(&self) -> bool {
        // Acquire: pairs with the reaper's Release store made before it reaps.
        self.reaped.load(Ordering::Acquire)
    }

    /// Sends `sig` to the whole group, unless the leader has been reaped. Returns whether a
    /// signal was sent. There is no fallback to `kill(pid)`: the worker is always a group
    /// leader, and once the group is empty its id is not ours to signal.
    pub fn signal(&self, sig: libc::c_int) -> bool {
        if self.is_reaped() {
            return false;
        }
        let Ok(pgid) = libc::pid_t::try_from(self.pid) else {
            return false;
        };
        if pgid <= 1 {
            return false;
        }
        // SAFETY: killpg takes plain integers. The leader is not reaped (checked above, and
        // only the reaper task on this same current-thread runtime reaps it), so the group id
        // still names our worker's group; an empty group only yields ESRCH.
        unsafe { libc::killpg(pgid, sig) == 0 }
    }
}

/// Waits, without reaping, until the child `pid` has exited (it is then a zombie, still
/// ours). Uses a pidfd when the kernel has one, else polls `waitid(WNOWAIT)`.
async fn exited_unreaped(pid: u32) {
    if let Some(fd) = pidfd_open(pid) {
        // SAFETY: `fd` is an OwnedFd that the AsyncFd owns from here on; nothing else closes
        // or replaces it while it is registered.
        if let Ok(fd) = unsafe { tokio::io::unix::AsyncFd::register(fd) } {
            // A pidfd turns readable when the process exits.
            if fd.readable().await.is_ok() {
                return;
            }
        }
    }
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tick.tick().await;
        if exited_now(pid) {
            return;
        }
    }
}

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    let fd = i32::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: the syscall just returned this descriptor; we are its only owner.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether the child `pid` has exited, leaving it unreaped (`WNOWAIT`).
fn exited_now(pid: u32) -> bool {
    // SAFETY: siginfo_t is plain data; all zeroes is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid writes only into `info`, which lives across the call.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT | libc::WNOHANG,
        )
    };
    // SAFETY: waitid filled `info` (or left it zeroed, which reads as pid 0).
    rc != 0 || unsafe { info.si_pid() } != 0
}

/// What the reaper task reports.
#[derive(Debug)]
pub struct Exited {
    /// Which worker.
    pub worker: WorkerName,
    /// Which spawn of it (ids grow with every spawn).
    pub spawn_id: u64,
    /// How it ended.
    pub status: ExitStatus,
    /// The text after `exit-reason: ` of the last line that had it.
    pub exit_reason: Option<String>,
}

/// Spawns `binary --config <config_file> --supervised` for `worker` and a task that reaps it
/// and sends [`Exited`] on `exited`. Returns its process group (the pid is the group id).
///
/// Must be called from a thread that lives as long as the supervisor: the parent-death
/// signal fires when the *thread* that forked the child exits, so the supervisor runs its
/// event loop on the main thread (a current-thread runtime) and never spawns from tokio's
/// blocking pool, whose threads end after a few idle seconds.
pub fn spawn_worker(
    worker: WorkerName,
    binary: &Path,
    config_file: &Path,
    spawn_id: u64,
    start_at_ns: Option<u64>,
    exited: UnboundedSender<Exited>,
) -> io::Result<Group> {
    // Again at every spawn: the files may have changed since the start.
    crate::check_binary(binary)
        .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e.to_string()))?;
    let mut cmd = tokio::process::Command::new(binary);
    if let Some(at) = start_at_ns {
        cmd.env(config::START_AT_ENV, at.to_string());
    }
    cmd.arg("--config")
        .arg(config_file)
        .arg("--supervised")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    for var in NOTIFY_ENV {
        cmd.env_remove(var);
    }
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe calls (prctl, and getppid through nix, a plain syscall wrapper); it allocates nothing (the error is built from
    // a raw errno, which does not allocate).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The supervisor may have died between fork and prctl; then no signal would ever
            // come, so check that our parent is still the one that forked us.
            if nix::unistd::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| io::Error::other("spawned worker has no pid"))?;
    let group = Group {
        pid,
        reaped: Arc::new(AtomicBool::new(false)),
    };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let reaper_group = group.clone();
    tokio::spawn(async move {
        let out = stdout.map(|s| tokio::spawn(forward(worker, s, false)));
        let err = stderr.map(|s| tokio::spawn(forward(worker, s, true)));
        exited_unreaped(pid).await;
        // The leader is a zombie, so the group id cannot have been reused: end whatever is
        // left in the group (a grandchild would hold our pipes open) while that is safe.
        reaper_group.signal(libc::SIGKILL);
        // Release: pairs with Group::is_reaped; nothing signals the id after this.
        reaper_group.reaped.store(true, Ordering::Release);
        // Always reap: a dropped Child would leave the reaping to tokio's orphan queue.
        let status = match child.wait().await {
            Ok(s) => ExitStatus::from(s),
            Err(e) => {
                tracing::error!(worker = %worker, pid, "cannot wait for the worker: {e}");
                ExitStatus {
                    code: None,
                    signal: None,
                    core_dumped: false,
                }
            }
        };
        let mut scanner = ExitReasonScanner::default();
        for task in [out, err].into_iter().flatten() {
            let abort = task.abort_handle();
            match tokio::time::timeout(DRAIN_TIMEOUT, task).await {
                Ok(Ok(s)) => {
                    if let Some(r) = s.take() {
                        scanner.line(&format!("{}{r}", config::exit_codes::EXIT_REASON_TAG));
                    }
                }
                _ => abort.abort(),
            }
        }
        let _ = exited.send(Exited {
            worker,
            spawn_id,
            status,
            exit_reason: scanner.take(),
        });
    });
    Ok(group)
}

/// Passes a worker's output through, each line prefixed with `[name] `, and remembers its
/// exit reason.
async fn forward(
    worker: WorkerName,
    pipe: impl AsyncRead + Unpin,
    to_stderr: bool,
) -> ExitReasonScanner {
    let mut reader = BufReader::with_capacity(8 * 1024, pipe);
    let mut scanner = ExitReasonScanner::default();
    let mut line: Vec<u8> = Vec::new();
    while let Ok(buf) = reader.fill_buf().await {
        if buf.is_empty() {
            if !line.is_empty() {
                emit(worker, &line, to_stderr, &mut scanner);
            }
            break;
        }
        let room = MAX_LINE - line.len();
        let (take, complete) = match buf.iter().take(room).position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len().min(room), line.len() + buf.len() >= MAX_LINE),
        };
        line.extend_from_slice(&buf[..take]);
        reader.consume(take);
        if complete {
            emit(worker, &line, to_stderr, &mut scanner);
            line.clear();
        }
    }
    scanner
}

fn emit(worker: WorkerName, raw: &[u8], to_stderr: bool, scanner: &mut ExitReasonScanner) {
    let text = String::from_utf8_lossy(raw);
    let text = text.trim_end_matches(['\n', '\r']);
    scanner.line(text);
    let tagged = format!("[{worker}] {text}\n");
    // Queued, never a blocking write: a full log pipe must not stall the event loop (the
    // watchdog and the control socket run on it). Under pressure the line is dropped and
    // counted.
    let stream = if to_stderr {
        output::Stream::Stderr
    } else {
        output::Stream::Stdout
    };
    output::write_line(stream, tagged.into_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test(flavor = "current_thread")]
    async fn a_reaped_worker_group_is_never_signalled() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let group = spawn_worker(
            WorkerName::Video,
            Path::new("/bin/true"),
            Path::new("/nonexistent.toml"),
            1,
            None,
            tx,
        )
        .unwrap();
        let e = rx.recv().await.unwrap();
        assert_eq!(e.status.code, Some(0));
        // Reaped: its id may belong to anyone now, so nothing is sent (signal 0 would
        // otherwise report whether some process or group has that id).
        assert!(group.is_reaped());
        assert!(!group.signal(0));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_live_worker_group_is_signalled() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("worker");
        std::fs::write(&script, "#!/bin/sh\nexec sleep 1000\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let group = spawn_worker(
            WorkerName::Stream,
            &script,
            Path::new("/nonexistent.toml"),
            2,
            None,
            tx,
        )
        .unwrap();
        assert!(!group.is_reaped());
        assert!(group.signal(libc::SIGTERM));
        let e = rx.recv().await.unwrap();
        assert_eq!(e.status.signal, Some(libc::SIGTERM));
        assert!(group.is_reaped());
        assert!(!group.signal(libc::SIGTERM));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_binary_writable_by_others_is_not_spawned() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("worker");
        std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o777)).unwrap();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let e = spawn_worker(
            WorkerName::Video,
            &script,
            Path::new("/nonexistent.toml"),
            3,
            None,
            tx,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("refusing worker binary"), "{e}");
        assert!(e.contains("mode 777"), "{e}");
    }
}
