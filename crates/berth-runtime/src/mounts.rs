//! The container's filesystem: mount propagation, the rootfs bind, `mounts` from the spec (including a
//! read-only view of the container's cgroups), `pivot_root`, masked and read-only paths, and the
//! read-only root.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, Spec};
use rustix::mount::{MountFlags, UnmountFlags};

use crate::cgroups::{CgroupLayout, CgroupPath, Cgroups};
use crate::error::{Result, RuntimeError};
use crate::root_dir::{fd_path, RootDir};

// MS_* flags (as in <sys/mount.h>); kept as plain numbers because mount(2) mixes them freely.
const MS_RDONLY: u32 = 1;
const MS_NOSUID: u32 = 2;
const MS_NODEV: u32 = 4;
const MS_NOEXEC: u32 = 8;
const MS_SYNCHRONOUS: u32 = 16;
const MS_REMOUNT: u32 = 32;
const MS_MANDLOCK: u32 = 64;
const MS_DIRSYNC: u32 = 128;
const MS_NOSYMFOLLOW: u32 = 256;
const MS_NOATIME: u32 = 1024;
const MS_NODIRATIME: u32 = 2048;
const MS_BIND: u32 = 4096;
const MS_REC: u32 = 16384;
const MS_UNBINDABLE: u32 = 1 << 17;
const MS_PRIVATE: u32 = 1 << 18;
const MS_SLAVE: u32 = 1 << 19;
const MS_SHARED: u32 = 1 << 20;
const MS_RELATIME: u32 = 1 << 21;
const MS_STRICTATIME: u32 = 1 << 24;
const MS_LAZYTIME: u32 = 1 << 25;

/// Flags that a bind mount only gets by a second, remounting call.
const REMOUNT_FLAGS: u32 = MS_RDONLY
    | MS_NOSUID
    | MS_NODEV
    | MS_NOEXEC
    | MS_SYNCHRONOUS
    | MS_MANDLOCK
    | MS_DIRSYNC
    | MS_NOSYMFOLLOW
    | MS_NOATIME
    | MS_NODIRATIME
    | MS_RELATIME
    | MS_STRICTATIME;

/// A mount's options split into flags, propagation changes and filesystem data.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct MountOptions {
    pub flags: u32,
    pub propagation: Vec<u32>,
    pub data: Vec<String>,
}

/// Parses `mount -o`-style options.
pub(crate) fn parse_options(options: &[String]) -> MountOptions {
    let mut out = MountOptions::default();
    for opt in options {
        let (set, clear) = match opt.as_str() {
            "defaults" => (0, 0),
            "ro" => (MS_RDONLY, 0),
            "rw" => (0, MS_RDONLY),
            "nosuid" => (MS_NOSUID, 0),
            "suid" => (0, MS_NOSUID),
            "nodev" => (MS_NODEV, 0),
            "dev" => (0, MS_NODEV),
            "noexec" => (MS_NOEXEC, 0),
            "exec" => (0, MS_NOEXEC),
            "sync" => (MS_SYNCHRONOUS, 0),
            "async" => (0, MS_SYNCHRONOUS),
            "dirsync" => (MS_DIRSYNC, 0),
            "mand" => (MS_MANDLOCK, 0),
            "nomand" => (0, MS_MANDLOCK),
            "noatime" => (MS_NOATIME, 0),
            "atime" => (0, MS_NOATIME),
            "nodiratime" => (MS_NODIRATIME, 0),
            "diratime" => (0, MS_NODIRATIME),
            "relatime" => (MS_RELATIME, 0),
            "norelatime" => (0, MS_RELATIME),
            "strictatime" => (MS_STRICTATIME, 0),
            "nostrictatime" => (0, MS_STRICTATIME),
            "lazytime" => (MS_LAZYTIME, 0),
            "nolazytime" => (0, MS_LAZYTIME),
            "nosymfollow" => (MS_NOSYMFOLLOW, 0),
            "symfollow" => (0, MS_NOSYMFOLLOW),
            "bind" => (MS_BIND, 0),
            "rbind" => (MS_BIND | MS_REC, 0),
            "remount" => (MS_REMOUNT, 0),
            // Recursive variants of ro/rw: approximated by their plain forms.
            "rro" => (MS_RDONLY, 0),
            "rrw" => (0, MS_RDONLY),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                out.propagation.push(propagation_flag(opt).unwrap_or(MS_PRIVATE));
                continue;
            }
            // Options for other runtimes or for the caller; nothing for mount(2).
            "tmpcopyup" | "notmpcopyup" | "idmap" | "ridmap" | "copy-symlink" => continue,
            o if o.starts_with("x-") => continue,
            data => {
                out.data.push(data.to_string());
                continue;
            }
        };
        out.flags = (out.flags | set) & !clear;
    }
    out
}

