//! The build cache: which image a step gave, keyed by what the step depends on (the parent image,
//! the instruction after expansion with the build args it sees, and for COPY/ADD a digest of the
//! files read). Kept in one JSON file under the daemon root, replaced atomically on each change,
//! so it survives restarts. An entry whose image is gone is simply a miss.

use berth_image::Digest;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct BuildCache {
    path: PathBuf,
    entries: Mutex<BTreeMap<String, Digest>>,
}

impl BuildCache {
    /// Opens (or starts) the cache kept in `dir/cache.json`. A damaged file is treated as empty.
    pub fn open(dir: &Path) -> std::io::Result<BuildCache> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("cache.json");
        let entries = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "build cache unreadable; starting empty");
                BTreeMap::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        Ok(BuildCache {
            path,
            entries: Mutex::new(entries),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Digest>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &str) -> Option<Digest> {
        self.lock().get(key).cloned()
    }

    pub fn put(&self, key: String, image: Digest) -> std::io::Result<()> {
        let mut entries = self.lock();
        entries.insert(key, image);
        self.save(&entries)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Forgets every entry; returns the images the cache named (the caller may delete them).
    pub fn prune(&self) -> std::io::Result<Vec<Digest>> {
        let mut entries = self.lock();
        let images: Vec<Digest> = entries.values().cloned().collect();
        entries.clear();
        self.save(&entries)?;
        Ok(images)
    }

    fn save(&self, entries: &BTreeMap<String, Digest>) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(entries).map_err(std::io::Error::other)?;
        berth_image::content::write_atomic(&self.path, &bytes).map_err(std::io::Error::other)
    }
}

/// The cache key of a step: parent image, instruction text (expanded, with the build args it
/// sees) and, for COPY/ADD, the digest of the content it reads.
pub fn step_key(parent: Option<&Digest>, instruction: &str, content: Option<&str>) -> String {
    let mut h = Sha256::new();
    h.update(parent.map(|p| p.to_string()).unwrap_or_default());
    h.update([0]);
    h.update(instruction);
    h.update([0]);
    h.update(content.unwrap_or(""));
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_reopening_and_prune_empties() {
        let dir = tempfile::tempdir().unwrap();
        let id = Digest::of(b"config");
        let key = step_key(None, "RUN true", None);
        assert_ne!(key, step_key(Some(&id), "RUN true", None));
        assert_ne!(key, step_key(None, "RUN true", Some("x")));
        {
            let c = BuildCache::open(dir.path()).unwrap();
            assert!(c.get(&key).is_none());
            c.put(key.clone(), id.clone()).unwrap();
        }
        let c = BuildCache::open(dir.path()).unwrap();
        assert_eq!(c.get(&key), Some(id.clone()));
        assert_eq!(c.prune().unwrap(), vec![id]);
        assert!(BuildCache::open(dir.path()).unwrap().is_empty());
    }
}
