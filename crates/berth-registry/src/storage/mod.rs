//! Filesystem storage: blobs shared by all repositories, per-repository links, tags, upload
//! sessions and referrers, laid out under one root directory:
//!
//! ```text
//! blobs/sha256/<hex>                                    content, written once by rename
//! repositories/<name>/_layers/sha256/<hex>              the repository may serve this blob
//! repositories/<name>/_manifests/revisions/sha256/<hex> a manifest of the repository (holds its media type)
//! repositories/<name>/_manifests/tags/<tag>             the digest the tag points at
//! repositories/<name>/_referrers/<subject hex>/<hex>    descriptor of a manifest whose subject is <subject>
//! uploads/<uuid>/{data,state}                           upload sessions, kept across restarts
//! tmp/                                                  temporary files, renamed into place when complete
//! ```
//!
//! Every file that becomes visible is written to a temporary name, fsynced and renamed, so a crash
//! never exposes a partial blob, link or tag.

mod blobs;
mod manifests;
mod uploads;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use manifests::{media_types, ManifestInfo, PutManifest};
pub(crate) use manifests::{references as manifests_references, repositories};
pub use uploads::UploadStatus;

use crate::reference::Digest;

/// The registry's storage under one root directory. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Storage {
    root: PathBuf,
    uploads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<uploads::UploadCursor>>>>,
}

impl Storage {
    /// Opens (creating when missing) the storage under `root`.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Storage> {
        let root = root.into();
        for dir in ["blobs/sha256", "repositories", "uploads", "tmp"] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        // Leftovers of writes cut short by a crash: never visible, safe to drop.
        for entry in std::fs::read_dir(root.join("tmp"))? {
            let _ = std::fs::remove_file(entry?.path());
        }
        let purged = uploads::purge_idle_uploads(&root.join("uploads"), chrono::Duration::days(7))?;
        if purged > 0 {
            tracing::info!(purged, "removed upload sessions idle for more than a week");
        }
        Ok(Storage {
            root,
            uploads: Mutex::new(HashMap::new()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    pub(crate) fn repo_path(&self, name: &str) -> PathBuf {
        self.root.join("repositories").join(name)
    }

    pub(crate) fn layer_link_path(&self, name: &str, digest: &Digest) -> PathBuf {
        self.repo_path(name).join("_layers/sha256").join(digest.hex())
    }

    pub(crate) fn revision_path(&self, name: &str, digest: &Digest) -> PathBuf {
        self.repo_path(name)
            .join("_manifests/revisions/sha256")
            .join(digest.hex())
    }

    pub(crate) fn tags_dir(&self, name: &str) -> PathBuf {
        self.repo_path(name).join("_manifests/tags")
    }

    pub(crate) fn referrers_dir(&self, name: &str, subject: &Digest) -> PathBuf {
        self.repo_path(name).join("_referrers").join(subject.hex())
    }

    fn tmp_path(&self) -> PathBuf {
        self.root
            .join("tmp")
            .join(format!("{:032x}", rand::random::<u128>()))
    }

    /// Writes `bytes` to `path` atomically: temporary file, fsync, rename, fsync of the directory.
    pub(crate) async fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let tmp = self.tmp_path();
        let (path, bytes) = (path.to_path_buf(), bytes.to_vec());
        tokio::task::spawn_blocking(move || {
            let parent = path.parent().expect("storage paths have parents");
            std::fs::create_dir_all(parent)?;
            let result = (|| {
                use std::io::Write;
                let mut file = std::fs::File::create(&tmp)?;
                file.write_all(&bytes)?;
                file.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                sync_dir(parent)
            })();
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result
        })
        .await
        .map_err(io::Error::other)?
    }
}

/// Fsyncs a directory so a rename into it survives a crash.
/// Bytes received between two starts of writeback of an upload's data file.
pub(crate) const WRITEBACK_STEP: u64 = 8 << 20;

/// Asks the kernel to start writing `file` from `offset` to its end to disk now, without
/// waiting, so that the fsync acknowledging a chunk finds little left to do.
pub(crate) fn start_writeback(file: &impl std::os::fd::AsRawFd, offset: u64) {
    // SAFETY: sync_file_range(2) on an open descriptor with integer arguments; it only schedules
    // I/O, and a failure is harmless (the fsync that follows does the work).
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            0,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Reads a small file, `None` when it does not exist.
pub(crate) async fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match tokio::fs::read(path).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// Removes a file; `false` when it was not there.
pub(crate) async fn remove_optional(path: &Path) -> io::Result<bool> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err),
    }
}

/// Lists the names in a directory, empty when it does not exist.
pub(crate) fn list_dir(dir: &Path) -> io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut names = Vec::new();
    for entry in entries {
        if let Some(name) = entry?.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}
