//! The parent side: forking a container's init ([`launch`], then [`Launched::start`]) or a process inside
//! a running container ([`exec_in`]).
//!
//! The caller must be single-threaded (Berth's per-container shim is): the forked child runs ordinary
//! Rust code, which is only safe when no other thread can hold a lock at fork time.

use std::os::fd::OwnedFd;
use std::path::Path;

use oci_spec::runtime::{LinuxSeccomp, Process, Spec};
use rustix::process::{Pid, Signal, WaitOptions};

use crate::cgroups::CgroupPath;
use crate::error::{Result, RuntimeError};
use crate::init::{self, InitPlan, ProcessPlan};
use crate::namespaces::{NamespacePlan, PidNsSwitch, UserNsPlan};
use crate::sync::{self, ChildMessage, SyncSocket};

/// The container process's standard streams.
#[derive(Debug)]
pub struct Stdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

impl Stdio {
    /// All three streams on one terminal (a pty slave from [`crate::open_pty`]).
    pub fn from_pty(slave: OwnedFd) -> Result<Stdio> {
        let dup = |fd: &OwnedFd| {
            fd.try_clone()
                .map_err(|e| RuntimeError::io("duplicating the pty slave", e))
        };
        Ok(Stdio {
            stdin: dup(&slave)?,
            stdout: dup(&slave)?,
            stderr: slave,
        })
    }
}

/// How to launch a container.
pub struct LaunchOptions<'a> {
    /// The bundle directory; a relative `root.path` is relative to it.
    pub bundle: &'a Path,
    /// The container's OCI runtime config.
    pub spec: &'a Spec,
    /// The init process's stdin, stdout and stderr (closed in the caller once launched); `None`
    /// with `console`.
    pub stdio: Option<Stdio>,
    /// Give the process a terminal, as runc does: a pty made in the container's own devpts
    /// (`/dev/pts/0`), its controlling terminal, bound to `/dev/console`. The caller gets the
    /// master from [`Launched::take_pty_master`].
    pub console: bool,
    /// Join this cgroup (made by [`crate::Cgroups::create`]) before anything else runs.
    pub cgroup: Option<&'a CgroupPath>,
}

/// How to run a process inside a running container (`docker exec`).
pub struct ExecOptions<'a> {
    /// Host pid of a process of the container (normally its init).
    pub pid: i32,
    /// What to run, as whom, with which capabilities and limits.
    pub process: &'a Process,
    /// `None` with `console`.
    pub stdio: Option<Stdio>,
    /// Give the process a terminal made in the container's devpts (its controlling terminal);
    /// the master comes back in [`Execd::pty_master`].
    pub console: bool,
    /// The container's cgroup, joined before the process runs.
    pub cgroup: Option<&'a CgroupPath>,
    /// The container's seccomp profile (`linux.seccomp` of its config), applied to this process too.
    pub seccomp: Option<&'a LinuxSeccomp>,
}

/// A container init that is set up and waits to exec its command.
#[derive(Debug)]
pub struct Launched {
    pid: i32,
    sock: Option<SyncSocket>,
    pty_master: Option<OwnedFd>,
}

/// A process started by [`exec_in`].
#[derive(Debug)]
pub struct Execd {
    /// Its pid on the host (the caller's child).
    pub pid: i32,
    /// The master of its terminal, when it was given one.
    pub pty_master: Option<OwnedFd>,
}

/// Forks the container's init and returns once it is set up (namespaces, mounts, pivot_root, devices,
/// limits) and waiting to exec; it execs only after [`Launched::start`], so the caller can attach to its
/// output first (like `runc create` and `runc start`).
///
/// The init is the caller's child: the caller reaps it. Setup errors are returned here, and the child
/// is then already reaped.
pub fn launch(opts: LaunchOptions<'_>) -> Result<Launched> {
    let mut plan = InitPlan::new(&opts)?;
    let (parent, child) = sync::channel()?;
    let userns = plan.ns.user.clone();
    let pid = {
        // With a user namespace the child makes the pid namespace itself, inside it.
        let _pidns = match userns {
            None => Some(PidNsSwitch::enter(&plan.ns.pid)?),
            Some(_) => None,
        };
        // SAFETY: the caller is single-threaded (documented requirement), so the child inherits no lock
        // held by another thread and may run ordinary Rust code until it execs or _exits.
        match unsafe { libc::fork() } {
            -1 => return Err(RuntimeError::io("fork", std::io::Error::last_os_error())),
            0 => {
                drop(parent);
                init::container_main(&mut plan, opts.stdio.as_ref(), &child)
            }
            pid => pid,
        }
    };
    drop(child);
    drop(opts.stdio);
    // The child sets up its namespaces and first mounts while its cgroup is joined: moving a
    // process between cgroups can wait for an RCU grace period (milliseconds).
    parent.send_go();
    if let Some(cgroup) = opts.cgroup {
        if let Err(e) = cgroup.add_process(pid) {
            kill_and_reap(pid);
            return Err(e);
        }
    }
    parent.send_joined();
    let pid = match &userns {
        None => pid,
        Some(userns) => match map_user_namespace(&parent, pid, userns) {
            Ok(init) => init,
            Err(e) => {
                kill_and_reap(pid);
                return Err(e);
            }
        },
    };
    let (message, pty_master) = next_message(&parent, opts.console);
    match message {
        ChildMessage::Ready => Ok(Launched {
            pid,
            sock: Some(parent),
            pty_master,
        }),
        ChildMessage::Failed(e) => {
            kill_and_reap(pid);
            Err(e)
        }
        ChildMessage::Closed => {
            kill_and_reap(pid);
            Err(RuntimeError::Init(
                "the container init exited during setup".into(),
            ))
        }
        ChildMessage::Pty(_) | ChildMessage::Userns | ChildMessage::Pid(_) => {
            kill_and_reap(pid);
            Err(RuntimeError::Init(
                "unexpected message from the container init".into(),
            ))
        }
    }
}

