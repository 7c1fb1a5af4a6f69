//! Unpacked layer directories, `layers/<chain-id>/fs`, in overlayfs form (each holds only its own
//! diff; whiteouts are 0:0 character devices), usable directly as overlay lowerdirs.
//!
//! A layer is unpacked into `layers/tmp-<random>` and renamed into place, so a half-unpacked layer
//! never has a real name. Which layers exist is decided by the metadata store: directories it does
//! not know are removed when the store opens.

use crate::digest::Digest;
use crate::error::{IoContext, Result};
use crate::layer::{apply_layer_known, ApplyStats};
use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

pub struct LayerStore {
    root: PathBuf,
}

/// A layer unpacked under a temporary name, waiting to be committed.
pub struct StagedLayer {
    dir: PathBuf,
    pub stats: ApplyStats,
}

impl StagedLayer {
    /// Throws the unpacked files away.
    pub fn remove(self) {
        let _ = fs::remove_dir_all(self.dir);
    }
}

impl LayerStore {
    pub fn open(root: &Path) -> Result<LayerStore> {
        fs::create_dir_all(root).ctx(|| format!("creating {}", root.display()))?;
        Ok(LayerStore {
            root: root.to_path_buf(),
        })
    }

    /// The directory to use as an overlay lowerdir.
    pub fn fs_dir(&self, chain_id: &Digest) -> PathBuf {
        self.root.join(chain_id.hex()).join("fs")
    }

    /// Unpacks a layer tar into a fresh staging directory.
    pub fn stage<R: Read>(&self, reader: R) -> Result<StagedLayer> {
        self.stage_known(reader, None)
    }

    /// [`Self::stage`] for bytes whose digest the caller verifies as they are read (see
    /// [`apply_layer_known`]).
    pub fn stage_known<R: Read>(&self, reader: R, blob_digest: Option<&Digest>) -> Result<StagedLayer> {
        let dir = self.root.join(format!("tmp-{:016x}", rand::random::<u64>()));
        let fs_dir = dir.join("fs");
        fs::create_dir_all(&fs_dir).ctx(|| format!("creating {}", fs_dir.display()))?;
        match apply_layer_known(reader, &fs_dir, blob_digest) {
            Ok(stats) => Ok(StagedLayer { dir, stats }),
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                Err(e.into())
            }
        }
    }

    /// Gives a staged layer its real name. The caller records it in metadata afterwards.
    pub fn commit(&self, staged: StagedLayer, chain_id: &Digest) -> Result<()> {
        let dest = self.root.join(chain_id.hex());
        if dest.exists() {
            // A directory left by a crash before its metadata was written: replace it.
            self.remove(chain_id)?;
        }
        rustix::fs::syncfs(fs::File::open(&staged.dir).ctx(|| "opening staged layer".into())?)
            .map_err(std::io::Error::from)
            .ctx(|| "syncing layer".into())?;
        fs::rename(&staged.dir, &dest).ctx(|| format!("committing layer {chain_id}"))?;
        crate::content::sync_dir(&self.root)
    }

    pub fn discard(&self, staged: StagedLayer) {
        staged.remove();
    }

    /// Removes a layer directory: renamed away first, so a crash never leaves a half-deleted layer
    /// under its real name.
    pub fn remove(&self, chain_id: &Digest) -> Result<()> {
        let dir = self.root.join(chain_id.hex());
        let doomed = self.root.join(format!("del-{:016x}", rand::random::<u64>()));
        match fs::rename(&dir, &doomed) {
            Ok(()) => fs::remove_dir_all(&doomed).ctx(|| format!("removing {}", doomed.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).ctx(|| format!("removing layer {chain_id}")),
        }
    }

    /// Removes staging leftovers and every layer directory not in `known`.
    pub fn sweep(&self, known: &HashSet<Digest>) -> Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.root).ctx(|| "listing layers".into())? {
            let entry = entry.ctx(|| "listing layers".into())?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let keep = Digest::from_hex(&name).is_ok_and(|d| known.contains(&d));
            if !keep {
                tracing::info!(dir = %name, "removing unreferenced layer directory");
                fs::remove_dir_all(entry.path()).ctx(|| format!("removing {}", entry.path().display()))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Chain ID of a layer on top of `parent` (OCI image spec): sha256 of "<parent> <diff_id>".
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(p) => Digest::of(format!("{p} {diff_id}").as_bytes()),
    }
}
