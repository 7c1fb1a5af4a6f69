//! Berth's container runtime: runs a container from an OCI bundle (a `config.json` and a rootfs) the way
//! runc would for Docker, in-process, for Berth's single-threaded per-container shim.
//!
//! - [`launch`] forks the container's init: new namespaces, the spec's mounts under the rootfs,
//!   `/dev`, `pivot_root`, masked and read-only paths, sysctls, rlimits; it then waits for
//!   [`Launched::start`] to drop privileges (user, capabilities, no_new_privs, seccomp) and exec.
//! - [`exec_in`] runs another process inside a running container (`docker exec`).
//! - [`Cgroups`] creates, limits, inspects and removes a container's cgroup on cgroup v1, hybrid and
//!   unified v2 hosts.
//! - [`open_pty`] and [`resize`] give a container a terminal.
//! - [`default_docker_seccomp`], [`default_docker_capabilities`], [`default_docker_masked_paths`],
//!   [`default_docker_readonly_paths`], [`default_docker_device_rules`]: what Docker gives a container.
//!
//! **The caller must be single-threaded** (fork, then ordinary Rust code in the child until exec). Setup
//! errors come back from [`launch`]; exec errors (`executable file not found in $PATH`: exit code 127,
//! `permission denied`: 126) from [`Launched::start`], as [`RuntimeError::Exec`].
//!
//! Not implemented (ignored): hooks, AppArmor/SELinux labels, `linux.personality`, `process.ioPriority`,
//! `process.scheduler`, `linux.memoryPolicy`, `linux.intelRdt`, `linux.netDevices`.
//!
//! A new user namespace (with `linux.uidMappings`/`gidMappings`) is made first, so that it owns the
//! others; as with runc, the rootfs must belong to the mapped root and the bundle must be traversable
//! by it. Refused with [`RuntimeError::Unsupported`]: time namespaces, joining a user namespace,
//! seccomp user notification, a container without a new mount namespace.
//!
//! ```no_run
//! # fn main() -> Result<(), berth_runtime::RuntimeError> {
//! use berth_runtime::{launch, Cgroups, LaunchOptions, Stdio};
//! # let bundle = std::path::Path::new("/tmp/bundle");
//! # let (stdin, stdout, stderr) = todo!();
//! let spec = oci_spec::runtime::Spec::load(bundle.join("config.json")).unwrap();
//! let cgroups = Cgroups::detect();
//! let resources = spec.linux().as_ref().and_then(|l| l.resources().clone()).unwrap_or_default();
//! let cgroup = cgroups.create("berth/abc123", &resources)?;
//! let init = launch(LaunchOptions {
//!     bundle,
//!     spec: &spec,
//!     stdio: Some(Stdio { stdin, stdout, stderr }),
//!     console: false,
//!     cgroup: Some(&cgroup),
//! })?;
//! let pid = init.pid();
//! init.start()?; // now reap `pid`, then cgroups.remove(&cgroup)
//! # let _ = pid;
//! # Ok(()) }
//! ```

mod capabilities;
mod cgroups;
mod defaults;
mod devices;
mod error;
mod exec;
mod init;
mod mounts;
mod namespaces;
mod process;
mod pty;
mod rlimits;
mod root_dir;
mod seccomp;
mod seccomp_profile;
mod sync;
mod sysctl;
mod user;

pub use capabilities::{capability_mask, capability_name, capability_number};
pub use cgroups::{CgroupLayout, CgroupPath, CgroupStats, Cgroups, V1Hierarchy};
pub use defaults::{
    default_docker_capabilities, default_docker_device_rules, default_docker_masked_paths,
    default_docker_readonly_paths,
};
pub use error::{ExecErrorKind, Result, RuntimeError};
pub use exec::DEFAULT_PATH;
pub use process::{exec_in, launch, ExecOptions, Execd, LaunchOptions, Launched, Stdio};
pub use pty::{open_pty, resize};
pub use seccomp_profile::{default_docker_seccomp, docker_seccomp_for_capabilities};
