//! Control groups: detects the host's layout at run time (cgroup v1, hybrid, or unified v2), creates a
//! container's cgroup in every hierarchy, applies `linux.resources`, joins processes, and reads back
//! pids, OOM kills and statistics.
//!
//! ```no_run
//! # fn main() -> Result<(), berth_runtime::RuntimeError> {
//! use berth_runtime::Cgroups;
//! let cgroups = Cgroups::detect();
//! let cg = cgroups.create("berth/abc123", &Default::default())?;
//! cg.add_process(std::process::id() as i32)?;
//! let stats = cgroups.stats(&cg);
//! # let _ = stats;
//! cgroups.remove(&cg)?;
//! # Ok(()) }
//! ```

mod device_filter;
mod v1;
mod v2;

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;
use rustix::process::{Pid, Signal};

use crate::error::{Result, RuntimeError};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// v1 controllers we know; anything else in a cgroup mount's options is a mount option.
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

/// How the host's cgroups are mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupLayout {
    /// Only cgroup v1 hierarchies, one per controller (or group of controllers).
    Legacy,
    /// cgroup v1 hierarchies for the controllers, plus a cgroup2 mount (usually
    /// `/sys/fs/cgroup/unified`) holding few or no controllers.
    Hybrid,
    /// Only cgroup v2, at `/sys/fs/cgroup`.
    Unified,
}

/// One v1 hierarchy: where it is mounted and what it controls (`name=systemd` counts as a controller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    pub mountpoint: PathBuf,
    pub controllers: Vec<String>,
}

/// The host's cgroup layout, detected once and then used for every container.
#[derive(Debug, Clone)]
pub struct Cgroups {
    layout: CgroupLayout,
    v1: Vec<V1Hierarchy>,
    v2: Option<PathBuf>,
    v2_controllers: Vec<String>,
}

/// A container's cgroup: the same relative name in every hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupPath {
    name: String,
    v1: Vec<(V1Hierarchy, PathBuf)>,
    v2: Option<PathBuf>,
    v2_controllers: Vec<String>,
}

/// Where a controller's files live for one cgroup.
#[derive(Debug, Clone, Copy)]
enum ControllerDir<'a> {
    V1(&'a Path),
    V2(&'a Path),
}

/// A snapshot of a cgroup's resource usage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// Memory in use, bytes (v1 `memory.usage_in_bytes`, v2 `memory.current`).
    pub memory_usage: u64,
    /// The memory limit in bytes; `None` when unlimited.
    pub memory_limit: Option<u64>,
    /// `memory.stat`, as name -> value.
    pub memory_stat: BTreeMap<String, u64>,
    /// CPU time used, nanoseconds.
    pub cpu_usage_ns: u64,
    /// Number of processes and threads.
    pub pids_current: u64,
    /// The pids limit; `None` when unlimited.
    pub pids_limit: Option<u64>,
}

impl Cgroups {
    /// Detects the host's layout from `/sys/fs/cgroup` and `/proc/self/mountinfo`.
    pub fn detect() -> Cgroups {
        if Path::new(CGROUP_ROOT).join("cgroup.controllers").exists() {
            let root = PathBuf::from(CGROUP_ROOT);
            let v2_controllers = read_controllers(&root);
            return Cgroups {
                layout: CgroupLayout::Unified,
                v1: Vec::new(),
                v2: Some(root),
                v2_controllers,
            };
        }
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let (v1, v2) = parse_mountinfo(&mountinfo);
        let v2_controllers = v2.as_deref().map(read_controllers).unwrap_or_default();
        let layout = if v2.is_some() {
            CgroupLayout::Hybrid
        } else {
            CgroupLayout::Legacy
        };
        Cgroups {
            layout,
            v1,
            v2,
            v2_controllers,
        }
    }

    /// The cgroup2 hierarchy mounted at `mountpoint` as if it were the host's only one, but
    /// without enabling any controller in it: for the unified code paths that need none (device
    /// programs, `cgroup.freeze`) on a hybrid host, whose controllers belong to v1 hierarchies
    /// (enabling one in cgroup2 would keep it from being mounted in v1).
    pub fn unified_at(mountpoint: &Path) -> Cgroups {
        Cgroups {
            layout: CgroupLayout::Unified,
            v1: Vec::new(),
            v2: Some(mountpoint.to_path_buf()),
            v2_controllers: Vec::new(),
        }
    }

    /// The detected layout.
    pub fn layout(&self) -> CgroupLayout {
        self.layout
    }

