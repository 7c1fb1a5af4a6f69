//! The image store: ties blobs, unpacked layers and metadata together, and owns the rules for
//! naming, resolving, tagging and deleting images.

use crate::config::ImageConfig;
use crate::content::ContentStore;
use crate::digest::Digest;
use crate::error::{ImageError, IoContext, Result};
use crate::layers::{chain_id, LayerStore, StagedLayer};
use crate::meta::{self, BlobRef, ImageLayer, ImageRecord, LayerRecord, IMAGES, LAYERS, REFS};
use crate::pull::UnpackedLayers;
use crate::reference::{parse_any, AnyRef, Reference};
use redb::ReadableTable;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct ImageStore {
    root: PathBuf,
    pub content: ContentStore,
    pub layers: LayerStore,
    db: redb::Database,
    /// Serialises changes that span the metadata and the filesystem (layer dirs, blob GC).
    write_lock: Mutex<()>,
    /// Blobs that an unfinished load or import has written and no image names yet: garbage
    /// collection leaves them alone.
    held: Mutex<std::collections::HashMap<Digest, usize>>,
}

/// An image with everything a listing or an inspect shows.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    pub record: ImageRecord,
    pub config: ImageConfig,
    /// Tags and digest references pointing at this image, sorted.
    pub refs: Vec<Reference>,
}

impl ImageInfo {
    pub fn repo_tags(&self) -> Vec<String> {
        self.refs
            .iter()
            .filter(|r| r.digest().is_none())
            .map(|r| r.familiar_string())
            .collect()
    }
    pub fn repo_digests(&self) -> Vec<String> {
        self.refs
            .iter()
            .filter(|r| r.digest().is_some())
            .map(|r| r.familiar_string())
            .collect()
    }
    pub fn is_dangling(&self) -> bool {
        self.refs.is_empty()
    }
}

/// One line of an `rmi` or prune answer, as Docker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteItem {
    Untagged(String),
    Deleted(Digest),
}

/// A layer of an image being added: either already in the store or freshly unpacked.
pub(crate) struct NewLayer {
    pub layer: ImageLayer,
    pub staged: Option<StagedLayer>,
}

