//! Extracting an untrusted tar into a directory of a container (`docker cp` into a container).
//!
//! The same discipline as `berth_image::layer::apply`: everything is relative to the descriptor
//! of the destination directory; an entry's parent is reached one component at a time with
//! `O_NOFOLLOW` (a symlink on the way is refused, never followed); the final component is created
//! with `O_EXCL`/`mknodat`/`symlinkat`/`linkat`, after removing (without following) whatever was
//! there. `..` in a name or a hard link's target is refused. Unlike a layer, the destination is
//! not empty and there are no whiteouts: overlayfs below does that.

use super::FileError;
use crate::services::userns::RemappedRoot;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// `PUT /containers/{id}/archive` options.
#[derive(Debug, Clone, Default)]
pub struct ExtractOptions {
    /// Refuse to replace a directory by a non-directory or the other way round.
    pub no_overwrite_dir_non_dir: bool,
    /// Give the files the container user's owner (set by the service from the container).
    pub copy_uid_gid: bool,
    /// The owner every entry gets, instead of the one in the tar.
    pub owner: Option<(u32, u32)>,
    /// Extracting into a container's idmapped root: ids are the container's, mapped to the host's.
    pub userns: Option<std::sync::Arc<RemappedRoot>>,
}

fn invalid(path: &str, reason: impl std::fmt::Display) -> FileError {
    FileError::Invalid(format!("invalid tar entry {path:?}: {reason}"))
}

fn io_ctx(what: String) -> impl FnOnce(Errno) -> FileError {
    move |e| FileError::Io(io::Error::new(io::Error::from(e).kind(), format!("{what}: {e}")))
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Extracts `reader` (an uncompressed tar) into `dest`.
pub fn extract<R: Read>(reader: R, dest: OwnedFd, opts: &ExtractOptions) -> Result<(), FileError> {
    let mut archive = tar::Archive::new(reader);
    let mut dir_times: Vec<(PathBuf, Timestamps)> = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| FileError::Invalid(format!("invalid tar: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| FileError::Invalid(format!("invalid tar: {e}")))?;
        one(&mut entry, dest.as_fd(), opts, &mut dir_times)?;
    }
    // Deepest first: setting a directory's times after its children were made.
    dir_times.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (rel, times) in dir_times {
        let fd = match walk(dest.as_fd(), &rel, false) {
            Ok(fd) => fd,
            Err(_) => continue,
        };
        let _ = rustix::fs::futimens(&fd, &times);
    }
    Ok(())
}

/// A tar path as plain relative components: `/` and `.` dropped, `..` refused.
fn normalize(raw: &[u8]) -> Result<PathBuf, &'static str> {
    if raw.contains(&0) {
        return Err("path contains a NUL byte");
    }
    let mut out = PathBuf::new();
    for c in Path::new(OsStr::from_bytes(raw)).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => return Err("path contains a \"..\" component"),
            Component::Normal(n) => out.push(n),
            Component::Prefix(_) => return Err("unsupported path prefix"),
        }
    }
    Ok(out)
}

/// Opens directory `dir` below `root` one component at a time, never through a symlink; with
/// `create`, missing directories are made (0755).
fn walk(root: BorrowedFd<'_>, dir: &Path, create: bool) -> Result<OwnedFd, (PathBuf, Errno)> {
    let mut cur: Option<OwnedFd> = None;
    let mut so_far = PathBuf::new();
    for comp in dir.components() {
        so_far.push(comp);
        let at = cur.as_ref().map_or(root, |fd| fd.as_fd());
        let name = comp.as_os_str();
        let next = match rustix::fs::openat(at, name, dir_flags(), Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if create => {
                match rustix::fs::mkdirat(at, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err((so_far, e)),
                }
                rustix::fs::openat(at, name, dir_flags(), Mode::empty()).map_err(|e| (so_far.clone(), e))?
            }
            Err(e) => return Err((so_far, e)),
        };
        cur = Some(next);
    }
    match cur {
        Some(fd) => Ok(fd),
        None => rustix::fs::openat(root, ".", dir_flags(), Mode::empty()).map_err(|e| (so_far, e)),
    }
}

