//! `docker save` / `docker load` archives.
//!
//! Save writes what Docker 25+ writes: an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/...`) and, in the same tar, the docker-archive `manifest.json` (plus the legacy
//! `repositories`). Load reads that, the legacy docker-archive (`<id>/layer.tar`, `<id>.json`),
//! and plain OCI layouts as skopeo or umoci write them; gzip'd or not.
//!
//! Load streams: each blob goes straight into the content store (verified against its name when
//! the name is a digest), small JSON files are kept in memory, and only when the whole archive
//! has been read are layers unpacked and images recorded, each in one transaction.

use crate::config::ImageConfig;
use crate::digest::Digest;
use crate::error::{ImageError, IoContext, Result};
use crate::layer::{decompressed, Compression};
use crate::manifest::{self, Descriptor, Index, Manifest};
use crate::meta::BlobRef;
use crate::reference::{parse_any, AnyRef, Reference};
use crate::store::{ImageInfo, ImageStore};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::rc::Rc;

/// Files kept in memory while reading an archive: the small metadata files.
const SMALL_FILE_LIMIT: u64 = 16 << 20;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

enum ArchiveFile {
    Blob(Digest),
    Small(Vec<u8>),
}

/// An image found in an archive, before it is added to the store.
struct ArchiveImage {
    config: Digest,
    layers: Vec<Digest>,
    /// The original manifest when the archive had one we can keep (OCI layouts).
    manifest: Option<Descriptor>,
    tags: Vec<Reference>,
}

/// Remembers a read error of the archive stream, so it can be reported as bad input rather than
/// as a failure of the store.
struct Tracked<R> {
    inner: R,
    error: Rc<RefCell<Option<String>>>,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner
            .read(buf)
            .inspect_err(|e| *self.error.borrow_mut() = Some(e.to_string()))
    }
}

impl ImageStore {
    /// Loads every image in a `docker save` archive or OCI layout tar. Returns Docker's messages
    /// ("Loaded image: busybox:latest", "Loaded image ID: sha256:...").
    pub fn load<R: Read>(&self, reader: R) -> Result<Vec<String>> {
        let error = Rc::new(RefCell::new(None));
        let tracked = Tracked {
            inner: reader,
            error: error.clone(),
        };
        let mut ingested = Vec::new();
        let result = self.load_inner(tracked, &mut ingested);
        let result = result.map_err(|e| match error.borrow().clone() {
            Some(read_error) => {
                ImageError::invalid(format!("invalid archive: {}", read_error.escape_debug()))
            }
            None => e,
        });
        self.release(&ingested);
        // Whatever this load wrote that no image uses (a failed load's blobs, or side files of
        // legacy archives such as `<id>/VERSION`) goes again.
        self.gc_blobs(&ingested)?;
        result
    }

