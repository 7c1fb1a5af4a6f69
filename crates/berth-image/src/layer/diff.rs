//! Turning a container's overlayfs upper directory into an OCI layer tar: the inverse of
//! [`apply_layer`](super::apply_layer). Used by `commit` and by the builder's RUN/COPY steps.
//!
//! The upper directory is in overlayfs form: a deleted file is a 0:0 character device (or, on
//! kernels that write them, a regular file with the `trusted.overlay.whiteout` xattr) and a
//! directory that replaced a lower one has `trusted.overlay.opaque=y`. In the tar these become
//! `dir/.wh.name` and a `dir/.wh..wh..opq` entry right after the directory's own entry.
//!
//! The output is reproducible: the tree is walked first (metadata only), the entries are written
//! in byte order of their paths in the upper directory (so parents come before children; a
//! whiteout sits where the deleted name sorts, as in Docker's walk), and nothing that depends on
//! the machine goes into a header: no atime/ctime, no user or group names, no `trusted.*` or
//! `security.selinux` xattrs, whiteouts and opaque markers with mtime 0. The same tree gives the
//! same bytes, and so the same diff ID, anywhere.
//!
//! Nothing in the upper directory is ever followed: directories are opened one component at a
//! time with `O_NOFOLLOW` relative to their parent's descriptor, and xattrs are read through
//! `/proc/self/fd/<parent>/<name>` with the `l*` calls. A symlink the container planted where a
//! directory was therefore never leads the walk outside the upper directory.

use crate::content::ContentStore;
use crate::digest::{Digest, DigestWriter};
use crate::error::ImageError;
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use tar::{EntryType, Header};

/// How to write a layer diff.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffOptions {
    /// `SOURCE_DATE_EPOCH`: every mtime later than this (seconds since the Unix epoch) is written
    /// as this, as BuildKit's `rewrite-timestamp` does. Earlier mtimes are kept.
    pub source_date_epoch: Option<i64>,
    /// [`store_layer_diff`]: store the blob gzip-compressed. Off by default: layers made here
    /// (build, commit) are stored uncompressed, as dockerd stores them; compressing incompressible
    /// data costs far more than writing it.
    pub gzip: bool,
}

/// What writing a layer diff produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffStats {
    /// sha256 of the uncompressed tar (the layer's diff ID).
    pub diff_id: Digest,
    /// Length of the uncompressed tar in bytes.
    pub size: u64,
    /// Number of entries in the tar: files, directories, links, devices, whiteouts and opaque
    /// markers (GNU long-name and PAX records not counted).
    pub files: u64,
}

