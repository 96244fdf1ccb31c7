//! Starting one worker process: its own process group, the parent-death signal, output
//! passed through line by line with the worker's name, and a task that reaps it.

use std::io::{self, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc::UnboundedSender;

use crate::exit::{ExitReasonScanner, ExitStatus};
use crate::notify::NOTIFY_ENV;
use crate::worker::WorkerName;

/// A line longer than this is passed through in pieces (bounds our memory per worker).
const MAX_LINE: usize = 16 * 1024;

/// How long to wait for a dead worker's output pipes to drain (a grandchild may hold them).
const DRAIN_TIMEOUT: Duration = Duration::from_millis(500);

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
/// and sends [`Exited`] on `exited`. Returns the pid (also the process-group id).
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
) -> io::Result<u32> {
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
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    tokio::spawn(async move {
        let out = stdout.map(|s| tokio::spawn(forward(worker, s, false)));
        let err = stderr.map(|s| tokio::spawn(forward(worker, s, true)));
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
    Ok(pid)
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
    // A full or closed log pipe must not take the supervisor down.
    let _ = if to_stderr {
        io::stderr().lock().write_all(tagged.as_bytes())
    } else {
        io::stdout().lock().write_all(tagged.as_bytes())
    };
}
