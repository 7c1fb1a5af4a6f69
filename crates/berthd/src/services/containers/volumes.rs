//! How containers use volumes: mounts resolved at create (named volumes made on first use,
//! anonymous ones for `-v /path` and the image's VOLUMEs), mounted and filled at start, let go
//! at exit and at removal.

use super::error::{ContainerError, Result};
use super::mounts::{self, MountPoint};
use super::{ContainerRecord, ContainerService};
use crate::services::volumes::{VolumeError, ANONYMOUS_LABEL};
use berth_api::container::CreateRequest;
use std::collections::BTreeMap;
use std::path::Path;

impl From<VolumeError> for ContainerError {
    fn from(e: VolumeError) -> Self {
        match e {
            VolumeError::NotFound(_) => ContainerError::Invalid(e.to_string()),
            VolumeError::InUse { .. } => ContainerError::Conflict(e.to_string()),
            VolumeError::Invalid(m) => ContainerError::Invalid(m),
            VolumeError::Internal(m) => ContainerError::Internal(m),
        }
    }
}

impl ContainerService {
    /// The mount points of a container being created, in Docker's order of precedence: the
    /// user's `-v` and `--mount` (a duplicate destination is an error), then `--volumes-from`,
    /// then the image's VOLUMEs (both yield to what is already there).
    pub(super) fn plan_mounts(&self, req: &CreateRequest) -> Result<Vec<MountPoint>> {
        let host = &req.host_config;
        let mut list = Vec::new();
        for raw in host.binds.iter().flatten() {
            let m = mounts::parse_bind(raw)?;
            if m.kind == "bind" && !Path::new(&m.source).exists() {
                // Docker makes a missing `-v` host directory (but not a missing --mount source).
                std::fs::create_dir_all(&m.source)?;
            }
            mounts::add(&mut list, m, true)?;
        }
        for raw in host.mounts.iter().flatten() {
            mounts::add(&mut list, mounts::parse_mount(raw)?, true)?;
        }
        for raw in host.volumes_from.iter().flatten() {
            let (name, rw) = mounts::parse_volumes_from(raw)?;
            let source = self.resolve(name)?.record();
            for m in source.mount_points.into_iter().filter(|m| m.kind != "tmpfs") {
                let m = MountPoint {
                    rw: rw.unwrap_or(m.rw),
                    ..m
                };
                mounts::add(&mut list, m, false)?;
            }
        }
        let tmpfs = host.tmpfs.clone().unwrap_or_default();
        for dest in req.config.volumes.iter().flat_map(|v| v.keys()) {
            let m = mounts::parse_bind(dest)?;
            if !tmpfs.contains_key(&m.destination) {
                mounts::add(&mut list, m, false)?;
            }
        }
        Ok(list)
    }

    /// Makes the volumes the mount points name (anonymous ones get a random name) and records
    /// the container as their user. On error, what this call made is undone.
    pub(super) fn claim_volumes(&self, id: &str, list: &mut [MountPoint], req: &CreateRequest) -> Result<()> {
        let volumes = &self.inner.volumes;
        let mut made: Vec<String> = Vec::new();
        let result = (|| -> Result<()> {
            for (i, m) in list.iter_mut().enumerate().filter(|(_, m)| m.kind == "volume") {
                let anonymous = m.name.is_empty();
                let (options, mut labels) = volume_options(req, i);
                if anonymous {
                    labels.insert(ANONYMOUS_LABEL.into(), String::new());
                }
                let existed = !anonymous && volumes.get(&m.name).is_ok();
                let v = volumes.create((!anonymous).then_some(m.name.as_str()), None, options, labels)?;
                if !existed {
                    made.push(v.name.clone());
                }
                m.name = v.name;
                m.source = volumes.data_dir(&m.name).display().to_string();
                volumes.acquire(&m.name, id)?;
            }
            Ok(())
        })();
        if result.is_err() {
            self.release_volumes(id, list, false);
            for name in made {
                let _ = volumes.remove(&name, true);
            }
        }
        result
    }

    /// At start, with the root mounted: mounts the mount-backed volumes and copies the image's
    /// content into empty ones the first time.
    pub(super) fn ready_volumes(&self, rec: &ContainerRecord, rootfs: &Path) -> Result<()> {
        let volumes = &self.inner.volumes;
        let used: Vec<&MountPoint> = rec.mount_points.iter().filter(|m| m.kind == "volume").collect();
        for (i, m) in used.iter().enumerate() {
            if let Err(e) = volumes.mount(&m.name) {
                for done in &used[..i] {
                    volumes.unmount(&done.name);
                }
                return Err(e.into());
            }
        }
        if !rec.has_been_started {
            for m in used.iter().filter(|m| m.copy_data) {
                if let Err(e) = mounts::copy_up(rootfs, &m.destination, &volumes.data_dir(&m.name)) {
                    self.unmount_volumes(rec);
                    return Err(ContainerError::Internal(format!(
                        "copying the image's {} into volume {}: {e}",
                        m.destination, m.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// When the container stops running (with a shareable container's `/dev/shm`).
    pub(super) fn unmount_volumes(&self, rec: &ContainerRecord) {
        for m in rec.mount_points.iter().filter(|m| m.kind == "volume") {
            self.inner.volumes.unmount(&m.name);
        }
        if rec.host_config.ipc_mode == "shareable" {
            super::sharing::unmount_shm(&super::Paths::new(&self.inner.root, &self.inner.shims, &rec.id));
        }
    }

    /// When the container is removed; with `remove_anonymous` (`rm -v`, `--rm`), its anonymous
    /// volumes go too unless another container uses them.
    pub(super) fn release_volumes(&self, id: &str, list: &[MountPoint], remove_anonymous: bool) {
        let volumes = &self.inner.volumes;
        for m in list.iter().filter(|m| m.kind == "volume" && !m.name.is_empty()) {
            volumes.release(&m.name, id);
            let anonymous = volumes.get(&m.name).is_ok_and(|v| v.is_anonymous());
            if remove_anonymous && anonymous {
                match volumes.remove(&m.name, true) {
                    Ok(()) | Err(VolumeError::InUse { .. }) => {}
                    Err(e) => tracing::warn!(volume = %m.name, error = %e, "could not remove volume"),
                }
            }
        }
    }

    /// After a daemon restart: the container's claims on its volumes, and the mounts of those
    /// that are still mounted because it runs.
    pub(super) fn reclaim_volumes(&self, rec: &ContainerRecord) {
        for m in rec.mount_points.iter().filter(|m| m.kind == "volume") {
            if let Err(e) = self.inner.volumes.acquire(&m.name, &rec.id) {
                tracing::warn!(id = %rec.short_id(), volume = %m.name, error = %e, "volume of container is missing");
            }
            if rec.state.running {
                self.inner.volumes.adopt_mount(&m.name);
            }
        }
    }
}

/// A `--mount type=volume` entry's driver options and labels, used when it makes the volume.
fn volume_options(req: &CreateRequest, index: usize) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let binds = req.host_config.binds.as_ref().map_or(0, Vec::len);
    let Some(m) = index
        .checked_sub(binds)
        .and_then(|i| req.host_config.mounts.as_ref()?.get(i))
    else {
        return Default::default();
    };
    let map = |v: &serde_json::Value| -> BTreeMap<String, String> {
        v.as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    };
    (
        map(&m["VolumeOptions"]["DriverConfig"]["Options"]),
        map(&m["VolumeOptions"]["Labels"]),
    )
}