/// A layer diff as a blob: gzip-compressed, or the plain tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressedDiff {
    /// The uncompressed tar.
    pub diff: DiffStats,
    /// sha256 of the blob (the digest in the image manifest; the diff ID when not compressed).
    pub digest: Digest,
    /// Length of the blob in bytes.
    pub size: u64,
    pub gzip: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// Reading the upper directory failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// A file was changed while the layer was written (a running container kept writing).
    #[error("{path:?} changed while the layer was being written")]
    Changed { path: String },
    /// The upper directory uses an overlayfs feature whose data lives in the lower layers.
    #[error(
        "{path:?} uses overlayfs {feature}, which a layer cannot express without the lower layers \
         (mount overlayfs with redirect_dir=off,metacopy=off)"
    )]
    Unsupported { path: String, feature: &'static str },
    /// Writing the tar (or the compressed blob) failed.
    #[error("writing layer: {0}")]
    Write(#[source] io::Error),
    /// Committing the compressed blob to the content store failed.
    #[error("storing layer: {0}")]
    Store(#[source] Box<ImageError>),
}

type Result<T, E = DiffError> = std::result::Result<T, E>;

/// gzip level for layer blobs: the default level, as Docker and containerd use; fixed so that the
/// same tar always compresses to the same blob.
const GZIP_LEVEL: u32 = 6;
/// Buffer between the tar writer and the hashing (and compression) below it.
const WRITE_BUFFER: usize = 1 << 20;

const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const WHITEOUT_PREFIX: &[u8] = b".wh.";

/// Writes the changes in overlayfs upper directory `upper` to `out` as an uncompressed OCI layer
/// tar, and returns its diff ID, size and entry count.
pub fn write_layer_diff(upper: &Path, out: impl Write, opts: &DiffOptions) -> Result<DiffStats> {
    let (diff, mut out) = write_tar(upper, out, opts)?;
    out.flush().map_err(DiffError::Write)?;
    Ok(diff)
}

/// Like [`write_layer_diff`], but writes the tar gzip-compressed (deterministically: no name or
/// mtime in the gzip header, a fixed level), computing the diff ID of the tar and the digest of
/// the compressed blob in the same pass.
pub fn compress_layer_diff(upper: &Path, out: impl Write, opts: &DiffOptions) -> Result<CompressedDiff> {
    let gz = flate2::GzBuilder::new().write(DigestWriter::new(out), flate2::Compression::new(GZIP_LEVEL));
    let (diff, gz) = write_tar(upper, gz, opts)?;
    let (digest, size, mut out) = gz.finish().map_err(DiffError::Write)?.finish();
    out.flush().map_err(DiffError::Write)?;
    Ok(CompressedDiff {
        diff,
        digest,
        size,
        gzip: true,
    })
}

/// [`write_layer_diff`] (or [`compress_layer_diff`] with `opts.gzip`) straight into the content
/// store: the blob is streamed into the store's ingest area (by a second thread, so producing
/// and hashing/writing overlap) and committed under its digest. On any error nothing is
/// committed.
pub fn store_layer_diff(store: &ContentStore, upper: &Path, opts: &DiffOptions) -> Result<CompressedDiff> {
    let (tx, rx) = mpsc::sync_channel(4);
    std::thread::scope(|s| {
        let producer = s.spawn(move || {
            let mut w = ChunkWriter {
                tx,
                buf: Vec::with_capacity(WRITE_BUFFER),
            };
            let res = if opts.gzip {
                compress_layer_diff(upper, &mut w, opts)
            } else {
                write_layer_diff(upper, &mut w, opts).map(|diff| CompressedDiff {
                    digest: diff.diff_id.clone(),
                    size: diff.size,
                    diff,
                    gzip: false,
                })
            };
            if res.is_ok() {
                // Only a stream that ends with this marker is complete.
                let _ = w.tx.send(None);
            }
            res
        });
        let stored = store.ingest(
            ChunkReader {
                rx,
                cur: Vec::new(),
                pos: 0,
            },
            None,
        );
        let produced = producer.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?;
        let (digest, size) = stored.map_err(|e| DiffError::Store(Box::new(e)))?;
        debug_assert_eq!((&digest, size), (&produced.digest, produced.size));
        Ok(produced)
    })
}

/// The write half of an in-process pipe: sends chunks of `WRITE_BUFFER` bytes.
struct ChunkWriter {
    tx: mpsc::SyncSender<Option<Vec<u8>>>,
    buf: Vec<u8>,
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= WRITE_BUFFER {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(WRITE_BUFFER));
            self.tx
                .send(Some(chunk))
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "content store stopped reading"))?;
        }
        Ok(())
    }
}