    /// The v1 hierarchies (empty on a unified host).
    pub fn v1_hierarchies(&self) -> &[V1Hierarchy] {
        &self.v1
    }

    /// The cgroup2 mount point, if any.
    pub fn v2_mountpoint(&self) -> Option<&Path> {
        self.v2.as_deref()
    }

    /// Takes the kernel's cgroup migration lock once, for nothing: the calling process is
    /// written into the cgroup it is already in. The first migration after a quiet spell waits
    /// for an RCU grace period (the lock first switches its readers, every fork and exit, to a
    /// slow path: 7-15 ms on the hosts measured), and the lock stays switched for about one more
    /// grace period after its last use. A daemon about to move a new process (a container's
    /// init, an exec) calls this first, off its critical path, so that the move itself waits
    /// less or not at all. The wait happens under the kernel's cgroup mutex, so a mkdir in any
    /// hierarchy waits too: make the directories first. Best effort: an error only means no
    /// head start.
    pub fn prime_migration(&self) -> std::io::Result<()> {
        let own = fs::read_to_string("/proc/self/cgroup")?;
        let dir = own.lines().find_map(|line| {
            let mut fields = line.splitn(3, ':').skip(1);
            let (controllers, path) = (fields.next()?, fields.next()?);
            let rel = path.trim_start_matches('/');
            if controllers.is_empty() {
                return self.v2.as_ref().map(|v2| v2.join(rel));
            }
            let mut named: Vec<&str> = controllers.split(',').collect();
            named.sort_unstable();
            self.v1
                .iter()
                .find(|h| {
                    let mut ours: Vec<&str> = h.controllers.iter().map(String::as_str).collect();
                    ours.sort_unstable();
                    ours == named
                })
                .map(|h| h.mountpoint.join(rel))
        });
        let dir = dir.ok_or_else(|| std::io::Error::new(ErrorKind::NotFound, "no cgroup of our own"))?;
        fs::write(dir.join("cgroup.procs"), std::process::id().to_string())
    }

    /// The paths of cgroup `name` (relative to each hierarchy's root, e.g. `berth/<id>`) without
    /// creating anything: for a cgroup made earlier, e.g. by a previous run of the daemon.
    pub fn open(&self, name: &str) -> Result<CgroupPath> {
        let rel = relative_name(name)?;
        Ok(CgroupPath {
            name: rel.to_string(),
            v1: self
                .v1
                .iter()
                .map(|h| (h.clone(), h.mountpoint.join(rel)))
                .collect(),
            v2: self.v2.as_ref().map(|m| m.join(rel)),
            v2_controllers: self.v2_controllers.clone(),
        })
    }

    /// Creates cgroup `name` in every hierarchy and applies `resources`.
    pub fn create(&self, name: &str, resources: &LinuxResources) -> Result<CgroupPath> {
        let path = self.open(name)?;
        for (h, dir) in &path.v1 {
            if h.controllers.iter().any(|c| c == "cpuset") {
                v1::create_cpuset_dirs(&h.mountpoint, dir)?;
            } else {
                fs::create_dir_all(dir).map_err(|e| RuntimeError::cgroup(dir, format!("mkdir: {e}")))?;
            }
        }
        if let (Some(mount), Some(dir)) = (&self.v2, &path.v2) {
            let wanted = if self.layout == CgroupLayout::Unified {
                self.v2_controllers.clone()
            } else {
                // On a hybrid host the v1 hierarchies do the work; only enable what is asked of v2.
                hybrid_v2_needs(resources, &self.v2_controllers)
            };
            v2::create_dirs(mount, dir, &wanted)?;
        }
        if let Err(e) = self.update(&path, resources) {
            let _ = self.remove(&path);
            return Err(e);
        }
        Ok(path)
    }

    /// Applies `resources` to an existing cgroup (`docker update`).
    pub fn update(&self, path: &CgroupPath, resources: &LinuxResources) -> Result<()> {
        apply_resources(path, resources)
    }

