//! Paths inside a container root, resolved as if the root were `/`.
//!
//! `resolve_in_scope` follows symlinks itself (one component at a time, never above the root) to
//! name what a path means in the container, as Docker's `FollowSymlinkInScope` does. Opening is
//! always done by `openat2(RESOLVE_IN_ROOT)` from the root's descriptor, which is what keeps
//! every access inside the container even if the container changes its files meanwhile.

use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

/// Symlinks followed in one resolution before giving up (as Linux and Docker do).
const MAX_LINKS: usize = 255;

/// Opens `path` (a container path) inside `root`. With `follow`, a symlink as the last component
/// is followed (inside the root); without, it is opened with `O_NOFOLLOW`.
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path, flags: OFlags, follow: bool) -> io::Result<OwnedFd> {
    let rel: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .collect();
    let rel = if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    };
    let mut flags = flags | OFlags::CLOEXEC;
    // openat2 refuses flags that mean nothing with O_PATH.
    if !flags.contains(OFlags::PATH) {
        flags |= OFlags::NOCTTY;
    }
    if !follow {
        flags |= OFlags::NOFOLLOW;
    }
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(
            root,
            &rel,
            flags,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            // The kernel asks for a retry when a rename raced the lookup.
            Err(Errno::AGAIN) if tries < 16 => tries += 1,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// The plain components of `path` with `.` dropped and `..` kept (Docker cleans paths
/// lexically first: see [`clean`]).
fn components(path: &[u8]) -> Vec<OsString> {
    Path::new(OsStr::from_bytes(path))
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// `path` cleaned lexically, as Go's `filepath.Clean` of `/` joined with it: plain components,
/// `..` removing the one before it (and nothing at the root).
pub fn clean(path: &[u8]) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::new();
    for c in components(path) {
        if c == ".." {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out
}

fn to_path(comps: &[OsString]) -> PathBuf {
    let mut p = PathBuf::from("/");
    for c in comps {
        p.push(c);
    }
    p
}

/// What `path` means in the container: an absolute, clean path with every symlink resolved
/// inside the root (the last one only if `follow_last`). Components that do not exist are kept
/// as they are.
pub fn resolve_in_scope(root: BorrowedFd<'_>, path: &[u8], follow_last: bool) -> io::Result<PathBuf> {
    let mut todo: VecDeque<OsString> = components(path).into();
    let mut out: Vec<OsString> = Vec::new();
    let mut links = 0;
    let mut missing = false;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            out.pop();
            continue;
        }
        if missing {
            out.push(c);
            continue;
        }
        let last = todo.is_empty();
        let parent = open_in_root(root, &to_path(&out), OFlags::PATH | OFlags::DIRECTORY, false)?;
        let st = match rustix::fs::statat(&parent, c.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => {
                missing = true;
                out.push(c);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if FileType::from_raw_mode(st.st_mode) == FileType::Symlink && (!last || follow_last) {
            links += 1;
            if links > MAX_LINKS {
                return Err(Errno::LOOP.into());
            }
            let target = rustix::fs::readlinkat(&parent, c.as_os_str(), Vec::new())?;
            let target = target.into_bytes();
            if target.first() == Some(&b'/') {
                out.clear();
            }
            for t in components(&target).into_iter().rev() {
                todo.push_front(t);
            }
        } else {
            out.push(c);
        }
    }
    Ok(to_path(&out))
}

/// A path found for `docker cp`: its directory resolved and open, its last component not.
pub struct Found {
    /// The directory holding the entry, or (when `name` is `None`) the entry itself.
    pub parent: OwnedFd,
    pub name: Option<OsString>,
    /// What Docker calls it: the base name of the asked-for path (`.` for `dir/.`).
    pub base: String,
    /// The entry as a container path (directory resolved, last component as given).
    pub resolved: PathBuf,
}

/// Finds `path` as Docker's `ResolvePath` does: the path is cleaned, its directory resolved in
/// the container's scope, its last component kept as given (so a symlink is the link itself)
/// unless the path ends in `/.`, which means the directory itself, symlinks followed.
pub fn lookup(root: BorrowedFd<'_>, path: &[u8]) -> io::Result<Found> {
    let dot = path == b"." || path.ends_with(b"/.");
    let comps = clean(path);
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY;
    if comps.is_empty() || dot {
        let resolved = resolve_in_scope(root, to_path(&comps).as_os_str().as_bytes(), true)?;
        let parent = open_in_root(root, &resolved, dir_flags, true)?;
        let base = if dot { "." } else { "/" };
        return Ok(Found {
            parent,
            name: None,
            base: base.into(),
            resolved,
        });
    }
    let (last, dir) = comps.split_last().expect("non-empty");
    let resolved_dir = resolve_in_scope(root, to_path(dir).as_os_str().as_bytes(), true)?;
    let parent = open_in_root(root, &resolved_dir, dir_flags, true)?;
    Ok(Found {
        parent,
        name: Some(last.clone()),
        base: String::from_utf8_lossy(&last.clone().into_vec()).into_owned(),
        resolved: resolved_dir.join(last),
    })
}
