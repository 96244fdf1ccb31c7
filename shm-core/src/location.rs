//! Where a segment lives, and opening its backing object.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::mman::shm_open;
use nix::sys::stat::Mode;

use crate::NameError;

/// Set to `1` to make every process use the file-backed fallback instead of `/dev/shm`
/// (tests; machines whose `/dev/shm` is broken in ways `shm_open` does not report).
pub const FORCE_FALLBACK_ENV: &str = "BILLIARDS_SHM_FORCE_FALLBACK";

/// A segment's name and where it may live: the POSIX shared-memory object `/<name>`
/// (`/dev/shm/<name>`), or the file `<fallback_dir>/<name>` when `/dev/shm` is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentLocation {
    name: String,
    fallback_dir: PathBuf,
    force_fallback: bool,
}

/// Which object a segment's name refers to: its device and inode. A segment that is unlinked
/// and created again under the same name is another object; a writer that restarts on the
/// existing segment keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ObjectId {
    dev: u64,
    ino: u64,
}

impl ObjectId {
    /// The object `stat` describes.
    // The widths of st_dev and st_ino differ between targets; both fit in u64.
    #[allow(clippy::unnecessary_cast)]
    pub(crate) fn of(st: &nix::sys::stat::FileStat) -> ObjectId {
        ObjectId {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
        }
    }
}

/// An opened backing object.
pub(crate) struct Backing {
    pub fd: OwnedFd,
    pub path: PathBuf,
    pub fallback: bool,
}

