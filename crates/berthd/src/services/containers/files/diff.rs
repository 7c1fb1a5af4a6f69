//! `GET /containers/{id}/changes`: the container's changes, read from its overlay upper dir as
//! Docker's overlay driver does. A 0:0 character device is a deleted entry; an entry that exists
//! in an image layer below is modified, otherwise added; an opaque directory is modified; the
//! parent of an added or deleted entry is modified; a directory that only differs in metadata
//! from the image's is modified.
//!
//! The directories the runtime makes as mount points (`/proc`, `/etc/hosts`, ...: Docker's "init
//! layer") are not changes, nor does their creation make their parent directory one.

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub const MODIFIED: u8 = 0;
pub const ADDED: u8 = 1;
pub const DELETED: u8 = 2;

/// Paths the runtime creates in the container's root as mount points.
const INIT_PATHS: &[&str] = &[
    "/dev",
    "/dev/pts",
    "/dev/shm",
    "/dev/mqueue",
    "/dev/console",
    "/proc",
    "/sys",
    "/.dockerenv",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/hostname",
    "/etc/mtab",
];

const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Change {
    pub path: String,
    pub kind: u8,
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

fn is_whiteout(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}

fn is_opaque(dir: BorrowedFd<'_>) -> bool {
    let mut buf = [0u8; 4];
    matches!(rustix::fs::fgetxattr(dir, OPAQUE_XATTR, &mut buf), Ok(1) if buf[0] == b'y')
}

/// What the image layers (top first) show at `rel`: `None` when nothing is there (or it is
/// hidden by a whiteout or an opaque directory). Walks each layer without following symlinks.
fn in_lowers(lowers: &[OwnedFd], rel: &Path) -> Option<Stat> {
    let (dir, name) = (rel.parent().unwrap_or(Path::new("")), rel.file_name()?);
    for lower in lowers {
        let mut cur: Option<OwnedFd> = None;
        let mut opaque = false;
        let mut reached = true;
        for comp in dir.components() {
            let at = cur.as_ref().map_or(lower.as_fd(), |f| f.as_fd());
            match rustix::fs::openat(at, comp.as_os_str(), dir_flags(), Mode::empty()) {
                Ok(fd) => {
                    opaque |= is_opaque(fd.as_fd());
                    cur = Some(fd);
                }
                Err(Errno::NOENT) => {
                    reached = false;
                    break;
                }
                // A whiteout, a file or a symlink hides everything below in lower layers.
                Err(_) => return None,
            }
        }
        if reached {
            let at = cur.as_ref().map_or(lower.as_fd(), |f| f.as_fd());
            match rustix::fs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if is_whiteout(&st) => return None,
                Ok(st) => return Some(st),
                Err(_) => {}
            }
        }
        if opaque {
            return None;
        }
    }
    None
}

struct Raw {
    kind: u8,
    /// A directory present in the image with only its times changed.
    times_only: bool,
}

/// The changes in `upper` over `lowers` (image layer directories, top first), sorted by path.
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> io::Result<Vec<Change>> {
    let upper_fd = rustix::fs::open(upper, dir_flags(), Mode::empty())?;
    let lowers: Vec<OwnedFd> = lowers
        .iter()
        .filter_map(|l| rustix::fs::open(l, dir_flags(), Mode::empty()).ok())
        .collect();
    let mut raw: BTreeMap<PathBuf, Raw> = BTreeMap::new();
    // Directories still to read: descriptor, container path, below an opaque directory.
    let mut todo: VecDeque<(OwnedFd, PathBuf, bool)> =
        VecDeque::from([(upper_fd, PathBuf::from("/"), false)]);
    while let Some((dir, rel, hidden)) = todo.pop_front() {
        let mut names: Vec<CString> = Vec::new();
        let mut d = rustix::fs::Dir::read_from(&dir)?;
        while let Some(ent) = d.read() {
            let n = ent?.file_name().to_owned();
            if n.to_bytes() != b"." && n.to_bytes() != b".." {
                names.push(n);
            }
        }
        for name in names {
            let name = OsStr::from_bytes(name.to_bytes());
            let path = rel.join(name);
            let st = match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(e.into()),
            };
            if is_whiteout(&st) {
                raw.insert(
                    path,
                    Raw {
                        kind: DELETED,
                        times_only: false,
                    },
                );
                continue;
            }
            let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
            let sub = if is_dir {
                rustix::fs::openat(&dir, name, dir_flags(), Mode::empty()).ok()
            } else {
                None
            };
            let opaque = sub.as_ref().is_some_and(|f| is_opaque(f.as_fd()));
            let lower = if hidden {
                None
            } else {
                in_lowers(&lowers, path.strip_prefix("/").unwrap_or(&path))
            };
            let mut r = Raw {
                kind: ADDED,
                times_only: false,
            };
            if let Some(l) = lower {
                r.kind = MODIFIED;
                let lower_dir = FileType::from_raw_mode(l.st_mode) == FileType::Directory;
                if is_dir
                    && lower_dir
                    && !opaque
                    && st.st_mode == l.st_mode
                    && st.st_uid == l.st_uid
                    && st.st_gid == l.st_gid
                {
                    if (st.st_mtime, st.st_mtime_nsec) == (l.st_mtime, l.st_mtime_nsec) {
                        // Only there because something below changed.
                        r.kind = u8::MAX;
                    } else {
                        r.times_only = true;
                    }
                }
            }
            raw.insert(path.clone(), r);
            if let Some(sub) = sub {
                todo.push_back((sub, path, hidden || opaque));
            }
        }
    }
    // The runtime's mount points are not changes.
    let init: HashSet<PathBuf> = INIT_PATHS
        .iter()
        .map(PathBuf::from)
        .filter(|p| raw.get(p).is_some_and(|r| r.kind == ADDED))
        .collect();
    let init_parents: HashSet<PathBuf> = init
        .iter()
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    let mut out: BTreeMap<PathBuf, u8> = BTreeMap::new();
    for (path, r) in &raw {
        if init.contains(path) || r.kind == u8::MAX {
            continue;
        }
        if r.times_only && init_parents.contains(path) {
            continue;
        }
        out.insert(path.clone(), r.kind);
    }
    // The parent of an added or deleted entry is modified (Docker records it even when its
    // metadata is the image's).
    let parents: Vec<PathBuf> = out
        .iter()
        .filter(|(_, k)| **k == ADDED || **k == DELETED)
        .filter_map(|(p, _)| p.parent().map(Path::to_path_buf))
        .filter(|p| p != Path::new("/"))
        .collect();
    for p in parents {
        out.entry(p).or_insert(MODIFIED);
    }
    let mut out: Vec<Change> = out
        .into_iter()
        .map(|(p, kind)| Change {
            path: p.to_string_lossy().into_owned(),
            kind,
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}
