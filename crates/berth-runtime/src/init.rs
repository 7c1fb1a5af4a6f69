//! The child side: what a freshly forked container init (or `exec` process) does, step by step, until
//! `execve`. Everything it needs is prepared by the parent in an [`InitPlan`] before the fork; the caller is
//! single-threaded, so the child may still allocate.

use std::convert::Infallible;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, LinuxSeccomp, PosixRlimit, Process};
use rustix::fs::{Mode, OFlags};
use rustix::thread::UnshareFlags;

use crate::capabilities::CapPlan;
use crate::devices::{self, DeviceNode};
use crate::error::{Result, RuntimeError};
use crate::exec::{go_error, ExecPlan};
use crate::mounts::MountPlan;
use crate::namespaces::{loopback_up, unshare, NamespacePlan};
use crate::process::{LaunchOptions, Stdio};
use crate::seccomp::SeccompFilter;
use crate::sync::SyncSocket;
use crate::user::{home_dir, UserPlan};
use crate::{rlimits, sysctl};

/// The parts of `process` every process of a container needs (init and exec alike).
#[derive(Debug)]
pub(crate) struct ProcessPlan {
    pub exec: ExecPlan,
    pub cwd: PathBuf,
    pub user: UserPlan,
    pub caps: Option<CapPlan>,
    pub no_new_privs: bool,
    pub seccomp: Option<SeccompFilter>,
    pub rlimits: Vec<PosixRlimit>,
    pub oom_score_adj: Option<i32>,
    pub console: bool,
}

impl ProcessPlan {
    pub fn new(process: &Process, seccomp: Option<&LinuxSeccomp>, console: bool) -> Result<Self> {
        let cwd = process.cwd().clone();
        if !cwd.is_absolute() {
            return Err(RuntimeError::InvalidSpec(format!(
                "process.cwd {} is not absolute",
                cwd.display()
            )));
        }
        Ok(ProcessPlan {
            exec: ExecPlan::from_process(process)?,
            cwd,
            user: UserPlan::from_spec(process.user()),
            caps: CapPlan::from_spec(process.capabilities().as_ref()),
            no_new_privs: process.no_new_privileges().unwrap_or(false),
            seccomp: seccomp.map(SeccompFilter::compile).transpose()?,
            rlimits: process.rlimits().clone().unwrap_or_default(),
            oom_score_adj: process.oom_score_adj(),
            console,
        })
    }
}

/// Everything the container's init does, resolved before the fork.
#[derive(Debug)]
pub(crate) struct InitPlan {
    pub ns: NamespacePlan,
    pub mounts: MountPlan,
    pub devices: Vec<DeviceNode>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub sysctl: Vec<(String, String)>,
    pub process: ProcessPlan,
}

impl InitPlan {
    pub fn new(opts: &LaunchOptions<'_>) -> Result<Self> {
        let spec = opts.spec;
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| RuntimeError::InvalidSpec("no process in config".into()))?;
        let linux = spec.linux().as_ref();
        let ns = NamespacePlan::from_spec(
            linux.and_then(|l| l.namespaces().as_deref()).unwrap_or(&[]),
            linux.and_then(|l| l.uid_mappings().as_deref()).unwrap_or(&[]),
            linux.and_then(|l| l.gid_mappings().as_deref()).unwrap_or(&[]),
        )?;
        if !ns.creates(LinuxNamespaceType::Mount) {
            return Err(RuntimeError::Unsupported(
                "a container without a new mount namespace".into(),
            ));
        }
        let hostname = spec.hostname().clone().filter(|h| !h.is_empty());
        let domainname = spec.domainname().clone().filter(|h| !h.is_empty());
        if (hostname.is_some() || domainname.is_some()) && !ns.has(LinuxNamespaceType::Uts) {
            return Err(RuntimeError::InvalidSpec(
                "setting the hostname needs a uts namespace".into(),
            ));
        }
        let mounts = MountPlan::from_spec(
            opts.bundle,
            spec,
            opts.cgroup,
            ns.creates(LinuxNamespaceType::Cgroup),
        )?;
        let devices = devices::plan(linux.and_then(|l| l.devices().as_deref()).unwrap_or(&[]))?;
        let sysctl = sysctl::plan(linux.and_then(|l| l.sysctl().as_ref()), &ns)?;
        let seccomp = linux.and_then(|l| l.seccomp().as_ref());
        let process = ProcessPlan::new(process, seccomp, opts.console)?;
        Ok(InitPlan {
            ns,
            mounts,
            devices,
            hostname,
            domainname,
            sysctl,
            process,
        })
    }
}

