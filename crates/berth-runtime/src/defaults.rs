//! What Docker gives every container unless told otherwise: capabilities, masked and read-only paths,
//! and device-cgroup rules.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

/// Docker's default capability set (`CapEff: 00000000a80425fb`).
pub fn default_docker_capabilities() -> Vec<String> {
    [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ]
    .into_iter()
    .map(str::to_string)
    .collect()
}

/// Paths Docker hides from a (non-privileged) container.
pub fn default_docker_masked_paths() -> Vec<String> {
    [
        "/proc/asound",
        "/proc/acpi",
        "/proc/interrupts",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/sys/firmware",
        "/sys/devices/virtual/powercap",
    ]
    .into_iter()
    .map(str::to_string)
    .collect()
}

/// Paths Docker makes read-only in a (non-privileged) container.
pub fn default_docker_readonly_paths() -> Vec<String> {
    [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ]
    .into_iter()
    .map(str::to_string)
    .collect()
}

pub(crate) fn device_rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow);
    r.set_typ(Some(typ));
    r.set_major(major);
    r.set_minor(minor);
    r.set_access(Some(access.to_string()));
    r
}

/// Docker's device-cgroup rules: deny everything, allow mknod of any node, and allow the default
/// devices (null, zero, full, random, urandom, tty, console, ptmx and the pty slaves).
pub fn default_docker_device_rules() -> Vec<LinuxDeviceCgroup> {
    use LinuxDeviceType::{A, B, C};
    let mut rules = vec![
        device_rule(false, A, None, None, "rwm"),
        device_rule(true, C, None, None, "m"),
        device_rule(true, B, None, None, "m"),
    ];
    for (major, minor) in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2)] {
        rules.push(device_rule(true, C, Some(major), Some(minor), "rwm"));
    }
    rules.push(device_rule(true, C, Some(136), None, "rwm"));
    rules
}
