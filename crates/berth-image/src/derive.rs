//! Deriving an image from a parent: the parent's layers plus zero or more new ones (blobs already
//! in the content store, as [`store_layer_diff`](crate::layer::store_layer_diff) leaves them) and
//! a new config. Used by `commit` and by the builder, which makes one image per step.

use crate::config::ImageConfig;
use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::layer::CompressedDiff;
use crate::manifest;
use crate::meta::BlobRef;
use crate::reference::Reference;
use crate::store::ImageStore;

/// A new layer for a derived image: its blob in the content store and its diff ID.
#[derive(Debug, Clone, PartialEq)]
pub struct DerivedLayer {
    pub blob: BlobRef,
    pub diff_id: Digest,
}

impl From<&CompressedDiff> for DerivedLayer {
    fn from(d: &CompressedDiff) -> DerivedLayer {
        DerivedLayer {
            blob: BlobRef {
                digest: d.digest.clone(),
                media_type: if d.gzip {
                    manifest::OCI_LAYER_GZIP
                } else {
                    manifest::OCI_LAYER
                }
                .into(),
                size: d.size,
            },
            diff_id: d.diff.diff_id.clone(),
        }
    }
}

impl ImageStore {
    /// Makes (or finds again) the image `parent` + `layers` with `config`, tagged `tags`, and
    /// returns its ID. `config.rootfs` is filled in here (the parent's diff IDs, then the new
    /// ones); everything else in `config` (history included) is the caller's. The same inputs
    /// always give the same ID.
    pub fn derive(
        &self,
        parent: Option<&Digest>,
        layers: &[DerivedLayer],
        mut config: ImageConfig,
        tags: &[Reference],
    ) -> Result<Digest> {
        let (mut diff_ids, mut blobs) = match parent {
            Some(p) => {
                let info = self.resolve(&p.to_string())?;
                let blobs: Vec<BlobRef> = info.record.layers.iter().map(|l| l.blob.clone()).collect();
                (info.config.rootfs.diff_ids, blobs)
            }
            None => (Vec::new(), Vec::new()),
        };
        for l in layers {
            if !self.content.contains(&l.blob.digest) {
                return Err(ImageError::invalid(format!(
                    "layer blob {} is not in the content store",
                    l.blob.digest
                )));
            }
            diff_ids.push(l.diff_id.clone());
            blobs.push(l.blob.clone());
        }
        let held: Vec<Digest> = layers.iter().map(|l| l.blob.digest.clone()).collect();
        for d in &held {
            self.hold(d);
        }
        let result = (|| {
            let staged = self.stage_layers(&diff_ids, &blobs)?;
            let committed = (|| {
                config.rootfs.kind = "layers".into();
                config.rootfs.diff_ids = diff_ids.clone();
                let id = self.content.write_blob(&serde_json::to_vec(&config)?)?;
                let manifest = self.write_manifest(&id, &blobs)?;
                Ok((id, manifest))
            })();
            let (id, manifest) = match committed {
                Ok(v) => v,
                Err(e) => {
                    self.discard_staged(staged);
                    return Err(e);
                }
            };
            let tags: Vec<Reference> = tags.iter().map(|r| r.clone().with_default_tag()).collect();
            self.commit_image(&id, manifest, staged, &tags)?;
            Ok(id)
        })();
        self.release(&held);
        result
    }
}