fn propagation_flag(name: &str) -> Option<u32> {
    Some(match name {
        "private" => MS_PRIVATE,
        "rprivate" => MS_PRIVATE | MS_REC,
        "shared" => MS_SHARED,
        "rshared" => MS_SHARED | MS_REC,
        "slave" => MS_SLAVE,
        "rslave" => MS_SLAVE | MS_REC,
        "unbindable" => MS_UNBINDABLE,
        "runbindable" => MS_UNBINDABLE | MS_REC,
        _ => return None,
    })
}

/// mount(2), with an error that names what was being mounted.
pub(crate) fn sys_mount(
    source: &str,
    target: &str,
    fstype: &str,
    flags: u32,
    data: &str,
    what: &Path,
) -> Result<()> {
    let data = std::ffi::CString::new(data).map_err(|_| {
        RuntimeError::InvalidSpec(format!("mount data for {} has a NUL byte", what.display()))
    })?;
    let data = if data.as_bytes().is_empty() {
        None
    } else {
        Some(data.as_c_str())
    };
    rustix::mount::mount(source, target, fstype, MountFlags::from_bits_retain(flags), data)
        .map_err(|e| RuntimeError::io(format!("mounting {} ({fstype} {source})", what.display()), e))
}

/// One sub-mount of the container's `/sys/fs/cgroup` view.
#[derive(Debug, Clone)]
struct CgroupSubmount {
    /// Directory under the cgroup mount point ("" = the mount point itself).
    name: String,
    fstype: &'static str,
    options: String,
    /// Without a cgroup namespace: the host directory to bind (the container's own cgroup).
    bind_from: Option<PathBuf>,
    /// Symlinks to `name` for each controller of a combined hierarchy (`cpu` -> `cpu,cpuacct`).
    links: Vec<String>,
}

#[derive(Debug, Clone)]
enum MountKind {
    Bind { source: PathBuf, is_dir: bool },
    Fs { fstype: String, source: String },
    Cgroup { tmpfs: bool, subs: Vec<CgroupSubmount> },
}

#[derive(Debug, Clone)]
struct MountEntry {
    destination: PathBuf,
    kind: MountKind,
    options: MountOptions,
}

/// Everything about the container's filesystem, resolved before the fork.
#[derive(Debug, Clone)]
pub(crate) struct MountPlan {
    rootfs: PathBuf,
    root_propagation: u32,
    entries: Vec<MountEntry>,
    pub readonly_root: bool,
    pub masked: Vec<PathBuf>,
    pub readonly: Vec<PathBuf>,
}