/// The read half: a stream that stops without the end marker is an error, not an EOF, so a failed
/// diff can never be committed as a truncated blob.
struct ChunkReader {
    rx: mpsc::Receiver<Option<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(Some(chunk)) => {
                    self.cur = chunk;
                    self.pos = 0;
                }
                Ok(None) => return Ok(0),
                Err(_) => return Err(io::Error::other("writing the layer diff failed")),
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Walks `upper`, writes the tar into `out` and hands `out` back.
fn write_tar<W: Write>(upper: &Path, out: W, opts: &DiffOptions) -> Result<(DiffStats, W)> {
    let root = rustix::fs::open(
        upper,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err(|| format!("opening upper directory {}", upper.display())))?;
    let mut nodes = scan(&root)?;
    nodes.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    tracing::debug!(upper = %upper.display(), entries = nodes.len(), "writing layer diff");

    let mut w = TarWriter {
        builder: tar::Builder::new(BufWriter::with_capacity(WRITE_BUFFER, DigestWriter::new(out))),
        root,
        parent: None,
        epoch: opts.source_date_epoch,
        links: HashMap::new(),
        files: 0,
    };
    for node in &nodes {
        w.node(node)?;
    }
    let files = w.files;
    let (diff_id, size, out) = w
        .builder
        .into_inner()
        .and_then(|b| b.into_inner().map_err(|e| e.into_error()))
        .map_err(DiffError::Write)?
        .finish();
    Ok((DiffStats { diff_id, size, files }, out))
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

fn io_err<E: Into<io::Error>>(context: impl FnOnce() -> String) -> impl FnOnce(E) -> DiffError {
    move |e| DiffError::Io {
        context: context(),
        source: e.into(),
    }
}

fn lossy(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir { opaque: bool },
    File,
    Symlink,
    Fifo,
    Char,
    Block,
    Whiteout,
}

/// One thing found in the upper directory.
struct Node {
    /// Relative path, `/`-separated, no leading or trailing slash.
    path: Vec<u8>,
    kind: Kind,
    /// Permission bits including setuid/setgid/sticky.
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    size: u64,
    rdev: u64,
    /// (st_dev, st_ino) when the inode has more than one link, to find hard links.
    link_key: Option<(u64, u64)>,
    ino: u64,
    symlink_target: Vec<u8>,
    /// The xattrs that belong in the layer, sorted by name.
    xattrs: Vec<(String, Vec<u8>)>,
}

/// An open directory of the upper tree and its relative path, kept to open what is next to it.
type OpenDir = (Vec<u8>, OwnedFd);

/// Opens directory `path` (relative to `root`, `/`-separated) one component at a time with
/// `O_NOFOLLOW`, starting from `near` when that is `path` or one of its ancestors.
fn open_dir(root: &OwnedFd, near: Option<&OpenDir>, path: &[u8]) -> rustix::io::Result<OwnedFd> {
    let (start, rest) = match near {
        Some((p, fd)) if p.is_empty() => (fd.as_fd(), path),
        Some((p, fd)) if path == p.as_slice() => (fd.as_fd(), &[][..]),
        Some((p, fd)) if path.starts_with(p) && path.get(p.len()) == Some(&b'/') => {
            (fd.as_fd(), &path[p.len() + 1..])
        }
        _ => (root.as_fd(), path),
    };
    let mut cur: Option<OwnedFd> = None;
    for comp in rest.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        let at = cur.as_ref().map_or(start, |fd| fd.as_fd());
        cur = Some(rustix::fs::openat(
            at,
            OsStr::from_bytes(comp),
            dir_flags(),
            Mode::empty(),
        )?);
    }
    match cur {
        Some(fd) => Ok(fd),
        None => rustix::fs::openat(start, ".", dir_flags(), Mode::empty()),
    }
}

/// Maps an error reaching `path`: if it is gone, or no longer a directory, the tree changed.
fn reach_err(path: &[u8]) -> impl FnOnce(Errno) -> DiffError + '_ {
    move |e| {
        if e == Errno::NOENT || e == Errno::LOOP || e == Errno::NOTDIR {
            DiffError::Changed { path: lossy(path) }
        } else {
            io_err(|| format!("opening {:?} in upper directory", lossy(path)))(e)
        }
    }
}

/// Reads the whole tree's metadata (no file contents). Iterative, so a deep tree cannot overflow
/// the stack; pending directories are kept as paths, so a wide one cannot exhaust descriptors.
fn scan(root: &OwnedFd) -> Result<Vec<Node>> {
    let mut nodes = Vec::new();
    let mut last: Option<OpenDir> = None;
    let mut pending: Vec<Vec<u8>> = vec![Vec::new()];
    while let Some(dir_path) = pending.pop() {
        let dfd = open_dir(root, last.as_ref(), &dir_path).map_err(reach_err(&dir_path))?;
        let ctx = || format!("listing {:?} in upper directory", lossy(&dir_path));
        let mut names = Vec::new();
        let mut dir = rustix::fs::Dir::read_from(&dfd).map_err(io_err(ctx))?;
        while let Some(ent) = dir.read() {
            let name = ent.map_err(io_err(ctx))?.file_name().to_bytes().to_vec();
            if name != b"." && name != b".." {
                names.push(name);
            }
        }
        for name in names {
            let mut path = dir_path.clone();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&name);
            if let Some(node) = scan_one(dfd.as_fd(), OsStr::from_bytes(&name), path)? {
                if let Kind::Dir { .. } = node.kind {
                    pending.push(node.path.clone());
                }
                nodes.push(node);
            }
        }
        last = Some((dir_path, dfd));
    }
    Ok(nodes)
}

