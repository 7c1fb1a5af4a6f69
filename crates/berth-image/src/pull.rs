//! What a registry pull and push need from the store.
//!
//! Pull: blobs are downloaded into files under [`ImageStore::download_dir`] (cleared when the
//! store opens, so a crash leaves nothing) and, for layers, unpacked by
//! [`ImageStore::unpack_layer`] from the same bytes as they arrive; a download whose digest the
//! downloader verified moves into the content store ([`ImageStore::adopt_download`]); blobs are
//! held against garbage collection while the pull runs ([`BlobHold`]); then
//! [`ImageStore::register_pulled`] takes the layers unpacked early, unpacks any still missing, and
//! records the image with its tag and RepoDigest in one transaction.
//!
//! Push: [`ImageStore::push_source`] gives the stored manifest bytes (so the pushed digest is the
//! one the image already has), its config and layer descriptors, and where each blob is.

use crate::config::ImageConfig;
use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::layers::{chain_id, StagedLayer};
use crate::manifest::{Descriptor, Manifest};
use crate::meta::BlobRef;
use crate::reference::Reference;
use crate::store::ImageStore;
use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;

/// Keeps blobs safe from garbage collection until dropped.
pub struct BlobHold<'a> {
    store: &'a ImageStore,
    digests: Vec<Digest>,
}

impl BlobHold<'_> {
    pub fn add(&mut self, d: &Digest) {
        self.store.hold(d);
        self.digests.push(d.clone());
    }
}

impl Drop for BlobHold<'_> {
    fn drop(&mut self) {
        self.store.release(&self.digests);
    }
}

/// Layers a pull unpacked while downloading, by blob digest. [`ImageStore::register_pulled`] takes
/// those it needs; what is left is removed on drop.
#[derive(Default)]
pub struct UnpackedLayers(HashMap<Digest, StagedLayer>);

impl UnpackedLayers {
    pub fn insert(&mut self, blob: Digest, layer: StagedLayer) {
        if let Some(old) = self.0.insert(blob, layer) {
            old.remove();
        }
    }

    /// The layer unpacked from `blob`, if its content is `diff_id` (else it is thrown away: a
    /// download that restarted midway unpacks a stream that is not the blob).
    pub(crate) fn take(&mut self, blob: &Digest, diff_id: &Digest) -> Option<StagedLayer> {
        let staged = self.0.remove(blob)?;
        if staged.stats.diff_id == *diff_id {
            Some(staged)
        } else {
            staged.remove();
            None
        }
    }
}

impl Drop for UnpackedLayers {
    fn drop(&mut self) {
        for (_, layer) in self.0.drain() {
            layer.remove();
        }
    }
}

/// The parts of a stored image a push uploads.
#[derive(Debug, Clone)]
pub struct PushSource {
    pub image_id: Digest,
    /// The stored manifest, byte for byte.
    pub manifest: Vec<u8>,
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// A pulled image, recorded.
#[derive(Debug, Clone)]
pub struct PulledImage {
    pub id: Digest,
    /// True when the image was already stored under this ID before the pull.
    pub existed: bool,
}

impl ImageStore {
    /// Where downloads in progress live; emptied whenever the store opens.
    pub fn download_dir(&self) -> PathBuf {
        self.root().join("content/ingest")
    }

    /// A fresh, unique download file name.
    pub fn download_path(&self, digest: &Digest) -> PathBuf {
        self.download_dir()
            .join(format!("pull-{}-{:08x}", digest.short(), rand::random::<u32>()))
    }

    pub fn hold_blobs(&self) -> BlobHold<'_> {
        BlobHold {
            store: self,
            digests: Vec::new(),
        }
    }

    /// Moves a downloaded file, whose digest the downloader checked, into the content store; the
    /// file is gone either way.
    pub fn adopt_download(&self, path: &std::path::Path, digest: &Digest) -> Result<u64> {
        self.content.adopt(path, digest)
    }

    /// Unpacks a layer tar (plain or compressed) into a staging directory, for
    /// [`UnpackedLayers`], as it downloads: `blob` is the digest the downloader checks the same
    /// bytes against (so an uncompressed layer is not hashed twice); the caller drops the layer
    /// if that check fails.
    pub fn unpack_layer<R: Read>(&self, tar: R, blob: &Digest) -> Result<StagedLayer> {
        self.layers.stage_known(tar, Some(blob))
    }

    /// Whether a layer (the `index`-th of an image whose config lists `diff_ids`) is unpacked
    /// already and its blob `blob` stored: then a pull need not download it.
    pub fn has_pulled_layer(&self, diff_ids: &[Digest], index: usize, blob: &Digest) -> bool {
        let mut parent: Option<Digest> = None;
        for d in diff_ids.iter().take(index + 1) {
            parent = Some(chain_id(parent.as_ref(), d));
        }
        parent.is_some_and(|c| self.layer(&c).is_ok()) && self.content.contains(blob)
    }

    /// Records a pulled image: the manifest (a platform manifest, not an index) and its config
    /// and layer blobs must be in the content store. Unpacks the layers the store lacks (taking
    /// them from `early` when they were unpacked during the download), and points `tags` (the
    /// tag pulled, and `name@<digest>`) at the image.
    pub fn register_pulled(
        &self,
        manifest_bytes: &[u8],
        media_type: &str,
        tags: &[Reference],
        mut early: UnpackedLayers,
    ) -> Result<PulledImage> {
        let manifest: Manifest = serde_json::from_slice(manifest_bytes)
            .map_err(|e| ImageError::invalid(format!("invalid manifest: {e}")))?;
        let id = manifest.config.digest.clone();
        let existed = self.resolve(&id.to_string()).is_ok();
        let config = ImageConfig::parse(&self.content.read_blob(&id)?)?;
        let blobs: Vec<BlobRef> = manifest
            .layers
            .iter()
            .map(|l| BlobRef {
                digest: l.digest.clone(),
                media_type: l.media_type.clone(),
                size: l.size,
            })
            .collect();
        let mut hold = self.hold_blobs();
        let manifest_digest = self.content.write_blob(manifest_bytes)?;
        hold.add(&manifest_digest);
        let layers = self.stage_layers_using(&config.rootfs.diff_ids, &blobs, &mut early)?;
        let manifest_ref = BlobRef {
            digest: manifest_digest,
            media_type: media_type.to_string(),
            size: manifest_bytes.len() as u64,
        };
        self.commit_image(&id, manifest_ref, layers, tags)?;
        Ok(PulledImage { id, existed })
    }

    /// The manifest, config and layers of a stored image, for a push.
    pub fn push_source(&self, name: &str) -> Result<PushSource> {
        let info = self.resolve(name)?;
        let m = &info.record.manifest;
        let bytes = self.content.read_blob(&m.digest)?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::invalid(format!("stored manifest {} is invalid: {e}", m.digest)))?;
        Ok(PushSource {
            image_id: info.record.id.clone(),
            manifest: bytes,
            media_type: m.media_type.clone(),
            config: manifest.config,
            layers: manifest.layers,
        })
    }
}