impl MountPlan {
    pub fn from_spec(
        bundle: &Path,
        spec: &Spec,
        cgroup: Option<&CgroupPath>,
        cgroupns: bool,
    ) -> Result<Self> {
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| RuntimeError::InvalidSpec("no root in config".into()))?;
        let rootfs = bundle.join(root.path());
        let rootfs = fs::canonicalize(&rootfs)
            .map_err(|e| RuntimeError::io(format!("rootfs {}", rootfs.display()), e))?;
        let linux = spec.linux().as_ref();
        let root_propagation = match linux.and_then(|l| l.rootfs_propagation().as_deref()) {
            None | Some("") => MS_PRIVATE | MS_REC,
            Some(p) => propagation_flag(p)
                .ok_or_else(|| RuntimeError::InvalidSpec(format!("bad rootfsPropagation {p:?}")))?,
        };
        let mut entries = Vec::new();
        for m in spec.mounts().iter().flatten() {
            entries.push(plan_mount(bundle, m, cgroup, cgroupns)?);
        }
        let paths = |v: Option<&Vec<String>>| v.into_iter().flatten().map(PathBuf::from).collect::<Vec<_>>();
        Ok(MountPlan {
            rootfs,
            root_propagation,
            entries,
            readonly_root: root.readonly().unwrap_or(false),
            masked: paths(linux.and_then(|l| l.masked_paths().as_ref())),
            readonly: paths(linux.and_then(|l| l.readonly_paths().as_ref())),
        })
    }

    /// In the child, in its new mount namespace: stops mount propagation to the host, makes the rootfs a
    /// mount point, and performs every spec mount inside it. Returns the open rootfs.
    ///
    /// `before_cgroups` runs once, after every other mount and before the cgroup view (and
    /// anything mounted below it): that view needs the process in its cgroup and cgroup
    /// namespace, which the other mounts do not wait for.
    pub fn mount_all(&self, before_cgroups: &mut dyn FnMut() -> Result<()>) -> Result<RootDir> {
        // Never let our mounts reach the host; a "shared" rootfs is made shared again after pivot_root.
        let outer = if self.root_propagation & MS_SHARED != 0 {
            MS_SLAVE | MS_REC
        } else {
            self.root_propagation
        };
        sys_mount("", "/", "", outer, "", Path::new("/"))?;
        let rootfs = self.rootfs.to_string_lossy();
        sys_mount(&rootfs, &rootfs, "", MS_BIND | MS_REC, "", &self.rootfs)?;
        let root = RootDir::open(&self.rootfs)?;
        let cgroup_views: Vec<&Path> = self
            .entries
            .iter()
            .filter(|e| matches!(e.kind, MountKind::Cgroup { .. }))
            .map(|e| e.destination.as_path())
            .collect();
        let (later, now): (Vec<&MountEntry>, Vec<&MountEntry>) = self
            .entries
            .iter()
            .partition(|e| cgroup_views.iter().any(|v| e.destination.starts_with(v)));
        for entry in now {
            mount_entry(&root, entry)?;
        }
        before_cgroups()?;
        for entry in later {
            mount_entry(&root, entry)?;
        }
        Ok(root)
    }

    /// Makes the rootfs `/` and detaches the host's root from the container's mount namespace.
    pub fn pivot(&self, root: &RootDir) -> Result<()> {
        rustix::process::fchdir(root.fd()).map_err(|e| RuntimeError::io("chdir to rootfs", e))?;
        // pivot_root(".", "."): the old root ends up stacked on top of the new one, at ".".
        rustix::process::pivot_root(".", ".").map_err(|e| RuntimeError::io("pivot_root", e))?;
        // Keep the unmount of the old root from propagating to the host.
        sys_mount("", ".", "", MS_SLAVE | MS_REC, "", Path::new("old root"))?;
        rustix::mount::unmount(".", UnmountFlags::DETACH)
            .map_err(|e| RuntimeError::io("unmounting the old root", e))?;
        rustix::process::chdir("/").map_err(|e| RuntimeError::io("chdir /", e))?;
        if self.root_propagation & MS_SHARED != 0 {
            sys_mount("", "/", "", self.root_propagation, "", Path::new("/"))?;
        }
        Ok(())
    }

    /// After pivot_root: `linux.readonlyPaths`, then `linux.maskedPaths`.
    pub fn protect_paths(&self) -> Result<()> {
        for path in &self.readonly {
            readonly_path(path)?;
        }
        for path in &self.masked {
            mask_path(path)?;
        }
        Ok(())
    }

    /// After everything else: `root.readonly`.
    pub fn finish(&self) -> Result<()> {
        if self.readonly_root {
            remount_readonly(Path::new("/"))?;
        }
        Ok(())
    }
}

fn plan_mount(bundle: &Path, m: &Mount, cgroup: Option<&CgroupPath>, cgroupns: bool) -> Result<MountEntry> {
    let destination = m.destination().clone();
    if !destination.is_absolute() {
        return Err(RuntimeError::InvalidSpec(format!(
            "mount destination {} is not absolute",
            destination.display()
        )));
    }
    let options = parse_options(m.options().as_deref().unwrap_or(&[]));
    let typ = m.typ().as_deref().unwrap_or("");
    let source = m.source().clone().unwrap_or_default();
    let kind = if typ == "bind" || options.flags & MS_BIND != 0 {
        let source = if source.is_absolute() {
            source
        } else {
            bundle.join(source)
        };
        let meta = fs::metadata(&source)
            .map_err(|e| RuntimeError::io(format!("bind mount source {}", source.display()), e))?;
        MountKind::Bind {
            source,
            is_dir: meta.is_dir(),
        }
    } else if typ == "cgroup" || typ == "cgroup2" {
        plan_cgroup_view(cgroup, cgroupns)
    } else {
        MountKind::Fs {
            fstype: typ.to_string(),
            source: source.to_string_lossy().into_owned(),
        }
    };
    Ok(MountEntry {
        destination,
        kind,
        options,
    })
}

