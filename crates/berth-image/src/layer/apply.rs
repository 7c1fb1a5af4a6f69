//! Unpacking one image layer tar into a directory in overlayfs "layer" form.
//!
//! Layers are untrusted input. Everything here works relative to directory file descriptors: the
//! destination is opened once, and every entry's parent is reached by opening one path component
//! at a time with `O_NOFOLLOW`, so a symlink planted by the layer (or anything else) is never
//! followed on the way to where an entry is written. The final component is always created with
//! `O_EXCL`/`mknodat`/`symlinkat`/`linkat`, which never follow a symlink either; whatever was there
//! before is removed first (without following it).
//!
//! OCI whiteouts are converted to overlayfs form: `dir/.wh.name` becomes a 0:0 character device
//! `dir/name`, and `dir/.wh..wh..opq` becomes the `trusted.overlay.opaque=y` xattr on `dir`.

use super::compression::decompressed;
use crate::digest::{Digest, DigestReader};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// What applying a layer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyStats {
    /// sha256 of the whole uncompressed tar stream, including the end-of-archive padding.
    pub diff_id: Digest,
    /// Sum of the sizes of the regular files written.
    pub size: u64,
    /// Length in bytes of the uncompressed tar stream (what `diff_id` is the digest of).
    pub tar_size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The (decompressed) stream is not a valid tar archive: bad header, truncation, corrupt
    /// compression.
    #[error("invalid layer tar: {0}")]
    Tar(#[source] io::Error),
    /// Reading or parsing one entry failed (bad header field, truncated data).
    #[error("invalid layer tar at entry {path:?}: {source}")]
    TarEntry {
        path: String,
        #[source]
        source: io::Error,
    },
    /// The entry is well-formed tar but not acceptable in a layer (`..`, empty path, ...).
    #[error("invalid layer entry {path:?}: {reason}")]
    InvalidEntry { path: String, reason: String },
    #[error("layer entry {path:?} goes through symlink {symlink:?}")]
    ThroughSymlink { path: String, symlink: String },
    #[error("layer entry {path:?} goes through {component:?}, which is not a directory")]
    NotADirectory { path: String, component: String },
    #[error("layer entry {path:?} is a hard link to {target:?}, which {reason}")]
    BadHardLink {
        path: String,
        target: String,
        reason: String,
    },
    #[error("layer destination {0} is not an empty directory")]
    DestinationNotEmpty(PathBuf),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

type Result<T, E = LayerError> = std::result::Result<T, E>;

/// Files at least this big start their writeback as soon as they are written (the layer is
/// synced when it is committed).
const EARLY_WRITEBACK: u64 = 256 << 10;

/// Buffer for copying file contents out of the tar stream.
const COPY_BUFFER: usize = 1 << 20;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Flags for opening a directory we walk through or update: never through a symlink.
fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Unpacks one image layer (tar; gzip or zstd compressed or not, auto-detected) into `dest`,
/// which must be an existing empty directory. The result is in overlayfs "layer" form, so that a
/// stack of such directories can be used as overlay lowerdirs.
///
/// Must run as root (it sets owners, creates device nodes and `trusted.*` xattrs). On error,
/// `dest` is left partly filled; the caller discards it.
pub fn apply_layer<R: Read>(reader: R, dest: &Path) -> Result<ApplyStats, LayerError> {
    apply_layer_known(reader, dest, None)
}

/// [`apply_layer`] for bytes whose digest the caller verifies as they are read (a registry
/// download): when the layer is uncompressed that digest is its diff_id, and the bytes are not
/// hashed a second time. The caller must drop the result if its check fails.
pub fn apply_layer_known<R: Read>(
    reader: R,
    dest: &Path,
    blob_digest: Option<&Digest>,
) -> Result<ApplyStats, LayerError> {
    let root = rustix::fs::open(
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err(|| format!("opening layer destination {}", dest.display())))?;
    ensure_empty(&root, dest)?;

    let (stream, compression) = decompressed(reader).map_err(LayerError::Tar)?;
    tracing::debug!(?compression, dest = %dest.display(), "applying layer");
    let known = blob_digest.filter(|_| compression == crate::layer::Compression::None);
    let reader = match known {
        Some(_) => DigestReader::counting(stream),
        None => DigestReader::new(stream),
    };
    let mut archive = tar::Archive::new(reader);
    let mut ex = Extractor {
        dest,
        root,
        cache: ParentCache::default(),
        dir_times: Vec::new(),
        buf: vec![0; COPY_BUFFER],
        size: 0,
    };
    for entry in archive.entries().map_err(LayerError::Tar)? {
        let mut entry = entry.map_err(LayerError::Tar)?;
        ex.entry(&mut entry)?;
    }
    // Everything after the last entry (the zero blocks and any padding) is part of the diff_id;
    // reading to the end also makes the decompressor verify its trailer (gzip CRC, zstd checksum).
    let reader = archive.into_inner();
    let (diff_id, tar_size) = match known {
        Some(d) => (d.clone(), reader.finish_counting().map_err(LayerError::Tar)?),
        None => reader.finish_draining().map_err(LayerError::Tar)?,
    };
    ex.set_dir_times()?;
    Ok(ApplyStats {
        diff_id,
        size: ex.size,
        tar_size,
    })
}

fn ensure_empty(root: &OwnedFd, dest: &Path) -> Result<()> {
    let ctx = || format!("listing layer destination {}", dest.display());
    let mut dir = rustix::fs::Dir::read_from(root).map_err(io_err(ctx))?;
    while let Some(ent) = dir.read() {
        let ent = ent.map_err(io_err(ctx))?;
        let name = ent.file_name().to_bytes();
        if name != b"." && name != b".." {
            return Err(LayerError::DestinationNotEmpty(dest.to_path_buf()));
        }
    }
    Ok(())
}

fn io_err<E: Into<io::Error>>(context: impl FnOnce() -> String) -> impl FnOnce(E) -> LayerError {
    move |e| LayerError::Io {
        context: context(),
        source: e.into(),
    }
}

fn invalid(path: &str, reason: impl Into<String>) -> LayerError {
    LayerError::InvalidEntry {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// Turns a tar path into a relative path of plain components: a leading `/` and `.` components
/// are dropped, `..` is refused. The empty path means the layer root.
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

/// Splits a normalised, non-empty path into its parent directory and final component.
fn split(rel: &Path) -> (&Path, &OsStr) {
    let name = rel
        .file_name()
        .expect("normalised non-empty path has a final component");
    (rel.parent().unwrap_or(Path::new("")), name)
}

/// Why a directory could not be reached.
enum WalkError {
    /// `.0` (a prefix of the walked path) does not exist and we were not to create it.
    Missing(PathBuf),
    Symlink(PathBuf),
    NotDir(PathBuf),
    Io(PathBuf, io::Error),
}

impl WalkError {
    fn into_layer_error(self, entry: &str) -> LayerError {
        match self {
            WalkError::Missing(p) => LayerError::Io {
                context: format!("layer entry {entry:?}: opening directory {}", p.display()),
                source: Errno::NOENT.into(),
            },
            WalkError::Symlink(p) => LayerError::ThroughSymlink {
                path: entry.to_string(),
                symlink: p.to_string_lossy().into_owned(),
            },
            WalkError::NotDir(p) => LayerError::NotADirectory {
                path: entry.to_string(),
                component: p.to_string_lossy().into_owned(),
            },
            WalkError::Io(p, source) => LayerError::Io {
                context: format!("layer entry {entry:?}: opening directory {}", p.display()),
                source,
            },
        }
    }
}

/// Opens directory `dir` (relative to `root`, plain components only) one component at a time,
/// refusing to go through symlinks or non-directories. With `create`, missing directories are
/// made (mode 0755, owned by us, i.e. root).
fn walk(root: BorrowedFd<'_>, dir: &Path, create: bool) -> Result<OwnedFd, WalkError> {
    let mut cur: Option<OwnedFd> = None;
    let mut so_far = PathBuf::new();
    for comp in dir.components() {
        so_far.push(comp);
        let at = cur.as_ref().map_or(root, |fd| fd.as_fd());
        let next = match rustix::fs::openat(at, comp.as_os_str(), dir_flags(), Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if create => {
                match rustix::fs::mkdirat(at, comp.as_os_str(), Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(WalkError::Io(so_far, e.into())),
                }
                let fd = rustix::fs::openat(at, comp.as_os_str(), dir_flags(), Mode::empty())
                    .map_err(|e| classify(at, comp.as_os_str(), &so_far, e))?;
                // Exact mode, whatever the umask.
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o755))
                    .map_err(|e| WalkError::Io(so_far.clone(), e.into()))?;
                fd
            }
            Err(Errno::NOENT) => return Err(WalkError::Missing(so_far)),
            Err(e) => return Err(classify(at, comp.as_os_str(), &so_far, e)),
        };
        cur = Some(next);
    }
    match cur {
        Some(fd) => Ok(fd),
        None => rustix::fs::openat(root, ".", dir_flags(), Mode::empty())
            .map_err(|e| WalkError::Io(so_far, e.into())),
    }
}

/// Explains why opening `name` in `at` as a directory without following symlinks failed.
fn classify(at: BorrowedFd<'_>, name: &OsStr, so_far: &Path, e: Errno) -> WalkError {
    if e != Errno::LOOP && e != Errno::NOTDIR {
        return WalkError::Io(so_far.to_path_buf(), e.into());
    }
    match rustix::fs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
            WalkError::Symlink(so_far.to_path_buf())
        }
        Ok(_) => WalkError::NotDir(so_far.to_path_buf()),
        Err(e2) => WalkError::Io(so_far.to_path_buf(), e2.into()),
    }
}

