//! `--userns-remap`: containers run in a user namespace whose root is an unprivileged host user
//! (Docker's `dockremap` by default), with the ids that /etc/subuid and /etc/subgid give it.
//!
//! Unlike dockerd, which keeps a second image store with every layer chowned to the remapped
//! ids, Berth leaves layers and the container's own layer as they are on disk (owned by the
//! container's ids) and mounts the overlay over idmapped mounts of them: a container sees its
//! files as its own, the host sees them as the remapped user's, and `commit`, `diff`, `cp` of
//! stopped containers and `--userns=host` containers all keep using the same layers.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use rustix::mount::OpenTreeFlags;
use serde_json::{json, Value};

/// One contiguous range of ids: `size` ids from `container` inside are `host`.. outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

/// The daemon's remapped root: its id ranges and a user namespace with those mappings.
#[derive(Debug)]
pub struct RemappedRoot {
    /// `user:group` as resolved, e.g. `dockremap:dockremap`.
    pub name: String,
    uids: Vec<IdRange>,
    gids: Vec<IdRange>,
    /// A user namespace with the mappings, for idmapped mounts (no process lives in it).
    userns: OwnedFd,
}

const DEFAULT_USER: &str = "dockremap";
/// Where a new subordinate range for `dockremap` starts looking, and its size (Docker's).
const SUBID_START: u32 = 100_000;
const SUBID_SIZE: u32 = 65_536;

impl RemappedRoot {
    /// Resolves `setting` (`default`, `user`, `user:group`, names or numbers), creating Docker's
    /// `dockremap` user and its ranges for `default`, and checks that the filesystem under
    /// `root` supports idmapped mounts.
    pub fn setup(setting: &str, root: &Path) -> anyhow::Result<RemappedRoot> {
        let (user, group) = match setting.split_once(':') {
            _ if setting == "default" => {
                ensure_default_user()?;
                (DEFAULT_USER.to_string(), DEFAULT_USER.to_string())
            }
            Some((u, g)) => (u.to_string(), g.to_string()),
            None => (setting.to_string(), setting.to_string()),
        };
        if user.is_empty() || group.is_empty() {
            bail!("userns-remap {setting:?}: expected user[:group]");
        }
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
        let (user_name, uid) = lookup(&passwd, &user)
            .with_context(|| format!("userns-remap: no user {user:?} in /etc/passwd"))?;
        let (group_name, gid) = lookup(&groups, &group)
            .with_context(|| format!("userns-remap: no group {group:?} in /etc/group"))?;
        let subuid = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
        let subgid = std::fs::read_to_string("/etc/subgid").unwrap_or_default();
        let uids = ranges(&subuid, &user_name, uid);
        let gids = ranges(&subgid, &group_name, gid);
        if uids.is_empty() {
            bail!("userns-remap: no subuid ranges found for user {user_name:?} in /etc/subuid");
        }
        if gids.is_empty() {
            bail!("userns-remap: no subgid ranges found for group {group_name:?} in /etc/subgid");
        }
        let userns = make_userns(&uids, &gids).context("making a user namespace for idmapped mounts")?;
        let remapped = RemappedRoot {
            name: format!("{user_name}:{group_name}"),
            uids,
            gids,
            userns,
        };
        remapped.idmapped_clone(root).with_context(|| {
            format!(
                "userns-remap needs idmapped mounts (Linux 5.12+; ext4, xfs, btrfs, tmpfs), which {} does not support",
                root.display()
            )
        })?;
        Ok(remapped)
    }

    /// The host uid and gid of the container's root.
    pub fn root_ids(&self) -> (u32, u32) {
        (self.uids[0].host, self.gids[0].host)
    }

    /// `linux.uidMappings` and `linux.gidMappings` of a runtime spec.
    pub fn spec_mappings(&self) -> (Value, Value) {
        let list = |ranges: &[IdRange]| -> Value {
            ranges
                .iter()
                .map(|r| json!({"containerID": r.container, "hostID": r.host, "size": r.size}))
                .collect()
        };
        (list(&self.uids), list(&self.gids))
    }

    /// A detached clone of the mount at `path` that shows its files through the mappings.
    fn idmapped_clone(&self, path: &Path) -> io::Result<OwnedFd> {
        let tree = rustix::mount::open_tree(
            rustix::fs::CWD,
            path,
            OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
        )?;
        set_idmap(&tree, &self.userns)?;
        Ok(tree)
    }

