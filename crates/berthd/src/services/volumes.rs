//! Named volumes with Docker's `local` driver: a directory `volumes/<name>/_data` under the root,
//! or, with `-o type=... -o device=... -o o=...`, a mount made there while a container uses it.
//!
//! Each volume's record is `volumes/<name>/volume.json`. A volume is made in a temporary directory
//! and renamed into place, so a crash never leaves a half-made volume that loads. Which containers
//! use a volume is told by the container service (`acquire`/`release`): a used volume cannot be
//! removed.

use berth_api::Filters;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const RECORD: &str = "volume.json";
const DATA: &str = "_data";
/// Docker marks the volumes it makes for a container (`-v /path`, an image's VOLUME) with this.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("get {0}: no such volume")]
    NotFound(String),
    #[error("remove {name}: volume is in use - [{}]", users.join(", "))]
    InUse { name: String, users: Vec<String> },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Internal(String),
}

impl From<std::io::Error> for VolumeError {
    fn from(e: std::io::Error) -> Self {
        VolumeError::Internal(e.to_string())
    }
}

pub type Result<T, E = VolumeError> = std::result::Result<T, E>;

/// A volume as it is kept on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub created_at: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The local driver's options: `type`, `device`, `o`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

impl Volume {
    pub fn is_anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }

    /// A volume backed by a mount (`-o type=tmpfs`, `-o type=none -o o=bind -o device=/x`).
    fn mount_options(&self) -> Option<(&str, &str, &str)> {
        let kind = self.options.get("type")?;
        let device = self.options.get("device").map(String::as_str).unwrap_or("");
        let opts = self.options.get("o").map(String::as_str).unwrap_or("");
        Some((kind.as_str(), device, opts))
    }
}

#[derive(Clone)]
pub struct VolumeService {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    data_owner: Option<(u32, u32)>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    volumes: BTreeMap<String, Volume>,
    /// Containers (by ID) that refer to each volume.
    users: HashMap<String, BTreeSet<String>>,
    /// How many running containers have each mount-backed volume mounted.
    active: HashMap<String, usize>,
}

/// Docker's rule for local volume names.
pub fn validate_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = name.len() >= 2 && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if first_ok && rest_ok {
        return Ok(());
    }
    Err(VolumeError::Invalid(format!(
        "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
    )))
}