/// Removes whatever is at `name` in `parent`, never following a symlink; directories are
/// removed with their contents. Iterative, so a hostile, very deep tree cannot overflow the stack.
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
    // Each level: the open directory stream and the directory's name in the level above.
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
                let ft = match ent.file_type() {
                    FileType::Unknown => FileType::from_raw_mode(
                        rustix::fs::statat(dfd, child, AtFlags::SYMLINK_NOFOLLOW)?.st_mode,
                    ),
                    ft => ft,
                };
                if ft == FileType::Directory {
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

/// Runs `create`; if something is already at `name`, removes it (without following it) and
/// tries once more.
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

/// The last parent directory used, kept open: consecutive entries usually share a parent.
#[derive(Default)]
struct ParentCache {
    key: PathBuf,
    fd: Option<OwnedFd>,
}

impl ParentCache {
    /// Forgets the cached directory if `changed` (about to be replaced or removed) is it or one of
    /// its ancestors.
    fn invalidate_for(&mut self, changed: &Path) {
        if self.fd.is_some() && self.key.starts_with(changed) {
            self.fd = None;
        }
    }

    /// Opens (creating missing directories if `create`) the directory `dir`, or reuses it.
    fn get<'a>(
        &'a mut self,
        root: BorrowedFd<'a>,
        dir: &Path,
        create: bool,
        entry: &str,
    ) -> Result<BorrowedFd<'a>> {
        if dir.as_os_str().is_empty() {
            return Ok(root);
        }
        if self.fd.is_none() || self.key != dir {
            self.fd = None;
            let fd = walk(root, dir, create).map_err(|e| e.into_layer_error(entry))?;
            self.key = dir.to_path_buf();
            self.fd = Some(fd);
        }
        Ok(self.fd.as_ref().expect("just set").as_fd())
    }
}

/// Metadata of one entry, from its header and PAX records.
struct Meta {
    mode: Mode,
    uid: Uid,
    gid: Gid,
    times: Timestamps,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Meta {
    fn from_entry<R: Read>(entry: &mut tar::Entry<'_, R>, path: &str) -> Result<Meta> {
        let bad = |source: io::Error| LayerError::TarEntry {
            path: path.to_string(),
            source,
        };
        let out_of_range = |what: &str| {
            bad(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{what} out of range"),
            ))
        };
        let h = entry.header();
        let old = h.as_old();
        let mode = blank_is_zero(h.mode(), &old.mode).map_err(bad)?;
        let uid = blank_is_zero(h.uid(), &old.uid).map_err(bad)?;
        let uid = u32::try_from(uid).map_err(|_| out_of_range("uid"))?;
        let gid = blank_is_zero(h.gid(), &old.gid).map_err(bad)?;
        let gid = u32::try_from(gid).map_err(|_| out_of_range("gid"))?;
        let mtime = blank_is_zero(h.mtime(), &old.mtime).map_err(bad)?;
        let mtime = i64::try_from(mtime).map_err(|_| out_of_range("mtime"))?;
        let mut mtime = Timespec {
            tv_sec: mtime,
            tv_nsec: 0,
        };
        let mut atime = None;
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(bad)? {
            for ext in pax {
                let ext =
                    ext.map_err(|_| bad(io::Error::new(io::ErrorKind::InvalidData, "malformed PAX record")))?;
                let key = ext.key_bytes();
                if key == b"mtime" {
                    if let Some(t) = parse_pax_time(ext.value_bytes()) {
                        mtime = t;
                    }
                } else if key == b"atime" {
                    atime = parse_pax_time(ext.value_bytes());
                } else if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
                }
            }
        }
        // As Docker does: the access time is never earlier than the modification time.
        let atime = atime.filter(|a| *a > mtime).unwrap_or(mtime);
        Ok(Meta {
            mode: Mode::from_raw_mode(mode & 0o7777),
            uid: Uid::from_raw(uid),
            gid: Gid::from_raw(gid),
            times: Timestamps {
                last_access: atime,
                last_modification: mtime,
            },
            xattrs,
        })
    }
}