impl SegmentLocation {
    /// Checks the name (letters, digits, `_`, `-`, `.`; at most 200 bytes; no leading `.`).
    pub fn new(name: &str, fallback_dir: impl Into<PathBuf>) -> Result<SegmentLocation, NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > 200 {
            return Err(NameError::TooLong {
                name: name.into(),
                len: name.len(),
            });
        }
        if name.starts_with('.')
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(NameError::BadChar { name: name.into() });
        }
        let force_fallback = std::env::var(FORCE_FALLBACK_ENV).is_ok_and(|v| v == "1");
        Ok(SegmentLocation {
            name: name.into(),
            fallback_dir: fallback_dir.into(),
            force_fallback,
        })
    }

    /// The same location, always using the file-backed fallback.
    pub fn with_forced_fallback(mut self) -> SegmentLocation {
        self.force_fallback = true;
        self
    }

    /// The segment name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/dev/shm/<name>`.
    pub fn shm_path(&self) -> PathBuf {
        Path::new("/dev/shm").join(&self.name)
    }

    /// `<fallback_dir>/<name>`.
    pub fn fallback_path(&self) -> PathBuf {
        self.fallback_dir.join(&self.name)
    }

    /// Whether only the fallback is used.
    pub fn forced_fallback(&self) -> bool {
        self.force_fallback
    }

    /// Where the segment exists now, if anywhere.
    pub fn existing_path(&self) -> Option<PathBuf> {
        [self.shm_path(), self.fallback_path()]
            .into_iter()
            .find(|p| p.exists())
    }

    /// The object the name refers to now, looked up the way [`Self::open_backing`] opens it
    /// (the shm object first unless the fallback is forced, then the fallback file); `None`
    /// when there is none.
    pub(crate) fn current_object(&self) -> Option<ObjectId> {
        let stat = |p: PathBuf| nix::sys::stat::stat(&p).ok().map(|st| ObjectId::of(&st));
        if !self.force_fallback {
            if let Some(id) = stat(self.shm_path()) {
                return Some(id);
            }
        }
        stat(self.fallback_path())
    }

    fn shm_object(&self) -> String {
        format!("/{}", self.name)
    }

    /// Creates the backing object exclusively with mode 0600. `Err(AlreadyExists)` when it
    /// exists; falls back to the file when `/dev/shm` is unusable.
    pub(crate) fn create_backing(&self) -> Result<Backing, (PathBuf, &'static str, io::Error)> {
        if !self.force_fallback {
            let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR;
            match shm_open(
                self.shm_object().as_str(),
                flags,
                Mode::S_IRUSR | Mode::S_IWUSR,
            ) {
                Ok(fd) => {
                    return Ok(Backing {
                        fd,
                        path: self.shm_path(),
                        fallback: false,
                    })
                }
                Err(Errno::EEXIST) => {
                    return Err((
                        self.shm_path(),
                        "shm_open",
                        io::Error::from(io::ErrorKind::AlreadyExists),
                    ))
                }
                // Any other failure means /dev/shm is unusable here: use the file fallback.
                Err(_) => {}
            }
        }
        let path = self.fallback_path();
        // Private to this user: the segment files in it are 0600 anyway, but a shared
        // directory would let others see which segments exist.
        if let Err(e) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.fallback_dir)
        {
            return Err((self.fallback_dir.clone(), "create directory", e));
        }
        match File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => Ok(Backing {
                fd: f.into(),
                path,
                fallback: true,
            }),
            Err(e) => Err((path, "create", e)),
        }
    }

    /// Opens an existing backing object read-write: the shm object, else the fallback file.
    /// `Err` with kind NotFound when neither exists.
    pub(crate) fn open_backing(&self) -> Result<Backing, (PathBuf, io::Error)> {
        if !self.force_fallback {
            match shm_open(self.shm_object().as_str(), OFlag::O_RDWR, Mode::empty()) {
                Ok(fd) => {
                    return Ok(Backing {
                        fd,
                        path: self.shm_path(),
                        fallback: false,
                    })
                }
                Err(Errno::ENOENT) => {}
                // /dev/shm unusable, but a fallback file is there: use it below.
                Err(_) if self.fallback_path().exists() => {}
                Err(e) => return Err((self.shm_path(), io::Error::from(e))),
            }
        }
        let path = self.fallback_path();
        match File::options().read(true).write(true).open(&path) {
            Ok(f) => Ok(Backing {
                fd: f.into(),
                path,
                fallback: true,
            }),
            Err(e) => Err((path, e)),
        }
    }

    /// Removes the shm object and the fallback file; true if anything was removed.
    pub(crate) fn remove(&self) -> Result<bool, (PathBuf, io::Error)> {
        let mut removed = false;
        if !self.force_fallback {
            match nix::sys::mman::shm_unlink(self.shm_object().as_str()) {
                Ok(()) => removed = true,
                Err(Errno::ENOENT) => {}
                // No usable /dev/shm: there is nothing there to remove.
                Err(Errno::ENOSYS) => {}
                Err(e) => return Err((self.shm_path(), io::Error::from(e))),
            }
        }
        match std::fs::remove_file(self.fallback_path()) {
            Ok(()) => removed = true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err((self.fallback_path(), e)),
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(SegmentLocation::new("billiards_video", "/tmp").is_ok());
        assert!(SegmentLocation::new("a.b-c_1", "/tmp").is_ok());
        assert_eq!(SegmentLocation::new("", "/tmp"), Err(NameError::Empty));
        assert!(matches!(
            SegmentLocation::new("a/b", "/tmp"),
            Err(NameError::BadChar { .. })
        ));
        assert!(matches!(
            SegmentLocation::new(".x", "/tmp"),
            Err(NameError::BadChar { .. })
        ));
        assert!(matches!(
            SegmentLocation::new("..", "/tmp"),
            Err(NameError::BadChar { .. })
        ));
        assert!(matches!(
            SegmentLocation::new(&"x".repeat(201), "/tmp"),
            Err(NameError::TooLong { len: 201, .. })
        ));
    }

    #[test]
    fn paths() {
        let l = SegmentLocation::new("seg", "/var/tmp/x").unwrap();
        assert_eq!(l.shm_path(), PathBuf::from("/dev/shm/seg"));
        assert_eq!(l.fallback_path(), PathBuf::from("/var/tmp/x/seg"));
    }
}