/// Why a parent directory of an entry could not be opened, in words.
fn walk_error(root: BorrowedFd<'_>, path: &str, (at, e): (PathBuf, Errno)) -> FileError {
    if e == Errno::LOOP || e == Errno::NOTDIR {
        let (dir, name) = split(&at);
        let what = walk(root, dir, false)
            .ok()
            .and_then(|d| rustix::fs::statat(&d, name, AtFlags::SYMLINK_NOFOLLOW).ok())
            .map(|st| FileType::from_raw_mode(st.st_mode));
        return match what {
            Some(FileType::Symlink) => invalid(path, format_args!("goes through symlink {:?}", at.display())),
            _ => invalid(
                path,
                format_args!("goes through {:?}, which is not a directory", at.display()),
            ),
        };
    }
    FileError::Io(io::Error::new(
        io::Error::from(e).kind(),
        format!("tar entry {path:?}: opening directory {}: {e}", at.display()),
    ))
}

fn split(rel: &Path) -> (&Path, &OsStr) {
    (
        rel.parent().unwrap_or(Path::new("")),
        rel.file_name().unwrap_or(OsStr::new(".")),
    )
}

/// Removes whatever is at `name` in `parent`, never following a symlink; directories with their
/// contents, iteratively.
fn remove_all_at(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let st = match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Ok(rustix::fs::unlinkat(parent, name, AtFlags::empty())?);
    }
    let name = CString::new(name.as_bytes()).map_err(|_| io::Error::from(Errno::INVAL))?;
    let fd = rustix::fs::openat(parent, name.as_c_str(), dir_flags(), Mode::empty())?;
    let mut stack = vec![(rustix::fs::Dir::new(fd)?, name)];
    while let Some((dir, _)) = stack.last_mut() {
        match dir.read() {
            None => {
                let (_, name) = stack.pop().expect("stack is not empty");
                let above = match stack.last() {
                    Some((d, _)) => d.fd()?,
                    None => parent,
                };
                rustix::fs::unlinkat(above, name.as_c_str(), AtFlags::REMOVEDIR)?;
            }
            Some(ent) => {
                let ent = ent?;
                let child = ent.file_name();
                if child.to_bytes() == b"." || child.to_bytes() == b".." {
                    continue;
                }
                let dfd = dir.fd()?;
                let st = rustix::fs::statat(dfd, child, AtFlags::SYMLINK_NOFOLLOW)?;
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    let sub = rustix::fs::openat(dfd, child, dir_flags(), Mode::empty())?;
                    let child = child.to_owned();
                    stack.push((rustix::fs::Dir::new(sub)?, child));
                } else {
                    rustix::fs::unlinkat(dfd, child, AtFlags::empty())?;
                }
            }
        }
    }
    Ok(())
}

/// Runs `create`; if something is already at `name`, removes it (not following it) and retries.
fn create_replacing<T>(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    mut create: impl FnMut() -> rustix::io::Result<T>,
) -> io::Result<T> {
    match create() {
        Err(Errno::EXIST) => {
            remove_all_at(parent, name)?;
            Ok(create()?)
        }
        r => Ok(r?),
    }
}

struct Meta {
    mode: Mode,
    uid: Uid,
    gid: Gid,
    times: Timestamps,
}

/// A numeric header field that is all NULs or spaces reads as 0, as Go's `archive/tar` (and so
/// Docker) reads it.
fn blank_is_zero<T: Default>(parsed: io::Result<T>, raw: &[u8]) -> io::Result<T> {
    match parsed {
        Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(T::default()),
        r => r,
    }
}