    /// Mounts an overlay at `target` over idmapped mounts of `lowers` and of `dir` (which holds
    /// `upper` and `work`), with `options` added. The mount is made with the remapped root's
    /// file system ids, so that what the overlay itself creates (its work directory, copied-up
    /// files) is owned by the container's root on disk.
    pub fn mount_overlay(
        &self,
        lowers: &[PathBuf],
        dir: &Path,
        upper: &str,
        work: &str,
        options: &str,
        target: &Path,
    ) -> io::Result<()> {
        let lower_fds = lowers
            .iter()
            .map(|l| self.idmapped_clone(l))
            .collect::<io::Result<Vec<_>>>()?;
        let dir_fd = self.idmapped_clone(dir)?;
        let fd_path = |fd: &OwnedFd| format!("/proc/self/fd/{}", fd.as_raw_fd());
        let lowerdir: Vec<String> = lower_fds.iter().map(fd_path).collect();
        let mut data = format!(
            "lowerdir={},upperdir={dir}/{upper},workdir={dir}/{work}",
            lowerdir.join(":"),
            dir = fd_path(&dir_fd)
        );
        if !options.is_empty() {
            data.push(',');
            data.push_str(options);
        }
        let data = std::ffi::CString::new(data).map_err(|_| io::Error::other("NUL in overlay options"))?;
        // The overlay keeps its creator's credentials for its own work.
        self.as_root(|| {
            rustix::mount::mount(
                "overlay",
                target,
                "overlay",
                rustix::mount::MountFlags::empty(),
                Some(data.as_c_str()),
            )?;
            Ok(())
        })
    }

    /// The host ids of the container's `uid` and `gid`; `None` when either is not mapped.
    pub fn to_host(&self, uid: u32, gid: u32) -> Option<(u32, u32)> {
        let map = |ranges: &[IdRange], id: u32| {
            ranges
                .iter()
                .find(|r| id >= r.container && id - r.container < r.size)
                .map(|r| r.host + (id - r.container))
        };
        Some((map(&self.uids, uid)?, map(&self.gids, gid)?))
    }

    /// Runs `f` in a thread of its own with the file system ids of the container's root (and all
    /// of root's capabilities): what it creates through idmapped mounts is the container root's.
    pub fn as_root<T: Send>(&self, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
        let (uid, gid) = self.root_ids();
        // File system ids are per thread: a thread of its own takes them and ends with them.
        std::thread::scope(|s| {
            s.spawn(|| -> io::Result<T> {
                // SAFETY: setfsgid/setfsuid change only this thread's credentials; they cannot fail
                // for root, and the thread ends when `f` returns.
                unsafe {
                    libc::setfsgid(gid);
                    libc::setfsuid(uid);
                }
                // Leaving fsuid 0 drops the file capabilities from the effective set: take them back.
                let mut caps = rustix::thread::capabilities(None)?;
                caps.effective = caps.permitted;
                rustix::thread::set_capabilities(None, caps)?;
                f()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("a thread working as the remapped root panicked")))
        })
    }
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

fn set_idmap(tree: &OwnedFd, userns: &OwnedFd) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_fd().as_raw_fd() as u64,
    };
    // SAFETY: mount_setattr reads `attr` (a live struct mount_attr of the size passed) and the
    // empty, NUL-terminated path; `tree` is an open mount tree.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A user namespace with the mappings: made by a child (`cat`, waiting on its stdin) that unshares