/// Reports the child's error (or panic) to the parent and exits; never returns.
fn finish_child(sock: &SyncSocket, outcome: std::thread::Result<Result<Infallible>>) -> ! {
    let err = match outcome {
        Ok(Ok(never)) => match never {},
        Ok(Err(e)) => e,
        Err(_) => RuntimeError::Init("the container init panicked".into()),
    };
    sock.send_error(&err);
    // SAFETY: _exit ends the forked child at once, without running the parent's atexit handlers or
    // flushing buffers that belong to the parent.
    unsafe { libc::_exit(1) }
}

/// Entry point of the forked container init.
pub(crate) fn container_main(plan: &mut InitPlan, stdio: Option<&Stdio>, sock: &SyncSocket) -> ! {
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| run_container(plan, stdio, sock)));
    finish_child(sock, outcome)
}

/// Entry point of a forked `exec` process.
pub(crate) fn exec_main(
    ns: &NamespacePlan,
    plan: &mut ProcessPlan,
    stdio: Option<&Stdio>,
    sock: &SyncSocket,
) -> ! {
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| run_exec(ns, plan, stdio, sock)));
    finish_child(sock, outcome)
}

fn run_container(plan: &mut InitPlan, stdio: Option<&Stdio>, sock: &SyncSocket) -> Result<Infallible> {
    reset_signals()?;
    sock.wait_go()?;
    if let Some(stdio) = stdio {
        setup_stdio(stdio, false)?;
    }
    // Before the namespaces, as for exec: inside a user namespace raising a limit or lowering the
    // OOM score is no longer allowed.
    set_oom_score_adj(plan.process.oom_score_adj)?;
    rlimits::apply(&plan.process.rlimits)?;
    let cgroupns = plan.ns.creates(LinuxNamespaceType::Cgroup);
    if plan.ns.user.is_some() {
        // The init is forked into the cgroup namespace: in the cgroup first.
        sock.wait_joined()?;
        enter_user_namespace(plan, sock)?;
    } else {
        plan.ns.join_all()?;
        plan.ns.unshare_rest_but(UnshareFlags::NEWCGROUP)?;
    }
    if plan.ns.creates(LinuxNamespaceType::Network) {
        loopback_up()?;
    }
    if let Some(name) = &plan.hostname {
        rustix::system::sethostname(name.as_bytes()).map_err(|e| RuntimeError::io("sethostname", e))?;
    }
    if let Some(name) = &plan.domainname {
        rustix::system::setdomainname(name.as_bytes()).map_err(|e| RuntimeError::io("setdomainname", e))?;
    }

    // A cgroup namespace is rooted at the cgroup its creator is in: join first.
    let userns = plan.ns.user.is_some();
    let root = plan.mounts.mount_all(&mut || {
        if !userns {
            sock.wait_joined()?;
            if cgroupns {
                unshare(UnshareFlags::NEWCGROUP)?;
            }
        }
        Ok(())
    })?;
    if plan.process.console {
        // The terminal is made in the container's own devpts, so that it is /dev/pts/0 there.
        let ptmx = root
            .resolve(Path::new("/dev/pts/ptmx"))
            .map_err(|e| RuntimeError::io("a terminal needs a devpts at /dev/pts", e))?;
        setup_stdio(&make_terminal(&ptmx, sock)?, true)?;
    }
    devices::create(&root, &plan.devices, plan.process.console)?;
    // Docker creates a missing working directory.
    root.mkdir_all(&plan.process.cwd, 0o755)?;
    plan.mounts.pivot(&root)?;
    drop(root);
    sysctl::apply(&plan.sysctl)?;
    plan.mounts.protect_paths()?;
    plan.mounts.finish()?;

    let home = home_dir(plan.process.user.uid);
    plan.process.exec.set_default_env("HOME", &home);
    sock.send_ready()?;
    become_process(&plan.process, sock, true)
}

