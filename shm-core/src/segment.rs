//! Segment lifecycle: create, map an existing one (validated), unlink.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;

use serde::Serialize;

use crate::layout::{Geometry, HEADER_BYTES, MAGIC, READER_CAPACITY, VERSION};
use crate::location::{ObjectId, SegmentLocation};
use crate::sys::{self, Access, Mapping, Ordering};
use crate::{AttachError, CreateError, PixelFormat, SegmentSpec, UnlinkError};

/// What to do when the segment already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateMode {
    /// Fail with [`CreateError::Exists`].
    Exclusive,
    /// Remove it (readers that still map it keep their stale copy) and create a new one.
    ReplaceExisting,
}

/// What a mapped segment says about itself, after validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentInfo {
    /// The segment name.
    pub name: String,
    /// The shm object (`/dev/shm/<name>`) or the fallback file.
    pub path: PathBuf,
    /// Size of the mapping.
    pub size_bytes: usize,
    /// Slots and nominal frame geometry.
    pub spec: SegmentSpec,
    /// Whether this is the file-backed fallback.
    pub fallback: bool,
    /// The object mapped, to tell when the name refers to another one.
    #[serde(skip)]
    pub(crate) object: ObjectId,
}

/// Creates and initialises a segment with mode 0600.
pub fn create(
    loc: &SegmentLocation,
    spec: &SegmentSpec,
    mode: CreateMode,
) -> Result<SegmentInfo, CreateError> {
    let invalid = |reason: String| CreateError::InvalidSpec {
        name: loc.name().into(),
        reason,
    };
    let geometry = Geometry::compute(spec.slot_count, spec.slot_capacity).map_err(invalid)?;
    if let Some(need) = spec.format.frame_bytes(spec.width, spec.height) {
        if need > spec.slot_capacity as u64 {
            return Err(invalid(format!(
                "{}x{} frames need {need} bytes but slots hold {}",
                spec.width, spec.height, spec.slot_capacity
            )));
        }
    }
    let io_err = |(path, op, source): (PathBuf, &'static str, io::Error)| CreateError::Io {
        name: loc.name().into(),
        op,
        path,
        cause: source,
    };
    let backing = match loc.create_backing() {
        Ok(b) => b,
        Err((path, _, e)) if e.kind() == io::ErrorKind::AlreadyExists => {
            if mode == CreateMode::Exclusive {
                return Err(CreateError::Exists {
                    name: loc.name().into(),
                    path,
                });
            }
            unlink(loc).map_err(|e| io_err((e.path, "remove stale", e.cause)))?;
            loc.create_backing().map_err(io_err)?
        }
        Err(e) => return Err(io_err(e)),
    };
    // Readers look in /dev/shm first, so only a leftover fallback file could confuse them
    // later (after this shm object is unlinked); remove it.
    if !backing.fallback {
        let _ = std::fs::remove_file(loc.fallback_path());
    }
    let path = backing.path.clone();
    let fail = |op: &'static str, source: io::Error| {
        let _ = std::fs::remove_file(&path);
        if !backing.fallback {
            let _ = nix::sys::mman::shm_unlink(format!("/{}", loc.name()).as_str());
        }
        CreateError::Io {
            name: loc.name().into(),
            op,
            path: path.clone(),
            cause: source,
        }
    };
    // The umask may have cleared bits of 0600 but never adds any; set it explicitly anyway so
    // the mode does not depend on the caller's umask.
    nix::sys::stat::fchmod(
        backing.fd.as_raw_fd(),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| fail("fchmod", e.into()))?;
    nix::unistd::ftruncate(backing.fd.as_fd(), geometry.total_bytes as i64)
        .map_err(|e| fail("ftruncate", e.into()))?;
    let object = nix::sys::stat::fstat(backing.fd.as_raw_fd())
        .map(|st| ObjectId::of(&st))
        .map_err(|e| fail("fstat", e.into()))?;
    let map =
        Mapping::map(&backing.fd, geometry, Access::ReadWrite).map_err(|e| fail("mmap", e))?;
    let f = &map.header().fixed;
    f.version.store(VERSION, Ordering::Relaxed);
    f.header_bytes.store(HEADER_BYTES as u32, Ordering::Relaxed);
    f.slot_count.store(spec.slot_count, Ordering::Relaxed);
    f.reader_capacity
        .store(READER_CAPACITY as u32, Ordering::Relaxed);
    f.slot_capacity
        .store(geometry.slot_capacity as u64, Ordering::Relaxed);
    f.slot_stride
        .store(geometry.slot_stride as u64, Ordering::Relaxed);
    f.data_offset
        .store(geometry.data_offset as u64, Ordering::Relaxed);
    f.total_bytes
        .store(geometry.total_bytes as u64, Ordering::Relaxed);
    f.width.store(spec.width, Ordering::Relaxed);
    f.height.store(spec.height, Ordering::Relaxed);
    f.format.store(spec.format as u32, Ordering::Relaxed);
    f.created_ns.store(sys::monotonic_ns(), Ordering::Relaxed);
    // Magic last: pairs with the Acquire load in read_raw_header, so whoever sees the magic
    // sees every field above. Until then attach treats the segment as still initialising.
    f.magic.store(MAGIC, Ordering::Release);
    Ok(SegmentInfo {
        name: loc.name().into(),
        path,
        size_bytes: geometry.total_bytes,
        spec: *spec,
        fallback: backing.fallback,
        object,
    })
}