impl ImageStore {
    /// Opens the store under `root`, creating it if needed, and brings it back to a consistent
    /// state after a crash: unfinished blobs and layers are removed, unreferenced blobs collected.
    pub fn open(root: &Path) -> Result<ImageStore> {
        std::fs::create_dir_all(root).ctx(|| format!("creating {}", root.display()))?;
        let store = ImageStore {
            root: root.to_path_buf(),
            content: ContentStore::open(&root.join("content"))?,
            layers: LayerStore::open(&root.join("layers"))?,
            db: meta::open(&root.join("meta.redb"))?,
            write_lock: Mutex::new(()),
            held: Mutex::new(Default::default()),
        };
        store.recover()?;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn recover(&self) -> Result<()> {
        let txn = self.db.begin_read()?;
        let layers: Vec<LayerRecord> = meta::all_json(&txn.open_table(LAYERS)?)?;
        let images: Vec<ImageRecord> = meta::all_json(&txn.open_table(IMAGES)?)?;
        let known: HashSet<Digest> = layers.into_iter().map(|l| l.chain_id).collect();
        let removed = self.layers.sweep(&known)?;
        let live: HashSet<&Digest> = images.iter().flat_map(|i| i.blobs()).collect();
        let mut swept = 0;
        for blob in self.content.list()? {
            if !live.contains(&blob) {
                self.content.delete(&blob)?;
                swept += 1;
            }
        }
        if removed + swept > 0 {
            tracing::info!(layers = removed, blobs = swept, "image store recovered");
        }
        Ok(())
    }

    pub(crate) fn hold(&self, d: &Digest) {
        *self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(d.clone())
            .or_default() += 1;
    }

    pub(crate) fn release(&self, ds: &[Digest]) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        for d in ds {
            if let Some(n) = held.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    held.remove(d);
                }
            }
        }
    }

    pub(crate) fn is_held(&self, d: &Digest) -> bool {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(d)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every image, with its references and config.
    pub fn list(&self) -> Result<Vec<ImageInfo>> {
        let txn = self.db.begin_read()?;
        let images: Vec<ImageRecord> = meta::all_json(&txn.open_table(IMAGES)?)?;
        let mut refs: BTreeMap<String, Vec<Reference>> = BTreeMap::new();
        for (name, id) in meta::all_refs(&txn.open_table(REFS)?)? {
            if let Ok(r) = name.parse::<Reference>() {
                refs.entry(id).or_default().push(r);
            }
        }
        images
            .into_iter()
            .map(|record| {
                let refs = refs.remove(record.id.hex()).unwrap_or_default();
                self.info(record, refs)
            })
            .collect()
    }

    fn info(&self, record: ImageRecord, mut refs: Vec<Reference>) -> Result<ImageInfo> {
        let config = ImageConfig::parse(&self.content.read_blob(&record.id)?)?;
        refs.sort_by_key(|r| r.to_string());
        Ok(ImageInfo { record, config, refs })
    }

    /// Finds an image the way Docker does: by reference (`busybox` means `busybox:latest`), by
    /// full ID, `sha256:` ID, or unique ID prefix.
    pub fn resolve(&self, name: &str) -> Result<ImageInfo> {
        let txn = self.db.begin_read()?;
        let images = txn.open_table(IMAGES)?;
        let refs = txn.open_table(REFS)?;
        let not_found = |shown: String| ImageError::NoSuchImage(shown);
        let id = match parse_any(name) {
            Ok(AnyRef::Id(d)) => d,
            Ok(AnyRef::Named(r)) => {
                let full = r.clone().with_default_tag();
                match refs.get(full.to_string().as_str())? {
                    Some(id) => Digest::from_hex(id.value()).map_err(|e| ImageError::Meta(e.to_string()))?,
                    None if r.is_name_only() && is_id_prefix(name) => {
                        find_by_prefix(&images, name)?.ok_or_else(|| not_found(name.to_string()))?
                    }
                    None => return Err(not_found(full.familiar_string())),
                }
            }
            Err(e) => match name.strip_prefix("sha256:") {
                Some(p) if is_id_prefix(p) => {
                    find_by_prefix(&images, p)?.ok_or_else(|| not_found(name.into()))?
                }
                _ => return Err(e.into()),
            },
        };
        let record: ImageRecord =
            meta::get_json(&images, id.hex())?.ok_or_else(|| not_found(name.to_string()))?;
        let mut image_refs = Vec::new();
        for (r, target) in meta::all_refs(&refs)? {
            if target == id.hex() {
                image_refs.extend(r.parse::<Reference>().ok());
            }
        }
        drop((images, refs, txn));
        self.info(record, image_refs)
    }

    /// Points `reference` (given a tag "latest" when it has none) at image `id`.
    pub fn tag(&self, id: &Digest, reference: &Reference) -> Result<()> {
        if reference.digest().is_some() {
            return Err(ImageError::invalid(
                "refusing to create a tag with a digest reference",
            ));
        }
        let reference = reference.clone().with_default_tag();
        let _guard = self.lock();
        let txn = self.db.begin_write()?;
        {
            let mut images = txn.open_table(IMAGES)?;
            let mut record: ImageRecord =
                meta::get_json(&images, id.hex())?.ok_or_else(|| ImageError::NoSuchImage(id.to_string()))?;
            record.last_tag_time = now_rfc3339();
            images.insert(id.hex(), serde_json::to_vec(&record)?.as_slice())?;
            txn.open_table(REFS)?
                .insert(reference.to_string().as_str(), id.hex())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// `docker rmi`: untags a name, and deletes the image when nothing else names it; by ID,
    /// deletes the image (refusing without `force` when several repositories name it).
    pub fn delete(&self, name: &str, force: bool) -> Result<Vec<DeleteItem>> {
        let info = self.resolve(name)?;
        let id = info.record.id.clone();
        let by_name = match parse_any(name) {
            Ok(AnyRef::Named(r)) => {
                let full = r.clone().with_default_tag();
                info.refs.contains(&full).then_some(full)
            }
            _ => None,
        };
        let mut items = Vec::new();
        let _guard = self.lock();
        let txn = self.db.begin_write()?;
        let mut delete_image = true;
        {
            let mut refs = txn.open_table(REFS)?;
            match by_name {
                Some(r) => {
                    refs.remove(r.to_string().as_str())?;
                    items.push(DeleteItem::Untagged(r.familiar_string()));
                    let mut rest: Vec<&Reference> = info.refs.iter().filter(|x| **x != r).collect();
                    // The last tag of a repository takes that repository's digest references with it.
                    if r.digest().is_none()
                        && !rest.iter().any(|x| x.digest().is_none() && x.name() == r.name())
                    {
                        for d in rest
                            .iter()
                            .filter(|x| x.digest().is_some() && x.name() == r.name())
                        {
                            refs.remove(d.to_string().as_str())?;
                            items.push(DeleteItem::Untagged(d.familiar_string()));
                        }
                        rest.retain(|x| !(x.digest().is_some() && x.name() == r.name()));
                    }
                    delete_image = rest.is_empty();
                }
                None => {
                    let names: HashSet<String> = info.refs.iter().map(|r| r.name()).collect();
                    if !force && names.len() > 1 {
                        return Err(ImageError::Conflict(format!(
                            "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                            id.short()
                        )));
                    }
                    for r in &info.refs {
                        refs.remove(r.to_string().as_str())?;
                        items.push(DeleteItem::Untagged(r.familiar_string()));
                    }
                }
            }
        }
        let mut doomed_layers = Vec::new();
        if delete_image {
            doomed_layers = remove_image_record(&txn, &info.record)?;
            items.push(DeleteItem::Deleted(id.clone()));
        }
        txn.commit()?;
        if delete_image {
            self.collect(&doomed_layers, &info.record)?;
        }
        Ok(items)
    }

    /// Removes dangling images (or, with `all`, every image `keep` does not protect); returns what
    /// was deleted and the bytes reclaimed.
    pub fn prune(&self, all: bool, keep: &dyn Fn(&ImageInfo) -> bool) -> Result<(Vec<DeleteItem>, u64)> {
        let mut items = Vec::new();
        let mut reclaimed = 0;
        for info in self.list()? {
            if (!all && !info.is_dangling()) || keep(&info) {
                continue;
            }
            let _guard = self.lock();
            let txn = self.db.begin_write()?;
            {
                let mut refs = txn.open_table(REFS)?;
                for r in &info.refs {
                    refs.remove(r.to_string().as_str())?;
                    items.push(DeleteItem::Untagged(r.familiar_string()));
                }
            }
            let doomed = remove_image_record(&txn, &info.record)?;
            txn.commit()?;
            reclaimed += doomed.iter().map(|l| l.size).sum::<u64>();
            self.collect(&doomed, &info.record)?;
            items.push(DeleteItem::Deleted(info.record.id.clone()));
        }
        Ok((items, reclaimed))
    }

    /// After an image record is gone: removes its now-unused layer directories and blobs.
    fn collect(&self, doomed_layers: &[LayerRecord], gone: &ImageRecord) -> Result<()> {
        for l in doomed_layers {
            self.layers.remove(&l.chain_id)?;
        }
        let txn = self.db.begin_read()?;
        let images: Vec<ImageRecord> = meta::all_json(&txn.open_table(IMAGES)?)?;
        let live: HashSet<&Digest> = images.iter().flat_map(|i| i.blobs()).collect();
        for blob in gone.blobs() {
            if !live.contains(blob) && !self.is_held(blob) {
                self.content.delete(blob)?;
            }
        }
        Ok(())
    }

    /// Stage (unpack) the layers of an image that the store does not have yet, checking each
    /// layer's content against the diff ID the config promises.
    pub(crate) fn stage_layers(&self, diff_ids: &[Digest], blobs: &[BlobRef]) -> Result<Vec<NewLayer>> {
        self.stage_layers_using(diff_ids, blobs, &mut UnpackedLayers::default())
    }

    /// [`Self::stage_layers`], taking layers already unpacked (by a pull, as they downloaded)
    /// from `early` when their content is what the config says.
    pub(crate) fn stage_layers_using(
        &self,
        diff_ids: &[Digest],
        blobs: &[BlobRef],
        early: &mut UnpackedLayers,
    ) -> Result<Vec<NewLayer>> {
        if diff_ids.len() != blobs.len() {
            return Err(ImageError::invalid(format!(
                "image config lists {} layers but the manifest has {}",
                diff_ids.len(),
                blobs.len()
            )));
        }
        let mut out: Vec<NewLayer> = Vec::new();
        let mut parent: Option<Digest> = None;
        let result = (|| {
            for (diff_id, blob) in diff_ids.iter().zip(blobs) {
                let chain = chain_id(parent.as_ref(), diff_id);
                let staged = if self.has_layer(&chain)? {
                    None
                } else if let Some(staged) = early.take(&blob.digest, diff_id) {
                    Some(staged)
                } else {
                    let staged = self.layers.stage(self.content.open_blob(&blob.digest)?)?;
                    if staged.stats.diff_id != *diff_id {
                        let got = staged.stats.diff_id.clone();
                        self.layers.discard(staged);
                        return Err(ImageError::invalid(format!(
                            "layer {} does not match the image config: its content is {got}, the config says {diff_id}",
                            blob.digest
                        )));
                    }
                    Some(staged)
                };
                let layer = ImageLayer {
                    chain_id: chain.clone(),
                    diff_id: diff_id.clone(),
                    blob: blob.clone(),
                };
                out.push(NewLayer { layer, staged });
                parent = Some(chain);
            }
            Ok(())
        })();
        if let Err(e) = result {
            self.discard_staged(out);
            return Err(e);
        }
        Ok(out)
    }

    pub(crate) fn discard_staged(&self, layers: Vec<NewLayer>) {
        for l in layers {
            if let Some(s) = l.staged {
                self.layers.discard(s);
            }
        }
    }

    fn has_layer(&self, chain: &Digest) -> Result<bool> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(LAYERS)?.get(chain.hex())?.is_some())
    }

    /// Records a new image (or new names for an existing one) in one transaction. Returns, for
    /// each tag that moved, the image it used to name.
    pub(crate) fn commit_image(
        &self,
        id: &Digest,
        manifest: BlobRef,
        layers: Vec<NewLayer>,
        tags: &[Reference],
    ) -> Result<Vec<(Reference, Digest)>> {
        let _guard = self.lock();
        let txn = self.db.begin_write()?;
        let mut moved = Vec::new();
        let mut to_discard = Vec::new();
        {
            let mut images = txn.open_table(IMAGES)?;
            let mut layer_table = txn.open_table(LAYERS)?;
            let exists = images.get(id.hex())?.is_some();
            let mut size = 0;
            let mut record_layers = Vec::new();
            let mut parent: Option<Digest> = None;
            for l in layers {
                let chain = l.layer.chain_id.clone();
                let existing: Option<LayerRecord> = meta::get_json(&layer_table, chain.hex())?;
                let rec = match (existing, l.staged) {
                    (Some(mut rec), staged) => {
                        to_discard.extend(staged);
                        if !exists {
                            rec.refs += 1;
                        }
                        rec
                    }
                    (None, Some(staged)) => {
                        let rec = LayerRecord {
                            chain_id: chain.clone(),
                            diff_id: l.layer.diff_id.clone(),
                            parent: parent.clone(),
                            size: staged.stats.size,
                            tar_size: staged.stats.tar_size,
                            refs: 1,
                        };
                        self.layers.commit(staged, &chain)?;
                        rec
                    }
                    (None, None) => {
                        return Err(ImageError::Conflict(format!(
                            "layer {chain} was removed while this image was being added; try again"
                        )))
                    }
                };
                size += rec.size;
                layer_table.insert(chain.hex(), serde_json::to_vec(&rec)?.as_slice())?;
                record_layers.push(l.layer);
                parent = Some(chain);
            }
            let layer_blobs: Vec<Digest> = record_layers
                .iter()
                .map(|l: &ImageLayer| l.blob.digest.clone())
                .collect();
            for blob in std::iter::once(id)
                .chain(std::iter::once(&manifest.digest))
                .chain(&layer_blobs)
            {
                if !self.content.contains(blob) {
                    return Err(ImageError::Conflict(format!(
                        "blob {blob} vanished while adding image; try again"
                    )));
                }
            }
            let record = ImageRecord {
                id: id.clone(),
                manifest,
                layers: record_layers,
                size,
                last_tag_time: now_rfc3339(),
            };
            images.insert(id.hex(), serde_json::to_vec(&record)?.as_slice())?;
            let mut refs = txn.open_table(REFS)?;
            for tag in tags {
                let key = tag.to_string();
                let old = refs
                    .insert(key.as_str(), id.hex())?
                    .map(|v| v.value().to_string());
                if let Some(old) = old.filter(|o| o != id.hex()) {
                    moved.push((
                        tag.clone(),
                        Digest::from_hex(&old).map_err(|e| ImageError::Meta(e.to_string()))?,
                    ));
                }
            }
        }
        txn.commit()?;
        for s in to_discard {
            self.layers.discard(s);
        }
        Ok(moved)
    }

    /// Record of one layer (sizes), by chain ID.
    pub fn layer(&self, chain: &Digest) -> Result<LayerRecord> {
        let txn = self.db.begin_read()?;
        meta::get_json(&txn.open_table(LAYERS)?, chain.hex())?
            .ok_or_else(|| ImageError::Meta(format!("layer {chain} missing from metadata")))
    }

    /// Bytes used by all unpacked layers, counting shared layers once.
    pub fn layers_size(&self) -> Result<u64> {
        let txn = self.db.begin_read()?;
        let all: Vec<LayerRecord> = meta::all_json(&txn.open_table(LAYERS)?)?;
        Ok(all.iter().map(|l| l.size).sum())
    }
}

