//! One supervisor per control socket: the lock (pid) file, the socket and the runtime config
//! file beside it, and their removal on every exit path.
//!
//! The pid file `<socket>.pid` is held with `flock` for the supervisor's whole life, so the
//! kernel releases it when the supervisor dies, however it dies. Whoever takes the lock owns
//! the name: a socket or config file found then was left by a supervisor that died, and is
//! replaced (and said so in the log).

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::control::{self, Request, Response};

/// Why this supervisor cannot own the control socket.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// Another supervisor holds the lock (or answers on the socket).
    #[error("billiards-supervisor is already running (pid {}, socket {})", .pid.map_or("unknown".to_string(), |p| p.to_string()), .socket.display())]
    AlreadyRunning {
        /// Its pid, when known.
        pid: Option<u32>,
        /// The control socket.
        socket: PathBuf,
    },
    /// A file or directory next to the socket could not be created or locked.
    #[error("{}: {cause} (check that the directory exists and is writable, or set supervisor.control_socket)", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed (part of the message, so not chained as a source as well).
        cause: io::Error,
    },
    /// The socket's directory could be changed by someone else, who could then swap the
    /// config file the workers load or the socket itself.
    #[error("{}: {why}; remove it (it is recreated with mode 0700) or set supervisor.control_socket to a private directory", .path.display())]
    UnsafeDirectory {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> InstanceError + '_ {
    move |cause| InstanceError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// Refuses a directory owned by another user (root excepted) or writable by others without
/// the sticky bit.
fn check_private(dir: &Path) -> Result<(), InstanceError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).map_err(io_err(dir))?;
    let me = nix::unistd::getuid().as_raw();
    let unsafe_dir = |why: String| InstanceError::UnsafeDirectory {
        path: dir.to_path_buf(),
        why,
    };
    if meta.uid() != me && meta.uid() != 0 {
        return Err(unsafe_dir(format!(
            "owned by uid {}, not by this user (uid {me})",
            meta.uid()
        )));
    }
    let mode = meta.mode();
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(unsafe_dir(format!(
            "writable by other users (mode {:o})",
            mode & 0o7777
        )));
    }
    Ok(())
}

/// `<socket>.pid`: the lock and pid file.
pub fn pid_file_for(socket: &Path) -> PathBuf {
    with_suffix(socket, ".pid")
}