/// Removes the segment (shm object and fallback file); `Ok(true)` if anything was removed.
/// Processes that map it keep their mapping until they drop it.
pub fn unlink(loc: &SegmentLocation) -> Result<bool, UnlinkError> {
    loc.remove().map_err(|(path, source)| UnlinkError {
        name: loc.name().into(),
        path,
        cause: source,
    })
}

/// Why mapping an existing segment failed.
pub(crate) enum MapFailure {
    /// Not there (yet).
    Missing,
    /// There but not initialised yet (size 0 or no magic).
    Initialising,
    /// A final error.
    Fatal(AttachError),
}

/// Opens, validates and maps an existing segment.
pub(crate) fn map_existing(
    loc: &SegmentLocation,
    access: Access,
) -> Result<(Mapping, SegmentInfo), MapFailure> {
    let backing = match loc.open_backing() {
        Ok(b) => b,
        Err((_, e)) if e.kind() == io::ErrorKind::NotFound => return Err(MapFailure::Missing),
        Err((path, source)) => {
            return Err(MapFailure::Fatal(AttachError::Io {
                name: loc.name().into(),
                path,
                cause: source,
            }))
        }
    };
    let path = backing.path.clone();
    let invalid = |reason: String| {
        MapFailure::Fatal(AttachError::Invalid {
            name: loc.name().into(),
            path: path.clone(),
            reason,
        })
    };
    let io_fail = |source: io::Error| {
        MapFailure::Fatal(AttachError::Io {
            name: loc.name().into(),
            path: path.clone(),
            cause: source,
        })
    };
    let st = nix::sys::stat::fstat(backing.fd.as_raw_fd()).map_err(|e| io_fail(e.into()))?;
    let len = st.st_size as u64;
    if len == 0 {
        return Err(MapFailure::Initialising);
    }
    if len < HEADER_BYTES as u64 {
        return Err(invalid(format!(
            "only {len} bytes, smaller than its {HEADER_BYTES}-byte header"
        )));
    }
    let raw = sys::read_raw_header(&backing.fd).map_err(io_fail)?;
    if raw.magic == 0 {
        return Err(MapFailure::Initialising);
    }
    let (geometry, format) = Geometry::validate(&raw, len).map_err(invalid)?;
    let map = Mapping::map(&backing.fd, geometry, access).map_err(io_fail)?;
    let info = SegmentInfo {
        name: loc.name().into(),
        path: backing.path,
        size_bytes: geometry.total_bytes,
        spec: SegmentSpec {
            slot_count: raw.slot_count,
            slot_capacity: geometry.slot_capacity,
            width: raw.width,
            height: raw.height,
            format,
        },
        fallback: backing.fallback,
        object: ObjectId::of(&st),
    };
    Ok((map, info))
}

/// Maps an existing segment, waiting up to `timeout` for it to appear and be initialised.
pub(crate) fn map_waiting(
    loc: &SegmentLocation,
    access: Access,
    timeout: std::time::Duration,
) -> Result<(Mapping, SegmentInfo), AttachError> {
    let start = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        match map_existing(loc, access) {
            Ok(m) => return Ok(m),
            Err(MapFailure::Fatal(e)) => return Err(e),
            Err(MapFailure::Missing) | Err(MapFailure::Initialising)
                if start.elapsed() < timeout =>
            {
                // The segment does not exist yet, so there is no futex to sleep on; back off
                // from 1 ms to 50 ms so attach is quick without spinning.
                std::thread::sleep(pause.min(timeout.saturating_sub(start.elapsed())));
                pause = (pause * 2).min(std::time::Duration::from_millis(50));
            }
            Err(MapFailure::Missing) => {
                return Err(AttachError::NotFound {
                    name: loc.name().into(),
                    waited: start.elapsed(),
                })
            }
            Err(MapFailure::Initialising) => {
                return Err(AttachError::Invalid {
                    name: loc.name().into(),
                    path: loc.existing_path().unwrap_or_else(|| loc.shm_path()),
                    reason: format!(
                        "still not initialised after {:.1} s (no magic); its creator probably died",
                        start.elapsed().as_secs_f64()
                    ),
                })
            }
        }
    }
}

/// Checks that `info` matches `expected` (slots, capacity, geometry, format).
pub(crate) fn spec_matches(
    info: &SegmentInfo,
    expected: &SegmentSpec,
) -> Result<(), (String, String)> {
    let show = |s: &SegmentSpec| {
        if s.format == PixelFormat::Bytes {
            format!("{} slots of {} bytes", s.slot_count, s.slot_capacity)
        } else {
            format!(
                "{} slots of {}x{} {:?}",
                s.slot_count, s.width, s.height, s.format
            )
        }
    };
    let same = info.spec.slot_count == expected.slot_count
        && info.spec.slot_capacity == expected.slot_capacity
        && info.spec.width == expected.width
        && info.spec.height == expected.height
        && info.spec.format == expected.format;
    if same {
        Ok(())
    } else {
        Err((show(&info.spec), show(expected)))
    }
}