fn meta<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    path: &str,
    opts: &ExtractOptions,
) -> Result<Meta, FileError> {
    let h = entry.header();
    let old = h.as_old();
    let bad = |e: io::Error| invalid(path, e);
    let mode = blank_is_zero(h.mode(), &old.mode).map_err(bad)?;
    let (uid, gid) = match opts.owner {
        Some(o) => o,
        None => (
            u32::try_from(blank_is_zero(h.uid(), &old.uid).map_err(bad)?)
                .map_err(|_| invalid(path, "uid out of range"))?,
            u32::try_from(blank_is_zero(h.gid(), &old.gid).map_err(bad)?)
                .map_err(|_| invalid(path, "gid out of range"))?,
        ),
    };
    let (uid, gid) = match &opts.userns {
        Some(userns) => userns.to_host(uid, gid).ok_or_else(|| {
            invalid(
                path,
                format!("owner {uid}:{gid} is not mapped in the container's user namespace"),
            )
        })?,
        None => (uid, gid),
    };
    let mtime = blank_is_zero(h.mtime(), &old.mtime).map_err(bad)?;
    let mtime = i64::try_from(mtime).map_err(|_| invalid(path, "mtime out of range"))?;
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Ok(Meta {
        mode: Mode::from_raw_mode(mode & 0o7777),
        uid: Uid::from_raw(uid),
        gid: Gid::from_raw(gid),
        times: Timestamps {
            last_access: t,
            last_modification: t,
        },
    })
}

/// Sets the entry's xattrs (PAX `SCHILY.xattr.*`), except overlayfs' own.
fn xattrs<R: Read>(entry: &mut tar::Entry<'_, R>, fd: BorrowedFd<'_>) {
    let Ok(Some(pax)) = entry.pax_extensions() else {
        return;
    };
    for ext in pax.flatten() {
        let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") else {
            continue;
        };
        if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
            continue;
        }
        let _ = rustix::fs::fsetxattr(
            fd,
            OsStr::from_bytes(name),
            ext.value_bytes(),
            XattrFlags::empty(),
        );
    }
}

