//! `linux.sysctl`: only namespaced kernel parameters, and only when the container has that namespace
//! (a `net.*` sysctl with the host's network would change the host).

use std::collections::HashMap;

use oci_spec::runtime::LinuxNamespaceType;

use crate::error::{Result, RuntimeError};
use crate::namespaces::NamespacePlan;

const IPC_SYSCTLS: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// The namespace a sysctl belongs to, or `None` for a host-wide one.
fn namespace_of(key: &str) -> Option<LinuxNamespaceType> {
    if IPC_SYSCTLS.contains(&key) || key.starts_with("fs.mqueue.") {
        Some(LinuxNamespaceType::Ipc)
    } else if key.starts_with("net.") {
        Some(LinuxNamespaceType::Network)
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        Some(LinuxNamespaceType::Uts)
    } else {
        None
    }
}

/// Checks the sysctls against the container's namespaces; returns them in a stable order.
pub(crate) fn plan(
    sysctl: Option<&HashMap<String, String>>,
    ns: &NamespacePlan,
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (key, value) in sysctl.into_iter().flatten() {
        let key = key.replace('/', ".");
        match namespace_of(&key) {
            Some(typ) if ns.has(typ) => out.push((key, value.clone())),
            Some(typ) => {
                return Err(RuntimeError::InvalidSpec(format!(
                    "sysctl {key:?} is not allowed without a {typ} namespace of the container's own"
                )))
            }
            None => {
                return Err(RuntimeError::InvalidSpec(format!(
                    "sysctl {key:?} is not in a separate kernel namespace"
                )))
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Writes the sysctls through the container's `/proc/sys` (after pivot_root, before it is made read-only).
pub(crate) fn apply(sysctls: &[(String, String)]) -> Result<()> {
    for (key, value) in sysctls {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&path, value).map_err(|e| RuntimeError::io(format!("sysctl {key}={value}"), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(
            namespace_of("net.ipv4.ip_forward"),
            Some(LinuxNamespaceType::Network)
        );
        assert_eq!(namespace_of("kernel.shmmax"), Some(LinuxNamespaceType::Ipc));
        assert_eq!(namespace_of("fs.mqueue.msg_max"), Some(LinuxNamespaceType::Ipc));
        assert_eq!(namespace_of("vm.swappiness"), None);
    }
}
