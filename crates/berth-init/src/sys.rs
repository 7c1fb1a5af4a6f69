//! The few Linux system calls the init needs, made directly (no libc in the release build).

use core::arch::asm;

#[cfg(target_arch = "x86_64")]
mod nr {
    pub const WRITE: usize = 1;
    pub const RT_SIGACTION: usize = 13;
    pub const RT_SIGPROCMASK: usize = 14;
    pub const IOCTL: usize = 16;
    pub const GETPID: usize = 39;
    pub const CLONE: usize = 56;
    pub const EXECVE: usize = 59;
    pub const WAIT4: usize = 61;
    pub const KILL: usize = 62;
    pub const SETPGID: usize = 109;
    pub const RT_SIGTIMEDWAIT: usize = 128;
    pub const PRCTL: usize = 157;
    pub const EXIT_GROUP: usize = 231;
}

#[cfg(target_arch = "aarch64")]
mod nr {
    pub const WRITE: usize = 64;
    pub const RT_SIGACTION: usize = 134;
    pub const RT_SIGPROCMASK: usize = 135;
    pub const IOCTL: usize = 29;
    pub const GETPID: usize = 172;
    pub const CLONE: usize = 220;
    pub const EXECVE: usize = 221;
    pub const WAIT4: usize = 260;
    pub const KILL: usize = 129;
    pub const SETPGID: usize = 154;
    pub const RT_SIGTIMEDWAIT: usize = 137;
    pub const PRCTL: usize = 167;
    pub const EXIT_GROUP: usize = 94;
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("berth-init supports x86_64 and aarch64");

pub const EINTR: i32 = 4;
pub const ENOENT: i32 = 2;
pub const EACCES: i32 = 13;
pub const ENOTDIR: i32 = 20;

pub const SIGCHLD: i32 = 17;
/// Signals the kernel raises for a fault in the process itself: left unblocked, so that a fault in
/// the init kills it instead of looping.
pub const SYNCHRONOUS: [i32; 7] = [4, 5, 6, 7, 8, 11, 31]; // ILL TRAP ABRT BUS FPE SEGV SYS

const SIG_SETMASK: usize = 2;
const WNOHANG: usize = 1;
const PR_SET_CHILD_SUBREAPER: usize = 36;
const TIOCSPGRP: usize = 0x5410;
/// The kernel's `sigset_t`: 64 signals.
const SIGSET_SIZE: usize = 8;

/// A raw system call; returns the kernel's answer (`-errno` on failure).
///
/// # Safety
/// The arguments must be valid for system call `n` (pointers to live memory of the right size).
#[inline(always)]
unsafe fn syscall(n: usize, a: [usize; 5]) -> isize {
    let ret: isize;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller passes valid arguments; the kernel clobbers only rax, rcx and r11.
    unsafe {
        asm!("syscall", inlateout("rax") n as isize => ret, in("rdi") a[0], in("rsi") a[1],
            in("rdx") a[2], in("r10") a[3], in("r8") a[4], lateout("rcx") _, lateout("r11") _,
            options(nostack));
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: the caller passes valid arguments; the kernel returns in x0 and clobbers nothing else.
    unsafe {
        asm!("svc 0", in("x8") n, inlateout("x0") a[0] as isize => ret, in("x1") a[1], in("x2") a[2],
            in("x3") a[3], in("x4") a[4], options(nostack));
    }
    ret
}

fn result(ret: isize) -> Result<usize, i32> {
    if ret < 0 {
        Err(-ret as i32)
    } else {
        Ok(ret as usize)
    }
}

/// Writes all of `buf` to `fd`, giving up on an error.
pub fn write_all(fd: i32, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: buf is a live slice of buf.len() bytes.
        match result(unsafe { syscall(nr::WRITE, [fd as usize, buf.as_ptr() as usize, buf.len(), 0, 0]) }) {
            Ok(n) => buf = buf.get(n..).unwrap_or_default(),
            Err(EINTR) => {}
            Err(_) => return,
        }
    }
}

pub fn exit(code: i32) -> ! {
    loop {
        // SAFETY: exit_group takes a plain integer and does not return.
        unsafe { syscall(nr::EXIT_GROUP, [code as usize, 0, 0, 0, 0]) };
    }
}

pub fn getpid() -> i32 {
    // SAFETY: getpid takes no arguments and cannot fail.
    unsafe { syscall(nr::GETPID, [0; 5]) as i32 }
}

/// A set of signals 1..=64, as the kernel's `sigset_t`.
#[derive(Clone, Copy)]
pub struct SigSet(pub u64);

impl SigSet {
    pub fn without(self, sig: i32) -> SigSet {
        SigSet(self.0 & !(1 << (sig - 1)))
    }
}

/// Replaces the signal mask; returns the previous one.
pub fn set_sigmask(set: SigSet) -> Result<SigSet, i32> {
    let mut old = SigSet(0);
    let (new_ptr, old_ptr) = (&set.0 as *const u64 as usize, &mut old.0 as *mut u64 as usize);
    // SAFETY: both pointers are to live 8-byte sigsets.
    result(unsafe {
        syscall(
            nr::RT_SIGPROCMASK,
            [SIG_SETMASK, new_ptr, old_ptr, SIGSET_SIZE, 0],
        )
    })?;
    Ok(old)
}

/// Resets `sig` to its default action (an inherited SIG_IGN for SIGCHLD would make the kernel reap
/// children itself, and their exit statuses would be lost).
pub fn default_action(sig: i32) -> Result<(), i32> {
    // The kernel's struct sigaction: handler (SIG_DFL = 0), flags, restorer, mask.
    let action = [0usize; 4];
    // SAFETY: action is a live kernel sigaction; the old action is not asked for.
    result(unsafe {
        syscall(
            nr::RT_SIGACTION,
            [sig as usize, action.as_ptr() as usize, 0, SIGSET_SIZE, 0],
        )
    })
    .map(drop)
}

/// Waits for a signal in `set` (which must be blocked); returns its number.
pub fn wait_signal(set: SigSet) -> Result<i32, i32> {
    // SAFETY: set points to a live sigset; siginfo and timeout are not asked for (wait forever).
    result(unsafe {
        syscall(
            nr::RT_SIGTIMEDWAIT,
            [&set.0 as *const u64 as usize, 0, 0, SIGSET_SIZE, 0],
        )
    })
    .map(|s| s as i32)
}

/// fork(2): 0 in the child, the child's pid in the parent.
pub fn fork() -> Result<i32, i32> {
    const SIGCHLD_FLAG: usize = SIGCHLD as usize;
    // SAFETY: clone with only an exit signal and no new stack behaves as fork: the child continues
    // on a copy of this stack, and the process is single-threaded.
    result(unsafe { syscall(nr::CLONE, [SIGCHLD_FLAG, 0, 0, 0, 0]) }).map(|p| p as i32)
}

/// execve(2); returns only on failure, with the errno.
///
/// # Safety
/// `path` must be NUL-terminated; `argv` and `envp` NULL-terminated arrays of NUL-terminated strings.
pub unsafe fn execve(path: *const u8, argv: *const *const u8, envp: *const *const u8) -> i32 {
    // SAFETY: the caller guarantees the strings and arrays are well formed.
    let ret = unsafe { syscall(nr::EXECVE, [path as usize, argv as usize, envp as usize, 0, 0]) };
    -ret as i32
}

/// One child's pid and wait status without blocking; `None` when no child has exited (or there are
/// no children left).
pub fn reap_one() -> Option<(i32, i32)> {
    let mut status: i32 = 0;
    loop {
        let status_ptr = &mut status as *mut i32 as usize;
        // SAFETY: status is a live int; no rusage is asked for.
        match result(unsafe { syscall(nr::WAIT4, [usize::MAX, status_ptr, WNOHANG, 0, 0]) }) {
            Ok(0) => return None,
            Ok(pid) => return Some((pid as i32, status)),
            Err(EINTR) => {}
            Err(_) => return None,
        }
    }
}

pub fn kill(pid: i32, sig: i32) {
    // SAFETY: kill takes plain integers.
    unsafe { syscall(nr::KILL, [pid as usize, sig as usize, 0, 0, 0]) };
}

/// Makes this process a subreaper, so orphans in its subtree are reparented to it even when it
/// is not pid 1 of its namespace.
pub fn set_child_subreaper() {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes plain integers.
    unsafe { syscall(nr::PRCTL, [PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0]) };
}

/// Puts this process in a process group of its own and, if stdin is its controlling terminal,
/// makes that group the terminal's foreground (so keyboard signals go to it, as under a shell).
pub fn own_foreground_group() {
    // SAFETY: setpgid(0, 0) takes plain integers.
    unsafe { syscall(nr::SETPGID, [0; 5]) };
    let pgrp = getpid();
    // SAFETY: TIOCSPGRP reads one pid_t from the live pgrp; it fails harmlessly (ENOTTY) when stdin
    // is not a terminal. SIGTTOU is blocked, so a background caller is not stopped.
    unsafe { syscall(nr::IOCTL, [0, TIOCSPGRP, &pgrp as *const i32 as usize, 0, 0]) };
}
