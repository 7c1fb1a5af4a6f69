//! Namespaces: which to create and which to join (from `linux.namespaces`), the pid-namespace switch
//! around fork, and bringing up `lo` in a new network namespace.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxIdMapping, LinuxNamespace, LinuxNamespaceType};
use rustix::fs::{Mode, OFlags};
use rustix::thread::{LinkNameSpaceType, UnshareFlags};

use crate::error::{Result, RuntimeError};

/// What to do about the pid namespace (it has to be arranged before the fork).
#[derive(Debug)]
pub(crate) enum PidNs {
    /// Share the caller's.
    Host,
    /// A new one: the container's init becomes its pid 1.
    New,
    /// Join an existing one.
    Join(OwnedFd),
}

/// The namespaces of a container, resolved from the spec before the fork.
#[derive(Debug)]
pub(crate) struct NamespacePlan {
    pub pid: PidNs,
    /// Joined (setns) in the child, in this order; never the pid namespace.
    pub join: Vec<(LinuxNamespaceType, OwnedFd)>,
    /// Created (unshare) in the child after joining; never CLONE_NEWPID or CLONE_NEWUSER.
    pub unshare: UnshareFlags,
    /// A new user namespace, made before every other new namespace so that it owns them.
    pub user: Option<UserNsPlan>,
}

/// A new user namespace: the id mappings the parent writes once the child has made it, as
/// `/proc/<pid>/uid_map` and `gid_map` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserNsPlan {
    pub uid_map: String,
    pub gid_map: String,
}

impl UserNsPlan {
    fn from_spec(uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> Result<Self> {
        let lines = |what: &str, maps: &[LinuxIdMapping]| -> Result<String> {
            if maps.is_empty() {
                return Err(RuntimeError::InvalidSpec(format!(
                    "a user namespace needs linux.{what}Mappings"
                )));
            }
            Ok(maps
                .iter()
                .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
                .collect())
        };
        Ok(UserNsPlan {
            uid_map: lines("uid", uids)?,
            gid_map: lines("gid", gids)?,
        })
    }

    /// Writes the mappings of the user namespace of `pid` (the child that made it).
    pub fn write_maps(&self, pid: i32) -> Result<()> {
        for (file, map) in [("uid_map", &self.uid_map), ("gid_map", &self.gid_map)] {
            let path = format!("/proc/{pid}/{file}");
            std::fs::write(&path, map)
                .map_err(|e| RuntimeError::io(format!("writing {file} {:?}", map.trim()), e))?;
        }
        Ok(())
    }
}

impl NamespacePlan {
    /// Resolves `linux.namespaces`; opens the `path` of every namespace to join. A new user
    /// namespace takes its mappings from `uids` and `gids`.
    pub fn from_spec(
        namespaces: &[LinuxNamespace],
        uids: &[LinuxIdMapping],
        gids: &[LinuxIdMapping],
    ) -> Result<Self> {
        let mut plan = NamespacePlan {
            pid: PidNs::Host,
            join: Vec::new(),
            unshare: UnshareFlags::empty(),
            user: None,
        };
        let mut seen = Vec::new();
        for ns in namespaces {
            let typ = ns.typ();
            if seen.contains(&typ) {
                return Err(RuntimeError::InvalidSpec(format!("namespace {typ} listed twice")));
            }
            seen.push(typ);
            match typ {
                LinuxNamespaceType::Time => {
                    return Err(RuntimeError::Unsupported(format!("{typ} namespaces")))
                }
                LinuxNamespaceType::User if ns.path().is_some() => {
                    return Err(RuntimeError::Unsupported(
                        "joining an existing user namespace".into(),
                    ))
                }
                LinuxNamespaceType::User => {
                    plan.user = Some(UserNsPlan::from_spec(uids, gids)?);
                    continue;
                }
                _ => {}
            }
            match ns.path() {
                Some(path) => {
                    let fd = open_ns(path)?;
                    if typ == LinuxNamespaceType::Pid {
                        plan.pid = PidNs::Join(fd);
                    } else {
                        plan.join.push((typ, fd));
                    }
                }
                None if typ == LinuxNamespaceType::Pid => plan.pid = PidNs::New,
                None => plan.unshare |= unshare_flag(typ),
            }
        }
        if plan.user.is_some() && matches!(plan.pid, PidNs::Join(_)) {
            // The init is forked inside the new user namespace, where a pid namespace of the
            // host's cannot be joined.
            return Err(RuntimeError::Unsupported(
                "a user namespace with an existing pid namespace".into(),
            ));
        }
        Ok(plan)
    }