/// The container's view of its cgroups at the cgroup mount point.
fn plan_cgroup_view(cgroup: Option<&CgroupPath>, cgroupns: bool) -> MountKind {
    let cgroups = Cgroups::detect();
    let bind = |dir: Option<&Path>, mountpoint: &Path| -> Option<PathBuf> {
        if cgroupns {
            None
        } else {
            Some(
                dir.map(Path::to_path_buf)
                    .unwrap_or_else(|| mountpoint.to_path_buf()),
            )
        }
    };
    if cgroups.layout() == CgroupLayout::Unified {
        let mountpoint = cgroups.v2_mountpoint().unwrap_or(Path::new("/sys/fs/cgroup"));
        let sub = CgroupSubmount {
            name: String::new(),
            fstype: "cgroup2",
            options: String::new(),
            bind_from: bind(cgroup.and_then(|c| c.v2_dir()), mountpoint),
            links: Vec::new(),
        };
        return MountKind::Cgroup {
            tmpfs: false,
            subs: vec![sub],
        };
    }
    let mut subs = Vec::new();
    for h in cgroups.v1_hierarchies() {
        let name = h
            .mountpoint
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = cgroup.and_then(|c| c.v1_dirs().find(|(ch, _)| *ch == h).map(|(_, d)| d));
        let links = h
            .controllers
            .iter()
            .filter(|c| **c != name && !c.starts_with("name=") && h.controllers.len() > 1)
            .cloned()
            .collect();
        subs.push(CgroupSubmount {
            name,
            fstype: "cgroup",
            options: h.controllers.join(","),
            bind_from: bind(dir, &h.mountpoint),
            links,
        });
    }
    if let Some(mountpoint) = cgroups.v2_mountpoint() {
        let name = mountpoint
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        subs.push(CgroupSubmount {
            name,
            fstype: "cgroup2",
            options: String::new(),
            bind_from: bind(cgroup.and_then(|c| c.v2_dir()), mountpoint),
            links: Vec::new(),
        });
    }
    MountKind::Cgroup { tmpfs: true, subs }
}

fn mount_entry(root: &RootDir, entry: &MountEntry) -> Result<()> {
    let dest = &entry.destination;
    let opts = &entry.options;
    let data = opts.data.join(",");
    match &entry.kind {
        MountKind::Bind { source, is_dir } => {
            let target = root.mount_target(dest, *is_dir)?;
            let target_path = fd_path(&target);
            let source = source.to_string_lossy();
            sys_mount(
                &source,
                &target_path,
                "",
                MS_BIND | (opts.flags & MS_REC),
                "",
                dest,
            )?;
            let extra = opts.flags & REMOUNT_FLAGS;
            if extra != 0 {
                // Re-resolve: the descriptor still points at the directory under the new mount.
                let mounted = root.mount_target(dest, *is_dir)?;
                let mounted_path = fd_path(&mounted);
                remount_bind(&mounted_path, extra, dest)?;
            }
        }
        MountKind::Fs { fstype, source } => {
            let target = root.mount_target(dest, true)?;
            let mounted = sys_mount(
                source,
                &fd_path(&target),
                fstype,
                opts.flags & !MS_REC,
                &data,
                dest,
            );
            match mounted {
                // A user namespace may mount sysfs only for a network namespace it owns; in one
                // made by the daemon, bind the host's /sys instead (as runc does).
                Err(e) if fstype == "sysfs" && e.raw_os_error() == Some(libc::EPERM) => {
                    sys_mount("/sys", &fd_path(&target), "", MS_BIND | MS_REC, "", dest)?;
                    let extra = opts.flags & REMOUNT_FLAGS;
                    if extra != 0 {
                        let mounted = root.mount_target(dest, true)?;
                        remount_bind(&fd_path(&mounted), extra, dest)?;
                    }
                }
                other => other?,
            }
        }
        MountKind::Cgroup { tmpfs, subs } => mount_cgroup_view(root, dest, opts, *tmpfs, subs)?,
    }
    for &prop in &opts.propagation {
        let target = root
            .resolve(dest)
            .map_err(|e| RuntimeError::io(format!("resolving {}", dest.display()), e))?;
        sys_mount("", &fd_path(&target), "", prop, "", dest)?;
    }
    Ok(())
}

