//! Garbage collection: mark every blob reachable from the repositories' manifests, sweep the rest.
//! Run it while the server is stopped or read-only, as with distribution.

use std::collections::HashSet;
use std::io;

use serde_json::Value;

use crate::reference::Digest;
use crate::storage::{list_dir, manifests_references, repositories, Storage};

/// What a collection found (and, unless a dry run, removed).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub marked: usize,
    /// Blobs no manifest refers to.
    pub swept: Vec<Digest>,
    pub bytes_freed: u64,
    /// Untagged manifests removed (`delete_untagged`).
    pub untagged_manifests: Vec<(String, Digest)>,
}

/// Options of a collection.
#[derive(Debug, Default, Clone, Copy)]
pub struct GcOptions {
    /// Report only; remove nothing.
    pub dry_run: bool,
    /// Also remove manifests that no tag reaches (directly, through an index, or as a referrer
    /// of a kept manifest).
    pub delete_untagged: bool,
}

fn read_manifest(storage: &Storage, digest: &Digest) -> Option<Value> {
    let bytes = std::fs::read(storage.blob_path(digest)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn revisions(storage: &Storage, name: &str) -> io::Result<Vec<Digest>> {
    let dir = storage.repo_path(name).join("_manifests/revisions/sha256");
    Ok(list_dir(&dir)?
        .iter()
        .filter_map(|hex| Digest::parse(&format!("sha256:{hex}")).ok())
        .collect())
}

/// The manifests of `name` to keep: all revisions, or with `delete_untagged` those reachable
/// from tags through index children and referrers.
fn kept_manifests(storage: &Storage, name: &str, delete_untagged: bool) -> io::Result<HashSet<Digest>> {
    let all = revisions(storage, name)?;
    if !delete_untagged {
        return Ok(all.into_iter().collect());
    }
    let mut kept = HashSet::new();
    let mut pending: Vec<Digest> = Vec::new();
    for tag in list_dir(&storage.tags_dir(name))? {
        let text = std::fs::read_to_string(storage.tags_dir(name).join(tag))?;
        if let Ok(digest) = Digest::parse(text.trim()) {
            pending.push(digest);
        }
    }
    loop {
        while let Some(digest) = pending.pop() {
            if !kept.insert(digest.clone()) {
                continue;
            }
            if let Some(json) = read_manifest(storage, &digest) {
                if let Ok(references) = manifests_references(&json) {
                    pending.extend(references.children);
                }
            }
        }
        // Referrers of kept manifests are kept too (signatures, SBOMs of a tagged image).
        for digest in &all {
            if kept.contains(digest) {
                continue;
            }
            let subject = read_manifest(storage, digest)
                .and_then(|json| manifests_references(&json).ok())
                .and_then(|references| references.subject);
            if subject.is_some_and(|subject| kept.contains(&subject)) {
                pending.push(digest.clone());
            }
        }
        if pending.is_empty() {
            return Ok(kept);
        }
    }
}

/// Runs a collection over the storage root.
pub fn collect(storage: &Storage, options: GcOptions) -> io::Result<GcReport> {
    let mut report = GcReport::default();
    let mut marked: HashSet<Digest> = HashSet::new();
    for name in repositories(&storage.root().join("repositories"))? {
        let kept = kept_manifests(storage, &name, options.delete_untagged)?;
        for digest in revisions(storage, &name)? {
            if kept.contains(&digest) {
                continue;
            }
            report.untagged_manifests.push((name.clone(), digest.clone()));
            if !options.dry_run {
                remove_manifest_links(storage, &name, &digest)?;
            }
        }
        for digest in kept {
            marked.insert(digest.clone());
            let Some(json) = read_manifest(storage, &digest) else {
                continue;
            };
            let Ok(references) = manifests_references(&json) else {
                continue;
            };
            marked.extend(references.blobs);
            marked.extend(references.children);
            marked.extend(references.subject);
        }
    }
    report.marked = marked.len();
    let blob_dir = storage.root().join("blobs/sha256");
    for hex in list_dir(&blob_dir)? {
        let Ok(digest) = Digest::parse(&format!("sha256:{hex}")) else {
            continue;
        };
        if marked.contains(&digest) {
            continue;
        }
        let path = blob_dir.join(&hex);
        report.bytes_freed += std::fs::metadata(&path).map(|meta| meta.len()).unwrap_or(0);
        if !options.dry_run {
            std::fs::remove_file(&path)?;
        }
        report.swept.push(digest);
    }
    if !options.dry_run {
        remove_dangling_layer_links(storage)?;
    }
    Ok(report)
}

fn remove_manifest_links(storage: &Storage, name: &str, digest: &Digest) -> io::Result<()> {
    let references = read_manifest(storage, digest).and_then(|json| manifests_references(&json).ok());
    if let Some(subject) = references.and_then(|references| references.subject) {
        let _ = std::fs::remove_file(storage.referrers_dir(name, &subject).join(digest.hex()));
    }
    std::fs::remove_file(storage.revision_path(name, digest))
}

/// Drops `_layers` links whose blob was swept, so nothing refers to missing content.
fn remove_dangling_layer_links(storage: &Storage) -> io::Result<()> {
    for name in repositories(&storage.root().join("repositories"))? {
        let dir = storage.repo_path(&name).join("_layers/sha256");
        for hex in list_dir(&dir)? {
            if !storage.root().join("blobs/sha256").join(&hex).exists() {
                std::fs::remove_file(dir.join(&hex))?;
            }
        }
    }
    Ok(())
}