    /// Kills every process left in the cgroup and removes its directory from every hierarchy.
    pub fn remove(&self, path: &CgroupPath) -> Result<()> {
        let _ = self.thaw(path);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pids = self.pids(path);
            if pids.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                return Err(RuntimeError::cgroup(
                    path.name.as_str(),
                    format!("processes {pids:?} did not die"),
                ));
            }
            for pid in pids {
                if let Some(pid) = Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, Signal::KILL);
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for dir in path.dirs() {
            remove_tree(dir)?;
        }
        Ok(())
    }

    /// The host pids of every process in the cgroup (and its sub-cgroups).
    pub fn pids(&self, path: &CgroupPath) -> Vec<i32> {
        let mut pids = Vec::new();
        for dir in path.dirs() {
            collect_procs(dir, &mut pids);
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Freezes every process in the cgroup (`docker pause`).
    pub fn freeze(&self, path: &CgroupPath) -> Result<()> {
        match path.controller_dir("freezer") {
            Some(ControllerDir::V1(dir)) => v1::set_frozen(dir, true),
            Some(ControllerDir::V2(dir)) => v2::set_frozen(dir, true),
            None => Err(RuntimeError::cgroup(path.name.as_str(), "no freezer controller")),
        }
    }

    /// Thaws a frozen cgroup (`docker unpause`).
    pub fn thaw(&self, path: &CgroupPath) -> Result<()> {
        match path.controller_dir("freezer") {
            Some(ControllerDir::V1(dir)) => v1::set_frozen(dir, false),
            Some(ControllerDir::V2(dir)) => v2::set_frozen(dir, false),
            None => Err(RuntimeError::cgroup(path.name.as_str(), "no freezer controller")),
        }
    }

    /// Whether the cgroup is frozen.
    pub fn is_frozen(&self, path: &CgroupPath) -> bool {
        match path.controller_dir("freezer") {
            Some(ControllerDir::V1(dir)) => v1::is_frozen(dir),
            Some(ControllerDir::V2(dir)) => v2::is_frozen(dir),
            None => false,
        }
    }

    /// Whether the kernel's OOM killer killed a process of this cgroup (or the cgroup is under OOM).
    pub fn oom_killed(&self, path: &CgroupPath) -> bool {
        match path.controller_dir("memory") {
            Some(ControllerDir::V1(dir)) => v1::oom_killed(dir),
            Some(ControllerDir::V2(dir)) => v2::oom_killed(dir),
            None => false,
        }
    }

    /// Memory, CPU and pids usage. Missing controllers or files read as zero.
    pub fn stats(&self, path: &CgroupPath) -> CgroupStats {
        let mut stats = CgroupStats::default();
        match path.controller_dir("memory") {
            Some(ControllerDir::V1(dir)) => v1::memory_stats(dir, &mut stats),
            Some(ControllerDir::V2(dir)) => v2::memory_stats(dir, &mut stats),
            None => {}
        }
        match path.controller_dir("cpuacct") {
            Some(ControllerDir::V1(dir)) => stats.cpu_usage_ns = read_u64(&dir.join("cpuacct.usage")),
            _ => {
                if let Some(ControllerDir::V2(dir)) = path.controller_dir("cpu") {
                    stats.cpu_usage_ns = v2::cpu_usage_ns(dir);
                }
            }
        }
        if let Some(ControllerDir::V1(dir) | ControllerDir::V2(dir)) = path.controller_dir("pids") {
            stats.pids_current = read_u64(&dir.join("pids.current"));
            stats.pids_limit = read_limit(&dir.join("pids.max"));
        }
        stats
    }
}

impl CgroupPath {
    /// The name relative to each hierarchy's root, e.g. `berth/<id>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every directory of this cgroup: one per v1 hierarchy plus the cgroup2 one.
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.v1.iter().map(|(_, d)| d.as_path()).chain(self.v2.as_deref())
    }

    /// The v1 hierarchies with this cgroup's directory in each (for mounting a container's view).
    pub fn v1_dirs(&self) -> impl Iterator<Item = (&V1Hierarchy, &Path)> {
        self.v1.iter().map(|(h, d)| (h, d.as_path()))
    }

    /// This cgroup's cgroup2 directory, if the host has a cgroup2 mount.
    pub fn v2_dir(&self) -> Option<&Path> {
        self.v2.as_deref()
    }

    /// Moves process `pid` (a host pid) into this cgroup in every hierarchy.
    pub fn add_process(&self, pid: i32) -> Result<()> {
        for dir in self.dirs() {
            let file = dir.join("cgroup.procs");
            fs::write(&file, pid.to_string())
                .map_err(|e| RuntimeError::cgroup(&file, format!("adding pid {pid}: {e}")))?;
        }
        Ok(())
    }

    /// Where the files of `controller` (v1 name; `io` and `blkio` are the same) live.
    fn controller_dir(&self, controller: &str) -> Option<ControllerDir<'_>> {
        let v1_name = if controller == "io" { "blkio" } else { controller };
        if let Some((_, dir)) = self
            .v1
            .iter()
            .find(|(h, _)| h.controllers.iter().any(|c| c == v1_name))
        {
            return Some(ControllerDir::V1(dir));
        }
        let v2_name = if controller == "blkio" { "io" } else { controller };
        let dir = self.v2.as_deref()?;
        // The freezer is built into cgroup2 (cgroup.freeze); cpuacct's numbers are in cpu.stat.
        let builtin = matches!(v2_name, "freezer") && dir.join("cgroup.freeze").exists();
        if builtin || self.v2_controllers.iter().any(|c| c == v2_name) {
            Some(ControllerDir::V2(dir))
        } else {
            None
        }
    }
}

