//! `docker import`: a root filesystem tarball becomes a one-layer image.

use crate::config::{apply_changes, ContainerConfig, History, ImageConfig, RootFs};
use crate::digest::Digest;
use crate::error::{IoContext, Result};
use crate::layer::Compression;
use crate::layers::chain_id;
use crate::manifest;
use crate::meta::{BlobRef, ImageLayer};
use crate::reference::Reference;
use crate::store::{now_rfc3339, ImageStore, NewLayer};
use std::io::Read;

#[derive(Debug, Default, Clone)]
pub struct ImportOptions {
    /// Dockerfile instructions applied to the config (`--change`).
    pub changes: Vec<String>,
    /// History comment (`--message`); Docker's default is "Imported from <source>".
    pub message: Option<String>,
    pub reference: Option<Reference>,
}

impl ImageStore {
    /// Imports a rootfs tar (plain, gzip or zstd) as a new image; returns its ID.
    pub fn import<R: Read>(&self, reader: R, opts: &ImportOptions) -> Result<Digest> {
        let mut container_config = ContainerConfig::default();
        apply_changes(&mut container_config, &opts.changes)?;
        let (blob, size) = self.content.ingest(reader, None)?;
        self.hold(&blob);
        let result = (|| {
            let mut magic = [0u8; 4];
            let n = self
                .content
                .open_blob(&blob)?
                .read(&mut magic)
                .ctx(|| "reading import".into())?;
            let blob_ref = BlobRef {
                digest: blob.clone(),
                media_type: manifest::layer_media_type(Compression::detect(&magic[..n])).into(),
                size,
            };
            let staged = self.layers.stage(self.content.open_blob(&blob)?)?;
            let diff_id = staged.stats.diff_id.clone();
            let now = now_rfc3339();
            let config = ImageConfig {
                created: Some(now.clone()),
                architecture: manifest::host_architecture().into(),
                os: "linux".into(),
                config: Some(container_config),
                rootfs: RootFs {
                    kind: "layers".into(),
                    diff_ids: vec![diff_id.clone()],
                },
                history: vec![History {
                    created: Some(now),
                    comment: Some(opts.message.clone().unwrap_or_else(|| "Imported from -".into())),
                    ..Default::default()
                }],
                ..Default::default()
            };
            let id = self.content.write_blob(&serde_json::to_vec(&config)?)?;
            let manifest = self.write_manifest(&id, std::slice::from_ref(&blob_ref))?;
            let layer = ImageLayer {
                chain_id: chain_id(None, &diff_id),
                diff_id,
                blob: blob_ref,
            };
            let tags: Vec<Reference> = opts
                .reference
                .iter()
                .map(|r| r.clone().with_default_tag())
                .collect();
            self.commit_image(
                &id,
                manifest,
                vec![NewLayer {
                    layer,
                    staged: Some(staged),
                }],
                &tags,
            )?;
            Ok(id)
        })();
        self.release(std::slice::from_ref(&blob));
        if result.is_err() {
            self.gc_blobs(std::slice::from_ref(&blob))?;
        }
        result
    }
}