    fn load_inner<R: Read>(&self, reader: R, ingested: &mut Vec<Digest>) -> Result<Vec<String>> {
        let (stream, _) =
            decompressed(reader).map_err(|e| ImageError::invalid(format!("invalid archive: {e}")))?;
        let mut archive = tar::Archive::new(stream);
        let mut files: HashMap<String, ArchiveFile> = HashMap::new();
        let mut held: u64 = 0;
        let mut links: HashMap<String, String> = HashMap::new();
        let entries = archive
            .entries()
            .map_err(|e| ImageError::invalid(format!("invalid archive: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| {
                ImageError::invalid(format!("invalid archive: {}", e.to_string().escape_debug()))
            })?;
            let path = normalize(
                &entry
                    .path()
                    .map_err(|e| ImageError::invalid(e.to_string()))?
                    .to_string_lossy(),
            );
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let size = entry.header().size().unwrap_or(0);
                    let file = if let Some(hex) = path.strip_prefix("blobs/sha256/") {
                        let expected = Digest::from_hex(hex).map_err(|_| {
                            ImageError::invalid(format!("invalid archive: bad blob name {path}"))
                        })?;
                        self.hold(&expected);
                        ingested.push(expected.clone());
                        let mut counted = CountingReader {
                            inner: &mut entry,
                            n: 0,
                        };
                        let result = self.content.ingest(&mut counted, Some(&expected));
                        let got = counted.n;
                        result.map_err(|e| match e {
                            ImageError::DigestMismatch { .. } if got < size => ImageError::invalid(format!(
                                "invalid archive: it is truncated ({path} has {got} of {size} bytes)"
                            )),
                            ImageError::DigestMismatch { .. } => {
                                ImageError::invalid(format!("invalid archive: {path}: {e}"))
                            }
                            e => e,
                        })?;
                        ArchiveFile::Blob(expected)
                    } else if is_metadata(&path) {
                        held += size;
                        if size > SMALL_FILE_LIMIT || held > SMALL_FILE_LIMIT * 4 {
                            return Err(ImageError::invalid(format!(
                                "invalid archive: {path} is too large"
                            )));
                        }
                        let mut buf = Vec::with_capacity(size as usize);
                        entry.read_to_end(&mut buf).ctx(|| format!("reading {path}"))?;
                        ArchiveFile::Small(buf)
                    } else {
                        let (d, _) = self.content.ingest(&mut entry, None)?;
                        self.hold(&d);
                        ingested.push(d.clone());
                        ArchiveFile::Blob(d)
                    };
                    files.insert(path, file);
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry
                        .link_name()
                        .ok()
                        .flatten()
                        .map(|t| t.to_string_lossy().into_owned());
                    if let Some(target) = target {
                        let base = match entry.header().entry_type() {
                            tar::EntryType::Symlink => path
                                .rsplit_once('/')
                                .map(|(d, _)| d.to_string())
                                .unwrap_or_default(),
                            _ => String::new(),
                        };
                        links.insert(path, normalize(&format!("{base}/{target}")));
                    }
                }
                _ => {}
            }
        }
        let mut lookup = |path: &str| -> Result<Digest> {
            let mut p = normalize(path);
            for _ in 0..16 {
                match files.get(&p) {
                    Some(ArchiveFile::Blob(d)) => return Ok(d.clone()),
                    Some(ArchiveFile::Small(bytes)) => {
                        let d = self.content.write_blob(bytes)?;
                        // Kept only while an image uses it: a failed load must not leave it behind.
                        self.hold(&d);
                        ingested.push(d.clone());
                        return Ok(d);
                    }
                    None => match links.get(&p) {
                        Some(next) => p = next.clone(),
                        None => break,
                    },
                }
            }
            Err(ImageError::invalid(format!("invalid archive: {path} is missing")))
        };
        let small = |name: &str| match files.get(name) {
            Some(ArchiveFile::Small(b)) => Some(b.as_slice()),
            _ => None,
        };

        let images = if let Some(bytes) = small("manifest.json") {
            let entries: Vec<ArchiveManifestEntry> = serde_json::from_slice(bytes)
                .map_err(|e| ImageError::invalid(format!("invalid archive: manifest.json: {e}")))?;
            let mut images = Vec::new();
            for e in entries {
                let tags = e
                    .repo_tags
                    .unwrap_or_default()
                    .iter()
                    .map(|t| t.parse::<Reference>().map(Reference::with_default_tag))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                let layers = e.layers.iter().map(|l| lookup(l)).collect::<Result<Vec<_>>>()?;
                images.push(ArchiveImage {
                    config: lookup(&e.config)?,
                    layers,
                    manifest: None,
                    tags,
                });
            }
            images
        } else if let Some(bytes) = small("index.json") {
            self.oci_layout_images(bytes)?
        } else {
            return Err(ImageError::invalid(
                "invalid archive: it has neither manifest.json nor index.json (is it a docker save or OCI layout tar?)",
            ));
        };
        if images.is_empty() {
            return Err(ImageError::invalid("invalid archive: it contains no image"));
        }
        let mut messages = Vec::new();
        for image in images {
            messages.extend(self.add_archive_image(image)?);
        }
        Ok(messages)
    }

    fn oci_layout_images(&self, index: &[u8]) -> Result<Vec<ArchiveImage>> {
        let index: Index = serde_json::from_slice(index)
            .map_err(|e| ImageError::invalid(format!("invalid archive: index.json: {e}")))?;
        let mut out = Vec::new();
        for desc in index.manifests {
            let name = desc
                .annotations
                .get(manifest::ANNOTATION_IMAGE_NAME)
                .or_else(|| desc.annotations.get(manifest::ANNOTATION_REF_NAME))
                .and_then(|n| match parse_any(n) {
                    // A bare tag ("latest", as skopeo and umoci write) names no repository.
                    Ok(AnyRef::Named(r)) if n.contains('/') || n.contains(':') => Some(r.with_default_tag()),
                    _ => None,
                });
            let manifest_desc = self.pick_platform(desc)?;
            let manifest: Manifest =
                serde_json::from_slice(&self.blob(&manifest_desc.digest)?).map_err(|e| {
                    ImageError::invalid(format!("invalid manifest {}: {e}", manifest_desc.digest))
                })?;
            out.push(ArchiveImage {
                config: manifest.config.digest.clone(),
                layers: manifest.layers.iter().map(|l| l.digest.clone()).collect(),
                manifest: Some(manifest_desc),
                tags: name.into_iter().collect(),
            });
        }
        Ok(out)
    }

    /// Follows an index down to the manifest for this machine's platform.
    fn pick_platform(&self, mut desc: Descriptor) -> Result<Descriptor> {
        for _ in 0..4 {
            if !desc.is_index() {
                return Ok(desc);
            }
            let index: Index = serde_json::from_slice(&self.blob(&desc.digest)?)
                .map_err(|e| ImageError::invalid(format!("invalid index {}: {e}", desc.digest)))?;
            let arch = manifest::host_architecture();
            desc = index
                .manifests
                .iter()
                .find(|m| {
                    m.platform
                        .as_ref()
                        .is_some_and(|p| p.architecture == arch && p.os == "linux")
                })
                .or_else(|| index.manifests.first())
                .cloned()
                .ok_or_else(|| ImageError::invalid(format!("index {} is empty", desc.digest)))?;
        }
        Err(ImageError::invalid("indexes nested too deeply"))
    }

    fn blob(&self, d: &Digest) -> Result<Vec<u8>> {
        if !self.content.contains(d) {
            return Err(ImageError::invalid(format!(
                "invalid archive: blob {d} is missing"
            )));
        }
        self.content.read_blob(d)
    }

    fn add_archive_image(&self, image: ArchiveImage) -> Result<Vec<String>> {
        let config = ImageConfig::parse(&self.blob(&image.config)?)?;
        let mut blobs = Vec::new();
        for d in &image.layers {
            let mut f = self.content.open_blob(d)?;
            let mut magic = [0u8; 4];
            let n = f.read(&mut magic).ctx(|| format!("reading blob {d}"))?;
            blobs.push(BlobRef {
                digest: d.clone(),
                media_type: manifest::layer_media_type(Compression::detect(&magic[..n])).into(),
                size: self.content.size(d)?,
            });
        }
        let layers = self.stage_layers(&config.rootfs.diff_ids, &blobs)?;
        let manifest = match image.manifest {
            Some(m) => BlobRef {
                digest: m.digest,
                media_type: m.media_type,
                size: m.size,
            },
            None => self.write_manifest(&image.config, &blobs)?,
        };
        let moved = self.commit_image(&image.config, manifest, layers, &image.tags)?;
        let mut messages: Vec<String> = moved
            .iter()
            .map(|(tag, old)| {
                format!(
                    "The image {} already exists, renaming the old one with ID {old} to empty string",
                    tag.familiar_string()
                )
            })
            .collect();
        if image.tags.is_empty() {
            messages.push(format!("Loaded image ID: {}", image.config));
        }
        messages.extend(
            image
                .tags
                .iter()
                .map(|t| format!("Loaded image: {}", t.familiar_string())),
        );
        Ok(messages)
    }

    /// Writes the OCI manifest Berth keeps for an image it assembled itself.
    pub(crate) fn write_manifest(&self, config: &Digest, layers: &[BlobRef]) -> Result<BlobRef> {
        let bytes = manifest::oci_manifest_bytes(
            Descriptor::new(manifest::OCI_CONFIG, config.clone(), self.content.size(config)?),
            layers
                .iter()
                .map(|b| Descriptor::new(&b.media_type, b.digest.clone(), b.size))
                .collect(),
        );
        let digest = self.content.write_blob(&bytes)?;
        Ok(BlobRef {
            digest,
            media_type: manifest::OCI_MANIFEST.into(),
            size: bytes.len() as u64,
        })
    }

    /// Deletes the given blobs unless an image uses them.
    pub(crate) fn gc_blobs(&self, candidates: &[Digest]) -> Result<()> {
        let live: HashSet<Digest> = self
            .list()?
            .iter()
            .flat_map(|i| i.record.blobs().cloned().collect::<Vec<_>>())
            .collect();
        for d in candidates
            .iter()
            .filter(|d| !live.contains(d) && !self.is_held(d))
        {
            self.content.delete(d)?;
        }
        Ok(())
    }

    /// Writes `docker save` output for the named images: Docker 25+'s combined OCI layout and
    /// docker-archive. A repository name without a tag saves every tag of that repository.
    pub fn save<W: Write>(&self, names: &[String], out: W) -> Result<()> {
        let mut chosen: Vec<(ImageInfo, Vec<Reference>)> = Vec::new();
        let mut add = |info: ImageInfo, tag: Option<Reference>| {
            let slot = match chosen.iter_mut().position(|(i, _)| i.record.id == info.record.id) {
                Some(i) => i,
                None => {
                    chosen.push((info, Vec::new()));
                    chosen.len() - 1
                }
            };
            if let Some(tag) = tag.filter(|t| !chosen[slot].1.contains(t)) {
                chosen[slot].1.push(tag);
            }
        };
        for name in names {
            if let Ok(AnyRef::Named(r)) = parse_any(name) {
                if r.is_name_only() {
                    let repo = r.name();
                    let mut found = false;
                    for info in self.list()? {
                        for t in info
                            .refs
                            .clone()
                            .into_iter()
                            .filter(|t| t.digest().is_none() && t.name() == repo)
                        {
                            add(info.clone(), Some(t));
                            found = true;
                        }
                    }
                    if found {
                        continue;
                    }
                }
            }
            let info = self.resolve(name)?;
            let tag = match parse_any(name) {
                Ok(AnyRef::Named(r)) if r.digest().is_none() => Some(r.with_default_tag()),
                _ => None,
            };
            add(info, tag);
        }
        self.write_archive(&chosen, out)
    }

    fn write_archive<W: Write>(&self, images: &[(ImageInfo, Vec<Reference>)], out: W) -> Result<()> {
        let mut tar = tar::Builder::new(out);
        let werr = |e: std::io::Error| ImageError::Io {
            context: "writing archive".into(),
            source: e,
        };
        for dir in ["blobs/", "blobs/sha256/"] {
            append_dir(&mut tar, dir).map_err(werr)?;
        }
        let mut written = HashSet::new();
        let mut index = Vec::new();
        let mut docker_manifest = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (info, tags) in images {
            let mut layer_descs = Vec::new();
            for l in &info.record.layers {
                let rec = self.layer(&l.chain_id)?;
                layer_descs.push(Descriptor::new(
                    manifest::OCI_LAYER,
                    l.diff_id.clone(),
                    rec.tar_size,
                ));
                if !written.insert(l.diff_id.clone()) {
                    continue;
                }
                let (stream, _) = decompressed(self.content.open_blob(&l.blob.digest)?)
                    .ctx(|| format!("reading layer {}", l.blob.digest))?;
                append_file(
                    &mut tar,
                    &format!("blobs/sha256/{}", l.diff_id.hex()),
                    rec.tar_size,
                    stream,
                )
                .map_err(werr)?;
            }
            let config = self.content.read_blob(&info.record.id)?;
            if written.insert(info.record.id.clone()) {
                append_bytes(
                    &mut tar,
                    &format!("blobs/sha256/{}", info.record.id.hex()),
                    &config,
                )
                .map_err(werr)?;
            }
            let manifest_bytes = manifest::oci_manifest_bytes(
                Descriptor::new(manifest::OCI_CONFIG, info.record.id.clone(), config.len() as u64),
                layer_descs,
            );
            let manifest_digest = Digest::of(&manifest_bytes);
            if written.insert(manifest_digest.clone()) {
                append_bytes(
                    &mut tar,
                    &format!("blobs/sha256/{}", manifest_digest.hex()),
                    &manifest_bytes,
                )
                .map_err(werr)?;
            }
            let desc = Descriptor::new(
                manifest::OCI_MANIFEST,
                manifest_digest.clone(),
                manifest_bytes.len() as u64,
            );
            if tags.is_empty() {
                index.push(desc.clone());
            }
            for t in tags {
                let mut d = desc.clone();
                d.annotations
                    .insert(manifest::ANNOTATION_IMAGE_NAME.into(), t.to_string());
                d.annotations.insert(
                    manifest::ANNOTATION_REF_NAME.into(),
                    t.tag().unwrap_or("latest").into(),
                );
                index.push(d);
                if let Some(top) = info.record.layers.last() {
                    repositories
                        .entry(t.familiar_name())
                        .or_default()
                        .insert(t.tag().unwrap_or("latest").into(), top.diff_id.hex().into());
                }
            }
            docker_manifest.push(ArchiveManifestEntry {
                config: format!("blobs/sha256/{}", info.record.id.hex()),
                repo_tags: (!tags.is_empty()).then(|| tags.iter().map(|t| t.familiar_string()).collect()),
                layers: info
                    .record
                    .layers
                    .iter()
                    .map(|l| format!("blobs/sha256/{}", l.diff_id.hex()))
                    .collect(),
            });
        }
        let index = Index {
            schema_version: 2,
            media_type: Some(manifest::OCI_INDEX.into()),
            manifests: index,
        };
        append_bytes(&mut tar, "index.json", &serde_json::to_vec(&index)?).map_err(werr)?;
        append_bytes(&mut tar, "manifest.json", &serde_json::to_vec(&docker_manifest)?).map_err(werr)?;
        append_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(werr)?;
        if !repositories.is_empty() {
            append_bytes(&mut tar, "repositories", &serde_json::to_vec(&repositories)?).map_err(werr)?;
        }
        tar.into_inner().map_err(werr)?.flush().map_err(werr)
    }
}