/// Deletes an image record and drops its layers' reference counts; returns layers now unused.
fn remove_image_record(txn: &redb::WriteTransaction, record: &ImageRecord) -> Result<Vec<LayerRecord>> {
    txn.open_table(IMAGES)?.remove(record.id.hex())?;
    let mut layers = txn.open_table(LAYERS)?;
    let mut doomed = Vec::new();
    for l in &record.layers {
        let Some(mut rec): Option<LayerRecord> = meta::get_json(&layers, l.chain_id.hex())? else {
            continue;
        };
        rec.refs = rec.refs.saturating_sub(1);
        if rec.refs == 0 {
            layers.remove(l.chain_id.hex())?;
            doomed.push(rec);
        } else {
            layers.insert(l.chain_id.hex(), serde_json::to_vec(&rec)?.as_slice())?;
        }
    }
    Ok(doomed)
}

fn is_id_prefix(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn find_by_prefix(
    images: &impl ReadableTable<&'static str, &'static [u8]>,
    prefix: &str,
) -> Result<Option<Digest>> {
    let mut found = None;
    for row in images.iter()? {
        let (k, _) = row?;
        if k.value().starts_with(prefix) {
            if found.is_some() {
                return Err(ImageError::invalid(format!(
                    "multiple IDs found with provided prefix: {prefix}"
                )));
            }
            found = Some(Digest::from_hex(k.value()).map_err(|e| ImageError::Meta(e.to_string()))?);
        }
    }
    Ok(found)
}

pub(crate) fn now_rfc3339() -> String {
    crate::time::now_rfc3339_nano()
}