fn relative_name(name: &str) -> Result<&str> {
    let rel = name.trim_matches('/');
    if rel.is_empty() || rel.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(RuntimeError::InvalidSpec(format!("bad cgroup name {name:?}")));
    }
    Ok(rel)
}

/// Controllers a hybrid host's cgroup2 hierarchy must enable for `resources`.
fn hybrid_v2_needs(resources: &LinuxResources, available: &[String]) -> Vec<String> {
    let mut wanted = Vec::new();
    if resources
        .hugepage_limits()
        .as_ref()
        .is_some_and(|l| !l.is_empty())
    {
        wanted.push("hugetlb".to_string());
    }
    wanted.retain(|c| available.contains(c));
    wanted
}

fn apply_resources(path: &CgroupPath, res: &LinuxResources) -> Result<()> {
    let missing =
        |what: &str| RuntimeError::cgroup(path.name.as_str(), format!("no {what} controller on this host"));
    if let Some(memory) = res.memory() {
        match path.controller_dir("memory") {
            Some(ControllerDir::V1(dir)) => v1::set_memory(dir, memory)?,
            Some(ControllerDir::V2(dir)) => v2::set_memory(dir, memory)?,
            None if memory.limit().unwrap_or(0) != 0 => return Err(missing("memory")),
            None => {}
        }
    }
    if let Some(cpu) = res.cpu() {
        match path.controller_dir("cpu") {
            Some(ControllerDir::V1(dir)) => v1::set_cpu(dir, cpu)?,
            Some(ControllerDir::V2(dir)) => v2::set_cpu(dir, cpu)?,
            None => {}
        }
        let cpus = cpu.cpus().as_deref().filter(|s| !s.is_empty());
        let mems = cpu.mems().as_deref().filter(|s| !s.is_empty());
        if cpus.is_some() || mems.is_some() {
            let (ControllerDir::V1(dir) | ControllerDir::V2(dir)) =
                path.controller_dir("cpuset").ok_or_else(|| missing("cpuset"))?;
            if let Some(cpus) = cpus {
                write_file(dir, "cpuset.cpus", cpus)?;
            }
            if let Some(mems) = mems {
                write_file(dir, "cpuset.mems", mems)?;
            }
        }
    }
    if let Some(pids) = res.pids() {
        if pids.limit() != 0 {
            let (ControllerDir::V1(dir) | ControllerDir::V2(dir)) =
                path.controller_dir("pids").ok_or_else(|| missing("pids"))?;
            let value = if pids.limit() > 0 {
                pids.limit().to_string()
            } else {
                "max".to_string()
            };
            write_file(dir, "pids.max", &value)?;
        }
    }
    if let Some(blkio) = res.block_io() {
        match path.controller_dir("blkio") {
            Some(ControllerDir::V1(dir)) => v1::set_blkio(dir, blkio)?,
            Some(ControllerDir::V2(dir)) => v2::set_io(dir, blkio)?,
            None => {}
        }
    }
    for limit in res.hugepage_limits().iter().flatten() {
        match path.controller_dir("hugetlb") {
            Some(ControllerDir::V1(dir)) => write_file(
                dir,
                &format!("hugetlb.{}.limit_in_bytes", limit.page_size()),
                &limit.limit().to_string(),
            )?,
            Some(ControllerDir::V2(dir)) => {
                let value = if limit.limit() < 0 {
                    "max".to_string()
                } else {
                    limit.limit().to_string()
                };
                write_file(dir, &format!("hugetlb.{}.max", limit.page_size()), &value)?
            }
            None => return Err(missing("hugetlb")),
        }
    }
    if let Some(rules) = res.devices().as_ref().filter(|r| !r.is_empty()) {
        match (path.controller_dir("devices"), path.v2.as_deref()) {
            (Some(ControllerDir::V1(dir)), _) => v1::set_devices(dir, rules)?,
            // cgroup2 has no devices files: the kernel asks an eBPF program attached to the cgroup.
            (_, Some(dir)) => device_filter::attach(dir, rules)?,
            (_, None) => {
                tracing::warn!(cgroup = %path.name, "no devices controller: device rules not applied")
            }
        }
    }
    if let Some(network) = res.network() {
        if let (Some(class_id), Some(ControllerDir::V1(dir))) =
            (network.class_id(), path.controller_dir("net_cls"))
        {
            write_file(dir, "net_cls.classid", &class_id.to_string())?;
        }
        if let Some(ControllerDir::V1(dir)) = path.controller_dir("net_prio") {
            for p in network.priorities().iter().flatten() {
                write_file(
                    dir,
                    "net_prio.ifpriomap",
                    &format!("{} {}", p.name(), p.priority()),
                )?;
            }
        }
    }
    if let Some(unified) = res.unified().as_ref().filter(|u| !u.is_empty()) {
        let dir = path.v2.as_deref().ok_or_else(|| missing("cgroup2"))?;
        for (key, value) in unified {
            if key.contains('/') || key.starts_with('.') {
                return Err(RuntimeError::InvalidSpec(format!(
                    "bad unified cgroup key {key:?}"
                )));
            }
            write_file(dir, key, value)?;
        }
    }
    Ok(())
}

