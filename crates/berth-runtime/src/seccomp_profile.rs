//! Docker's default seccomp profile (moby `profiles/seccomp/default.json`), resolved the way the Docker
//! daemon resolves it for one container: the capability-gated rules are included or left out according
//! to the container's capabilities, and the architecture rules according to this machine.
//!
//! The default action is `SCMP_ACT_ERRNO` with EPERM; the rules below are an allowlist.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder, LinuxSeccompOperator,
    LinuxSyscall,
};

/// Always allowed.
const ALLOWED: &str = "\
accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32 clock_adjtime \
clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64 clock_nanosleep \
clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3 epoll_create \
epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 \
execve execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir \
fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork \
fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex \
futex_time64 futex_waitv futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 \
getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority \
getrandom getresgid getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid \
getsockname getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch \
inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents \
io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit io_uring_enter io_uring_register \
io_uring_setup ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32 \
lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 \
madvise membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap \
mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend \
mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock munlockall munmap \
name_to_handle_at nanosleep newfstatat _newselect open openat openat2 pause pidfd_open pidfd_send_signal \
pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 \
prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink \
readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr rename \
renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo \
rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity \
sched_getattr sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler \
sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam \
sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop semtimedop_time64 send \
sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32 \
setgroups setgroups32 setitimer setpgid setpriority setregid setregid32 setresgid setresgid32 setresuid \
setresuid32 setreuid setreuid32 setrlimit set_robust_list setsid setsockopt set_thread_area \
set_tid_address setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd \
signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statx symlink \
symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete timer_getoverrun \
timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create timerfd_gettime \
timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask \
uname unlink unlinkat utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write \
writev";

/// Allowed on kernels >= 4.8 (every kernel this runtime supports: it needs openat2, Linux 5.6).
const ALLOWED_SINCE_4_8: &str = "process_vm_readv process_vm_writev ptrace";

/// Allowed when the container has the capability.
const BY_CAPABILITY: &[(&str, &str)] = &[
    ("CAP_DAC_READ_SEARCH", "open_by_handle_at"),
    (
        "CAP_SYS_ADMIN",
        "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount mount_setattr \
         move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname sethostname setns syslog \
         umount umount2 unshare",
    ),
    ("CAP_SYS_BOOT", "reboot"),
    ("CAP_SYS_CHROOT", "chroot"),
    ("CAP_SYS_MODULE", "delete_module init_module finit_module"),
    ("CAP_SYS_PACCT", "acct"),
    (
        "CAP_SYS_PTRACE",
        "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace",
    ),
    ("CAP_SYS_RAWIO", "iopl ioperm"),
    ("CAP_SYS_TIME", "settimeofday stime clock_settime clock_settime64"),
    ("CAP_SYS_TTY_CONFIG", "vhangup"),
    (
        "CAP_SYS_NICE",
        "get_mempolicy mbind set_mempolicy set_mempolicy_home_node",
    ),
    ("CAP_SYSLOG", "syslog"),
    ("CAP_BPF", "bpf"),
    ("CAP_PERFMON", "perf_event_open"),
];

/// Allowed on this machine's architecture family.
#[cfg(target_arch = "x86_64")]
const ALLOWED_FOR_ARCH: &str = "arch_prctl modify_ldt";
#[cfg(target_arch = "aarch64")]
const ALLOWED_FOR_ARCH: &str =
    "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls";
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const ALLOWED_FOR_ARCH: &str = "";

/// The personalities a container may switch to: PER_LINUX, UNAME26, PER_LINUX32, PER_LINUX32|UNAME26,
/// and 0xffffffff (query).
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// `clone` flags that create namespaces (CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID |
/// NEWNET): refused without CAP_SYS_ADMIN.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

const AF_VSOCK: u64 = 40;
const ENOSYS: u32 = 38;

fn architectures() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else {
        vec![Arch::ScmpArchNative]
    }
}

fn names(list: &str) -> Vec<String> {
    list.split_whitespace().map(str::to_string).collect()
}

fn rule(
    names: Vec<String>,
    action: LinuxSeccompAction,
    errno: Option<u32>,
    args: Vec<LinuxSeccompArg>,
) -> LinuxSyscall {
    let mut r = LinuxSyscall::default();
    r.set_names(names);
    r.set_action(action);
    r.set_errno_ret(errno);
    r.set_args(if args.is_empty() { None } else { Some(args) });
    r
}