/// Stats and classifies `name` in directory `dfd`. Sockets (which a tar cannot hold) give `None`.
fn scan_one(dfd: BorrowedFd<'_>, name: &OsStr, path: Vec<u8>) -> Result<Option<Node>> {
    let ctx = || format!("reading {:?} in upper directory", lossy(&path));
    let st = rustix::fs::statat(dfd, name, AtFlags::SYMLINK_NOFOLLOW).map_err(io_err(ctx))?;
    // The parent is reached through its descriptor; the final component is never followed.
    let mut proc_path = OsString::from(format!("/proc/self/fd/{}/", dfd.as_raw_fd())).into_vec();
    proc_path.extend_from_slice(name.as_bytes());
    let proc_path = PathBuf::from(OsString::from_vec(proc_path));
    let all_xattrs = read_xattrs(&proc_path).map_err(io_err(ctx))?;

    let ft = FileType::from_raw_mode(st.st_mode);
    let overlay = |key: &str| {
        all_xattrs
            .iter()
            .find(|(n, _)| n == &format!("trusted.overlay.{key}") || n == &format!("user.overlay.{key}"))
            .map(|(_, v)| v.as_slice())
    };
    if overlay("redirect").is_some() {
        return Err(DiffError::Unsupported {
            path: lossy(&path),
            feature: "redirect_dir",
        });
    }
    if overlay("metacopy").is_some() {
        return Err(DiffError::Unsupported {
            path: lossy(&path),
            feature: "metacopy",
        });
    }
    let kind = match ft {
        FileType::Directory => Kind::Dir {
            // "x" means "holds xattr whiteouts", not opaque.
            opaque: overlay("opaque") == Some(b"y"),
        },
        FileType::RegularFile if overlay("whiteout").is_some() => Kind::Whiteout,
        FileType::RegularFile => Kind::File,
        FileType::Symlink => Kind::Symlink,
        FileType::Fifo => Kind::Fifo,
        FileType::CharacterDevice if st.st_rdev == 0 => Kind::Whiteout,
        FileType::CharacterDevice => Kind::Char,
        FileType::BlockDevice => Kind::Block,
        FileType::Socket | FileType::Unknown => {
            tracing::debug!(path = %lossy(&path), "skipping socket in upper directory");
            return Ok(None);
        }
    };
    let symlink_target = if kind == Kind::Symlink {
        rustix::fs::readlinkat(dfd, name, Vec::new())
            .map_err(io_err(ctx))?
            .into_bytes()
    } else {
        Vec::new()
    };
    let mut xattrs: Vec<(String, Vec<u8>)> = all_xattrs.into_iter().filter(|(n, _)| keep_xattr(n)).collect();
    xattrs.sort();
    let hard_linkable = !matches!(kind, Kind::Dir { .. } | Kind::Whiteout);
    Ok(Some(Node {
        kind,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime: st.st_mtime,
        size: st.st_size as u64,
        rdev: st.st_rdev,
        link_key: (hard_linkable && st.st_nlink > 1).then_some((st.st_dev, st.st_ino)),
        ino: st.st_ino,
        symlink_target,
        xattrs,
        path,
    }))
}

/// The xattrs a layer carries: file capabilities and user xattrs, as Docker and BuildKit do.
/// Overlayfs' own (`trusted.overlay.*`, `user.overlay.*`), SELinux labels and other `trusted.*`
/// ones describe this host, not the image.
fn keep_xattr(name: &str) -> bool {
    name == "security.capability" || (name.starts_with("user.") && !name.starts_with("user.overlay."))
}

