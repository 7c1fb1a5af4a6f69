//! A container's files from outside: what changed (`GET /containers/{id}/changes`), the whole
//! filesystem as a tar (`export`), and copying in and out (`GET`/`HEAD`/`PUT .../archive`, which
//! `docker cp` uses).
//!
//! Everything works on the container's merged (overlay) view through directory descriptors. A
//! running container's view is its mounted rootfs. A stopped container's overlay is mounted in a
//! private directory, opened, and at once lazily unmounted: the descriptor keeps the mount alive
//! while it is used, and nothing stays in the mount table, whatever happens afterwards.
//!
//! Container content is untrusted. Paths asked for are resolved as if the container root were
//! `/` (symlinks included, `..` stops at the root), and every open goes through
//! `openat2(RESOLVE_IN_ROOT)`, so nothing outside the container is ever read or written.

mod diff;
mod extract;
pub(super) mod resolve;
mod tarball;

use super::{ContainerError, ContainerRecord, ContainerService, Entry, Paths};
use crate::services::userns::RemappedRoot;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;

pub use diff::Change;
pub use extract::ExtractOptions;

/// `f_type` of an overlay filesystem.
const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;

/// What can go wrong with a container's files.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// The path does not exist in the container (HTTP 404).
    #[error("Could not find the file {path} in container {container}")]
    NotFound { path: String, container: String },
    /// A bad request: a hostile or malformed tar, a destination that is not a directory.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type FileResult<T> = std::result::Result<T, FileError>;

/// Docker's `X-Docker-Container-Path-Stat`: what is at a path in a container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    /// Go's `os.FileMode`: permission bits and Go's type bits.
    pub mode: u32,
    pub mtime: String,
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

/// The container's merged root, open. Dropping it releases a private mount.
pub struct RootFs {
    fd: OwnedFd,
    /// Set when this is the idmapped root of a running container in a user namespace: what is
    /// written there must be written as its root, with its ids.
    userns: Option<Arc<RemappedRoot>>,
}

impl RootFs {
    fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A path in a container, found and ready to be archived.
pub struct ArchiveSource {
    root: RootFs,
    /// The directory holding the entry.
    parent: OwnedFd,
    /// The entry's name in `parent`; `None` for the container root itself.
    name: Option<std::ffi::OsString>,
    /// What the entry is called in the archive (Docker: the base name of the asked-for path).
    tar_name: String,
}

impl ArchiveSource {
    /// Writes the tar (blocking). A symlink is archived as a symlink.
    pub fn write_to<W: Write>(self, out: W) -> std::io::Result<W> {
        let mut t = tarball::TarWriter::new(out, self.root.fd());
        match &self.name {
            Some(name) => t.append_tree(self.parent.as_fd(), name, &self.tar_name)?,
            None => t.append_children(self.parent.as_fd(), &self.tar_name)?,
        }
        t.finish()
    }
}

/// The whole container filesystem, ready to be exported.
pub struct ExportSource {
    root: RootFs,
}

impl ExportSource {
    /// Writes the tar (blocking).
    pub fn write_to<W: Write>(self, out: W) -> std::io::Result<W> {
        let mut t = tarball::TarWriter::new(out, self.root.fd());
        t.append_children(self.root.fd(), "")?;
        t.finish()
    }
}

async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> FileResult<T> + Send + 'static,
) -> FileResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| FileError::Container(ContainerError::Internal(e.to_string())))?
}