fn run_exec(
    ns: &NamespacePlan,
    plan: &mut ProcessPlan,
    stdio: Option<&Stdio>,
    sock: &SyncSocket,
) -> Result<Infallible> {
    sock.wait_go()?;
    if let Some(stdio) = stdio {
        setup_stdio(stdio, false)?;
    }
    // Before the namespaces: inside a user namespace, raising a limit or lowering the OOM score
    // is no longer allowed.
    set_oom_score_adj(plan.oom_score_adj)?;
    rlimits::apply(&plan.rlimits)?;
    ns.enter()?;
    if plan.console {
        // In the container's mount namespace now: its devpts.
        let ptmx = rustix::fs::open("/dev/pts/ptmx", OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| RuntimeError::io("a terminal needs a devpts at /dev/pts", e))?;
        setup_stdio(&make_terminal(&ptmx, sock)?, true)?;
    }
    let home = home_dir(plan.user.uid);
    plan.exec.set_default_env("HOME", &home);
    become_process(plan, sock, false)
}

/// For a container with its own user namespace: joins the namespaces with a path while still
/// privileged on the host, makes the user namespace and has the parent map it, becomes its root, makes the other namespaces (owned by
/// it), and forks the container's init as the parent's child. Returns in that init; this process
/// exits once the parent knows the init's pid.
fn enter_user_namespace(plan: &InitPlan, sock: &SyncSocket) -> Result<()> {
    use rustix::fs::{Gid, Uid};
    plan.ns.join_all()?;
    unshare(UnshareFlags::NEWUSER)?;
    sock.request_mapping()?;
    rustix::thread::set_thread_groups(&[]).map_err(|e| RuntimeError::io("setgroups", e))?;
    rustix::thread::set_thread_res_gid(Gid::ROOT, Gid::ROOT, Gid::ROOT)
        .map_err(|e| RuntimeError::io("setgid 0 in the user namespace (is gid 0 mapped?)", e))?;
    rustix::thread::set_thread_res_uid(Uid::ROOT, Uid::ROOT, Uid::ROOT)
        .map_err(|e| RuntimeError::io("setuid 0 in the user namespace (is uid 0 mapped?)", e))?;
    // The pid namespace too: the init is this process's next child, its pid 1.
    plan.ns.unshare_rest(UnshareFlags::NEWPID)?;
    // SAFETY: a raw clone without CLONE_VM is a fork: the child gets a copy of this
    // single-threaded process and runs on. CLONE_PARENT makes it the caller's child, so that the
    // caller (the shim) reaps the init as with a plain fork.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match pid {
        -1 => Err(RuntimeError::io(
            "forking the init in its namespaces",
            std::io::Error::last_os_error(),
        )),
        0 => Ok(()),
        pid => {
            let sent = sock.send_pid(pid as i32);
            // SAFETY: ends this intermediate process at once; the init carries on.
            unsafe { libc::_exit(if sent.is_ok() { 0 } else { 1 }) }
        }
    }
}

/// The last steps, shared by init and exec: seccomp, capabilities, user, no_new_privs, cwd, and exec
/// (after the parent's `Start` when `wait_start`).
fn become_process(plan: &ProcessPlan, sock: &SyncSocket, wait_start: bool) -> Result<Infallible> {
    plan.user.apply_umask();
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it while we still have it.
    if let (Some(filter), false) = (&plan.seccomp, plan.no_new_privs) {
        filter.load()?;
    }
    if let Some(caps) = &plan.caps {
        caps.drop_bounding()?;
    }
    rustix::thread::set_keep_capabilities(true).map_err(|e| RuntimeError::io("PR_SET_KEEPCAPS", e))?;
    plan.user.switch()?;
    rustix::thread::set_keep_capabilities(false).map_err(|e| RuntimeError::io("PR_SET_KEEPCAPS", e))?;
    if let Some(caps) = &plan.caps {
        caps.apply()?;
    }
    if plan.no_new_privs {
        rustix::thread::set_no_new_privs(true).map_err(|e| RuntimeError::io("PR_SET_NO_NEW_PRIVS", e))?;
        if let Some(filter) = &plan.seccomp {
            filter.load()?;
        }
    }
    rustix::process::chdir(&plan.cwd).map_err(|e| {
        RuntimeError::Init(format!(
            "chdir to cwd ({:?}) set in config.json failed: {}",
            plan.cwd.display().to_string(),
            go_error(e)
        ))
    })?;
    let path = plan.exec.lookup()?;
    if wait_start {
        sock.wait_start()?;
    }
    Err(plan.exec.exec(&path))
}

