//! Image metadata in one transactional store (redb): images, references (tags and digests) and
//! layer reference counts. Every change to these is one ACID transaction.

use crate::digest::Digest;
use crate::error::Result;
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

/// image ID hex -> ImageRecord (JSON)
pub(crate) const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
/// full reference ("docker.io/library/busybox:latest", or "...@sha256:...") -> image ID hex
pub(crate) const REFS: TableDefinition<&str, &str> = TableDefinition::new("refs");
/// chain ID hex -> LayerRecord (JSON)
pub(crate) const LAYERS: TableDefinition<&str, &[u8]> = TableDefinition::new("layers");

/// A blob an image points at, with the media type it was stored under.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BlobRef {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

/// One layer of an image, as the image sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageLayer {
    pub chain_id: Digest,
    pub diff_id: Digest,
    /// The (possibly compressed) layer blob in the content store.
    pub blob: BlobRef,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The image ID: the digest of the config blob.
    pub id: Digest,
    pub manifest: BlobRef,
    pub layers: Vec<ImageLayer>,
    /// Sum of the unpacked sizes of all layers (Docker's `Size`).
    pub size: u64,
    /// When this image was last tagged or stored here (RFC 3339; inspect's `Metadata.LastTagTime`).
    pub last_tag_time: String,
}

impl ImageRecord {
    /// Every blob this image keeps alive.
    pub fn blobs(&self) -> impl Iterator<Item = &Digest> {
        std::iter::once(&self.id)
            .chain(std::iter::once(&self.manifest.digest))
            .chain(self.layers.iter().map(|l| &l.blob.digest))
    }
}

/// One unpacked layer directory, shared by every image whose chain contains it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerRecord {
    pub chain_id: Digest,
    pub diff_id: Digest,
    pub parent: Option<Digest>,
    /// Bytes of regular files in this layer.
    pub size: u64,
    /// Bytes of the uncompressed layer tar.
    pub tar_size: u64,
    /// How many images use this layer.
    pub refs: u64,
}

pub(crate) fn open(path: &std::path::Path) -> Result<redb::Database> {
    let db = redb::Database::create(path)?;
    let txn = db.begin_write()?;
    txn.open_table(IMAGES)?;
    txn.open_table(REFS)?;
    txn.open_table(LAYERS)?;
    txn.commit()?;
    Ok(db)
}

pub(crate) fn get_json<T: for<'a> Deserialize<'a>>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>> {
    match table.get(key)? {
        Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
        None => Ok(None),
    }
}

pub(crate) fn all_json<T: for<'a> Deserialize<'a>>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for row in table.iter()? {
        let (_, v) = row?;
        out.push(serde_json::from_slice(v.value())?);
    }
    Ok(out)
}

pub(crate) fn all_refs(
    table: &impl ReadableTable<&'static str, &'static str>,
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for row in table.iter()? {
        let (k, v) = row?;
        out.push((k.value().to_string(), v.value().to_string()));
    }
    Ok(out)
}