/// Every xattr of `path` (not following a final symlink). Names that are not UTF-8 cannot be PAX
/// keys in the tar crate and are skipped.
fn read_xattrs(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut list = vec![0u8; 256];
    let n = loop {
        match rustix::fs::llistxattr(path, &mut list[..]) {
            Ok(n) => break n,
            Err(Errno::RANGE) => {
                let want = rustix::fs::llistxattr_query(path)?;
                list.resize(want.max(list.len() * 2), 0);
            }
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for name in list[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let Ok(name) = std::str::from_utf8(name) else {
            tracing::warn!(path = %path.display(), name = %lossy(name), "skipping xattr with a non-UTF-8 name");
            continue;
        };
        let mut value = vec![0u8; 256];
        let len = loop {
            match rustix::fs::lgetxattr(path, name, &mut value[..]) {
                Ok(len) => break Some(len),
                Err(Errno::RANGE) => {
                    let want = rustix::fs::lgetxattr_query(path, name)?;
                    value.resize(want.max(value.len() * 2), 0);
                }
                // Removed between listing and reading.
                Err(Errno::NODATA) => break None,
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(len) = len {
            value.truncate(len);
            out.push((name.to_string(), value));
        }
    }
    Ok(out)
}

struct TarWriter<W: Write> {
    builder: tar::Builder<BufWriter<DigestWriter<W>>>,
    root: OwnedFd,
    /// The directory of the last regular file read, kept open: files in one directory are
    /// consecutive.
    parent: Option<OpenDir>,
    epoch: Option<i64>,
    /// First path written for each multiply-linked inode.
    links: HashMap<(u64, u64), Vec<u8>>,
    files: u64,
}

impl<W: Write> TarWriter<W> {
    fn node(&mut self, node: &Node) -> Result<()> {
        if let Some(key) = node.link_key {
            if let Some(first) = self.links.get(&key) {
                let mut h = self.header(node, EntryType::Link);
                let first = first.clone();
                return self.append_link(&mut h, &node.path, &first);
            }
            self.links.insert(key, node.path.clone());
        }
        if node.kind != Kind::Whiteout && !node.xattrs.is_empty() {
            let records: Vec<(String, &[u8])> = node
                .xattrs
                .iter()
                .map(|(n, v)| (format!("SCHILY.xattr.{n}"), v.as_slice()))
                .collect();
            self.builder
                .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))
                .map_err(DiffError::Write)?;
        }
        match node.kind {
            Kind::Dir { opaque } => {
                let mut h = self.header(node, EntryType::Directory);
                let mut path = node.path.clone();
                path.push(b'/');
                self.append(&mut h, &path, io::empty())?;
                if opaque {
                    // As Docker writes it: owner and permissions of the directory, no time.
                    let mut h = self.synthetic_header(node, node.mode & 0o777);
                    let mut path = node.path.clone();
                    path.push(b'/');
                    path.extend_from_slice(OPAQUE_MARKER);
                    self.append(&mut h, &path, io::empty())?;
                }
                Ok(())
            }
            Kind::Whiteout => {
                let mut h = self.synthetic_header(node, 0o600);
                let (dir, name) = match node.path.iter().rposition(|&b| b == b'/') {
                    Some(i) => (&node.path[..=i], &node.path[i + 1..]),
                    None => (&[][..], &node.path[..]),
                };
                let path = [dir, WHITEOUT_PREFIX, name].concat();
                self.append(&mut h, &path, io::empty())
            }
            Kind::File => self.regular(node),
            Kind::Symlink => {
                let mut h = self.header(node, EntryType::Symlink);
                self.append_link(&mut h, &node.path, &node.symlink_target)
            }
            Kind::Fifo => {
                let mut h = self.header(node, EntryType::Fifo);
                self.append(&mut h, &node.path, io::empty())
            }
            Kind::Char | Kind::Block => {
                let ty = if node.kind == Kind::Char {
                    EntryType::Char
                } else {
                    EntryType::Block
                };
                let mut h = self.header(node, ty);
                let bad = |e| DiffError::Io {
                    context: format!("device numbers of {:?}", lossy(&node.path)),
                    source: e,
                };
                h.set_device_major(rustix::fs::major(node.rdev)).map_err(bad)?;
                h.set_device_minor(rustix::fs::minor(node.rdev)).map_err(bad)?;
                self.append(&mut h, &node.path, io::empty())
            }
        }
    }

    /// A header with the node's type, mode, owner and (clamped) mtime; no names, no times but
    /// mtime, size 0.
    fn header(&self, node: &Node, ty: EntryType) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(node.mode);
        h.set_uid(node.uid.into());
        h.set_gid(node.gid.into());
        let mtime = match self.epoch {
            Some(epoch) => node.mtime.min(epoch),
            None => node.mtime,
        };
        // A tar header cannot hold a time before 1970.
        h.set_mtime(mtime.max(0) as u64);
        h.set_size(0);
        h
    }

    /// The header of a whiteout or opaque marker: an empty regular file with the node's owner and
    /// mtime 0, so deleting the same things always gives the same bytes.
    fn synthetic_header(&self, node: &Node, mode: u32) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(mode);
        h.set_uid(node.uid.into());
        h.set_gid(node.gid.into());
        h.set_mtime(0);
        h.set_size(0);
        h
    }

    fn append(&mut self, h: &mut Header, path: &[u8], data: impl Read) -> Result<()> {
        self.builder
            .append_data(h, Path::new(OsStr::from_bytes(path)), data)
            .map_err(DiffError::Write)?;
        self.files += 1;
        Ok(())
    }

    fn append_link(&mut self, h: &mut Header, path: &[u8], target: &[u8]) -> Result<()> {
        self.builder
            .append_link(
                h,
                Path::new(OsStr::from_bytes(path)),
                Path::new(OsStr::from_bytes(target)),
            )
            .map_err(DiffError::Write)?;
        self.files += 1;
        Ok(())
    }

    fn regular(&mut self, node: &Node) -> Result<()> {
        let file = self.open_file(node)?;
        let mut h = self.header(node, EntryType::Regular);
        h.set_size(node.size);
        let mut data = ExactReader {
            file,
            remaining: node.size,
            path: &node.path,
            failure: None,
        };
        let res = self
            .builder
            .append_data(&mut h, Path::new(OsStr::from_bytes(&node.path)), &mut data);
        if let Err(e) = res {
            return Err(data.failure.take().unwrap_or(DiffError::Write(e)));
        }
        self.files += 1;
        Ok(())
    }

    /// Opens the regular file `node` read-only, reaching it one directory at a time without
    /// following symlinks, and checks it is still the file that was scanned.
    fn open_file(&mut self, node: &Node) -> Result<File> {
        let (dir, name) = match node.path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&node.path[..i], &node.path[i + 1..]),
            None => (&[][..], &node.path[..]),
        };
        if self.parent.as_ref().is_none_or(|(p, _)| p != dir) {
            let fd = open_dir(&self.root, self.parent.as_ref(), dir).map_err(reach_err(&node.path))?;
            self.parent = Some((dir.to_vec(), fd));
        }
        let (_, parent) = self.parent.as_ref().expect("just set");
        // O_NONBLOCK: should a fifo have taken the file's place, opening it does not hang.
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
        let fd = rustix::fs::openat(parent, OsStr::from_bytes(name), flags, Mode::empty())
            .map_err(reach_err(&node.path))?;
        let st = rustix::fs::fstat(&fd).map_err(io_err(|| {
            format!("reading {:?} in upper directory", lossy(&node.path))
        }))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
            || st.st_ino != node.ino
            || st.st_size as u64 != node.size
        {
            return Err(DiffError::Changed {
                path: lossy(&node.path),
            });
        }
        Ok(File::from(fd))
    }
}