fn arg(index: usize, op: LinuxSeccompOperator, value: u64, value_two: Option<u64>) -> LinuxSeccompArg {
    let mut builder = LinuxSeccompArgBuilder::default().index(index).op(op).value(value);
    if let Some(two) = value_two {
        builder = builder.value_two(two);
    }
    builder.build().expect("every field of a seccomp arg is set")
}

/// Docker's default profile for a container with the default capabilities
/// ([`crate::default_docker_capabilities`]).
pub fn default_docker_seccomp() -> LinuxSeccomp {
    docker_seccomp_for_capabilities(&crate::defaults::default_docker_capabilities())
}

/// Docker's default profile for a container with `capabilities` (names like `CAP_SYS_ADMIN`): what
/// `docker run --cap-add ...` gets.
pub fn docker_seccomp_for_capabilities<S: AsRef<str>>(capabilities: &[S]) -> LinuxSeccomp {
    let has = |cap: &str| capabilities.iter().any(|c| c.as_ref().eq_ignore_ascii_case(cap));
    let allow = LinuxSeccompAction::ScmpActAllow;
    let mut rules = vec![rule(names(ALLOWED), allow, None, vec![])];
    rules.push(rule(names(ALLOWED_SINCE_4_8), allow, None, vec![]));
    rules.push(rule(
        names("socket"),
        allow,
        None,
        vec![arg(0, LinuxSeccompOperator::ScmpCmpNe, AF_VSOCK, None)],
    ));
    for p in PERSONALITIES {
        rules.push(rule(
            names("personality"),
            allow,
            None,
            vec![arg(0, LinuxSeccompOperator::ScmpCmpEq, p, None)],
        ));
    }
    if !ALLOWED_FOR_ARCH.is_empty() {
        rules.push(rule(names(ALLOWED_FOR_ARCH), allow, None, vec![]));
    }
    for (cap, list) in BY_CAPABILITY {
        if has(cap) {
            rules.push(rule(names(list), allow, None, vec![]));
        }
    }
    if !has("CAP_SYS_ADMIN") {
        // clone without namespace flags (s390 passes the flags as the second argument).
        let flags_arg = if cfg!(target_arch = "s390x") { 1 } else { 0 };
        rules.push(rule(
            names("clone"),
            allow,
            None,
            vec![arg(
                flags_arg,
                LinuxSeccompOperator::ScmpCmpMaskedEq,
                CLONE_NAMESPACE_FLAGS,
                Some(0),
            )],
        ));
        // clone3's flags are behind a pointer, out of seccomp's reach: ENOSYS makes libc fall back to clone.
        rules.push(rule(
            names("clone3"),
            LinuxSeccompAction::ScmpActErrno,
            Some(ENOSYS),
            vec![],
        ));
    }
    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActErrno);
    profile.set_default_errno_ret(Some(1));
    profile.set_architectures(Some(architectures()));
    profile.set_syscalls(Some(rules));
    profile
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(profile: &LinuxSeccomp, name: &str) -> bool {
        profile.syscalls().iter().flatten().any(|r| {
            r.action() == LinuxSeccompAction::ScmpActAllow
                && r.args().is_none()
                && r.names().iter().any(|n| n == name)
        })
    }

    #[test]
    fn default_profile_shape() {
        let p = default_docker_seccomp();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert!(allowed(&p, "read") && allowed(&p, "execve") && allowed(&p, "ptrace"));
        assert!(!allowed(&p, "mount") && !allowed(&p, "unshare") && !allowed(&p, "reboot"));
        assert!(allowed(&p, "chroot"), "CAP_SYS_CHROOT is a default capability");
        assert!(
            !allowed(&p, "clone"),
            "clone is only allowed without namespace flags"
        );
        assert!(p
            .syscalls()
            .iter()
            .flatten()
            .any(|r| r.names() == &["clone3"] && r.errno_ret() == Some(38)));
    }

    #[test]
    fn sys_admin_unlocks_mount() {
        let p = docker_seccomp_for_capabilities(&["CAP_SYS_ADMIN"]);
        assert!(allowed(&p, "mount") && allowed(&p, "clone") && allowed(&p, "clone3"));
        assert!(!p
            .syscalls()
            .iter()
            .flatten()
            .any(|r| r.names() == &["clone3"] && r.errno_ret() == Some(38)));
    }
}