fn one<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    root: BorrowedFd<'_>,
    opts: &ExtractOptions,
    dir_times: &mut Vec<(PathBuf, Timestamps)>,
) -> Result<(), FileError> {
    use tar::EntryType as T;
    let etype = entry.header().entry_type();
    if etype.is_pax_global_extensions() {
        return Ok(());
    }
    let raw = entry.path_bytes().into_owned();
    let path = String::from_utf8_lossy(&raw).into_owned();
    let rel = normalize(&raw).map_err(|r| invalid(&path, r))?;
    match etype {
        T::Regular | T::Continuous | T::Directory | T::Symlink | T::Link | T::Char | T::Block | T::Fifo => {}
        other => {
            tracing::debug!(entry = %path, kind = ?other, "skipping tar entry of unsupported type");
            return Ok(());
        }
    }
    let m = meta(entry, &path, opts)?;
    if rel.as_os_str().is_empty() {
        // The destination itself (`./`): only its metadata could change; leave it.
        if etype != T::Directory {
            return Err(invalid(&path, "only a directory may name the destination"));
        }
        return Ok(());
    }
    let (dir, name) = split(&rel);
    let parent = walk(root, dir, true).map_err(|e| walk_error(root, &path, e))?;
    let parent = parent.as_fd();
    let existing = match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Some(FileType::from_raw_mode(st.st_mode)),
        Err(_) => None,
    };
    if opts.no_overwrite_dir_non_dir {
        match existing {
            Some(FileType::Directory) if etype != T::Directory => {
                return Err(FileError::Invalid(format!(
                    "cannot overwrite directory {:?} with non-directory {path:?}",
                    rel.display().to_string()
                )))
            }
            Some(ft) if ft != FileType::Directory && etype == T::Directory => {
                return Err(FileError::Invalid(format!(
                    "cannot overwrite non-directory {:?} with directory {path:?}",
                    rel.display().to_string()
                )))
            }
            _ => {}
        }
    }
    let ctx = |what: &str| format!("tar entry {path:?}: {what}");
    let owner = |fd: BorrowedFd<'_>| -> Result<(), FileError> {
        rustix::fs::fchown(fd, Some(m.uid), Some(m.gid)).map_err(io_ctx(ctx("setting owner")))?;
        rustix::fs::fchmod(fd, m.mode).map_err(io_ctx(ctx("setting mode")))
    };
    match etype {
        T::Directory => {
            if existing.is_some_and(|ft| ft != FileType::Directory) {
                remove_all_at(parent, name)
                    .map_err(|e| FileError::Io(io::Error::other(ctx(&e.to_string()))))?;
            }
            match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(io_ctx(ctx("creating directory"))(e)),
            }
            let fd = rustix::fs::openat(parent, name, dir_flags(), Mode::empty())
                .map_err(io_ctx(ctx("opening directory")))?;
            owner(fd.as_fd())?;
            xattrs(entry, fd.as_fd());
            dir_times.push((rel.clone(), m.times));
        }
        T::Symlink | T::Link => {
            let target = entry
                .link_name_bytes()
                .map(|t| t.into_owned())
                .unwrap_or_default();
            if target.is_empty() || target.contains(&0) {
                return Err(invalid(&path, "link without a valid target"));
            }
            if etype == T::Symlink {
                let target = OsStr::from_bytes(&target);
                create_replacing(parent, name, || rustix::fs::symlinkat(target, parent, name))
                    .map_err(|e| FileError::Io(io::Error::other(ctx(&format!("creating symlink: {e}")))))?;
                rustix::fs::chownat(parent, name, Some(m.uid), Some(m.gid), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(io_ctx(ctx("setting owner")))?;
                let _ = rustix::fs::utimensat(parent, name, &m.times, AtFlags::SYMLINK_NOFOLLOW);
            } else {
                // Hard link: the target is another entry below the destination.
                let trel =
                    normalize(&target).map_err(|r| invalid(&path, format_args!("link target: {r}")))?;
                if trel.as_os_str().is_empty() {
                    return Err(invalid(&path, "hard link to the destination itself"));
                }
                let (tdir, tname) = split(&trel);
                let tparent = walk(root, tdir, false).map_err(|e| walk_error(root, &path, e))?;
                match rustix::fs::statat(&tparent, tname, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                        return Err(invalid(&path, "hard link to a directory"))
                    }
                    Ok(_) => {}
                    Err(e) => return Err(invalid(&path, format_args!("hard link target: {e}"))),
                }
                if trel == rel {
                    return Ok(());
                }
                create_replacing(parent, name, || {
                    rustix::fs::linkat(&tparent, tname, parent, name, AtFlags::empty())
                })
                .map_err(|e| FileError::Io(io::Error::other(ctx(&format!("creating hard link: {e}")))))?;
            }
        }
        T::Char | T::Block | T::Fifo => {
            let (ft, dev) = match etype {
                T::Fifo => (FileType::Fifo, 0),
                _ => {
                    let h = entry.header();
                    let major = h.device_major().ok().flatten().unwrap_or(0);
                    let minor = h.device_minor().ok().flatten().unwrap_or(0);
                    let ft = if etype == T::Char {
                        FileType::CharacterDevice
                    } else {
                        FileType::BlockDevice
                    };
                    (ft, rustix::fs::makedev(major, minor))
                }
            };
            create_replacing(parent, name, || {
                rustix::fs::mknodat(parent, name, ft, m.mode, dev)
            })
            .map_err(|e| FileError::Io(io::Error::other(ctx(&format!("creating node: {e}")))))?;
            rustix::fs::chownat(parent, name, Some(m.uid), Some(m.gid), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(io_ctx(ctx("setting owner")))?;
            // Just made by mknodat, not a symlink: the exact mode, whatever the umask.
            rustix::fs::chmodat(parent, name, m.mode, AtFlags::empty())
                .map_err(io_ctx(ctx("setting mode")))?;
            let _ = rustix::fs::utimensat(parent, name, &m.times, AtFlags::SYMLINK_NOFOLLOW);
        }
        _ => {
            let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let fd = create_replacing(parent, name, || {
                rustix::fs::openat(parent, name, flags, Mode::from_raw_mode(0o600))
            })
            .map_err(|e| FileError::Io(io::Error::other(ctx(&format!("creating file: {e}")))))?;
            let mut file = File::from(fd);
            let expected = entry.size();
            let written = io::copy(entry, &mut file).map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData => invalid(&path, e),
                _ => FileError::Io(io::Error::new(e.kind(), ctx(&format!("writing: {e}")))),
            })?;
            if written != expected {
                return Err(invalid(
                    &path,
                    format_args!("data truncated: {written} of {expected} bytes"),
                ));
            }
            // chown clears setuid/setgid: chown, then chmod.
            owner(file.as_fd())?;
            xattrs(entry, file.as_fd());
            rustix::fs::futimens(&file, &m.times).map_err(io_ctx(ctx("setting times")))?;
        }
    }
    Ok(())
}