    /// The namespaces of a running process, all to be joined (for `exec`).
    pub fn of_process(pid: i32) -> Result<Self> {
        let mut plan = NamespacePlan {
            pid: PidNs::Host,
            join: Vec::new(),
            unshare: UnshareFlags::empty(),
            user: None,
        };
        let own_pid_ns = std::fs::read_link("/proc/self/ns/pid").ok();
        for typ in [
            LinuxNamespaceType::Cgroup,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Mount,
        ] {
            let path = format!("/proc/{pid}/ns/{typ}");
            if typ == LinuxNamespaceType::Pid {
                // Joining our own pid namespace is harmless but pointless.
                if std::fs::read_link(&path).ok() != own_pid_ns {
                    plan.pid = PidNs::Join(open_ns(Path::new(&path))?);
                }
                continue;
            }
            plan.join.push((typ, open_ns(Path::new(&path))?));
        }
        // A container with its own user namespace: joined last (see `join_all`).
        let user = format!("/proc/{pid}/ns/user");
        if std::fs::read_link(&user).ok() != std::fs::read_link("/proc/self/ns/user").ok() {
            plan.join
                .push((LinuxNamespaceType::User, open_ns(Path::new(&user))?));
        }
        Ok(plan)
    }

    /// Does the container get (or join) a namespace of this type?
    pub fn has(&self, typ: LinuxNamespaceType) -> bool {
        if typ == LinuxNamespaceType::Pid {
            return !matches!(self.pid, PidNs::Host);
        }
        if typ == LinuxNamespaceType::User && self.user.is_some() {
            return true;
        }
        self.unshare.contains(unshare_flag(typ)) || self.join.iter().any(|(t, _)| *t == typ)
    }

    /// Does the container get a new namespace of this type?
    pub fn creates(&self, typ: LinuxNamespaceType) -> bool {
        if typ == LinuxNamespaceType::Pid {
            return matches!(self.pid, PidNs::New);
        }
        if typ == LinuxNamespaceType::User {
            return self.user.is_some();
        }
        self.unshare.contains(unshare_flag(typ))
    }

    /// In the child: joins the namespaces with a path, then creates the new ones.
    pub fn enter(&self) -> Result<()> {
        self.join_all()?;
        self.unshare_rest(UnshareFlags::empty())
    }

    /// Joins the namespaces with a path. The mount namespace comes after the others, since
    /// joining it changes the root directory; a user namespace comes last: the caller's
    /// privileges reach every namespace of a container it started, but once inside the
    /// container's user namespace, no longer the host-owned ones (a network namespace made by
    /// the daemon).
    pub fn join_all(&self) -> Result<()> {
        let mut order: Vec<&(LinuxNamespaceType, OwnedFd)> = self.join.iter().collect();
        order.sort_by_key(|(t, _)| match t {
            LinuxNamespaceType::User => 2,
            LinuxNamespaceType::Mount => 1,
            _ => 0,
        });
        for (typ, fd) in order {
            rustix::thread::move_into_link_name_space(fd.as_fd(), Some(link_type(*typ)))
                .map_err(|e| RuntimeError::io(format!("joining the {typ} namespace"), e))?;
        }
        Ok(())
    }

    /// Creates the new namespaces (other than the user namespace) except those in `later`.
    pub fn unshare_rest_but(&self, later: UnshareFlags) -> Result<()> {
        unshare(self.unshare - later)
    }

    /// Creates the new namespaces (other than the user namespace), plus `extra`.
    pub fn unshare_rest(&self, extra: UnshareFlags) -> Result<()> {
        unshare(self.unshare | extra)
    }
}

/// unshare(2) of namespaces, in the single-threaded child.
pub(crate) fn unshare(flags: UnshareFlags) -> Result<()> {
    if !flags.is_empty() {
        // SAFETY: namespace flags touch no file-descriptor table (never CLONE_FILES here), and the
        // child is single-threaded.
        unsafe { rustix::thread::unshare_unsafe(flags) }
            .map_err(|e| RuntimeError::io(format!("unshare({flags:?})"), e))?;
    }
    Ok(())
}

fn open_ns(path: &Path) -> Result<OwnedFd> {
    rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| RuntimeError::io(format!("opening namespace {}", path.display()), e))
}

