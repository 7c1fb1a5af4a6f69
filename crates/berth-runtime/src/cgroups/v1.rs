//! cgroup v1 files: one hierarchy per controller (or group of controllers).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxMemory, LinuxThrottleDevice};

use super::{read_keyed, read_limit, read_u64, write_file, CgroupStats};
use crate::error::{Result, RuntimeError};

/// Creates `dir` under a cpuset hierarchy's `root`, copying `cpuset.cpus` and `cpuset.mems` into each new
/// level: a v1 cpuset cgroup starts empty and no process can join it until both are set.
pub(super) fn create_cpuset_dirs(root: &Path, dir: &Path) -> Result<()> {
    let rel = dir
        .strip_prefix(root)
        .map_err(|_| RuntimeError::cgroup(dir, "not under its hierarchy"))?;
    let mut parent = root.to_path_buf();
    for component in rel.components() {
        let child = parent.join(component);
        match fs::create_dir(&child) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(RuntimeError::cgroup(&child, format!("mkdir: {e}"))),
        }
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let current = fs::read_to_string(child.join(file)).unwrap_or_default();
            if current.trim().is_empty() {
                let from_parent = fs::read_to_string(parent.join(file))
                    .map_err(|e| RuntimeError::cgroup(parent.join(file), format!("reading: {e}")))?;
                write_file(&child, file, from_parent.trim())?;
            }
        }
        parent = child;
    }
    Ok(())
}

pub(super) fn set_memory(dir: &Path, memory: &LinuxMemory) -> Result<()> {
    let limit = memory.limit().unwrap_or(0);
    let mut swap = memory.swap().unwrap_or(0);
    if limit == -1 && swap == 0 {
        swap = -1;
    }
    let has_memsw = dir.join("memory.memsw.limit_in_bytes").exists();
    if limit != 0 && swap != 0 && has_memsw {
        // memory.limit must stay <= memory.memsw.limit at every step: grow memsw first, shrink it last.
        let current = read_u64(&dir.join("memory.limit_in_bytes"));
        if swap == -1 || (swap as u64) > current {
            write_file(dir, "memory.memsw.limit_in_bytes", &swap.to_string())?;
            write_file(dir, "memory.limit_in_bytes", &limit.to_string())?;
        } else {
            write_file(dir, "memory.limit_in_bytes", &limit.to_string())?;
            write_file(dir, "memory.memsw.limit_in_bytes", &swap.to_string())?;
        }
    } else {
        if limit != 0 {
            write_file(dir, "memory.limit_in_bytes", &limit.to_string())?;
        }
        if swap != 0 && has_memsw {
            write_file(dir, "memory.memsw.limit_in_bytes", &swap.to_string())?;
        }
    }
    if let Some(reservation) = memory.reservation().filter(|r| *r != 0) {
        write_file(dir, "memory.soft_limit_in_bytes", &reservation.to_string())?;
    }
    if let Some(swappiness) = memory.swappiness().filter(|s| *s <= 100) {
        write_file(dir, "memory.swappiness", &swappiness.to_string())?;
    }
    if memory.disable_oom_killer() == Some(true) {
        write_file(dir, "memory.oom_control", "1")?;
    }
    Ok(())
}

pub(super) fn set_cpu(dir: &Path, cpu: &LinuxCpu) -> Result<()> {
    if let Some(shares) = cpu.shares().filter(|s| *s != 0) {
        write_file(dir, "cpu.shares", &shares.to_string())?;
    }
    let period = cpu.period().filter(|p| *p != 0);
    let quota = cpu.quota().filter(|q| *q != 0);
    if let Some(period) = period {
        // A new period can be refused while the old quota does not fit it: then set the quota first.
        if write_file(dir, "cpu.cfs_period_us", &period.to_string()).is_err() {
            if let Some(quota) = quota {
                write_file(dir, "cpu.cfs_quota_us", &quota.to_string())?;
            }
            write_file(dir, "cpu.cfs_period_us", &period.to_string())?;
        }
    }
    if let Some(quota) = quota {
        write_file(dir, "cpu.cfs_quota_us", &quota.to_string())?;
    }
    if let Some(burst) = cpu.burst() {
        write_file(dir, "cpu.cfs_burst_us", &burst.to_string())?;
    }
    if let Some(period) = cpu.realtime_period().filter(|p| *p != 0) {
        write_file(dir, "cpu.rt_period_us", &period.to_string())?;
    }
    if let Some(runtime) = cpu.realtime_runtime().filter(|r| *r != 0) {
        write_file(dir, "cpu.rt_runtime_us", &runtime.to_string())?;
    }
    if let Some(idle) = cpu.idle() {
        write_file(dir, "cpu.idle", &idle.to_string())?;
    }
    Ok(())
}

pub(super) fn set_blkio(dir: &Path, blkio: &LinuxBlockIo) -> Result<()> {
    // Without CFQ the weights live in the bfq files.
    let weight_file = if dir.join("blkio.weight").exists() {
        "blkio.weight"
    } else {
        "blkio.bfq.weight"
    };
    if let Some(weight) = blkio.weight().filter(|w| *w != 0) {
        write_file(dir, weight_file, &weight.to_string())?;
    }
    let weight_device_file = format!("{weight_file}_device");
    for d in blkio.weight_device().iter().flatten() {
        if let Some(weight) = d.weight() {
            write_file(
                dir,
                &weight_device_file,
                &format!("{}:{} {}", d.major(), d.minor(), weight),
            )?;
        }
    }
    let throttles: [(&str, &Option<Vec<LinuxThrottleDevice>>); 4] = [
        ("blkio.throttle.read_bps_device", blkio.throttle_read_bps_device()),
        (
            "blkio.throttle.write_bps_device",
            blkio.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            blkio.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            blkio.throttle_write_iops_device(),
        ),
    ];
    for (file, devices) in throttles {
        for d in devices.iter().flatten() {
            write_file(dir, file, &format!("{}:{} {}", d.major(), d.minor(), d.rate()))?;
        }
    }
    Ok(())
}

pub(super) fn set_devices(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    for rule in rules {
        let file = if rule.allow() {
            "devices.allow"
        } else {
            "devices.deny"
        };
        let mut text = rule.to_string();
        if rule.access().as_deref().unwrap_or("").is_empty() {
            text.push_str("rwm");
        }
        write_file(dir, file, &text)?;
    }
    Ok(())
}

pub(super) fn set_frozen(dir: &Path, frozen: bool) -> Result<()> {
    let want = if frozen { "FROZEN" } else { "THAWED" };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        write_file(dir, "freezer.state", want)?;
        let state = fs::read_to_string(dir.join("freezer.state")).unwrap_or_default();
        if state.trim() == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(RuntimeError::cgroup(
                dir,
                format!("freezer stuck in {}", state.trim()),
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

pub(super) fn is_frozen(dir: &Path) -> bool {
    fs::read_to_string(dir.join("freezer.state")).is_ok_and(|s| s.trim() == "FROZEN")
}

pub(super) fn oom_killed(dir: &Path) -> bool {
    let control = read_keyed(&dir.join("memory.oom_control"));
    control.get("oom_kill").copied().unwrap_or(0) > 0 || control.get("under_oom").copied().unwrap_or(0) > 0
}

pub(super) fn memory_stats(dir: &Path, stats: &mut CgroupStats) {
    stats.memory_usage = read_u64(&dir.join("memory.usage_in_bytes"));
    stats.memory_limit = read_limit(&dir.join("memory.limit_in_bytes"));
    stats.memory_stat = read_keyed(&dir.join("memory.stat"));
}
