//! `--pid`, `--ipc` and `--uts`: a container's own namespaces (the default), the host's, or
//! another running container's. A container that others may join for IPC (`--ipc shareable`)
//! gets its `/dev/shm` from a tmpfs mounted in its directory, so that they can bind the same one.

use std::path::PathBuf;

use berth_api::container::HostConfig;

use super::{ContainerError, ContainerRecord, ContainerService, Paths, Result};

/// Where a container's pid, ipc and uts namespaces and its `/dev/shm` come from, as `spec::build`
/// needs them.
#[derive(Debug, Default, Clone)]
pub struct SharedNamespaces {
    /// The network namespace of `--network container:<name>`.
    pub net: Option<PathBuf>,
    pub pid: Join,
    pub ipc: Join,
    /// The host's uts namespace: no hostname of its own.
    pub uts_host: bool,
    pub shm: Shm,
}

/// One namespace: a new one, the host's, or the one at a path.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum Join {
    #[default]
    New,
    Host,
    Path(PathBuf),
}

/// What `/dev/shm` is.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum Shm {
    /// A tmpfs of the container's own, mounted by the runtime.
    #[default]
    Private,
    /// None at all (`--ipc none`).
    None,
    /// A bind of this host directory (a shareable container's tmpfs, or the host's /dev/shm).
    Bind(PathBuf),
}

/// Docker's checks of the modes at create.
pub(super) fn check(host: &HostConfig, remapped: bool) -> Result<()> {
    let invalid =
        |what: &str, mode: &str| Err(ContainerError::Invalid(format!("invalid {what} mode: {mode}")));
    let pid = host.pid_mode.as_str();
    if !(matches!(pid, "" | "host") || container_ref(pid).is_some()) {
        return invalid("PID", pid);
    }
    let ipc = host.ipc_mode.as_str();
    if !(matches!(ipc, "" | "private" | "shareable" | "host" | "none") || container_ref(ipc).is_some()) {
        return invalid("IPC", ipc);
    }
    let uts = host.uts_mode.as_str();
    if !matches!(uts, "" | "host") {
        return invalid("UTS", uts);
    }
    if remapped && pid == "host" {
        return Err(ContainerError::Invalid(
            "cannot share the host PID namespace when user namespaces are enabled".into(),
        ));
    }
    if remapped && (ipc == "host" || container_ref(ipc).is_some() || container_ref(pid).is_some()) {
        return Err(ContainerError::Invalid(
            "cannot join another container's PID or IPC namespace, or the host's IPC namespace, when user namespaces are enabled"
                .into(),
        ));
    }
    Ok(())
}

/// `container:<name or id>` -> the name or id.
fn container_ref(mode: &str) -> Option<&str> {
    mode.strip_prefix("container:").filter(|c| !c.is_empty())
}

impl Paths {
    /// A shareable container's `/dev/shm`.
    pub fn shm(&self) -> PathBuf {
        self.dir.join("shm")
    }
}

impl ContainerService {
    /// Resolves the modes of `rec` at start: the namespaces of the containers it joins (which
    /// must be running) and its `/dev/shm`.
    pub(super) fn shared_namespaces(&self, rec: &ContainerRecord, paths: &Paths) -> Result<SharedNamespaces> {
        let host = &rec.host_config;
        let mut shared = SharedNamespaces {
            net: self.shared_netns(rec, paths)?,
            uts_host: host.uts_mode == "host",
            ..Default::default()
        };
        match host.pid_mode.as_str() {
            "host" => shared.pid = Join::Host,
            mode => {
                if let Some(other) = container_ref(mode) {
                    let (pid, _) = self.running_donor(rec, other, "PID")?;
                    shared.pid = Join::Path(format!("/proc/{pid}/ns/pid").into());
                }
            }
        }
        match host.ipc_mode.as_str() {
            "host" => {
                shared.ipc = Join::Host;
                shared.shm = Shm::Bind("/dev/shm".into());
            }
            "none" => shared.shm = Shm::None,
            "shareable" => shared.shm = Shm::Bind(paths.shm()),
            mode => {
                if let Some(other) = container_ref(mode) {
                    let (pid, donor) = self.running_donor(rec, other, "IPC")?;
                    if donor.host_config.ipc_mode != "shareable" {
                        return Err(ContainerError::Conflict(format!(
                            "cannot join IPC of container {}: non-shareable IPC (hint: use IpcMode:shareable for the donor container)",
                            donor.id
                        )));
                    }
                    shared.ipc = Join::Path(format!("/proc/{pid}/ns/ipc").into());
                    shared.shm = Shm::Bind(Paths::new(&self.inner.root, &self.inner.shims, &donor.id).shm());
                }
            }
        }
        Ok(shared)
    }

    /// The init pid and record of the running container `name` that `rec` joins.
    fn running_donor(&self, rec: &ContainerRecord, name: &str, what: &str) -> Result<(i64, ContainerRecord)> {
        let donor = self.resolve(name)?.record();
        if donor.id == rec.id {
            return Err(ContainerError::Invalid(format!(
                "cannot join own {what} namespace"
            )));
        }
        if !donor.state.running || donor.state.pid <= 0 {
            return Err(ContainerError::Conflict(format!(
                "cannot join {what} of a non running container: {}",
                donor.id
            )));
        }
        Ok((donor.state.pid, donor))
    }
}

/// Mounts a shareable container's `/dev/shm` tmpfs in its directory (no-op otherwise).
pub(super) fn mount_shm(rec: &ContainerRecord, paths: &Paths, size: i64) -> Result<()> {
    if rec.host_config.ipc_mode != "shareable" || super::is_mounted(&paths.shm()) {
        return Ok(());
    }
    let dir = paths.shm();
    std::fs::create_dir_all(&dir)?;
    let data = format!("mode=1777,size={size}");
    rustix::mount::mount(
        "shm",
        &dir,
        "tmpfs",
        rustix::mount::MountFlags::NOSUID
            | rustix::mount::MountFlags::NODEV
            | rustix::mount::MountFlags::NOEXEC,
        Some(std::ffi::CString::new(data).expect("no NUL").as_c_str()),
    )
    .map_err(|e| ContainerError::Internal(format!("mounting the container's /dev/shm: {e}")))
}

/// Unmounts a shareable container's `/dev/shm` (when it stops, or is removed).
pub(super) fn unmount_shm(paths: &Paths) {
    let _ = super::unmount(&paths.shm());
}
