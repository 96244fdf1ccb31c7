//! Whether a file we are about to load or execute could have been planted or changed by
//! another user: the config file, `supervisor.worker_dir` and the worker binaries.
//!
//! A file (or directory) is trusted when it is owned by us or by root and is writable by
//! neither its group nor others. The check uses the metadata of the open file where there is
//! one (`fstat`), so the file read is the file checked.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::ConfigError;

/// Why a file with owner `uid` and `mode` is not trusted by a process running as `me`, or
/// `None` when it is.
pub fn distrust_reason(uid: u32, mode: u32, me: u32) -> Option<String> {
    if uid != me && uid != 0 {
        return Some(format!(
            "it is owned by uid {uid}, not by this user (uid {me}) or root"
        ));
    }
    if mode & 0o022 != 0 {
        return Some(format!(
            "it is writable by {} (mode {:o})",
            match (mode & 0o020 != 0, mode & 0o002 != 0) {
                (true, true) => "group and others",
                (true, false) => "its group",
                _ => "others",
            },
            mode & 0o7777
        ));
    }
    None
}

/// The effective uid of this process.
pub fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Refuses `meta` (of `path`, a `what` such as "config file") when another user could have
/// planted or changed it.
pub fn check_metadata(path: &Path, what: &str, meta: &Metadata) -> Result<(), ConfigError> {
    match distrust_reason(meta.uid(), meta.mode(), effective_uid()) {
        None => Ok(()),
        Some(why) => Err(ConfigError::Untrusted {
            path: path.to_path_buf(),
            what: what.to_string(),
            why,
        }),
    }
}

/// Refuses the file or directory at `path` (following symlinks: what is loaded or executed
/// is the target) when another user could have planted or changed it.
pub fn check_path(path: &Path, what: &str) -> Result<(), ConfigError> {
    let meta = std::fs::metadata(path).map_err(|cause| ConfigError::Untrusted {
        path: path.to_path_buf(),
        what: what.to_string(),
        why: format!("cannot inspect it: {cause}"),
    })?;
    check_metadata(path, what, &meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn owner_and_mode_rules() {
        assert_eq!(distrust_reason(1000, 0o100644, 1000), None);
        assert_eq!(distrust_reason(0, 0o100755, 1000), None);
        assert_eq!(distrust_reason(0, 0o40700, 0), None);
        let other = distrust_reason(1001, 0o100600, 1000).unwrap();
        assert!(other.contains("owned by uid 1001"), "{other}");
        let g = distrust_reason(1000, 0o100664, 1000).unwrap();
        assert!(g.contains("writable by its group (mode 664)"), "{g}");
        let o = distrust_reason(0, 0o100646, 0).unwrap();
        assert!(o.contains("writable by others (mode 646)"), "{o}");
        let both = distrust_reason(0, 0o41777, 0).unwrap();
        assert!(both.contains("group and others (mode 1777)"), "{both}");
    }

    #[test]
    fn a_world_writable_file_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("billiards.toml");
        std::fs::write(&f, "").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        check_path(&f, "config file").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = check_path(&f, "config file").unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: refusing config file", f.display())),
            "{e}"
        );
        assert!(e.contains("writable by group and others (mode 666)"), "{e}");
    }
}
