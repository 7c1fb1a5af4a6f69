//! Linux capabilities: the five sets of `process.capabilities`, as bit masks, applied in the child.

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};
use rustix::thread::{CapabilitySet, CapabilitySets};

use crate::error::{Result, RuntimeError};

/// Capability names and numbers (linux/capability.h).
const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The number of a capability name (`CAP_CHOWN` or `chown`, any case).
pub fn capability_number(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    NAMES.iter().position(|n| *n == full).map(|i| i as u32)
}

/// The name of a capability number.
pub fn capability_name(number: u32) -> Option<&'static str> {
    NAMES.get(number as usize).copied()
}

fn number_of(cap: &Capability) -> Option<u32> {
    // oci-spec serialises a Capability as its CAP_* name.
    let name = serde_json::to_value(cap).ok()?;
    capability_number(name.as_str()?)
}

/// The bit mask of capability names, as in `/proc/<pid>/status` (`CapEff`); unknown names are an error.
pub fn capability_mask<S: AsRef<str>>(names: &[S]) -> Result<u64> {
    names.iter().try_fold(0u64, |mask, n| {
        let bit = capability_number(n.as_ref())
            .ok_or_else(|| RuntimeError::InvalidSpec(format!("unknown capability {:?}", n.as_ref())))?;
        Ok(mask | (1u64 << bit))
    })
}

/// The capability sets to give the container's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CapPlan {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
    /// The highest capability the kernel knows.
    pub last_cap: u32,
}

impl CapPlan {
    /// `None` when the spec has no `capabilities`: the process then keeps what it has.
    pub fn from_spec(caps: Option<&LinuxCapabilities>) -> Option<CapPlan> {
        let caps = caps?;
        let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40u32);
        let known = if last_cap >= 63 {
            u64::MAX
        } else {
            (1u64 << (last_cap + 1)) - 1
        };
        let mask = |set: &Option<Capabilities>| -> u64 {
            set.iter()
                .flatten()
                .filter_map(number_of)
                .fold(0u64, |m, n| m | (1u64 << n))
                & known
        };
        Some(CapPlan {
            bounding: mask(caps.bounding()),
            effective: mask(caps.effective()),
            permitted: mask(caps.permitted()),
            inheritable: mask(caps.inheritable()),
            ambient: mask(caps.ambient()),
            last_cap,
        })
    }

    /// Drops everything outside the bounding set (needs CAP_SETPCAP, so before the user switch).
    pub fn drop_bounding(&self) -> Result<()> {
        for n in 0..=self.last_cap.min(63) {
            if self.bounding & (1u64 << n) == 0 {
                match rustix::thread::remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(
                    1u64 << n,
                )) {
                    Ok(()) | Err(rustix::io::Errno::INVAL) => {}
                    Err(e) => {
                        return Err(RuntimeError::io(
                            format!("dropping {} from the bounding set", cap(n)),
                            e,
                        ))
                    }
                }
            }
        }
        Ok(())
    }

    /// Sets the effective, permitted and inheritable sets, then raises the ambient ones.
    pub fn apply(&self) -> Result<()> {
        let sets = CapabilitySets {
            effective: CapabilitySet::from_bits_retain(self.effective),
            permitted: CapabilitySet::from_bits_retain(self.permitted),
            inheritable: CapabilitySet::from_bits_retain(self.inheritable),
        };
        rustix::thread::set_capabilities(None, sets).map_err(|e| RuntimeError::io("capset", e))?;
        if self.ambient != 0 {
            for n in 0..=self.last_cap.min(63) {
                if self.ambient & (1u64 << n) != 0 {
                    // Like runc: a capability that cannot be ambient (not permitted and inheritable) is
                    // skipped rather than failing the container.
                    let _ = rustix::thread::configure_capability_in_ambient_set(
                        CapabilitySet::from_bits_retain(1u64 << n),
                        true,
                    );
                }
            }
        }
        Ok(())
    }
}

fn cap(n: u32) -> String {
    capability_name(n)
        .map(str::to_string)
        .unwrap_or_else(|| format!("capability {n}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(capability_number("CAP_CHOWN"), Some(0));
        assert_eq!(capability_number("sys_admin"), Some(21));
        assert_eq!(capability_number("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(capability_number("CAP_NOPE"), None);
        assert_eq!(number_of(&Capability::NetBindService), Some(10));
        assert_eq!(number_of(&Capability::AuditRead), Some(37));
    }

    #[test]
    fn docker_default_mask() {
        let mask = capability_mask(&crate::defaults::default_docker_capabilities()).unwrap();
        assert_eq!(mask, 0xa80425fb);
    }
}