/// Gives exactly `remaining` bytes of `file`, and fails if the file turns out shorter or longer
/// (the header, already written, promised that size).
struct ExactReader<'a> {
    file: File,
    remaining: u64,
    path: &'a [u8],
    failure: Option<DiffError>,
}

impl ExactReader<'_> {
    fn fail(&mut self, e: DiffError) -> io::Error {
        self.failure = Some(e);
        io::Error::other("reading a file of the layer failed")
    }
}

impl Read for ExactReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.remaining == 0 {
            let mut probe = [0u8; 1];
            return match self.file.read(&mut probe) {
                Ok(0) => Ok(0),
                Ok(_) => Err(self.fail(DiffError::Changed {
                    path: lossy(self.path),
                })),
                Err(e) => Err(self.fail(DiffError::Io {
                    context: format!("reading {:?} in upper directory", lossy(self.path)),
                    source: e,
                })),
            };
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        match self.file.read(&mut buf[..want]) {
            Ok(0) => Err(self.fail(DiffError::Changed {
                path: lossy(self.path),
            })),
            Ok(n) => {
                self.remaining -= n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => Err(self.fail(DiffError::Io {
                context: format!("reading {:?} in upper directory", lossy(self.path)),
                source: e,
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_capabilities_and_user_xattrs_are_kept() {
        for keep in ["security.capability", "user.note", "user.mime_type"] {
            assert!(keep_xattr(keep), "{keep}");
        }
        for drop in [
            "trusted.overlay.opaque",
            "trusted.overlay.origin",
            "user.overlay.redirect",
            "security.selinux",
            "trusted.other",
            "system.posix_acl_access",
        ] {
            assert!(!keep_xattr(drop), "{drop}");
        }
    }

    #[test]
    fn pipe_without_end_marker_is_an_error_not_eof() {
        let (tx, rx) = mpsc::sync_channel(4);
        let mut w = ChunkWriter { tx, buf: Vec::new() };
        w.write_all(b"partial").unwrap();
        w.flush().unwrap();
        drop(w);
        let mut r = ChunkReader {
            rx,
            cur: Vec::new(),
            pos: 0,
        };
        let mut got = Vec::new();
        assert!(r.read_to_end(&mut got).is_err());
        assert_eq!(got, b"partial");

        let (tx, rx) = mpsc::sync_channel(4);
        let mut w = ChunkWriter { tx, buf: Vec::new() };
        w.write_all(b"whole").unwrap();
        w.flush().unwrap();
        w.tx.send(None).unwrap();
        let mut r = ChunkReader {
            rx,
            cur: Vec::new(),
            pos: 0,
        };
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"whole");
    }
}
