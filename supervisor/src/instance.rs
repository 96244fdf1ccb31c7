//! One supervisor per control socket: the lock (pid) file, the socket and the runtime config
//! file beside it, and their removal on every exit path.
//!
//! The pid file `<socket>.pid` is held with `flock` for the supervisor's whole life, so the
//! kernel releases it when the supervisor dies, however it dies. Whoever takes the lock owns
//! the name: a socket or config file found then was left by a supervisor that died, and is
//! replaced (and said so in the log).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::stat::Mode;
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

/// Why a directory with owner `uid` and `mode` may not hold our runtime files, for a process
/// running as `me`; `None` when it may. `sticky_ok`: a directory writable by others is
/// acceptable when its sticky bit is set (like `/tmp`), since nobody else can then remove or
/// rename our entries.
fn dir_problem(uid: u32, mode: u32, me: u32, sticky_ok: bool) -> Option<String> {
    if uid != me && uid != 0 {
        return Some(format!("owned by uid {uid}, not by this user (uid {me})"));
    }
    if mode & 0o022 != 0 && !(sticky_ok && mode & 0o1000 != 0) {
        return Some(format!(
            "writable by other users (mode {:o})",
            mode & 0o7777
        ));
    }
    None
}

/// Opens the runtime directory `dir` and checks it, so every later file operation goes
/// through the returned descriptor (`*at()` calls) and cannot be redirected by a swapped path.
///
/// Refused: a symlink as the directory itself (checked with `lstat`, and the open uses
/// `O_NOFOLLOW`, so a symlink swapped in between fails too), a directory owned by another user
/// (root excepted) or writable by others without the sticky bit, and an ancestor owned by
/// another user or writable by others without the sticky bit (whoever can write an ancestor
/// can rename the directory away and put their own in its place).
fn check_private(dir: &Path) -> Result<File, InstanceError> {
    let unsafe_dir = |path: &Path, why: String| InstanceError::UnsafeDirectory {
        path: path.to_path_buf(),
        why,
    };
    let link = || {
        unsafe_dir(
            dir,
            "it is a symbolic link, which could be pointed elsewhere; use the real directory"
                .to_string(),
        )
    };
    let lmeta = std::fs::symlink_metadata(dir).map_err(io_err(dir))?;
    if lmeta.file_type().is_symlink() {
        return Err(link());
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::ENOTDIR) => link(),
            _ => io_err(dir)(e),
        })?;
    let me = nix::unistd::geteuid().as_raw();
    // fstat of the open directory: what we checked is what we use.
    let meta = file.metadata().map_err(io_err(dir))?;
    if let Some(why) = dir_problem(meta.uid(), meta.mode(), me, true) {
        return Err(unsafe_dir(dir, why));
    }
    for ancestor in dir
        .ancestors()
        .skip(1)
        .filter(|a| !a.as_os_str().is_empty())
    {
        let meta = std::fs::metadata(ancestor).map_err(io_err(ancestor))?;
        if let Some(why) = dir_problem(meta.uid(), meta.mode(), me, true) {
            return Err(unsafe_dir(
                dir,
                format!("its ancestor {} is {why}", ancestor.display()),
            ));
        }
    }
    Ok(file)
}

/// The last component of a runtime file's path (all of them live in the checked directory).
fn file_name(path: &Path) -> &std::ffi::OsStr {
    path.file_name().unwrap_or(path.as_os_str())
}

/// Opens `name` in the directory `dir` with `flags` (always `O_NOFOLLOW | O_CLOEXEC`), mode
/// 0600 when created.
fn open_at(dir: &File, name: &std::ffi::OsStr, flags: OFlag) -> nix::Result<File> {
    let fd = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        name,
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )?;
    // SAFETY: openat just returned this descriptor; nothing else owns it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Removes `name` from the directory `dir` (`unlinkat`, never following a path).
fn unlink_at(dir: &File, name: &std::ffi::OsStr) -> nix::Result<()> {
    nix::unistd::unlinkat(
        Some(dir.as_raw_fd()),
        name,
        nix::unistd::UnlinkatFlags::NoRemoveDir,
    )
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
    /// The checked runtime directory; every file in it is created and removed through this
    /// descriptor.
    dir: File,
    /// Held for the supervisor's life; closing it releases the lock.
    lock: Option<Flock<File>>,
}