/// Gives the container's process default signal dispositions and an empty signal mask: ignored signals
/// stay ignored across execve, and the caller may ignore some (Rust programs ignore SIGPIPE) or block
/// others (for a signalfd).
fn reset_signals() -> Result<()> {
    for sig in 1..=64 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            set_default_disposition(sig);
        }
    }
    // SAFETY: `empty` is an initialised signal set that outlives the call; the old mask is not wanted.
    let rc = unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(RuntimeError::io("sigprocmask", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The kernel's `struct sigaction` (x86_64, aarch64), for rt_sigaction without glibc, which refuses the
/// two signals it reserves (32 and 33) even when a parent left them ignored.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[repr(C)]
struct KernelSigaction {
    handler: libc::c_ulong,
    flags: libc::c_ulong,
    restorer: libc::c_ulong,
    mask: u64,
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn set_default_disposition(sig: i32) {
    let act = KernelSigaction {
        handler: libc::SIG_DFL as libc::c_ulong,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: `act` is a valid kernel sigaction that outlives the call (8 is the kernel's sigset size);
    // SIG_DFL installs no handler, so no code of ours runs in signal context. Nothing in this process
    // needs glibc's internal signals any more: it only makes raw system calls until it execs.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            &act as *const KernelSigaction,
            std::ptr::null::<u8>(),
            8usize,
        )
    };
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn set_default_disposition(sig: i32) {
    // SAFETY: installing SIG_DFL runs no code of ours in signal context.
    unsafe { libc::signal(sig, libc::SIG_DFL) };
}

/// Opens a new pty from the devpts `ptmx` (an `O_PATH` descriptor of it), hands the master to the
/// parent, and returns the slave as stdio.
fn make_terminal(ptmx: &OwnedFd, sock: &SyncSocket) -> Result<Stdio> {
    let flags = OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC;
    let master = rustix::fs::open(crate::root_dir::fd_path(ptmx), flags, Mode::empty())
        .map_err(|e| RuntimeError::io("opening /dev/pts/ptmx", e))?;
    rustix::pty::unlockpt(&master).map_err(|e| RuntimeError::io("unlockpt", e))?;
    let pt_flags =
        rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY | rustix::pty::OpenptFlags::CLOEXEC;
    let slave = rustix::pty::ioctl_tiocgptpeer(&master, pt_flags)
        .map_err(|e| RuntimeError::io("opening the pty slave", e))?;
    sock.send_pty(&master)?;
    Stdio::from_pty(slave)
}

/// Makes the given descriptors the child's 0, 1 and 2, starts a new session and, for a terminal, makes
/// it the controlling one. Every other descriptor is marked close-on-exec.
fn setup_stdio(stdio: &Stdio, console: bool) -> Result<()> {
    let err = |e| RuntimeError::io("setting up stdio", e);
    // Move them above 2 first, so that dup2 onto 0..2 cannot clobber one that is still needed.
    let stdin = rustix::io::fcntl_dupfd_cloexec(stdio.stdin.as_fd(), 3).map_err(err)?;
    let stdout = rustix::io::fcntl_dupfd_cloexec(stdio.stdout.as_fd(), 3).map_err(err)?;
    let stderr = rustix::io::fcntl_dupfd_cloexec(stdio.stderr.as_fd(), 3).map_err(err)?;
    rustix::stdio::dup2_stdin(&stdin).map_err(err)?;
    rustix::stdio::dup2_stdout(&stdout).map_err(err)?;
    rustix::stdio::dup2_stderr(&stderr).map_err(err)?;
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC closes nothing; it only sets FD_CLOEXEC on every
    // descriptor from 3 up, so no descriptor owned elsewhere in this process becomes invalid.
    if unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) } != 0 {
        return Err(RuntimeError::io("close_range", std::io::Error::last_os_error()));
    }
    rustix::process::setsid().map_err(|e| RuntimeError::io("setsid", e))?;
    if console {
        rustix::process::ioctl_tiocsctty(rustix::stdio::stdin())
            .map_err(|e| RuntimeError::io("making the pty the controlling terminal", e))?;
    }
    Ok(())
}

/// Writes `/proc/self/oom_score_adj`. Lowering it needs CAP_SYS_RESOURCE; without it the value stays
/// what the caller has, as if the caller's value had been asked for.
fn set_oom_score_adj(value: Option<i32>) -> Result<()> {
    let Some(value) = value else { return Ok(()) };
    let path = Path::new("/proc/self/oom_score_adj");
    match std::fs::write(path, value.to_string()) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) => Ok(()),
        Err(e) => Err(RuntimeError::io(format!("oom_score_adj {value}"), e)),
    }
}