/// A numeric header field that is entirely NULs or spaces reads as 0, as Go's `archive/tar`
/// (and so Docker) reads it; the tar crate calls it an error.
fn blank_is_zero<T: Default>(parsed: io::Result<T>, raw: &[u8]) -> io::Result<T> {
    match parsed {
        Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(T::default()),
        r => r,
    }
}

/// Parses a PAX time, `[-]seconds[.fraction]`.
fn parse_pax_time(v: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut secs: i64 = int.parse().ok()?;
    let mut nsec: i64 = 0;
    for i in 0..9 {
        let d = frac.as_bytes().get(i).map_or(0, |b| i64::from(b - b'0'));
        nsec = nsec * 10 + d;
    }
    if neg {
        secs = -secs;
        if nsec > 0 {
            secs -= 1;
            nsec = 1_000_000_000 - nsec;
        }
    }
    Some(Timespec {
        tv_sec: secs,
        tv_nsec: nsec,
    })
}

/// Where to set xattrs: an open file, or (for symlinks and device nodes, which cannot be opened
/// for this) a path whose parents have just been checked.
enum XattrTarget<'a> {
    Fd(BorrowedFd<'a>),
    Path(&'a Path),
}

fn set_xattrs(target: XattrTarget<'_>, xattrs: &[(Vec<u8>, Vec<u8>)], entry: &str) -> Result<()> {
    for (name, value) in xattrs {
        let name = OsStr::from_bytes(name);
        let lossy = name.to_string_lossy();
        // The layer's own whiteouts/opaque markers are the `.wh.` entries; overlayfs control
        // xattrs smuggled in as PAX records (redirects, metacopy, opaque) are not honoured.
        if lossy.starts_with("trusted.overlay.") || lossy.starts_with("user.overlay.") {
            tracing::warn!(entry, xattr = %lossy, "ignoring overlayfs xattr in layer");
            continue;
        }
        let res = match target {
            XattrTarget::Fd(fd) => rustix::fs::fsetxattr(fd, name, value, XattrFlags::empty()),
            XattrTarget::Path(p) => rustix::fs::lsetxattr(p, name, value, XattrFlags::empty()),
        };
        match res {
            Ok(()) => {}
            Err(e) if e == Errno::PERM || e == Errno::NOTSUP => {
                tracing::warn!(entry, xattr = %lossy, error = %e, "cannot set xattr, skipping it");
            }
            Err(e) => return Err(io_err(|| format!("layer entry {entry:?}: setting xattr {lossy}"))(e)),
        }
    }
    Ok(())
}

struct Extractor<'d> {
    dest: &'d Path,
    root: OwnedFd,
    cache: ParentCache,
    /// Directory times, set at the end (creating entries inside a directory changes its mtime).
    dir_times: Vec<(PathBuf, Timestamps)>,
    buf: Vec<u8>,
    size: u64,
}