/// `<socket>.config.toml`: the effective config handed to the workers.
pub fn config_file_for(socket: &Path) -> PathBuf {
    with_suffix(socket, ".config.toml")
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// The runtime files of the running supervisor. Dropping it removes the socket, the config
/// file and the pid file (in that order, the lock last), also on a panic or an error path.
#[derive(Debug)]
pub struct Instance {
    socket: PathBuf,
    pid_file: PathBuf,
    config_file: PathBuf,
    /// Held for the supervisor's life; closing it releases the lock.
    lock: Option<Flock<File>>,
}

impl Instance {
    /// Takes the lock for `socket`, or says who holds it. Cleans up (and logs) a stale socket
    /// and pid file of a supervisor that died.
    pub fn acquire(socket: &Path) -> Result<Instance, InstanceError> {
        if let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(io_err(dir))?;
            }
            check_private(dir)?;
        }
        let pid_file = pid_file_for(socket);
        let mut attempts = 0;
        let mut lock = loop {
            attempts += 1;
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&pid_file)
                .map_err(io_err(&pid_file))?;
            let f = match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
                Ok(f) => f,
                Err((_, Errno::EWOULDBLOCK)) => {
                    return Err(InstanceError::AlreadyRunning {
                        pid: running_pid(socket, &pid_file),
                        socket: socket.to_path_buf(),
                    });
                }
                Err((_, e)) => return Err(io_err(&pid_file)(e.into())),
            };
            // The previous owner may have removed the file between our open and our lock; a
            // lock on an unlinked file protects nothing, so open the path again.
            let same = match (f.metadata(), std::fs::metadata(&pid_file)) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if same {
                break f;
            }
            if attempts >= 10 {
                return Err(io_err(&pid_file)(io::Error::other(
                    "the pid file keeps being replaced by another process",
                )));
            }
        };

        let mut previous = String::new();
        let _ = lock.read_to_string(&mut previous);
        if let Ok(pid) = previous.trim().parse::<u32>() {
            tracing::warn!(
                "found a stale pid file {} (pid {pid}): that supervisor is no longer running; taking over",
                pid_file.display()
            );
        }
        if socket.exists() {
            // Nobody holds the lock, so nobody should answer; check anyway rather than steal
            // a socket from a supervisor whose pid file was deleted by hand.
            if let Ok(Response::Pong { pid }) =
                control::request(socket, &Request::Ping, Duration::from_secs(2))
            {
                return Err(InstanceError::AlreadyRunning {
                    pid: Some(pid),
                    socket: socket.to_path_buf(),
                });
            }
            std::fs::remove_file(socket).map_err(io_err(socket))?;
            tracing::warn!(
                "removed a stale control socket {} left by a supervisor that died",
                socket.display()
            );
        }
        let write = lock
            .set_len(0)
            .and_then(|_| lock.rewind())
            .and_then(|_| writeln!(lock, "{}", std::process::id()))
            .and_then(|_| lock.flush());
        write.map_err(io_err(&pid_file))?;
        Ok(Instance {
            socket: socket.to_path_buf(),
            config_file: config_file_for(socket),
            pid_file,
            lock: Some(lock),
        })
    }

    /// The control socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The runtime config file path.
    pub fn config_file(&self) -> &Path {
        &self.config_file
    }

    /// The pid file path.
    pub fn pid_file(&self) -> &Path {
        &self.pid_file
    }

    /// Writes the effective config for the workers (mode 0600, replacing a stale one).
    pub fn write_config(&self, text: &str) -> Result<(), InstanceError> {
        let path = &self.config_file;
        let _ = std::fs::remove_file(path);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io_err(path))?;
        f.write_all(text.as_bytes()).map_err(io_err(path))?;
        Ok(())
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        for p in [&self.socket, &self.config_file, &self.pid_file] {
            match std::fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("cannot remove {}: {e}", p.display()),
            }
        }
        drop(self.lock.take());
    }
}

/// The pid of the supervisor that holds the lock: asked over the socket, else from the file.
fn running_pid(socket: &Path, pid_file: &Path) -> Option<u32> {
    if let Ok(Response::Pong { pid }) =
        control::request(socket, &Request::Ping, Duration::from_secs(2))
    {
        return Some(pid);
    }
    std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()
}

/// The pid written in the pid file next to `socket`, if any (for clients).
pub fn read_pid_file(socket: &Path) -> Option<u32> {
    std::fs::read_to_string(pid_file_for(socket))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_instance_is_refused_with_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("sub/dir/supervisor.sock");
        let first = Instance::acquire(&sock).unwrap();
        assert_eq!(read_pid_file(&sock), Some(std::process::id()));
        let err = Instance::acquire(&sock).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "billiards-supervisor is already running (pid {}, socket {})",
                std::process::id(),
                sock.display()
            )
        );
        first.write_config("[video]\n").unwrap();
        let mode = std::fs::metadata(first.config_file()).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let cfg = first.config_file().to_path_buf();
        drop(first);
        assert!(!pid_file_for(&sock).exists());
        assert!(!cfg.exists());
        let again = Instance::acquire(&sock).unwrap();
        drop(again);
    }

    #[test]
    fn stale_files_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("supervisor.sock");
        // What a SIGKILLed supervisor leaves: a pid file nobody locks and a dead socket.
        std::fs::write(pid_file_for(&sock), "999999\n").unwrap();
        drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
        assert!(sock.exists());
        let inst = Instance::acquire(&sock).unwrap();
        assert!(!sock.exists(), "stale socket removed");
        assert_eq!(read_pid_file(&sock), Some(std::process::id()));
        drop(inst);
    }
}