impl VolumeService {
    /// Loads the volumes under `<root>/volumes`, dropping the leftovers of creates that never
    /// finished.
    /// `data_owner`: the uid and gid that new volumes' data directories belong to (the remapped
    /// root of `userns-remap`, as dockerd does; host root otherwise).
    pub fn open(root: &Path, data_owner: Option<(u32, u32)>) -> Result<VolumeService> {
        let root = root.join("volumes");
        std::fs::create_dir_all(&root)?;
        let mut volumes = BTreeMap::new();
        for dir in std::fs::read_dir(&root)? {
            let dir = dir?;
            let name = dir.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") {
                let _ = std::fs::remove_dir_all(dir.path());
                continue;
            }
            match std::fs::read(dir.path().join(RECORD))
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Volume>(&b).map_err(|e| e.to_string()))
            {
                Ok(v) => {
                    // A mount left behind by a daemon that was killed.
                    let data = dir.path().join(DATA);
                    if v.mount_options().is_some() {
                        let _ = rustix::mount::unmount(&data, rustix::mount::UnmountFlags::DETACH);
                    }
                    volumes.insert(v.name.clone(), v);
                }
                Err(e) => tracing::warn!(volume = %name, error = %e, "skipping unreadable volume"),
            }
        }
        Ok(VolumeService {
            inner: Arc::new(Inner {
                root,
                data_owner,
                state: Mutex::new(State {
                    volumes,
                    ..Default::default()
                }),
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The directory a container mounts for this volume.
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.inner.root.join(name).join(DATA)
    }

    /// `POST /volumes/create`. An existing volume of that name is returned as it is, as Docker does.
    pub fn create(
        &self,
        name: Option<&str>,
        driver: Option<&str>,
        options: BTreeMap<String, String>,
        labels: BTreeMap<String, String>,
    ) -> Result<Volume> {
        let driver = driver.filter(|d| !d.is_empty()).unwrap_or("local");
        if driver != "local" {
            return Err(VolumeError::Invalid(format!(
                "create {}: error looking up volume plugin {driver}: plugin \"{driver}\" not found",
                name.unwrap_or("")
            )));
        }
        for key in options.keys() {
            if !matches!(key.as_str(), "type" | "device" | "o" | "size") {
                return Err(VolumeError::Invalid(format!(
                    "create {}: invalid option key: {key:?}",
                    name.unwrap_or("")
                )));
            }
        }
        if options.contains_key("device") && !options.contains_key("type") {
            return Err(VolumeError::Invalid(format!(
                "create {}: missing required option: \"type\"",
                name.unwrap_or("")
            )));
        }
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => random_name(),
        };
        validate_name(&name)?;
        let mut state = self.state();
        if let Some(v) = state.volumes.get(&name) {
            return Ok(v.clone());
        }
        let vol = Volume {
            name: name.clone(),
            driver: driver.into(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            labels,
            options,
        };
        let tmp = self.inner.root.join(format!(".tmp-{name}"));
        let _ = std::fs::remove_dir_all(&tmp);
        let made = (|| -> std::io::Result<()> {
            std::fs::create_dir_all(tmp.join(DATA))?;
            if let Some((uid, gid)) = self.inner.data_owner {
                std::os::unix::fs::chown(tmp.join(DATA), Some(uid), Some(gid))?;
            }
            berth_image::content::write_atomic(
                &tmp.join(RECORD),
                &serde_json::to_vec(&vol).expect("volume serialises"),
            )
            .map_err(std::io::Error::other)?;
            std::fs::rename(&tmp, self.inner.root.join(&name))?;
            std::fs::File::open(&self.inner.root)?.sync_all()
        })();
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e.into());
        }
        state.volumes.insert(name, vol.clone());
        Ok(vol)
    }

    pub fn get(&self, name: &str) -> Result<Volume> {
        self.state()
            .volumes
            .get(name)
            .cloned()
            .ok_or_else(|| VolumeError::NotFound(name.into()))
    }

    /// Docker's JSON for a volume (`GET /volumes/{name}`).
    pub fn to_json(&self, v: &Volume, usage: Option<(i64, i64)>) -> Value {
        let mut out = json!({
            "CreatedAt": v.created_at,
            "Driver": v.driver,
            "Labels": v.labels,
            "Mountpoint": self.data_dir(&v.name),
            "Name": v.name,
            "Options": if v.options.is_empty() { Value::Null } else { json!(v.options) },
            "Scope": "local",
        });
        if let Some((size, refs)) = usage {
            out["UsageData"] = json!({"Size": size, "RefCount": refs});
        }
        out
    }

    /// `GET /volumes`, with Docker's filters.
    pub fn list(&self, filters: &Filters) -> Result<Vec<Volume>> {
        filters
            .only(&["dangling", "name", "label", "driver"])
            .map_err(VolumeError::Invalid)?;
        let dangling = match filters.get("dangling").first().map(String::as_str) {
            None => None,
            Some("true" | "1") => Some(true),
            Some("false" | "0") => Some(false),
            Some(other) => return Err(VolumeError::Invalid(format!("invalid filter 'dangling={other}'"))),
        };
        let state = self.state();
        Ok(state
            .volumes
            .values()
            .filter(|v| {
                let used = state.users.get(&v.name).is_some_and(|u| !u.is_empty());
                dangling.is_none_or(|d| d != used)
                    && filters.get("name").iter().all(|n| v.name.contains(n.as_str()))
                    && filters.get("driver").iter().all(|d| &v.driver == d)
                    && filters.match_labels("label", &v.labels)
            })
            .cloned()
            .collect())
    }

    /// Containers that use a volume.
    pub fn users(&self, name: &str) -> Vec<String> {
        self.state()
            .users
            .get(name)
            .map(|u| u.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Records that `container` refers to the volume (at create, and for every container at start).
    pub fn acquire(&self, name: &str, container: &str) -> Result<()> {
        let mut state = self.state();
        if !state.volumes.contains_key(name) {
            return Err(VolumeError::NotFound(name.into()));
        }
        state
            .users
            .entry(name.into())
            .or_default()
            .insert(container.into());
        Ok(())
    }

    pub fn release(&self, name: &str, container: &str) {
        let mut state = self.state();
        if let Some(users) = state.users.get_mut(name) {
            users.remove(container);
            if users.is_empty() {
                state.users.remove(name);
            }
        }
    }

    /// `DELETE /volumes/{name}`. A volume in use is refused, even with `force`; `force` only
    /// hides that the volume does not exist.
    pub fn remove(&self, name: &str, force: bool) -> Result<()> {
        let mut state = self.state();
        if !state.volumes.contains_key(name) {
            return if force {
                Ok(())
            } else {
                Err(VolumeError::NotFound(name.into()))
            };
        }
        if let Some(users) = state.users.get(name).filter(|u| !u.is_empty()) {
            return Err(VolumeError::InUse {
                name: name.into(),
                users: users.iter().cloned().collect(),
            });
        }
        let dir = self.inner.root.join(name);
        let _ = rustix::mount::unmount(dir.join(DATA), rustix::mount::UnmountFlags::DETACH);
        // Renamed out of the way first: the volume is gone at once even if deleting its data
        // is cut short.
        let doomed = self.inner.root.join(format!(".tmp-rm-{name}"));
        std::fs::rename(&dir, &doomed)?;
        state.volumes.remove(name);
        state.active.remove(name);
        drop(state);
        std::fs::remove_dir_all(&doomed)?;
        Ok(())
    }

    /// `POST /volumes/prune`: unused volumes that match the filters; without `all`, only
    /// anonymous ones (Docker's behaviour since API 1.42).
    pub fn prune(&self, filters: &Filters, all_by_default: bool) -> Result<(Vec<String>, u64)> {
        filters
            .only(&["label", "label!", "all"])
            .map_err(VolumeError::Invalid)?;
        let all = match filters.get("all").first().map(String::as_str) {
            None => all_by_default,
            Some("true" | "1") => true,
            Some("false" | "0") => false,
            Some(other) => return Err(VolumeError::Invalid(format!("invalid filter 'all={other}'"))),
        };
        let candidates: Vec<Volume> = {
            let state = self.state();
            state
                .volumes
                .values()
                .filter(|v| state.users.get(&v.name).is_none_or(|u| u.is_empty()))
                .filter(|v| all || v.is_anonymous())
                .filter(|v| filters.match_labels("label", &v.labels))
                .filter(|v| {
                    filters.get("label!").iter().all(|f| match f.split_once('=') {
                        Some((k, val)) => v.labels.get(k).is_none_or(|x| x != val),
                        None => !v.labels.contains_key(f.as_str()),
                    })
                })
                .cloned()
                .collect()
        };
        let mut deleted = Vec::new();
        let mut reclaimed = 0;
        for v in candidates {
            let size = dir_size(&self.data_dir(&v.name));
            match self.remove(&v.name, false) {
                Ok(()) => {
                    reclaimed += size;
                    deleted.push(v.name);
                }
                Err(VolumeError::InUse { .. }) => {}
                Err(e) => tracing::warn!(volume = %v.name, error = %e, "prune could not remove volume"),
            }
        }
        Ok((deleted, reclaimed))
    }

    /// Bytes used by a volume's data (what `system df -v` shows).
    pub fn size(&self, name: &str) -> u64 {
        dir_size(&self.data_dir(name))
    }

    /// Makes the volume ready for a starting container: mounts it when it is mount-backed and no
    /// other running container has it mounted. Returns the host path to bind.
    pub fn mount(&self, name: &str) -> Result<PathBuf> {
        let vol = self.get(name)?;
        let data = self.data_dir(name);
        let Some((kind, device, opts)) = vol.mount_options() else {
            return Ok(data);
        };
        let mut state = self.state();
        let count = state.active.entry(name.into()).or_insert(0);
        if *count == 0 {
            mount_local(kind, device, opts, &data).map_err(|e| {
                VolumeError::Internal(format!("error while mounting volume '{}': {e}", data.display()))
            })?;
        }
        *count += 1;
        Ok(data)
    }

    /// The other half of `mount`, when a container stops.
    pub fn unmount(&self, name: &str) {
        let mut state = self.state();
        let Some(count) = state.active.get_mut(name) else {
            return;
        };
        *count = count.saturating_sub(1);
        if *count == 0 {
            state.active.remove(name);
            let _ = rustix::mount::unmount(self.data_dir(name), rustix::mount::UnmountFlags::DETACH);
        }
    }

    /// At daemon start, for a container found still running: its mount-backed volumes are still
    /// mounted, so count them without mounting again.
    pub fn adopt_mount(&self, name: &str) {
        let is_mount = self.get(name).is_ok_and(|v| v.mount_options().is_some());
        if is_mount {
            *self.state().active.entry(name.into()).or_insert(0) += 1;
        }
    }
}

/// The local driver's mount: `mount -t <type> -o <o> <device> <data>`, with `o=bind` meaning a
/// bind mount of `device`.
fn mount_local(kind: &str, device: &str, opts: &str, target: &Path) -> std::io::Result<()> {
    use rustix::mount::{mount, mount_bind, MountFlags};
    let mut flags = MountFlags::empty();
    let mut data = Vec::new();
    let mut bind = false;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "bind" | "rbind" => bind = true,
            "ro" => flags |= MountFlags::RDONLY,
            "rw" => {}
            "nosuid" => flags |= MountFlags::NOSUID,
            "nodev" => flags |= MountFlags::NODEV,
            "noexec" => flags |= MountFlags::NOEXEC,
            other => data.push(other),
        }
    }
    if bind || kind == "none" {
        mount_bind(device, target)?;
        if flags.contains(MountFlags::RDONLY) {
            rustix::mount::mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, "")?;
        }
        return Ok(());
    }
    let device = if device.is_empty() { kind } else { device };
    let data = std::ffi::CString::new(data.join(",")).map_err(std::io::Error::other)?;
    mount(device, target, kind, flags, Some(data.as_c_str()))?;
    Ok(())
}