/// The small files of an archive's own metadata, kept in memory while it is read; everything else
/// goes to the content store.
fn is_metadata(path: &str) -> bool {
    path.ends_with(".json") || path == "repositories" || path == "oci-layout"
}

/// Lexically cleans an archive path: no leading `/` or `./`, no `.` parts, `..` resolved.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn header(path: &str, size: u64, kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    // Names here are short ("blobs/sha256/<64 hex>" fits ustar's 100-byte field).
    let _ = h.set_path(path);
    h.set_cksum();
    h
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str) -> std::io::Result<()> {
    tar.append(
        &header(path, 0, tar::EntryType::Directory, 0o755),
        std::io::empty(),
    )
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, path: &str, bytes: &[u8]) -> std::io::Result<()> {
    tar.append(
        &header(path, bytes.len() as u64, tar::EntryType::Regular, 0o644),
        bytes,
    )
}

fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    data: impl Read,
) -> std::io::Result<()> {
    let mut counted = CountingReader {
        inner: data.take(size),
        n: 0,
    };
    tar.append(&header(path, size, tar::EntryType::Regular, 0o644), &mut counted)?;
    if counted.n != size {
        return Err(std::io::Error::other(format!(
            "{path}: expected {size} bytes, stored layer has {}",
            counted.n
        )));
    }
    Ok(())
}

struct CountingReader<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}
