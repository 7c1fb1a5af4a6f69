//! What a registry pull and push need from the store.
//!
//! Pull: blobs are downloaded into files under [`ImageStore::download_dir`] (cleared when the
//! store opens, so a crash leaves nothing), moved into the content store with their digest
//! verified ([`ImageStore::ingest_download`]), held against garbage collection while the pull
//! runs ([`BlobHold`]), and then [`ImageStore::register_pulled`] unpacks missing layers and
//! records the image with its tag and RepoDigest in one transaction.
//!
//! Push: [`ImageStore::push_source`] gives the stored manifest bytes (so the pushed digest is the
//! one the image already has), its config and layer descriptors, and where each blob is.

use crate::config::ImageConfig;
use crate::digest::Digest;
use crate::error::{ImageError, IoContext, Result};
use crate::layers::chain_id;
use crate::manifest::{Descriptor, Manifest};
use crate::meta::BlobRef;
use crate::reference::Reference;
use crate::store::ImageStore;
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

    /// Moves a downloaded file into the content store, checking it against `expected`; the file
    /// is removed either way.
    pub fn ingest_download(&self, path: &std::path::Path, expected: &Digest) -> Result<u64> {
        let result = (|| {
            if self.content.contains(expected) {
                return self.content.size(expected);
            }
            let file = std::fs::File::open(path).ctx(|| format!("opening {}", path.display()))?;
            Ok(self.content.ingest(file, Some(expected))?.1)
        })();
        let _ = std::fs::remove_file(path);
        result
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
    /// and layer blobs must be in the content store. Unpacks the layers the store lacks, and
    /// points `tags` (the tag pulled, and `name@<digest>`) at the image.
    pub fn register_pulled(
        &self,
        manifest_bytes: &[u8],
        media_type: &str,
        tags: &[Reference],
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
        let layers = self.stage_layers(&config.rootfs.diff_ids, &blobs)?;
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