fn random_name() -> String {
    let mut b = [0u8; 32];
    let _ = rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty());
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Sum of the sizes of the regular files below `dir`, not following symlinks.
pub(crate) fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        for ok in ["ab", "data", "my_vol.1-x", "0a"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["a", "", "a/b", "-ab", ".ab", "a b", "ä1", "../x"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn create_list_remove_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let svc = VolumeService::open(dir.path(), None).unwrap();
        let mut labels = BTreeMap::new();
        labels.insert("team".to_string(), "a".to_string());
        let v = svc.create(Some("data"), None, BTreeMap::new(), labels).unwrap();
        assert_eq!(v.driver, "local");
        assert!(svc.data_dir("data").is_dir());
        // Creating again returns the same volume.
        let again = svc
            .create(Some("data"), None, BTreeMap::new(), BTreeMap::new())
            .unwrap();
        assert_eq!(again.created_at, v.created_at);
        std::fs::write(svc.data_dir("data").join("f"), b"12345").unwrap();
        assert_eq!(svc.size("data"), 5);

        svc.acquire("data", "c1").unwrap();
        assert!(matches!(svc.remove("data", true), Err(VolumeError::InUse { .. })));
        let f = Filters::parse(Some(r#"{"dangling":["true"]}"#)).unwrap();
        assert!(svc.list(&f).unwrap().is_empty());
        svc.release("data", "c1");
        assert_eq!(svc.list(&f).unwrap().len(), 1);

        // A half-made volume from a crash is dropped at open; the real one loads.
        std::fs::create_dir_all(dir.path().join("volumes/.tmp-half/_data")).unwrap();
        let svc = VolumeService::open(dir.path(), None).unwrap();
        assert!(!dir.path().join("volumes/.tmp-half").exists());
        assert_eq!(svc.get("data").unwrap().labels["team"], "a");

        svc.remove("data", false).unwrap();
        assert!(matches!(svc.get("data"), Err(VolumeError::NotFound(_))));
        assert!(!dir.path().join("volumes/data").exists());
        assert!(matches!(svc.remove("data", false), Err(VolumeError::NotFound(_))));
        svc.remove("data", true).unwrap();
    }

    #[test]
    fn prune_takes_unused_anonymous_volumes_unless_all() {
        let dir = tempfile::tempdir().unwrap();
        let svc = VolumeService::open(dir.path(), None).unwrap();
        let anon = BTreeMap::from([(ANONYMOUS_LABEL.to_string(), String::new())]);
        let a = svc.create(None, None, BTreeMap::new(), anon.clone()).unwrap();
        let b = svc.create(None, None, BTreeMap::new(), anon).unwrap();
        svc.create(Some("named"), None, BTreeMap::new(), BTreeMap::new())
            .unwrap();
        svc.acquire(&b.name, "c1").unwrap();
        let (gone, _) = svc.prune(&Filters::default(), false).unwrap();
        assert_eq!(gone, vec![a.name.clone()]);
        let (gone, _) = svc
            .prune(&Filters::parse(Some(r#"{"all":["true"]}"#)).unwrap(), false)
            .unwrap();
        assert_eq!(gone, vec!["named".to_string()]);
        assert!(svc.get(&b.name).is_ok());
    }
}