impl Extractor<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let etype = entry.header().entry_type();
        if etype.is_pax_global_extensions() {
            tracing::debug!("skipping PAX global header in layer");
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let path = String::from_utf8_lossy(&raw).into_owned();
        let rel = normalize(&raw).map_err(|reason| invalid(&path, reason))?;

        if let Some(name) = rel.file_name() {
            let name = name.as_bytes();
            if name == WHITEOUT_OPAQUE {
                return self.opaque(rel.parent().unwrap_or(Path::new("")), &path);
            }
            if name.starts_with(WHITEOUT_META_PREFIX) {
                tracing::debug!(entry = %path, "ignoring whiteout metadata entry");
                return Ok(());
            }
            if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
                let meta = Meta::from_entry(entry, &path)?;
                return self.whiteout(&rel, hidden, &meta, &path);
            }
        }

        use tar::EntryType as T;
        match etype {
            T::Regular
            | T::Continuous
            | T::GNUSparse
            | T::Directory
            | T::Symlink
            | T::Link
            | T::Char
            | T::Block
            | T::Fifo => {}
            other => {
                tracing::warn!(entry = %path, kind = ?other, "skipping layer entry of unsupported type");
                return Ok(());
            }
        }
        let meta = Meta::from_entry(entry, &path)?;

        if rel.as_os_str().is_empty() {
            if etype != T::Directory {
                return Err(invalid(&path, "only a directory may name the layer root"));
            }
            return self.root_dir(&meta, &path);
        }
        self.cache.invalidate_for(&rel);
        match etype {
            T::Directory => self.directory(&rel, &meta, &path),
            T::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                self.symlink(&rel, &target, &meta, &path)
            }
            T::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                self.hard_link(&rel, &target, &path)
            }
            T::Fifo => self.node(&rel, FileType::Fifo, 0, &meta, &path),
            T::Char | T::Block => {
                let bad = |source| LayerError::TarEntry {
                    path: path.clone(),
                    source,
                };
                let h = entry.header();
                // dev_major and dev_minor are at the same offsets in ustar and GNU headers.
                let major = blank_is_zero(h.device_major(), &h.as_bytes()[329..337]).map_err(bad)?;
                let minor = blank_is_zero(h.device_minor(), &h.as_bytes()[337..345]).map_err(bad)?;
                let ft = if etype == T::Char {
                    FileType::CharacterDevice
                } else {
                    FileType::BlockDevice
                };
                let dev = rustix::fs::makedev(major.unwrap_or(0), minor.unwrap_or(0));
                self.node(&rel, ft, dev, &meta, &path)
            }
            _ => self.regular(entry, &rel, &meta, &path),
        }
    }

    fn root_dir(&mut self, meta: &Meta, path: &str) -> Result<()> {
        let ctx = || format!("layer entry {path:?}: setting owner and mode of the layer root");
        rustix::fs::fchown(&self.root, Some(meta.uid), Some(meta.gid)).map_err(io_err(ctx))?;
        rustix::fs::fchmod(&self.root, meta.mode).map_err(io_err(ctx))?;
        set_xattrs(XattrTarget::Fd(self.root.as_fd()), &meta.xattrs, path)?;
        self.dir_times.push((PathBuf::new(), meta.times.clone()));
        Ok(())
    }

    fn directory(&mut self, rel: &Path, meta: &Meta, path: &str) -> Result<()> {
        let (dir, name) = split(rel);
        let parent = self.cache.get(self.root.as_fd(), dir, true, path)?;
        let ctx = || format!("creating directory for layer entry {path:?}");
        match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let st = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW).map_err(io_err(ctx))?;
                if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                    remove_all_at(parent, name).map_err(io_err(ctx))?;
                    rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700)).map_err(io_err(ctx))?;
                }
            }
            Err(e) => return Err(io_err(ctx)(e)),
        }
        let fd = rustix::fs::openat(parent, name, dir_flags(), Mode::empty()).map_err(io_err(ctx))?;
        let ctx = || format!("setting owner and mode of layer entry {path:?}");
        rustix::fs::fchown(&fd, Some(meta.uid), Some(meta.gid)).map_err(io_err(ctx))?;
        rustix::fs::fchmod(&fd, meta.mode).map_err(io_err(ctx))?;
        set_xattrs(XattrTarget::Fd(fd.as_fd()), &meta.xattrs, path)?;
        self.dir_times.push((rel.to_path_buf(), meta.times.clone()));
        Ok(())
    }

    fn regular<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        rel: &Path,
        meta: &Meta,
        path: &str,
    ) -> Result<()> {
        let (dir, name) = split(rel);
        let parent = self.cache.get(self.root.as_fd(), dir, true, path)?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = create_replacing(parent, name, || {
            rustix::fs::openat(parent, name, flags, Mode::from_raw_mode(0o600))
        })
        .map_err(io_err(|| format!("creating file for layer entry {path:?}")))?;
        let mut file = File::from(fd);
        let expected = entry.size();
        let mut written = 0u64;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(LayerError::TarEntry {
                        path: path.to_string(),
                        source,
                    })
                }
            };
            file.write_all(&self.buf[..n])
                .map_err(io_err(|| format!("writing layer entry {path:?}")))?;
            written += n as u64;
        }
        if written != expected {
            return Err(LayerError::TarEntry {
                path: path.to_string(),
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("data truncated: {written} of {expected} bytes"),
                ),
            });
        }
        self.size += written;
        if written >= EARLY_WRITEBACK {
            crate::content::start_writeback(&file, 0, 0);
        }
        // chown clears setuid/setgid and file capabilities: chown, then chmod, then xattrs.
        let ctx = || format!("setting metadata of layer entry {path:?}");
        rustix::fs::fchown(&file, Some(meta.uid), Some(meta.gid)).map_err(io_err(ctx))?;
        rustix::fs::fchmod(&file, meta.mode).map_err(io_err(ctx))?;
        set_xattrs(XattrTarget::Fd(file.as_fd()), &meta.xattrs, path)?;
        rustix::fs::futimens(&file, &meta.times).map_err(io_err(ctx))?;
        Ok(())
    }

    fn symlink(&mut self, rel: &Path, target: &[u8], meta: &Meta, path: &str) -> Result<()> {
        if target.is_empty() {
            return Err(invalid(path, "symlink without a target"));
        }
        if target.contains(&0) {
            return Err(invalid(path, "symlink target contains a NUL byte"));
        }
        let (dir, name) = split(rel);
        let parent = self.cache.get(self.root.as_fd(), dir, true, path)?;
        let target = OsStr::from_bytes(target);
        create_replacing(parent, name, || rustix::fs::symlinkat(target, parent, name))
            .map_err(io_err(|| format!("creating symlink for layer entry {path:?}")))?;
        let ctx = || format!("setting metadata of layer entry {path:?}");
        rustix::fs::chownat(
            parent,
            name,
            Some(meta.uid),
            Some(meta.gid),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(io_err(ctx))?;
        if !meta.xattrs.is_empty() {
            let full = self.dest.join(rel);
            set_xattrs(XattrTarget::Path(&full), &meta.xattrs, path)?;
        }
        rustix::fs::utimensat(parent, name, &meta.times, AtFlags::SYMLINK_NOFOLLOW).map_err(io_err(ctx))?;
        Ok(())
    }

    fn hard_link(&mut self, rel: &Path, target: &[u8], path: &str) -> Result<()> {
        let target_str = String::from_utf8_lossy(target).into_owned();
        let bad = |reason: &str| LayerError::BadHardLink {
            path: path.to_string(),
            target: target_str.clone(),
            reason: reason.to_string(),
        };
        if target.is_empty() {
            return Err(invalid(path, "hard link without a target"));
        }
        let target_rel = normalize(target).map_err(|r| bad(&format!("is invalid: {r}")))?;
        if target_rel.as_os_str().is_empty() {
            return Err(bad("is the layer root"));
        }
        let (tdir, tname) = split(&target_rel);
        let tparent = walk(self.root.as_fd(), tdir, false).map_err(|e| match e {
            WalkError::Missing(_) => bad("does not exist in the layer"),
            e => e.into_layer_error(path),
        })?;
        match rustix::fs::statat(&tparent, tname, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                return Err(bad("is a directory"))
            }
            Ok(_) => {}
            Err(Errno::NOENT) => return Err(bad("does not exist in the layer")),
            Err(e) => {
                return Err(io_err(|| {
                    format!("layer entry {path:?}: looking up link target {target_str:?}")
                })(e))
            }
        }
        if target_rel == rel {
            return Ok(());
        }
        let (dir, name) = split(rel);
        let parent = self.cache.get(self.root.as_fd(), dir, true, path)?;
        // No AT_SYMLINK_FOLLOW: if the target is a symlink, the link is to the symlink itself.
        create_replacing(parent, name, || {
            rustix::fs::linkat(&tparent, tname, parent, name, AtFlags::empty())
        })
        .map_err(io_err(|| format!("creating hard link for layer entry {path:?}")))?;
        Ok(())
    }

    fn node(
        &mut self,
        rel: &Path,
        ft: FileType,
        dev: rustix::fs::Dev,
        meta: &Meta,
        path: &str,
    ) -> Result<()> {
        let (dir, name) = split(rel);
        let parent = self.cache.get(self.root.as_fd(), dir, true, path)?;
        create_replacing(parent, name, || {
            rustix::fs::mknodat(parent, name, ft, meta.mode, dev)
        })
        .map_err(io_err(|| {
            format!("creating device node for layer entry {path:?}")
        }))?;
        let ctx = || format!("setting metadata of layer entry {path:?}");
        rustix::fs::chownat(
            parent,
            name,
            Some(meta.uid),
            Some(meta.gid),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(io_err(ctx))?;
        // Just created by mknodat, so not a symlink; this sets the exact mode, whatever the umask.
        rustix::fs::chmodat(parent, name, meta.mode, AtFlags::empty()).map_err(io_err(ctx))?;
        if !meta.xattrs.is_empty() {
            let full = self.dest.join(rel);
            set_xattrs(XattrTarget::Path(&full), &meta.xattrs, path)?;
        }
        rustix::fs::utimensat(parent, name, &meta.times, AtFlags::SYMLINK_NOFOLLOW).map_err(io_err(ctx))?;
        Ok(())
    }

    /// `dir/.wh.name`: an overlayfs whiteout, a 0:0 character device `dir/name`.
    fn whiteout(&mut self, rel: &Path, hidden: &[u8], meta: &Meta, path: &str) -> Result<()> {
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(invalid(path, "whiteout of an invalid name"));
        }
        let dir = rel.parent().unwrap_or(Path::new(""));
        let name = OsStr::from_bytes(hidden);
        self.cache.invalidate_for(&dir.join(name));
        let parent = self.cache.get(self.root.as_fd(), dir, true, path)?;
        create_replacing(parent, name, || {
            rustix::fs::mknodat(
                parent,
                name,
                FileType::CharacterDevice,
                Mode::empty(),
                rustix::fs::makedev(0, 0),
            )
        })
        .map_err(io_err(|| format!("creating whiteout for layer entry {path:?}")))?;
        rustix::fs::chownat(
            parent,
            name,
            Some(meta.uid),
            Some(meta.gid),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(io_err(|| {
            format!("setting owner of whiteout for layer entry {path:?}")
        }))?;
        Ok(())
    }

    /// `dir/.wh..wh..opq`: `dir` hides everything below it in lower layers.
    fn opaque(&mut self, dir: &Path, path: &str) -> Result<()> {
        let fd = walk(self.root.as_fd(), dir, true).map_err(|e| e.into_layer_error(path))?;
        rustix::fs::fsetxattr(&fd, OPAQUE_XATTR, b"y", XattrFlags::empty()).map_err(io_err(|| {
            format!("layer entry {path:?}: marking directory opaque")
        }))
    }

    /// Sets the deferred directory times, deepest directories first. A directory a later entry
    /// replaced is skipped.
    fn set_dir_times(&mut self) -> Result<()> {
        self.cache = ParentCache::default();
        let mut dir_times = std::mem::take(&mut self.dir_times);
        dir_times.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (rel, times) in &dir_times {
            let ctx = || format!("setting times of layer directory {:?}", rel.display().to_string());
            if rel.as_os_str().is_empty() {
                rustix::fs::futimens(&self.root, times).map_err(io_err(ctx))?;
                continue;
            }
            let (dir, name) = split(rel);
            let Ok(parent) = self.cache.get(self.root.as_fd(), dir, false, "") else {
                continue;
            };
            match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                    rustix::fs::utimensat(parent, name, times, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(io_err(ctx))?;
                }
                _ => continue,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    use tar::{EntryType, Header};

    const MTIME: u64 = 1_600_000_000;

    /// Builds a layer tar in memory. Paths and link names are written into the header verbatim,
    /// so hostile names (`../x`, `/abs`) that `tar::Builder` would refuse can be made.
    struct Layer {
        b: tar::Builder<Vec<u8>>,
    }

    impl Layer {
        fn new() -> Layer {
            Layer {
                b: tar::Builder::new(Vec::new()),
            }
        }

        fn raw(&mut self, path: &str, ty: EntryType, data: &[u8], f: impl FnOnce(&mut Header)) -> &mut Self {
            let mut h = Header::new_gnu();
            let name = &mut h.as_old_mut().name;
            assert!(path.len() <= name.len(), "use a long-name helper for {path}");
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_entry_type(ty);
            h.set_mode(if ty == EntryType::Directory { 0o755 } else { 0o644 });
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(MTIME);
            h.set_size(data.len() as u64);
            f(&mut h);
            h.set_cksum();
            self.b.append(&h, data).unwrap();
            self
        }

        fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
            self.raw(path, EntryType::Regular, data, |_| {})
        }

        fn dir(&mut self, path: &str) -> &mut Self {
            self.raw(path, EntryType::Directory, b"", |_| {})
        }

        fn link(&mut self, path: &str, ty: EntryType, target: &str) -> &mut Self {
            self.raw(path, ty, b"", |h| {
                let l = &mut h.as_old_mut().linkname;
                l[..target.len()].copy_from_slice(target.as_bytes());
            })
        }

        fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
            self.link(path, EntryType::Symlink, target)
        }

        fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
            self.link(path, EntryType::Link, target)
        }

        fn bytes(&mut self) -> Vec<u8> {
            let b = std::mem::replace(&mut self.b, tar::Builder::new(Vec::new()));
            b.into_inner().unwrap()
        }
    }

    /// A tempdir with an empty `dest` subdirectory, so writes beside `dest` can be detected.
    struct Dest {
        tmp: tempfile::TempDir,
    }

    impl Dest {
        fn new() -> Dest {
            let tmp = tempfile::tempdir().unwrap();
            fs::create_dir(tmp.path().join("dest")).unwrap();
            Dest { tmp }
        }
        fn path(&self) -> PathBuf {
            self.tmp.path().join("dest")
        }
        fn apply(&self, tar: &[u8]) -> Result<ApplyStats> {
            apply_layer(tar, &self.path())
        }
        /// Names next to `dest` in the enclosing tempdir.
        fn siblings(&self) -> Vec<String> {
            let mut v: Vec<String> = fs::read_dir(self.tmp.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        }
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 256];
        match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                Some(buf)
            }
            Err(_) => None,
        }
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn plain_layer_files_dirs_links_modes_owners_times() {
        let tar = Layer::new()
            .raw("etc/", EntryType::Directory, b"", |h| {
                h.set_mode(0o750);
                h.set_uid(1000);
                h.set_gid(1000);
                h.set_mtime(1_500_000_000);
            })
            .raw("etc/secret", EntryType::Regular, b"top secret\n", |h| {
                h.set_mode(0o600);
                h.set_uid(1000);
                h.set_gid(1000);
            })
            .raw("./usr/bin/su", EntryType::Regular, b"\x7fELF....", |h| {
                h.set_mode(0o4755)
            })
            .raw("tmp/", EntryType::Directory, b"", |h| h.set_mode(0o1777))
            .symlink("bin", "usr/bin")
            .symlink("etc/abs", "/etc/secret")
            .hardlink("etc/secret-link", "etc/secret")
            .bytes();
        let d = Dest::new();
        let dest = d.path();
        let stats = d.apply(&tar).unwrap();
        assert_eq!(stats.size, 11 + 8);
        assert_eq!(stats.tar_size, tar.len() as u64);

        let etc = fs::symlink_metadata(dest.join("etc")).unwrap();
        assert!(etc.is_dir());
        assert_eq!(etc.mode() & 0o7777, 0o750);
        assert_eq!((etc.uid(), etc.gid()), (1000, 1000));
        // Set after the entries inside it were written.
        assert_eq!(etc.mtime(), 1_500_000_000);

        let secret = fs::symlink_metadata(dest.join("etc/secret")).unwrap();
        assert!(secret.is_file());
        assert_eq!(secret.mode() & 0o7777, 0o600);
        assert_eq!((secret.uid(), secret.gid()), (1000, 1000));
        assert_eq!(secret.mtime(), MTIME as i64);
        assert_eq!(fs::read(dest.join("etc/secret")).unwrap(), b"top secret\n");

        let su = fs::symlink_metadata(dest.join("usr/bin/su")).unwrap();
        assert_eq!(su.mode() & 0o7777, 0o4755);
        assert_eq!((su.uid(), su.gid()), (0, 0));
        // Implicitly created parents.
        let usr = fs::symlink_metadata(dest.join("usr")).unwrap();
        assert!(usr.is_dir());
        assert_eq!(usr.mode() & 0o7777, 0o755);
        assert_eq!(
            fs::symlink_metadata(dest.join("tmp")).unwrap().mode() & 0o7777,
            0o1777
        );

        let bin = fs::symlink_metadata(dest.join("bin")).unwrap();
        assert!(bin.file_type().is_symlink());
        assert_eq!(fs::read_link(dest.join("bin")).unwrap(), Path::new("usr/bin"));
        assert_eq!(bin.mtime(), MTIME as i64);
        assert_eq!(
            fs::read_link(dest.join("etc/abs")).unwrap(),
            Path::new("/etc/secret")
        );

        let link = fs::symlink_metadata(dest.join("etc/secret-link")).unwrap();
        assert_eq!(link.ino(), secret.ino());
        assert_eq!(link.nlink(), 2);
    }

    #[test]
    fn root_entry_sets_dest_metadata() {
        let tar = Layer::new()
            .raw("./", EntryType::Directory, b"", |h| {
                h.set_mode(0o711);
                h.set_uid(7);
                h.set_gid(8);
                h.set_mtime(1_234_567_890);
            })
            .file("f", b"x")
            .bytes();
        let d = Dest::new();
        d.apply(&tar).unwrap();
        let m = fs::metadata(d.path()).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o711);
        assert_eq!((m.uid(), m.gid()), (7, 8));
        assert_eq!(m.mtime(), 1_234_567_890);
    }

    #[test]
    fn non_directory_at_root_or_empty_path_is_rejected() {
        for name in ["./", "/", "."] {
            let tar = Layer::new().file(name, b"x").bytes();
            let err = Dest::new().apply(&tar).unwrap_err();
            assert!(matches!(err, LayerError::InvalidEntry { .. }), "{name}: {err}");
        }
    }

    #[test]
    fn diff_id_is_sha256_of_the_uncompressed_tar() {
        let mut tar = Layer::new()
            .dir("a/")
            .file("a/b", &vec![42u8; 70_000])
            .symlink("c", "a/b")
            .bytes();
        // Trailing zero padding (as tar tools write up to a 10 KiB record) is part of the diff_id.
        tar.extend(vec![0u8; 10240 - tar.len() % 10240]);
        let want = Digest::of(&tar);
        let zst = zstd::stream::encode_all(&tar[..], 3).unwrap();
        for (what, blob) in [("plain", tar.clone()), ("gzip", gzip(&tar)), ("zstd", zst)] {
            let d = Dest::new();
            let stats = d.apply(&blob).unwrap();
            assert_eq!(stats.diff_id, want, "{what}");
            assert_eq!(stats.tar_size, tar.len() as u64, "{what}");
            assert_eq!(stats.size, 70_000, "{what}");
            assert_eq!(fs::read(d.path().join("a/b")).unwrap().len(), 70_000, "{what}");
        }
    }

    #[test]
    fn a_known_blob_digest_is_the_diff_id_only_of_an_uncompressed_layer() {
        let tar = Layer::new().file("f", &vec![7u8; 5000]).bytes();
        let real = Digest::of(&tar);
        // The caller vouches for the bytes (a verified download): no second hash, its digest.
        let vouched = Digest::of(b"what the downloader checked");
        let d = Dest::new();
        let stats = apply_layer_known(&tar[..], &d.path(), Some(&vouched)).unwrap();
        assert_eq!(stats.diff_id, vouched);
        assert_eq!(stats.tar_size, tar.len() as u64);
        assert_eq!(fs::read(d.path().join("f")).unwrap().len(), 5000);
        // A compressed blob's digest is not its diff_id: the tar is hashed as always.
        let d = Dest::new();
        let stats = apply_layer_known(&gzip(&tar)[..], &d.path(), Some(&vouched)).unwrap();
        assert_eq!(stats.diff_id, real);
    }

    #[test]
    fn whiteouts_become_char_devices_and_opaque_xattrs() {
        let tar = Layer::new()
            .dir("a/")
            .file("a/.wh.gone", b"")
            .file(".wh.toplevel", b"")
            .file("a/.wh..wh..opq", b"")
            .file("new/.wh..wh..opq", b"")
            .file("a/.wh..wh.plnk", b"")
            .bytes();
        let d = Dest::new();
        let dest = d.path();
        d.apply(&tar).unwrap();
        for p in ["a/gone", "toplevel"] {
            let m = fs::symlink_metadata(dest.join(p)).unwrap();
            assert!(m.file_type().is_char_device(), "{p}");
            assert_eq!(m.rdev(), 0, "{p}");
        }
        assert_eq!(listing(&dest.join("a")), ["gone"]);
        assert_eq!(listing(&dest), ["a", "new", "toplevel"]);
        assert_eq!(
            xattr(&dest.join("a"), "trusted.overlay.opaque").as_deref(),
            Some(&b"y"[..])
        );
        assert_eq!(
            xattr(&dest.join("new"), "trusted.overlay.opaque").as_deref(),
            Some(&b"y"[..])
        );
        assert!(listing(&dest.join("new")).is_empty());
    }

    #[test]
    fn whiteout_of_dot_dot_is_rejected() {
        let tar = Layer::new().file("a/.wh...", b"").bytes();
        let d = Dest::new();
        assert!(matches!(
            d.apply(&tar).unwrap_err(),
            LayerError::InvalidEntry { .. }
        ));
        assert_eq!(d.siblings(), ["dest"]);
    }

    #[test]
    fn dot_dot_paths_are_rejected_and_nothing_escapes() {
        for name in ["../escape", "a/../../escape", "./../escape", "/../escape"] {
            let tar = Layer::new().file(name, b"pwned").bytes();
            let d = Dest::new();
            let err = d.apply(&tar).unwrap_err();
            assert!(matches!(err, LayerError::InvalidEntry { .. }), "{name}: {err}");
            assert!(err.to_string().contains(".."), "{err}");
            assert_eq!(d.siblings(), ["dest"], "{name}");
        }
    }

    #[test]
    fn absolute_paths_land_inside_dest() {
        let host = Path::new("/etc/xyz-berth-test");
        assert!(!host.exists());
        let tar = Layer::new().file("/etc/xyz-berth-test", b"inside").bytes();
        let d = Dest::new();
        d.apply(&tar).unwrap();
        assert_eq!(fs::read(d.path().join("etc/xyz-berth-test")).unwrap(), b"inside");
        assert!(!host.exists());
    }

    #[test]
    fn writing_through_a_symlink_to_outside_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        let tar = Layer::new()
            .symlink("evil", outside.path().to_str().unwrap())
            .file("evil/pwned", b"x")
            .bytes();
        let d = Dest::new();
        let err = d.apply(&tar).unwrap_err();
        match &err {
            LayerError::ThroughSymlink { path, symlink } => {
                assert_eq!((path.as_str(), symlink.as_str()), ("evil/pwned", "evil"));
            }
            e => panic!("unexpected error {e}"),
        }
        assert_eq!(
            err.to_string(),
            "layer entry \"evil/pwned\" goes through symlink \"evil\""
        );
        assert!(listing(outside.path()).is_empty());

        // Deeper, and via a directory entry and a whiteout.
        for second in [
            Layer::new().dir("evil/sub/").bytes(),
            Layer::new().file("evil/.wh.x", b"").bytes(),
        ] {
            let mut tar = Layer::new()
                .dir("d/")
                .symlink("d/evil", outside.path().to_str().unwrap())
                .bytes();
            tar.truncate(tar.len() - 1024);
            let mut second = second;
            // Re-prefix the second entry's path with d/.
            let mut h = Header::from_byte_slice(&second[..512]).clone();
            let p = h.path_bytes().into_owned();
            let mut newp = b"d/".to_vec();
            newp.extend(p);
            h.as_old_mut().name = [0; 100];
            h.as_old_mut().name[..newp.len()].copy_from_slice(&newp);
            h.set_cksum();
            second[..512].copy_from_slice(h.as_bytes());
            tar.extend(second);
            let err = Dest::new().apply(&tar).unwrap_err();
            assert!(matches!(err, LayerError::ThroughSymlink { .. }), "{err}");
            assert!(listing(outside.path()).is_empty());
        }
    }

    #[test]
    fn symlink_to_parent_is_not_followed() {
        let tar = Layer::new().symlink("evil", "..").file("evil/x", b"x").bytes();
        let d = Dest::new();
        let err = d.apply(&tar).unwrap_err();
        assert!(matches!(err, LayerError::ThroughSymlink { .. }), "{err}");
        assert_eq!(d.siblings(), ["dest"]);

        let tar = Layer::new().symlink("evil", ".").file("evil/x", b"x").bytes();
        let d = Dest::new();
        assert!(matches!(
            d.apply(&tar).unwrap_err(),
            LayerError::ThroughSymlink { .. }
        ));
        assert_eq!(listing(&d.path()), ["evil"]);
    }

    #[test]
    fn non_directory_parent_is_an_error() {
        let tar = Layer::new().file("f", b"x").file("f/g", b"y").bytes();
        let err = Dest::new().apply(&tar).unwrap_err();
        assert!(matches!(err, LayerError::NotADirectory { .. }), "{err}");
    }

    #[test]
    fn hardlinks_outside_the_layer_are_refused() {
        for target in ["../../etc/passwd", "/etc/shadow", "etc/passwd", "../x"] {
            let tar = Layer::new().hardlink("link", target).bytes();
            let d = Dest::new();
            let err = d.apply(&tar).unwrap_err();
            assert!(matches!(err, LayerError::BadHardLink { .. }), "{target}: {err}");
            assert!(!d.path().join("link").exists(), "{target}");
            assert!(listing(&d.path()).is_empty(), "{target}");
        }
    }

    #[test]
    fn hardlink_through_symlink_is_refused() {
        let tar = Layer::new()
            .symlink("evil", "/etc")
            .hardlink("link", "evil/passwd")
            .bytes();
        let d = Dest::new();
        let err = d.apply(&tar).unwrap_err();
        assert!(matches!(err, LayerError::ThroughSymlink { .. }), "{err}");
        assert_eq!(listing(&d.path()), ["evil"]);
    }

    #[test]
    fn hardlink_without_target_is_refused() {
        let tar = Layer::new().file("f", b"x").hardlink("link", "").bytes();
        let err = Dest::new().apply(&tar).unwrap_err();
        assert!(matches!(err, LayerError::InvalidEntry { .. }), "{err}");
        let tar = Layer::new().file("f", b"x").hardlink("link", "./").bytes();
        let err = Dest::new().apply(&tar).unwrap_err();
        assert!(matches!(err, LayerError::BadHardLink { .. }), "{err}");
    }

    #[test]
    fn hardlink_to_directory_is_refused() {
        let tar = Layer::new().dir("d/").hardlink("link", "d").bytes();
        let err = Dest::new().apply(&tar).unwrap_err();
        assert!(matches!(err, LayerError::BadHardLink { .. }), "{err}");
    }

    #[test]
    fn hardlink_to_a_symlink_links_the_symlink_itself() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        fs::write(&victim, b"host").unwrap();
        let tar = Layer::new()
            .symlink("s", victim.to_str().unwrap())
            .hardlink("h", "s")
            .bytes();
        let d = Dest::new();
        d.apply(&tar).unwrap();
        let h = fs::symlink_metadata(d.path().join("h")).unwrap();
        assert!(h.file_type().is_symlink());
        assert_eq!(h.ino(), fs::symlink_metadata(d.path().join("s")).unwrap().ino());
        assert_eq!(fs::metadata(&victim).unwrap().nlink(), 1);
    }

    #[test]
    fn device_nodes_and_fifos() {
        let tar = Layer::new()
            .raw("dev/null", EntryType::Char, b"", |h| {
                h.set_device_major(1).unwrap();
                h.set_device_minor(3).unwrap();
                h.set_mode(0o666);
            })
            .raw("dev/loop9", EntryType::Block, b"", |h| {
                h.set_device_major(7).unwrap();
                h.set_device_minor(9).unwrap();
                h.set_mode(0o660);
                h.set_gid(6);
            })
            .raw("run/fifo", EntryType::Fifo, b"", |h| h.set_mode(0o620))
            .bytes();
        let d = Dest::new();
        d.apply(&tar).unwrap();
        let null = fs::symlink_metadata(d.path().join("dev/null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(
            (rustix::fs::major(null.rdev()), rustix::fs::minor(null.rdev())),
            (1, 3)
        );
        assert_eq!(null.mode() & 0o7777, 0o666);
        let lp = fs::symlink_metadata(d.path().join("dev/loop9")).unwrap();
        assert!(lp.file_type().is_block_device());
        assert_eq!(
            (rustix::fs::major(lp.rdev()), rustix::fs::minor(lp.rdev())),
            (7, 9)
        );
        assert_eq!((lp.mode() & 0o7777, lp.gid()), (0o660, 6));
        let fifo = fs::symlink_metadata(d.path().join("run/fifo")).unwrap();
        assert!(fifo.file_type().is_fifo());
        assert_eq!(fifo.mode() & 0o7777, 0o620);
    }

    #[test]
    fn truncated_tar_is_an_error() {
        let tar = Layer::new().file("a", &vec![1u8; 5000]).file("b", b"bbb").bytes();
        for cut in [512 + 2000, 512 + 4096, 300, 512 + 5120 + 100] {
            let d = Dest::new();
            let err = d.apply(&tar[..cut]).unwrap_err();
            assert!(
                matches!(err, LayerError::Tar(_) | LayerError::TarEntry { .. }),
                "cut {cut}: {err}"
            );
        }
        // The same, gzip-compressed and cut.
        let gz = gzip(&tar);
        let err = Dest::new().apply(&gz[..gz.len() / 2]).unwrap_err();
        assert!(
            matches!(err, LayerError::Tar(_) | LayerError::TarEntry { .. }),
            "{err}"
        );
        // A corrupt gzip trailer is noticed too (the stream is read to the end).
        let mut gz = gzip(&tar);
        let n = gz.len();
        gz[n - 6] ^= 0xff;
        assert!(Dest::new().apply(&gz).is_err());
    }

    #[test]
    fn corrupt_header_is_an_error() {
        let mut tar = Layer::new().file("a", b"x").bytes();
        tar[0] ^= 0x20;
        let err = Dest::new().apply(&tar).unwrap_err();
        assert!(matches!(err, LayerError::Tar(_)), "{err}");
    }

    #[test]
    fn long_names_gnu_and_pax() {
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(150));
        let mut b = tar::Builder::new(Vec::new());
        let mut h = Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o644);
        h.set_entry_type(EntryType::Regular);
        b.append_data(&mut h, &long, &b"long"[..]).unwrap();

        let pax_path = format!("p/{}", "x".repeat(200));
        b.append_pax_extensions([
            ("path", pax_path.as_bytes()),
            ("SCHILY.xattr.user.test", &b"hello"[..]),
        ])
        .unwrap();
        let mut h = Header::new_ustar();
        h.set_path("p/short").unwrap();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, &b"pax"[..]).unwrap();

        let link_target = format!("{}/{}", "d".repeat(120), "f".repeat(150));
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Link);
        h.set_size(0);
        b.append_link(&mut h, "hl", &link_target).unwrap();
        let tar = b.into_inner().unwrap();

        let d = Dest::new();
        d.apply(&tar).unwrap();
        assert_eq!(fs::read(d.path().join(&long)).unwrap(), b"long");
        let p = d.path().join(&pax_path);
        assert_eq!(fs::read(&p).unwrap(), b"pax");
        assert_eq!(xattr(&p, "user.test").as_deref(), Some(&b"hello"[..]));
        assert!(!d.path().join("p/short").exists());
        assert_eq!(fs::read(d.path().join("hl")).unwrap(), b"long");
    }

    #[test]
    fn pax_mtime_with_fraction_and_overlay_xattrs_ignored() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([
            ("mtime", &b"1700000000.25"[..]),
            ("SCHILY.xattr.trusted.overlay.redirect", &b"/etc"[..]),
            ("SCHILY.xattr.trusted.berth", &b"ok"[..]),
        ])
        .unwrap();
        let mut h = Header::new_ustar();
        h.set_path("f").unwrap();
        h.set_size(0);
        h.set_mode(0o644);
        h.set_mtime(1);
        h.set_cksum();
        b.append(&h, &b""[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let d = Dest::new();
        d.apply(&tar).unwrap();
        let f = d.path().join("f");
        let m = fs::metadata(&f).unwrap();
        assert_eq!((m.mtime(), m.mtime_nsec()), (1_700_000_000, 250_000_000));
        assert_eq!(xattr(&f, "trusted.overlay.redirect"), None);
        assert_eq!(xattr(&f, "trusted.berth").as_deref(), Some(&b"ok"[..]));
    }

    #[test]
    fn parse_pax_times() {
        let t = |s: &str| parse_pax_time(s.as_bytes()).map(|t| (t.tv_sec, t.tv_nsec));
        assert_eq!(t("12"), Some((12, 0)));
        assert_eq!(t("12.5"), Some((12, 500_000_000)));
        assert_eq!(t("12.1234567891"), Some((12, 123_456_789)));
        assert_eq!(t("-1.5"), Some((-2, 500_000_000)));
        assert_eq!(t("-3"), Some((-3, 0)));
        assert_eq!(t("x"), None);
        assert_eq!(t(".5"), None);
        assert_eq!(t("1.5e3"), None);
    }

    #[test]
    fn later_entries_replace_earlier_ones_without_following_symlinks() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        fs::write(&victim, b"host").unwrap();
        let tar = Layer::new()
            .symlink("s", victim.to_str().unwrap())
            .file("s", b"layer")
            .dir("d/")
            .file("d/inner", b"i")
            .file("d", b"now a file")
            .file("f", b"f")
            .dir("f/")
            .raw("keep/", EntryType::Directory, b"", |h| h.set_mode(0o700))
            .file("keep/child", b"c")
            .raw("keep/", EntryType::Directory, b"", |h| h.set_mode(0o711))
            .bytes();
        let d = Dest::new();
        d.apply(&tar).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"host");
        let s = fs::symlink_metadata(d.path().join("s")).unwrap();
        assert!(s.is_file());
        assert_eq!(fs::read(d.path().join("s")).unwrap(), b"layer");
        assert_eq!(fs::read(d.path().join("d")).unwrap(), b"now a file");
        assert!(fs::symlink_metadata(d.path().join("f")).unwrap().is_dir());
        assert_eq!(
            fs::metadata(d.path().join("keep")).unwrap().permissions().mode() & 0o7777,
            0o711
        );
        assert_eq!(fs::read(d.path().join("keep/child")).unwrap(), b"c");
    }

    #[test]
    fn dest_must_be_empty() {
        let d = Dest::new();
        fs::write(d.path().join("x"), b"").unwrap();
        let tar = Layer::new().file("a", b"x").bytes();
        assert!(matches!(
            d.apply(&tar).unwrap_err(),
            LayerError::DestinationNotEmpty(_)
        ));
    }

    #[test]
    fn unknown_entry_types_are_skipped() {
        let tar = Layer::new()
            .raw("weird", EntryType::new(b'Z'), b"zz", |_| {})
            .file("ok", b"ok")
            .bytes();
        let d = Dest::new();
        d.apply(&tar).unwrap();
        assert_eq!(listing(&d.path()), ["ok"]);
    }

    #[test]
    fn replacing_a_deep_directory_tree_with_a_file() {
        let d = Dest::new();
        let mut l = Layer::new();
        let mut p = String::new();
        for _ in 0..40 {
            p.push_str("a/");
            l.dir(&p);
        }
        l.file("a", b"flat");
        d.apply(&l.bytes()).unwrap();
        assert_eq!(fs::read(d.path().join("a")).unwrap(), b"flat");
    }
}
