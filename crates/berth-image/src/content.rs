//! The content store: immutable blobs named by their sha256 digest.
//!
//! A blob is written to `ingest/<random>`, hashed as it is written, fsynced, checked against the
//! digest the caller expects, and only then renamed to `blobs/sha256/<hex>`. A crash at any moment
//! leaves either no blob or a whole one; leftovers in `ingest/` are removed when the store opens.

use crate::digest::{Digest, DigestWriter};
use crate::error::{ImageError, IoContext, Result};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    /// Opens (creating if needed) the store under `root` and discards unfinished ingests.
    pub fn open(root: &Path) -> Result<ContentStore> {
        let blobs = root.join("blobs/sha256");
        let ingest = root.join("ingest");
        fs::create_dir_all(&blobs).ctx(|| format!("creating {}", blobs.display()))?;
        let _ = fs::remove_dir_all(&ingest);
        fs::create_dir_all(&ingest).ctx(|| format!("creating {}", ingest.display()))?;
        Ok(ContentStore { blobs, ingest })
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    pub fn size(&self, digest: &Digest) -> Result<u64> {
        Ok(fs::metadata(self.blob_path(digest))
            .ctx(|| format!("blob {digest}"))?
            .len())
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        File::open(self.blob_path(digest)).ctx(|| format!("opening blob {digest}"))
    }

    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        fs::read(self.blob_path(digest)).ctx(|| format!("reading blob {digest}"))
    }

    /// Stores bytes already in memory (manifests, configs) and returns their digest.
    pub fn write_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        if !self.contains(&digest) {
            self.ingest(bytes, Some(&digest))?;
        }
        Ok(digest)
    }

    /// Streams `reader` into the store. When `expected` is given, a blob whose bytes hash to
    /// anything else is rejected and leaves nothing behind.
    pub fn ingest<R: Read>(&self, mut reader: R, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let tmp = self.ingest.join(format!("{:016x}", rand::random::<u64>()));
        let result = (|| {
            let file = File::create(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
            let file = EagerWriteback::new(file);
            let mut w = DigestWriter::new(BufWriter::with_capacity(1 << 20, file));
            io::copy(&mut reader, &mut w).ctx(|| "writing blob".into())?;
            let (digest, size, buf) = w.finish();
            let file = buf
                .into_inner()
                .map_err(|e| e.into_error())
                .ctx(|| "writing blob".into())?
                .into_inner();
            if let Some(expected) = expected {
                if *expected != digest {
                    return Err(ImageError::DigestMismatch {
                        expected: expected.clone(),
                        actual: digest,
                    });
                }
            }
            file.sync_all().ctx(|| "syncing blob".into())?;
            Ok((digest, size))
        })();
        match result {
            Ok((digest, size)) => {
                let dest = self.blob_path(&digest);
                fs::rename(&tmp, &dest).ctx(|| format!("committing blob {digest}"))?;
                sync_dir(&self.blobs)?;
                Ok((digest, size))
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Moves a file whose content the caller has already checked against `digest` (a verified
    /// download) into the store: synced and renamed, never read again. The file is gone afterwards.
    pub fn adopt(&self, path: &Path, digest: &Digest) -> Result<u64> {
        let result = (|| {
            if self.contains(digest) {
                return self.size(digest);
            }
            let file = File::open(path).ctx(|| format!("opening {}", path.display()))?;
            file.sync_all().ctx(|| "syncing blob".into())?;
            let size = file.metadata().ctx(|| "blob size".into())?.len();
            fs::rename(path, self.blob_path(digest)).ctx(|| format!("committing blob {digest}"))?;
            sync_dir(&self.blobs)?;
            Ok(size)
        })();
        let _ = fs::remove_file(path);
        result
    }

    pub fn delete(&self, digest: &Digest) -> Result<()> {
        match fs::remove_file(self.blob_path(digest)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e).ctx(|| format!("deleting blob {digest}")),
            _ => Ok(()),
        }
    }

    /// Every blob in the store (used by garbage collection).
    pub fn list(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.blobs).ctx(|| "listing blobs".into())? {
            let entry = entry.ctx(|| "listing blobs".into())?;
            if let Some(d) = entry.file_name().to_str().and_then(|n| Digest::from_hex(n).ok()) {
                out.push(d);
            }
        }
        Ok(out)
    }
}

/// Asks the kernel to start writing `len` bytes of `file` from `offset` (0: to the end) to disk
/// now, without waiting: the fsync that makes the data durable later finds little left to do, so
/// disk writes overlap with the work that produces the data.
pub fn start_writeback(file: &impl std::os::fd::AsRawFd, offset: u64, len: u64) {
    // SAFETY: sync_file_range(2) on a descriptor the caller owns, with plain integer arguments;
    // it only schedules I/O. A failure is harmless (the later fsync does the work).
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// Bytes written between two starts of writeback by [`EagerWriteback`].
const WRITEBACK_STEP: u64 = 8 << 20;

/// A file writer that starts the kernel's writeback of what it wrote every few MiB, so that the
/// fsync making a big file durable overlaps with writing it instead of following it.
pub struct EagerWriteback {
    file: File,
    written: u64,
    started: u64,
}

impl EagerWriteback {
    pub fn new(file: File) -> EagerWriteback {
        EagerWriteback {
            file,
            written: 0,
            started: 0,
        }
    }

    /// Empties the file, to write it again from the start.
    pub fn truncate(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        io::Seek::rewind(&mut self.file)?;
        (self.written, self.started) = (0, 0);
        Ok(())
    }

    pub fn into_inner(self) -> File {
        self.file
    }
}

impl io::Write for EagerWriteback {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.started >= WRITEBACK_STEP {
            start_writeback(&self.file, self.started, 0);
            self.started = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Makes a rename inside `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("syncing {}", dir.display()))
}

/// Writes a small file atomically: temp file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    replace_file(path, bytes, true)
}

/// Replaces a small file atomically (temp file, rename), with the fsyncs of [`write_atomic`]
/// only when `durable`: readers never see a torn file, but a crash of the machine may lose it.
pub fn replace_file(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{:08x}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        rand::random::<u32>()
    ));
    let r = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)
    })();
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r.ctx(|| format!("writing {}", path.display()))?;
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_verifies_and_commits() {
        let dir = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(dir.path()).unwrap();
        let (d, n) = cs.ingest(&b"hello"[..], Some(&Digest::of(b"hello"))).unwrap();
        assert_eq!(n, 5);
        assert_eq!(cs.read_blob(&d).unwrap(), b"hello");
        assert_eq!(cs.list().unwrap(), vec![d]);
    }

    #[test]
    fn mismatched_blob_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(dir.path()).unwrap();
        let err = cs.ingest(&b"evil"[..], Some(&Digest::of(b"good"))).unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
        assert!(cs.list().unwrap().is_empty());
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 0);
        assert!(!cs.contains(&Digest::of(b"evil")));
    }

    #[test]
    fn reopen_discards_unfinished_ingest() {
        let dir = tempfile::tempdir().unwrap();
        let _ = ContentStore::open(dir.path()).unwrap();
        fs::write(dir.path().join("ingest/partial"), b"half").unwrap();
        let _ = ContentStore::open(dir.path()).unwrap();
        assert!(!dir.path().join("ingest/partial").exists());
    }
}