fn unshare_flag(typ: LinuxNamespaceType) -> UnshareFlags {
    match typ {
        LinuxNamespaceType::Mount => UnshareFlags::NEWNS,
        LinuxNamespaceType::Cgroup => UnshareFlags::NEWCGROUP,
        LinuxNamespaceType::Uts => UnshareFlags::NEWUTS,
        LinuxNamespaceType::Ipc => UnshareFlags::NEWIPC,
        LinuxNamespaceType::User => UnshareFlags::NEWUSER,
        LinuxNamespaceType::Pid => UnshareFlags::NEWPID,
        LinuxNamespaceType::Network => UnshareFlags::NEWNET,
        LinuxNamespaceType::Time => UnshareFlags::NEWTIME,
    }
}

fn link_type(typ: LinuxNamespaceType) -> LinkNameSpaceType {
    match typ {
        LinuxNamespaceType::Mount => LinkNameSpaceType::Mount,
        LinuxNamespaceType::Cgroup => LinkNameSpaceType::ControlGroup,
        LinuxNamespaceType::Uts => LinkNameSpaceType::HostNameAndNISDomainName,
        LinuxNamespaceType::Ipc => LinkNameSpaceType::InterProcessCommunication,
        LinuxNamespaceType::User => LinkNameSpaceType::User,
        LinuxNamespaceType::Pid => LinkNameSpaceType::ProcessID,
        LinuxNamespaceType::Network => LinkNameSpaceType::Network,
        LinuxNamespaceType::Time => LinkNameSpaceType::Time,
    }
}

/// The caller's pid namespace for children, switched for one fork and switched back on drop.
///
/// `unshare(CLONE_NEWPID)` and `setns(CLONE_NEWPID)` only change where the caller's *next child* goes;
/// returning to the caller's own (active) pid namespace afterwards is always allowed.
pub(crate) struct PidNsSwitch {
    original: Option<OwnedFd>,
}

impl PidNsSwitch {
    pub fn enter(pid: &PidNs) -> Result<Self> {
        if matches!(pid, PidNs::Host) {
            return Ok(PidNsSwitch { original: None });
        }
        let original = open_ns(Path::new("/proc/thread-self/ns/pid"))?;
        match pid {
            PidNs::Host => {}
            PidNs::New => {
                // SAFETY: CLONE_NEWPID touches no file-descriptor table.
                unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWPID) }
                    .map_err(|e| RuntimeError::io("unshare(CLONE_NEWPID)", e))?;
            }
            PidNs::Join(fd) => {
                rustix::thread::move_into_link_name_space(fd.as_fd(), Some(LinkNameSpaceType::ProcessID))
                    .map_err(|e| RuntimeError::io("joining the pid namespace", e))?;
            }
        }
        Ok(PidNsSwitch {
            original: Some(original),
        })
    }
}

impl Drop for PidNsSwitch {
    fn drop(&mut self) {
        if let Some(fd) = self.original.take() {
            if let Err(e) =
                rustix::thread::move_into_link_name_space(fd.as_fd(), Some(LinkNameSpaceType::ProcessID))
            {
                tracing::error!(error = %e, "could not return to our own pid namespace");
            }
        }
    }
}

/// Brings up the loopback interface of the current (new) network namespace.
pub(crate) fn loopback_up() -> Result<()> {
    use rustix::net::{AddressFamily, SocketType};
    let sock = rustix::net::socket(AddressFamily::INET, SocketType::DGRAM, None)
        .map_err(|e| RuntimeError::io("socket for lo", e))?;
    let mut ifr = libc::ifreq {
        ifr_name: [0; libc::IFNAMSIZ],
        ifr_ifru: libc::__c_anonymous_ifr_ifru { ifru_flags: 0 },
    };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo") {
        *dst = *src as libc::c_char;
    }
    let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
    // SAFETY: SIOCGIFFLAGS reads and writes a `struct ifreq`, which `ifr` is; `fd` is an open socket.
    if unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr) } < 0 {
        return Err(RuntimeError::io(
            "SIOCGIFFLAGS lo",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: SIOCGIFFLAGS filled in the `ifru_flags` member of the union.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    ifr.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: as above; SIOCSIFFLAGS only reads `ifr`.
    if unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr) } < 0 {
        return Err(RuntimeError::io(
            "SIOCSIFFLAGS lo up",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}