/// Parses mountinfo into the v1 hierarchies and the cgroup2 mount point.
fn parse_mountinfo(mountinfo: &str) -> (Vec<V1Hierarchy>, Option<PathBuf>) {
    let mut v1: Vec<V1Hierarchy> = Vec::new();
    let mut v2 = None;
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.len() < 3 {
            continue;
        }
        let mountpoint = PathBuf::from(unescape_mountinfo(pre[4]));
        match post[0] {
            "cgroup2" if v2.is_none() => v2 = Some(mountpoint),
            "cgroup" => {
                let controllers: Vec<String> = post[2]
                    .split(',')
                    .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                    .map(str::to_string)
                    .collect();
                if !controllers.is_empty() && !v1.iter().any(|h| h.controllers == controllers) {
                    v1.push(V1Hierarchy {
                        mountpoint,
                        controllers,
                    });
                }
            }
            _ => {}
        }
    }
    (v1, v2)
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn read_controllers(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join("cgroup.controllers"))
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

pub(crate) fn write_file(dir: &Path, file: &str, value: &str) -> Result<()> {
    let path = dir.join(file);
    fs::write(&path, value).map_err(|e| RuntimeError::cgroup(&path, format!("writing {value:?}: {e}")))
}

fn read_u64(path: &Path) -> u64 {
    fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Reads a limit file: "max" (or a v1 "unlimited" near i64::MAX) is `None`.
fn read_limit(path: &Path) -> Option<u64> {
    let s = fs::read_to_string(path).ok()?;
    let v: u64 = s.trim().parse().ok()?;
    (v < (1 << 62)).then_some(v)
}

/// Reads a flat-keyed file such as `memory.stat` or `memory.events`.
fn read_keyed(path: &Path) -> BTreeMap<String, u64> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

fn collect_procs(dir: &Path, pids: &mut Vec<i32>) {
    if let Ok(s) = fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_procs(&e.path(), pids);
            }
        }
    }
}

/// Removes a cgroup directory and its sub-cgroups (deepest first), retrying while the kernel still
/// counts just-killed processes.
fn remove_tree(dir: &Path) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(RuntimeError::cgroup(dir, format!("reading: {e}"))),
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&e.path())?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => return Err(RuntimeError::cgroup(dir, format!("rmdir: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hybrid_mountinfo() {
        let info = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 31 0:38 / /mnt/with\\040space rw,relatime - cgroup cgroup rw,memory
";
        let (v1, v2) = parse_mountinfo(info);
        assert_eq!(v2.as_deref(), Some(Path::new("/sys/fs/cgroup/unified")));
        assert_eq!(v1.len(), 4);
        assert_eq!(v1[1].controllers, ["cpu", "cpuacct"]);
        assert_eq!(v1[2].controllers, ["name=systemd"]);
        assert_eq!(v1[3].mountpoint, Path::new("/mnt/with space"));
    }

    #[test]
    fn rejects_bad_names() {
        assert!(relative_name("../x").is_err());
        assert!(relative_name("").is_err());
        assert_eq!(relative_name("/berth/abc/").unwrap(), "berth/abc");
    }
}