impl ContainerService {
    /// Opens the container's merged root: the mounted rootfs of a running container, or a
    /// private mount of a stopped one (read-only unless `writable`). The caller holding the
    /// container's `op` lock makes sure it does not start meanwhile.
    ///
    /// A running container in a user namespace shows its files with host ids: readers get a
    /// private read-only mount (the container's ids), writers the mounted root, to be written
    /// as the container's root ([`RootFs::userns`]).
    async fn open_rootfs(&self, entry: &Arc<Entry>, writable: bool) -> FileResult<RootFs> {
        let rec = entry.record();
        let userns = self.remapped(&rec);
        if rec.state.running && (writable || userns.is_none()) {
            let rootfs = entry.paths.rootfs();
            let opened = run_blocking(move || Ok(open_mounted(&rootfs)?)).await?;
            if let Some(fd) = opened {
                return Ok(RootFs { fd, userns });
            }
        }
        let (rec, paths) = (rec.clone(), entry.paths.clone());
        let writable = writable && !rec.state.running;
        let fd = run_blocking(move || Ok(private_mount(&rec, &paths, writable)?)).await?;
        Ok(RootFs { fd, userns: None })
    }

    /// `GET /containers/{id}/changes`.
    pub async fn diff(&self, name: &str) -> FileResult<Vec<Change>> {
        let entry = self.resolve(name)?;
        let rec = entry.record();
        let upper = entry.paths.upper();
        run_blocking(move || Ok(diff::changes(&upper, &rec.lower_dirs)?)).await
    }

    /// Opens the container's filesystem for `GET /containers/{id}/export`.
    pub async fn export_source(&self, name: &str) -> FileResult<ExportSource> {
        let entry = self.resolve(name)?;
        let root = {
            let _op = entry.op.lock().await;
            self.open_rootfs(&entry, false).await?
        };
        Ok(ExportSource { root })
    }

    /// What is at `path` in the container (`HEAD /containers/{id}/archive`).
    pub async fn stat_path(&self, name: &str, path: &str) -> FileResult<PathStat> {
        Ok(self.archive_source(name, path).await?.0)
    }

    /// Finds `path` in the container for `GET /containers/{id}/archive`.
    pub async fn archive_source(&self, name: &str, path: &str) -> FileResult<(PathStat, ArchiveSource)> {
        if path.is_empty() {
            return Err(FileError::Invalid("path is required".into()));
        }
        let entry = self.resolve(name)?;
        let root = {
            let _op = entry.op.lock().await;
            self.open_rootfs(&entry, false).await?
        };
        let (path, container) = (path.to_string(), name.to_string());
        run_blocking(move || {
            let not_found = || FileError::NotFound {
                path: path.clone(),
                container: container.clone(),
            };
            let found = resolve::lookup(root.fd(), path.as_bytes()).map_err(|e| match e.raw_os_error() {
                Some(libc::ENOENT) => not_found(),
                Some(libc::ENOTDIR) => FileError::Invalid(format!("{path}: not a directory")),
                _ => FileError::Io(e),
            })?;
            let st = match &found.name {
                Some(n) => rustix::fs::statat(&found.parent, n.as_os_str(), AtFlags::SYMLINK_NOFOLLOW),
                None => rustix::fs::fstat(&found.parent),
            }
            .map_err(|e| match e {
                rustix::io::Errno::NOENT => not_found(),
                e => FileError::Io(e.into()),
            })?;
            let link_target = if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
                resolve::resolve_in_scope(root.fd(), found.resolved.as_os_str().as_bytes(), true)?
                    .display()
                    .to_string()
            } else {
                String::new()
            };
            let stat = PathStat {
                name: found.base.clone(),
                size: st.st_size,
                mode: go_file_mode(st.st_mode),
                mtime: rfc3339(st.st_mtime, st.st_mtime_nsec as i64),
                link_target,
            };
            let source = ArchiveSource {
                root,
                parent: found.parent,
                name: found.name,
                tar_name: found.base,
            };
            Ok((stat, source))
        })
        .await
    }

    /// `PUT /containers/{id}/archive`: extracts the tar from `reader` into the directory `path`
    /// of the container. The reader is read in a blocking thread.
    pub async fn extract_archive<R: Read + Send + 'static>(
        &self,
        name: &str,
        path: &str,
        opts: ExtractOptions,
        mut reader: R,
    ) -> FileResult<()> {
        if path.is_empty() {
            return Err(FileError::Invalid("path is required".into()));
        }
        let entry = self.resolve(name)?;
        let rec = entry.record();
        if rec.host_config.readonly_rootfs {
            return Err(FileError::Container(ContainerError::Conflict(
                "container rootfs is marked read-only".into(),
            )));
        }
        // Held throughout: a stopped container must not start while its overlay is mounted
        // read-write elsewhere.
        let _op = entry.op.lock().await;
        let root = self.open_rootfs(&entry, true).await?;
        let (path, container) = (path.to_string(), name.to_string());
        let mut opts = opts;
        if opts.copy_uid_gid {
            opts.owner = Some(container_user(root.fd(), &rec.config.user));
        }
        opts.userns = root.userns.clone();
        run_blocking(move || {
            let result = extract_into(&root, &path, &container, &opts, &mut reader);
            crate::services::drain_upload(result, &mut reader)
        })
        .await
    }
}

