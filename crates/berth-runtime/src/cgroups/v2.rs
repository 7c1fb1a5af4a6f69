//! cgroup v2 files: one unified hierarchy; controllers are enabled top-down via `cgroup.subtree_control`.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxThrottleDevice};

use super::{read_controllers, read_keyed, read_limit, read_u64, write_file, CgroupStats};
use crate::error::{Result, RuntimeError};

/// Creates `dir` under the cgroup2 mount `root`, enabling `controllers` in every ancestor's
/// `cgroup.subtree_control` so that `dir` gets their files.
pub(super) fn create_dirs(root: &Path, dir: &Path, controllers: &[String]) -> Result<()> {
    let rel = dir
        .strip_prefix(root)
        .map_err(|_| RuntimeError::cgroup(dir, "not under its hierarchy"))?;
    let mut parent = root.to_path_buf();
    for component in rel.components() {
        if !controllers.is_empty() {
            let available = read_controllers(&parent);
            let enabled = fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap_or_default();
            let enabled: Vec<&str> = enabled.split_whitespace().collect();
            let missing: Vec<String> = controllers
                .iter()
                .filter(|c| available.contains(c) && !enabled.contains(&c.as_str()))
                .map(|c| format!("+{c}"))
                .collect();
            if !missing.is_empty() {
                write_file(&parent, "cgroup.subtree_control", &missing.join(" "))?;
            }
        }
        let child = parent.join(component);
        match fs::create_dir(&child) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(RuntimeError::cgroup(&child, format!("mkdir: {e}"))),
        }
        parent = child;
    }
    Ok(())
}

fn limit_value(v: i64) -> String {
    if v < 0 {
        "max".to_string()
    } else {
        v.to_string()
    }
}

pub(super) fn set_memory(dir: &Path, memory: &LinuxMemory) -> Result<()> {
    let limit = memory.limit().unwrap_or(0);
    // OCI's swap is memory+swap (the v1 memsw semantics); cgroup2's swap.max is swap alone.
    if let Some(swap) = memory.swap().filter(|s| *s != 0) {
        let swap_max = if swap < 0 {
            "max".to_string()
        } else if limit > 0 {
            if swap < limit {
                return Err(RuntimeError::InvalidSpec(format!(
                    "memory+swap limit {swap} is lower than the memory limit {limit}"
                )));
            }
            (swap - limit).to_string()
        } else {
            swap.to_string()
        };
        if dir.join("memory.swap.max").exists() {
            write_file(dir, "memory.swap.max", &swap_max)?;
        }
    }
    if limit != 0 {
        write_file(dir, "memory.max", &limit_value(limit))?;
    }
    if let Some(reservation) = memory.reservation().filter(|r| *r != 0) {
        write_file(dir, "memory.low", &limit_value(reservation))?;
    }
    Ok(())
}

/// cgroup v1 cpu.shares [2, 262144] -> cgroup2 cpu.weight [1, 10000].
fn shares_to_weight(shares: u64) -> u64 {
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

pub(super) fn set_cpu(dir: &Path, cpu: &LinuxCpu) -> Result<()> {
    if let Some(shares) = cpu.shares().filter(|s| *s != 0) {
        write_file(dir, "cpu.weight", &shares_to_weight(shares).to_string())?;
    }
    let quota = cpu.quota().filter(|q| *q != 0);
    let period = cpu.period().filter(|p| *p != 0);
    if quota.is_some() || period.is_some() {
        let quota = match quota {
            Some(q) if q > 0 => q.to_string(),
            _ => "max".to_string(),
        };
        write_file(dir, "cpu.max", &format!("{quota} {}", period.unwrap_or(100_000)))?;
    }
    if let Some(burst) = cpu.burst() {
        write_file(dir, "cpu.max.burst", &burst.to_string())?;
    }
    if let Some(idle) = cpu.idle() {
        write_file(dir, "cpu.idle", &idle.to_string())?;
    }
    Ok(())
}

/// blkio weight [10, 1000] -> io.weight [1, 10000].
fn blkio_to_io_weight(w: u16) -> u64 {
    1 + (u64::from(w).clamp(10, 1000) - 10) * 9999 / 990
}

pub(super) fn set_io(dir: &Path, blkio: &LinuxBlockIo) -> Result<()> {
    let bfq = dir.join("io.bfq.weight").exists();
    if let Some(weight) = blkio.weight().filter(|w| *w != 0) {
        if bfq {
            write_file(dir, "io.bfq.weight", &weight.to_string())?;
        } else {
            write_file(
                dir,
                "io.weight",
                &format!("default {}", blkio_to_io_weight(weight)),
            )?;
        }
    }
    for d in blkio.weight_device().iter().flatten() {
        if let Some(weight) = d.weight() {
            let (file, w) = if bfq {
                ("io.bfq.weight", u64::from(weight))
            } else {
                ("io.weight", blkio_to_io_weight(weight))
            };
            write_file(dir, file, &format!("{}:{} {}", d.major(), d.minor(), w))?;
        }
    }
    let throttles: [(&str, &Option<Vec<LinuxThrottleDevice>>); 4] = [
        ("rbps", blkio.throttle_read_bps_device()),
        ("wbps", blkio.throttle_write_bps_device()),
        ("riops", blkio.throttle_read_iops_device()),
        ("wiops", blkio.throttle_write_iops_device()),
    ];
    for (key, devices) in throttles {
        for d in devices.iter().flatten() {
            write_file(
                dir,
                "io.max",
                &format!("{}:{} {key}={}", d.major(), d.minor(), d.rate()),
            )?;
        }
    }
    Ok(())
}

pub(super) fn set_frozen(dir: &Path, frozen: bool) -> Result<()> {
    write_file(dir, "cgroup.freeze", if frozen { "1" } else { "0" })?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while is_frozen(dir) != frozen {
        if Instant::now() > deadline {
            return Err(RuntimeError::cgroup(dir, "the freezer did not settle"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

pub(super) fn is_frozen(dir: &Path) -> bool {
    read_keyed(&dir.join("cgroup.events")).get("frozen").copied() == Some(1)
}

pub(super) fn oom_killed(dir: &Path) -> bool {
    read_keyed(&dir.join("memory.events"))
        .get("oom_kill")
        .copied()
        .unwrap_or(0)
        > 0
}

pub(super) fn memory_stats(dir: &Path, stats: &mut CgroupStats) {
    stats.memory_usage = read_u64(&dir.join("memory.current"));
    stats.memory_limit = read_limit(&dir.join("memory.max"));
    stats.memory_stat = read_keyed(&dir.join("memory.stat"));
}

pub(super) fn cpu_usage_ns(dir: &Path) -> u64 {
    read_keyed(&dir.join("cpu.stat"))
        .get("usage_usec")
        .copied()
        .unwrap_or(0)
        * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_weights() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
    }
}