/// one before it execs, kept by its descriptor once the child is gone.
fn make_userns(uids: &[IdRange], gids: &[IdRange]) -> io::Result<OwnedFd> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new("cat");
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: the closure runs in the forked child before exec and makes one system call, which
    // is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWUSER).map_err(io::Error::from)
        });
    }
    let mut child = cmd.spawn()?;
    let result = (|| {
        let lines = |ranges: &[IdRange]| -> String {
            ranges
                .iter()
                .map(|r| format!("{} {} {}\n", r.container, r.host, r.size))
                .collect()
        };
        std::fs::write(format!("/proc/{}/uid_map", child.id()), lines(uids))?;
        std::fs::write(format!("/proc/{}/gid_map", child.id()), lines(gids))?;
        let ns = std::fs::File::open(format!("/proc/{}/ns/user", child.id()))?;
        Ok(OwnedFd::from(ns))
    })();
    drop(child.stdin.take());
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// Docker's `default`: a system user `dockremap` with a 65536-id range in /etc/subuid and
/// /etc/subgid, made with the system's own tools when missing.
fn ensure_default_user() -> anyhow::Result<()> {
    // Two daemons starting at once must not both add the user or a range.
    std::fs::create_dir_all("/run/lock")?;
    let lock = std::fs::File::create("/run/lock/berth-userns-remap.lock")
        .context("creating /run/lock/berth-userns-remap.lock")?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .context("locking /run/lock/berth-userns-remap.lock")?;
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    if lookup(&passwd, DEFAULT_USER).is_none() {
        run(Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/bin/false"])
            .arg(DEFAULT_USER))?;
    }
    let subuid = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
    let subgid = std::fs::read_to_string("/etc/subgid").unwrap_or_default();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let (_, uid) = lookup(&passwd, DEFAULT_USER).context("dockremap was not created")?;
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let gid = lookup(&groups, DEFAULT_USER).map(|(_, g)| g).unwrap_or(uid);
    if ranges(&subuid, DEFAULT_USER, uid).is_empty() || ranges(&subgid, DEFAULT_USER, gid).is_empty() {
        // usermod refuses -v/-w when the files do not exist yet.
        for file in ["/etc/subuid", "/etc/subgid"] {
            if !Path::new(file).exists() {
                std::fs::write(file, "").with_context(|| format!("creating {file}"))?;
            }
        }
        let start = free_range_start(&[&subuid, &subgid]);
        let range = format!("{start}-{}", start + SUBID_SIZE - 1);
        run(Command::new("usermod")
            .args(["--add-subuids", &range, "--add-subgids", &range])
            .arg(DEFAULT_USER))?;
    }
    Ok(())
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// An entry of /etc/passwd or /etc/group by name or number: its name and id.
fn lookup(file: &str, who: &str) -> Option<(String, u32)> {
    file.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (name == who || who.parse() == Ok(id)).then(|| (name.to_string(), id))
    })
}

/// The entries of /etc/subuid or /etc/subgid: who, first id, count (malformed lines skipped).
fn subid_entries(file: &str) -> impl Iterator<Item = (&str, u32, u32)> {
    file.lines().filter_map(|line| {
        let fields: Vec<&str> = line.trim().split(':').collect();
        let [who, start, count] = fields[..] else {
            return None;
        };
        Some((who, start.parse().ok()?, count.parse().ok()?))
    })
}

/// The ranges of /etc/subuid (or subgid) for `name` or its number `id`, numbered from container
/// id 0 in the file's order.
fn ranges(file: &str, name: &str, id: u32) -> Vec<IdRange> {
    let mut next = 0u32;
    let mut out: Vec<IdRange> = Vec::new();
    for (who, host, size) in subid_entries(file) {
        if who != name && who.parse() != Ok(id) {
            continue;
        }
        if size == 0 || out.iter().any(|r| r.host == host) {
            continue;
        }
        out.push(IdRange {
            container: next,
            host,
            size,
        });
        next = next.saturating_add(size);
    }
    out
}

/// The first block of `SUBID_SIZE` ids from `SUBID_START` that no entry of `files` overlaps.
fn free_range_start(files: &[&str]) -> u32 {
    let used: Vec<(u64, u64)> = files
        .iter()
        .flat_map(|f| subid_entries(f))
        .map(|(_, start, count)| (u64::from(start), u64::from(start) + u64::from(count)))
        .collect();
    let mut start = u64::from(SUBID_START);
    while let Some(&(_, end)) = used
        .iter()
        .find(|(s, e)| start < *e && *s < start + u64::from(SUBID_SIZE))
    {
        start = end;
    }
    start as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_ranges_by_name_or_id_in_file_order() {
        let subuid = "alice:100000:65536\n1001:300000:1000\nbob:200000:65536\nalice:500000:10\n";
        assert_eq!(
            ranges(subuid, "alice", 1000),
            [
                IdRange {
                    container: 0,
                    host: 100_000,
                    size: 65_536
                },
                IdRange {
                    container: 65_536,
                    host: 500_000,
                    size: 10
                },
            ]
        );
        assert_eq!(ranges(subuid, "carol", 1001)[0].host, 300_000);
        assert!(ranges(subuid, "dave", 7).is_empty());
    }

    #[test]
    fn looks_up_users_by_name_or_number() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\ndockremap:x:999:995::/home/dockremap:/bin/false\n";
        assert_eq!(lookup(passwd, "dockremap"), Some(("dockremap".into(), 999)));
        assert_eq!(lookup(passwd, "999"), Some(("dockremap".into(), 999)));
        assert_eq!(lookup(passwd, "nobody"), None);
    }

    #[test]
    fn a_new_range_avoids_the_ones_in_use() {
        assert_eq!(free_range_start(&["", ""]), 100_000);
        assert_eq!(
            free_range_start(&["a:100000:65536\n", "b:165536:65536\n"]),
            231_072
        );
        assert_eq!(free_range_start(&["a:1000:10\n", ""]), 100_000);
    }
}