/// Extracts the tar in `reader` at `path` inside the container's mounted root.
fn extract_into(
    root: &RootFs,
    path: &str,
    container: &str,
    opts: &ExtractOptions,
    reader: &mut (impl Read + Send),
) -> FileResult<()> {
    let missing = |e: std::io::Error| match e.raw_os_error() {
        Some(libc::ENOENT) => FileError::NotFound {
            path: path.to_string(),
            container: container.to_string(),
        },
        Some(libc::ENOTDIR) => FileError::Invalid("extraction point is not a directory".into()),
        _ => FileError::Io(e),
    };
    let found = resolve::lookup(root.fd(), path.as_bytes()).map_err(missing)?;
    // The destination itself: symlinks followed, inside the container.
    let dest = resolve::open_in_root(
        root.fd(),
        &found.resolved,
        OFlags::RDONLY | OFlags::DIRECTORY,
        true,
    )
    .map_err(missing)?;
    match opts.userns.clone() {
        Some(userns) => userns
            .as_root(|| Ok(extract::extract(reader, dest, opts)))
            .map_err(FileError::Io)?,
        None => extract::extract(reader, dest, opts),
    }
}

/// Opens a mounted container rootfs; `None` when it is not (or no longer) an overlay mount.
fn open_mounted(rootfs: &std::path::Path) -> std::io::Result<Option<OwnedFd>> {
    let fd = match rustix::fs::open(
        rootfs,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let fs = rustix::fs::fstatfs(&fd)?;
    Ok((fs.f_type as i64 == OVERLAYFS_SUPER_MAGIC).then_some(fd))
}

/// Removes a private mount point when dropped: unmounts it (lazily) and removes the directory.
struct MountPoint(PathBuf);

impl Drop for MountPoint {
    fn drop(&mut self) {
        if let Err(e) = super::unmount(&self.0) {
            tracing::error!(path = %self.0.display(), error = %e, "could not unmount a private mount");
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Mounts a stopped container's overlay in a private directory, opens its root and detaches the
/// mount again: the returned descriptor is the only thing keeping it alive.
fn private_mount(rec: &ContainerRecord, paths: &Paths, writable: bool) -> std::io::Result<OwnedFd> {
    let mut lowers: Vec<String> = rec.lower_dirs.iter().map(|p| p.display().to_string()).collect();
    if lowers.is_empty() {
        let empty = paths.dir.join("empty");
        std::fs::create_dir_all(&empty)?;
        lowers.push(empty.display().to_string());
    }
    for l in &rec.lower_dirs {
        if !l.is_dir() {
            return Err(std::io::Error::other(format!(
                "image layer {} is missing",
                l.display()
            )));
        }
    }
    let mut flags = rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV;
    let data = if writable {
        format!(
            "lowerdir={},upperdir={},workdir={},redirect_dir=off,metacopy=off,index=off",
            lowers.join(":"),
            paths.upper().display(),
            paths.work().display()
        )
    } else {
        // Read-only: the container's own layer is just the topmost lower one (no workdir).
        flags |= rustix::mount::MountFlags::RDONLY;
        format!("lowerdir={}:{}", paths.upper().display(), lowers.join(":"))
    };
    let data = std::ffi::CString::new(data).map_err(|_| std::io::Error::other("NUL in a layer path"))?;
    let mut rand = [0u8; 8];
    let _ = rustix::rand::getrandom(&mut rand, rustix::rand::GetRandomFlags::empty());
    let hex: String = rand.iter().map(|b| format!("{b:02x}")).collect();
    let dir = paths.dir.join(format!(".files-{hex}"));
    std::fs::create_dir(&dir)?;
    let mount_point = MountPoint(dir);
    rustix::mount::mount("overlay", &mount_point.0, "overlay", flags, Some(data.as_c_str()))
        .map_err(|e| std::io::Error::other(format!("mounting the container's filesystem: {e}")))?;
    let fd = rustix::fs::open(
        &mount_point.0,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    drop(mount_point);
    Ok(fd)
}

/// The owner `docker cp -a` gives copied files: the container's user (numeric, or looked up in
/// the container's own `/etc/passwd` and `/etc/group`), root by default.
fn container_user(root: BorrowedFd<'_>, user: &str) -> (u32, u32) {
    let read = |p: &str| -> String {
        let Ok(fd) = resolve::open_in_root(root, std::path::Path::new(p), OFlags::RDONLY, true) else {
            return String::new();
        };
        let mut s = String::new();
        let _ = std::fs::File::from(fd).take(1 << 20).read_to_string(&mut s);
        s
    };
    // (id, primary group) of the line whose name (or id) is `key`.
    let find = |text: &str, key: &str| -> Option<(u32, Option<u32>)> {
        let numeric = key.parse::<u32>().is_ok();
        text.lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .filter(|f| f.len() > 2)
            .find(|f| if numeric { f[2] == key } else { f[0] == key })
            .and_then(|f| Some((f[2].parse().ok()?, f.get(3).and_then(|g| g.parse().ok()))))
    };
    let (u, g) = user.split_once(':').unwrap_or((user, ""));
    let (uid, primary) = if u.is_empty() {
        (0, Some(0))
    } else {
        find(&read("/etc/passwd"), u)
            .or_else(|| u.parse().ok().map(|n| (n, None)))
            .unwrap_or((0, Some(0)))
    };
    let gid = if g.is_empty() {
        primary.unwrap_or(0)
    } else {
        find(&read("/etc/group"), g)
            .map(|(id, _)| id)
            .or_else(|| g.parse().ok())
            .unwrap_or(0)
    };
    (uid, gid)
}

/// A Unix mode as Go's `os.FileMode` (what Docker's path stat carries).
pub fn go_file_mode(mode: u32) -> u32 {
    const DIR: u32 = 1 << 31;
    const SYMLINK: u32 = 1 << 27;
    const DEVICE: u32 = 1 << 26;
    const PIPE: u32 = 1 << 25;
    const SOCKET: u32 = 1 << 24;
    const SETUID: u32 = 1 << 23;
    const SETGID: u32 = 1 << 22;
    const CHAR: u32 = 1 << 21;
    const STICKY: u32 = 1 << 20;
    let mut out = mode & 0o777;
    out |= match FileType::from_raw_mode(mode) {
        FileType::Directory => DIR,
        FileType::Symlink => SYMLINK,
        FileType::BlockDevice => DEVICE,
        FileType::CharacterDevice => DEVICE | CHAR,
        FileType::Fifo => PIPE,
        FileType::Socket => SOCKET,
        _ => 0,
    };
    if mode & 0o4000 != 0 {
        out |= SETUID;
    }
    if mode & 0o2000 != 0 {
        out |= SETGID;
    }
    if mode & 0o1000 != 0 {
        out |= STICKY;
    }
    out
}

fn rfc3339(secs: i64, nsec: i64) -> String {
    chrono::DateTime::from_timestamp(secs, nsec.clamp(0, 999_999_999) as u32)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}