impl Instance {
    /// Takes the lock for `socket`, or says who holds it. Cleans up (and logs) a stale socket
    /// and pid file of a supervisor that died.
    pub fn acquire(socket: &Path) -> Result<Instance, InstanceError> {
        let dir_path = socket
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if std::fs::symlink_metadata(dir_path).is_err() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir_path)
                .map_err(io_err(dir_path))?;
        }
        let dir = check_private(dir_path)?;
        let pid_file = pid_file_for(socket);
        let pid_name = file_name(&pid_file);
        let mut attempts = 0;
        let mut lock = loop {
            attempts += 1;
            let f = open_at(&dir, pid_name, OFlag::O_RDWR | OFlag::O_CREAT)
                .map_err(|e| io_err(&pid_file)(e.into()))?;
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
            // lock on an unlinked file protects nothing, so open the name again.
            let now = nix::sys::stat::fstatat(
                Some(dir.as_raw_fd()),
                pid_name,
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            );
            let same = match (f.metadata(), now) {
                (Ok(a), Ok(b)) => a.ino() == b.st_ino && a.dev() == b.st_dev,
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
            unlink_at(&dir, file_name(socket)).map_err(|e| io_err(socket)(e.into()))?;
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
            dir,
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
        let name = file_name(path);
        // A stale one (left by a supervisor that was SIGKILLed) holds an old token: replace
        // it, never write through whatever sits at the name.
        let _ = unlink_at(&self.dir, name);
        let mut f = open_at(
            &self.dir,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
        )
        .map_err(|e| io_err(path)(e.into()))?;
        f.write_all(text.as_bytes()).map_err(io_err(path))?;
        Ok(())
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        for p in [&self.socket, &self.config_file, &self.pid_file] {
            match unlink_at(&self.dir, file_name(p)) {
                Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
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

    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn dir_rules() {
        assert_eq!(dir_problem(1000, 0o40700, 1000, true), None);
        assert_eq!(dir_problem(0, 0o40755, 1000, true), None);
        assert_eq!(dir_problem(0, 0o41777, 1000, true), None, "/tmp is fine");
        assert!(dir_problem(0, 0o41777, 1000, false).is_some());
        let other = dir_problem(1001, 0o40700, 1000, true).unwrap();
        assert!(other.contains("owned by uid 1001"), "{other}");
        let w = dir_problem(1000, 0o40775, 1000, true).unwrap();
        assert!(w.contains("writable by other users (mode 775)"), "{w}");
    }

    #[test]
    fn check_private_accepts_a_private_directory() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir(&run).unwrap();
        chmod(&run, 0o700);
        let f = check_private(&run).unwrap();
        assert!(f.metadata().unwrap().is_dir());
    }

    #[test]
    fn check_private_refuses_a_world_writable_directory() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir(&run).unwrap();
        chmod(&run, 0o777);
        let e = check_private(&run).unwrap_err().to_string();
        assert!(e.starts_with(&run.display().to_string()), "{e}");
        assert!(e.contains("writable by other users (mode 777)"), "{e}");
    }

    #[test]
    fn check_private_refuses_a_symlinked_directory() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        chmod(&real, 0o700);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = check_private(&link).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        // And through acquire: no file is created in the symlink's target.
        let e = Instance::acquire(&link.join("supervisor.sock"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_dir(&real).unwrap().count(), 0);
    }

    #[test]
    fn check_private_refuses_a_writable_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        let run = open.join("run");
        std::fs::create_dir_all(&run).unwrap();
        chmod(&run, 0o700);
        chmod(&open, 0o777);
        let e = check_private(&run).unwrap_err().to_string();
        assert!(
            e.contains(&format!("its ancestor {} is writable", open.display())),
            "{e}"
        );
        // With the sticky bit (like /tmp) nobody else can rename our directory away.
        chmod(&open, 0o1777);
        check_private(&run).unwrap();
    }

    #[test]
    fn a_planted_symlink_is_not_followed_for_the_runtime_files() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("supervisor.sock");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, config_file_for(&sock)).unwrap();
        let inst = Instance::acquire(&sock).unwrap();
        inst.write_config("[video]\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        let meta = std::fs::symlink_metadata(inst.config_file()).unwrap();
        assert!(meta.is_file());
        drop(inst);
        // The pid file name as a symlink: refused, the target untouched.
        std::os::unix::fs::symlink(&victim, pid_file_for(&sock)).unwrap();
        assert!(Instance::acquire(&sock).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
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
