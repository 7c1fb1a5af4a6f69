//! Paths inside a container's root filesystem, resolved without ever leaving it.
//!
//! Every lookup goes through `openat2(RESOLVE_IN_ROOT)` from a descriptor of the rootfs: a symlink in
//! the image (`/proc -> /etc`, `/x -> /../../host`) is resolved as if the rootfs were `/`, so a mount
//! target or device node can only land inside the rootfs. Mounts then target `/proc/self/fd/N` of the
//! resolved descriptor, not a path that could be swapped underneath.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::{Result, RuntimeError};

/// An open container root.
pub(crate) struct RootDir {
    fd: OwnedFd,
}

/// The magic-link path of an open descriptor, usable as a mount source or target.
pub(crate) fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// `path` relative to the container root: leading `/` and `.` components dropped.
fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .collect()
}

impl RootDir {
    pub fn open(path: &Path) -> Result<Self> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| RuntimeError::io(format!("opening rootfs {}", path.display()), e))?;
        Ok(RootDir { fd })
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    fn resolve_raw(&self, rel: &Path, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        loop {
            match rustix::fs::openat2(
                &self.fd,
                rel,
                flags | OFlags::CLOEXEC,
                mode,
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            ) {
                Err(Errno::AGAIN | Errno::INTR) => continue,
                other => return other,
            }
        }
    }

    /// Opens an existing path (`O_PATH`), resolved inside the root.
    pub fn resolve(&self, path: &Path) -> Result<OwnedFd, Errno> {
        self.resolve_raw(&relative(path), OFlags::PATH, Mode::empty())
    }

    /// Creates a directory and its missing parents inside the root; returns an `O_PATH` descriptor.
    pub fn mkdir_all(&self, path: &Path, mode: u32) -> Result<OwnedFd> {
        let rel = relative(path);
        let err =
            |e: Errno| RuntimeError::io(format!("creating directory {} in the rootfs", path.display()), e);
        match self.resolve_raw(&rel, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) => {}
            Err(e) => return Err(err(e)),
        }
        let mut prefix = PathBuf::new();
        let mut dir = self
            .resolve_raw(&prefix, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
            .map_err(err)?;
        for component in rel.components() {
            let name = component.as_os_str();
            prefix.push(name);
            match self.resolve_raw(&prefix, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()) {
                Ok(fd) => {
                    dir = fd;
                    continue;
                }
                Err(Errno::NOENT) => {}
                Err(e) => return Err(err(e)),
            }
            match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(mode)) {
                // EEXIST after ENOENT: a dangling symlink (or a race); resolving again decides.
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(err(e)),
            }
            dir = self
                .resolve_raw(&prefix, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
                .map_err(|e| match e {
                    Errno::NOENT => RuntimeError::InvalidSpec(format!(
                        "{} in the rootfs is a dangling symlink",
                        prefix.display()
                    )),
                    e => err(e),
                })?;
        }
        Ok(dir)
    }

    /// Creates an empty file (and missing parent directories) inside the root if nothing is there yet;
    /// returns a descriptor of what is there.
    pub fn create_file(&self, path: &Path, mode: u32) -> Result<OwnedFd> {
        let rel = relative(path);
        if let Some(parent) = rel.parent() {
            self.mkdir_all(parent, 0o755)?;
        }
        match self.resolve_raw(&rel, OFlags::PATH, Mode::empty()) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) => {}
            Err(e) => {
                return Err(RuntimeError::io(
                    format!("resolving {} in the rootfs", path.display()),
                    e,
                ))
            }
        }
        self.resolve_raw(&rel, OFlags::CREATE | OFlags::RDONLY, Mode::from_raw_mode(mode))
            .map_err(|e| RuntimeError::io(format!("creating {} in the rootfs", path.display()), e))
    }

    /// Makes sure a mount target exists: a directory, or an empty file when mounting a file.
    pub fn mount_target(&self, path: &Path, is_dir: bool) -> Result<OwnedFd> {
        if is_dir {
            self.mkdir_all(path, 0o755)
        } else {
            self.create_file(path, 0o644)
        }
    }
}