fn mount_cgroup_view(
    root: &RootDir,
    dest: &Path,
    opts: &MountOptions,
    tmpfs: bool,
    subs: &[CgroupSubmount],
) -> Result<()> {
    let flags = opts.flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RELATIME);
    if tmpfs {
        let target = root.mkdir_all(dest, 0o755)?;
        sys_mount(
            "tmpfs",
            &fd_path(&target),
            "tmpfs",
            flags & !MS_RDONLY,
            "mode=755",
            dest,
        )?;
    }
    for sub in subs {
        let path = dest.join(&sub.name);
        // Each descriptor must stay open while its /proc/self/fd path is in use.
        let target = root.mkdir_all(&path, 0o755)?;
        match &sub.bind_from {
            Some(host) => {
                sys_mount(
                    &host.to_string_lossy(),
                    &fd_path(&target),
                    "",
                    MS_BIND | MS_REC,
                    "",
                    &path,
                )?;
                let mounted = root.mkdir_all(&path, 0o755)?;
                remount_bind(&fd_path(&mounted), flags, &path)?;
            }
            None => sys_mount(
                "cgroup",
                &fd_path(&target),
                sub.fstype,
                flags,
                &sub.options,
                &path,
            )?,
        }
        for link in &sub.links {
            let dir = root.mkdir_all(dest, 0o755)?;
            match rustix::fs::symlinkat(sub.name.as_str(), &dir, link.as_str()) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => {
                    return Err(RuntimeError::io(
                        format!("symlink {}", dest.join(link).display()),
                        e,
                    ))
                }
            }
        }
    }
    if tmpfs && flags & MS_RDONLY != 0 {
        let target = root.mkdir_all(dest, 0o755)?;
        sys_mount("", &fd_path(&target), "", MS_REMOUNT | flags, "mode=755", dest)?;
    }
    Ok(())
}

/// Applies flags to an existing bind mount, keeping the flags it already has (they can be locked).
fn remount_bind(target: &str, flags: u32, what: &Path) -> Result<()> {
    let current = rustix::fs::statvfs(target)
        .map(|s| statvfs_to_ms(s.f_flag.bits()))
        .unwrap_or(0);
    sys_mount("", target, "", MS_BIND | MS_REMOUNT | current | flags, "", what)
}

/// statvfs's ST_* flags to the MS_* flags they mirror.
fn statvfs_to_ms(st: u64) -> u32 {
    const TABLE: [(u64, u32); 8] = [
        (1, MS_RDONLY),
        (2, MS_NOSUID),
        (4, MS_NODEV),
        (8, MS_NOEXEC),
        (16, MS_SYNCHRONOUS),
        (1024, MS_NOATIME),
        (2048, MS_NODIRATIME),
        (4096, MS_RELATIME),
    ];
    TABLE
        .iter()
        .filter(|(s, _)| st & s != 0)
        .fold(0, |acc, (_, m)| acc | m)
}

/// Bind-mounts a path onto itself read-only (after pivot_root).
fn readonly_path(path: &Path) -> Result<()> {
    let p = path.to_string_lossy();
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(RuntimeError::io(format!("readonly path {}", path.display()), e)),
        Ok(_) => {}
    }
    sys_mount(&p, &p, "", MS_BIND | MS_REC, "", path)?;
    remount_bind(&p, MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, path)
}

/// Hides a path (after pivot_root): `/dev/null` over a file, an empty read-only tmpfs over a directory.
fn mask_path(path: &Path) -> Result<()> {
    let p = path.to_string_lossy();
    let meta = match fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(RuntimeError::io(format!("masked path {}", path.display()), e)),
        Ok(m) => m,
    };
    if meta.is_dir() {
        sys_mount(
            "tmpfs",
            &p,
            "tmpfs",
            MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
            "",
            path,
        )
    } else {
        sys_mount("/dev/null", &p, "", MS_BIND, "", path)
    }
}

/// Remounts a mount point read-only, keeping its other flags.
fn remount_readonly(path: &Path) -> Result<()> {
    remount_bind(&path.to_string_lossy(), MS_RDONLY, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> MountOptions {
        parse_options(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn parses_docker_mount_options() {
        let o = opts(&[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ]);
        assert_eq!(o.flags, MS_NOSUID | MS_NOEXEC);
        assert_eq!(o.data, ["newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]);
        let o = opts(&["rbind", "ro", "rprivate"]);
        assert_eq!(o.flags, MS_BIND | MS_REC | MS_RDONLY);
        assert_eq!(o.propagation, [MS_PRIVATE | MS_REC]);
        assert_eq!(opts(&["ro", "rw"]).flags, 0);
    }

    #[test]
    fn maps_statvfs_flags() {
        assert_eq!(statvfs_to_ms(1 | 2 | 4096), MS_RDONLY | MS_NOSUID | MS_RELATIME);
    }
}