/// The parent's part in making a user namespace: writes the mappings once `child` has made it,
/// then reaps `child` once it has forked the init in its namespaces; returns the init's pid.
fn map_user_namespace(parent: &SyncSocket, child: i32, userns: &UserNsPlan) -> Result<i32> {
    let unexpected = |what: &str| RuntimeError::Init(format!("container init: {what}"));
    match parent.read_child() {
        ChildMessage::Userns => {}
        ChildMessage::Failed(e) => return Err(e),
        _ => return Err(unexpected("no user namespace to map")),
    }
    userns.write_maps(child)?;
    parent.send_mapped();
    let init = match parent.read_child() {
        ChildMessage::Pid(init) => init,
        ChildMessage::Failed(e) => return Err(e),
        _ => return Err(unexpected("no init forked")),
    };
    let (_, status) = rustix::process::waitpid(Pid::from_raw(child), WaitOptions::empty())
        .map_err(|e| RuntimeError::io("reaping the init's parent", e))?
        .ok_or_else(|| unexpected("lost the init's parent"))?;
    if status.exit_status() != Some(0) {
        kill_and_reap(init);
        return Err(unexpected("the init's parent failed"));
    }
    Ok(init)
}

impl Launched {
    /// The init's pid on the host (the caller's child).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The master of the container's terminal (launched with `console`), once.
    pub fn take_pty_master(&mut self) -> Option<OwnedFd> {
        self.pty_master.take()
    }

    /// Lets the init exec the container's command. An error (the command is not found, not executable,
    /// ...) comes with the message Docker prints and [`RuntimeError::exit_code`] 127 or 126; the child
    /// has then exited and been reaped.
    pub fn start(mut self) -> Result<()> {
        let sock = self.sock.take().expect("start is called once");
        sock.send_start();
        match sock.read_child() {
            ChildMessage::Closed => Ok(()),
            ChildMessage::Failed(e) => {
                kill_and_reap(self.pid);
                Err(e)
            }
            ChildMessage::Ready | ChildMessage::Pty(_) | ChildMessage::Userns | ChildMessage::Pid(_) => {
                kill_and_reap(self.pid);
                Err(RuntimeError::Init(
                    "unexpected message from the container init".into(),
                ))
            }
        }
    }
}

impl Drop for Launched {
    /// A container that is never started is killed and reaped.
    fn drop(&mut self) {
        if self.sock.take().is_some() {
            kill_and_reap(self.pid);
        }
    }
}

/// Runs a process in the namespaces (mnt, uts, ipc, net, pid, cgroup) and cgroup of the running
/// container with host pid `opts.pid`, applying the process's user, capabilities, no_new_privs, rlimits,
/// the container's seccomp profile, env and cwd (`docker exec`). Returns the new process's host pid once
/// it has exec'd; it is the caller's child.
pub fn exec_in(opts: ExecOptions<'_>) -> Result<Execd> {
    let ns = NamespacePlan::of_process(opts.pid)?;
    let mut plan = ProcessPlan::new(opts.process, opts.seccomp, opts.console)?;
    let (parent, child) = sync::channel()?;
    let pid = {
        let _pidns = PidNsSwitch::enter(&ns.pid)?;
        // SAFETY: as in `launch`: the caller is single-threaded.
        match unsafe { libc::fork() } {
            -1 => return Err(RuntimeError::io("fork", std::io::Error::last_os_error())),
            0 => {
                drop(parent);
                init::exec_main(&ns, &mut plan, opts.stdio.as_ref(), &child)
            }
            pid => pid,
        }
    };
    drop(child);
    drop(opts.stdio);
    if let Some(cgroup) = opts.cgroup {
        if let Err(e) = cgroup.add_process(pid) {
            kill_and_reap(pid);
            return Err(e);
        }
    }
    parent.send_go();
    let (message, pty_master) = next_message(&parent, opts.console);
    match message {
        ChildMessage::Closed => Ok(Execd { pid, pty_master }),
        ChildMessage::Failed(e) => {
            kill_and_reap(pid);
            Err(e)
        }
        ChildMessage::Ready | ChildMessage::Pty(_) | ChildMessage::Userns | ChildMessage::Pid(_) => {
            kill_and_reap(pid);
            Err(RuntimeError::Init(
                "unexpected message from the exec process".into(),
            ))
        }
    }
}

/// The child's next message after the terminal it may send first (with `console`).
fn next_message(parent: &SyncSocket, console: bool) -> (ChildMessage, Option<OwnedFd>) {
    let mut pty_master = None;
    loop {
        match parent.read_child() {
            ChildMessage::Pty(master) if console && pty_master.is_none() => pty_master = Some(master),
            other => return (other, pty_master),
        }
    }
}

fn kill_and_reap(pid: i32) {
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, Signal::KILL);
        let _ = rustix::process::waitpid(Some(pid), WaitOptions::empty());
    }
}
