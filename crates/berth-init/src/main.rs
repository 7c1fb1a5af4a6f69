//! berth-init: the init of `docker run --init`, mounted at /sbin/docker-init.
//!
//! `berth-init [--] COMMAND [ARG]...` runs as pid 1 of the container: it starts COMMAND as its child
//! (found in `$PATH` like execvp), forwards every signal it gets to it, reaps every process that
//! ends up its child (orphans are reparented to pid 1), and exits with COMMAND's exit status
//! (128 + the signal's number when a signal killed it). If COMMAND cannot be run it prints why and
//! exits 127 (not found) or 126 (found, but not runnable).
//!
//! It must run in any image, so it is linked statically; see build.rs for the two builds.

#![cfg_attr(berth_init_freestanding, no_std)]
#![no_main]

mod sys;

use sys::SigSet;

#[cfg(all(berth_init_freestanding, panic = "unwind"))]
compile_error!("the freestanding berth-init (a release build) needs panic = \"abort\"");

#[cfg(berth_init_freestanding)]
mod freestanding {
    // The process entry point: the stack holds argc, then argv, NULL, envp, NULL.
    #[cfg(target_arch = "x86_64")]
    core::arch::global_asm!(
        ".text",
        ".globl _start",
        ".type _start,@function",
        "_start:",
        "xor ebp, ebp",
        "mov rdi, rsp",
        "and rsp, -16",
        "call {entry}",
        "ud2",
        entry = sym entry,
    );
    #[cfg(target_arch = "aarch64")]
    core::arch::global_asm!(
        ".text",
        ".globl _start",
        ".type _start,%function",
        "_start:",
        "mov x29, #0",
        "mov x30, #0",
        "mov x0, sp",
        "bl {entry}",
        "brk #0",
        entry = sym entry,
    );

    /// # Safety
    /// Called only from `_start`, with the initial stack pointer.
    unsafe extern "C" fn entry(sp: *const usize) -> ! {
        // SAFETY: the kernel's initial stack: argc, then argc argument pointers, NULL, then the
        // environment pointers, NULL.
        unsafe {
            let argc = *sp;
            let argv = sp.add(1) as *const *const u8;
            let envp = argv.add(argc + 1);
            super::run(argc, argv, envp)
        }
    }

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo) -> ! {
        super::sys::write_all(2, b"berth-init: internal error\n");
        super::sys::exit(255)
    }

    // The C memory functions the compiler emits calls to. Volatile accesses keep it from turning
    // these loops back into calls to themselves; speed does not matter for a few hundred bytes.
    use core::ptr::{read_volatile, write_volatile};

    /// # Safety
    /// As C's memcpy.
    #[unsafe(no_mangle)]
    unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        // SAFETY: as C's memcpy: both ranges are valid for n bytes.
        unsafe { memmove(dst, src, n) }
    }

    /// # Safety
    /// As C's memmove.
    #[unsafe(no_mangle)]
    unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        // SAFETY: both ranges are valid for n bytes; copying backwards when dst is after src keeps
        // overlapping ranges correct.
        unsafe {
            if (dst as usize) < (src as usize) {
                for i in 0..n {
                    write_volatile(dst.add(i), read_volatile(src.add(i)));
                }
            } else {
                for i in (0..n).rev() {
                    write_volatile(dst.add(i), read_volatile(src.add(i)));
                }
            }
        }
        dst
    }

    /// # Safety
    /// As C's memset.
    #[unsafe(no_mangle)]
    unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
        for i in 0..n {
            // SAFETY: dst is valid for n bytes.
            unsafe { write_volatile(dst.add(i), c as u8) };
        }
        dst
    }

    /// # Safety
    /// As C's memcmp.
    #[unsafe(no_mangle)]
    unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        for i in 0..n {
            // SAFETY: both are valid for n bytes.
            let (x, y) = unsafe { (read_volatile(a.add(i)), read_volatile(b.add(i))) };
            if x != y {
                return x as i32 - y as i32;
            }
        }
        0
    }

    /// # Safety
    /// As C's bcmp.
    #[unsafe(no_mangle)]
    unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        // SAFETY: as memcmp.
        unsafe { memcmp(a, b, n) }
    }

    /// # Safety
    /// As C's strlen.
    #[unsafe(no_mangle)]
    unsafe extern "C" fn strlen(s: *const u8) -> usize {
        let mut n = 0;
        // SAFETY: s is NUL-terminated.
        while unsafe { read_volatile(s.add(n)) } != 0 {
            n += 1;
        }
        n
    }
}

/// Entered from glibc's start code (debug builds, which link std statically).
#[cfg(not(berth_init_freestanding))]
#[unsafe(no_mangle)]
extern "C" fn main(argc: i32, argv: *const *const u8, envp: *const *const u8) -> i32 {
    // SAFETY: glibc passes the process's own argc, argv and environ.
    unsafe { run(argc as usize, argv, envp) }
}

const DEFAULT_PATH: &[u8] = b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// # Safety
/// `argv` holds `argc` NUL-terminated strings and a NULL; `envp` is a NULL-terminated array of them.
unsafe fn run(argc: usize, argv: *const *const u8, envp: *const *const u8) -> ! {
    let mut first = 1;
    // SAFETY: index 1 is within argv (argc + 1 entries, the last NULL) when argc > 1.
    if argc > 1 && unsafe { cstr(*argv.add(1)) } == b"--" {
        first = 2;
    }
    if argc <= first {
        sys::write_all(2, b"usage: berth-init [--] COMMAND [ARG]...\n");
        sys::exit(1);
    }
    // SAFETY: first < argc, so the rest of argv is a NULL-terminated array.
    let cmd_argv = unsafe { argv.add(first) };

    if sys::getpid() != 1 {
        sys::set_child_subreaper();
    }
    let _ = sys::default_action(sys::SIGCHLD);
    let mut handled = SigSet(u64::MAX);
    for s in sys::SYNCHRONOUS {
        handled = handled.without(s);
    }
    let original = match sys::set_sigmask(handled) {
        Ok(m) => m,
        Err(e) => fail(b"blocking signals", e, 1),
    };
    let child = match sys::fork() {
        Ok(0) => {
            sys::own_foreground_group();
            let _ = sys::set_sigmask(original);
            // SAFETY: cmd_argv and envp are well formed (see above).
            let err = unsafe { execvp(cmd_argv, envp) };
            // SAFETY: cmd_argv[0] is a NUL-terminated string.
            let name = unsafe { cstr(*cmd_argv) };
            let mut m = Msg::new();
            m.push(b"berth-init: exec ")
                .push(name)
                .push(b" failed: ")
                .push(strerror(err))
                .push(b"\n");
            sys::write_all(2, m.bytes());
            sys::exit(if matches!(err, sys::ENOENT | sys::ENOTDIR) {
                127
            } else {
                126
            })
        }
        Ok(pid) => pid,
        Err(e) => fail(b"fork", e, 1),
    };
    loop {
        match sys::wait_signal(handled) {
            Ok(sys::SIGCHLD) => {
                while let Some((pid, status)) = sys::reap_one() {
                    if pid == child {
                        // Others still running die with the namespace when pid 1 exits.
                        sys::exit(exit_code(status));
                    }
                }
            }
            Ok(sig) => sys::kill(child, sig),
            Err(sys::EINTR) => {}
            Err(e) => fail(b"waiting for signals", e, 1),
        }
    }
}

/// A shell's exit code for a wait status: the exit status, or 128 + the signal that killed it.
fn exit_code(status: i32) -> i32 {
    match status & 0x7f {
        0 => (status >> 8) & 0xff,
        sig => 128 + sig,
    }
}

/// Runs `argv[0]` like execvp: a name with a slash as is, else the first match in `$PATH`. Returns
/// the errno of the failure: EACCES if some candidate was not executable, else the last error.
///
/// # Safety
/// `argv` and `envp` are NULL-terminated arrays of NUL-terminated strings, `argv` non-empty.
unsafe fn execvp(argv: *const *const u8, envp: *const *const u8) -> i32 {
    // SAFETY: argv[0] exists and is NUL-terminated.
    let file = unsafe { cstr(*argv) };
    if file.is_empty() {
        return sys::ENOENT;
    }
    if file.contains(&b'/') {
        // SAFETY: as the caller guarantees.
        return unsafe { sys::execve(file.as_ptr(), argv, envp) };
    }
    // SAFETY: as the caller guarantees.
    let path = unsafe { getenv(envp, b"PATH") }.unwrap_or(DEFAULT_PATH);
    let mut buf = [0u8; 4096];
    let mut err = sys::ENOENT;
    let mut denied = false;
    for dir in path.split(|&b| b == b':') {
        let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
        let len = dir.len() + 1 + file.len();
        if len >= buf.len() {
            continue;
        }
        buf[..dir.len()].copy_from_slice(dir);
        buf[dir.len()] = b'/';
        buf[dir.len() + 1..len].copy_from_slice(file);
        buf[len] = 0;
        // SAFETY: buf is NUL-terminated; argv and envp as the caller guarantees.
        err = unsafe { sys::execve(buf.as_ptr(), argv, envp) };
        match err {
            sys::EACCES => denied = true,
            // Not here (or a stale/unreachable directory): try the next one.
            sys::ENOENT | sys::ENOTDIR | 19 | 110 | 116 => {}
            _ => return err,
        }
    }
    if denied {
        sys::EACCES
    } else {
        err
    }
}

/// The value of `name` in a NULL-terminated environment.
///
/// # Safety
/// `envp` is a NULL-terminated array of NUL-terminated strings.
unsafe fn getenv<'a>(mut envp: *const *const u8, name: &[u8]) -> Option<&'a [u8]> {
    // SAFETY: every entry up to the NULL is a NUL-terminated string.
    unsafe {
        while !(*envp).is_null() {
            let entry = cstr(*envp);
            if entry.len() > name.len() && entry.starts_with(name) && entry[name.len()] == b'=' {
                return Some(&entry[name.len() + 1..]);
            }
            envp = envp.add(1);
        }
    }
    None
}

/// The bytes of a NUL-terminated string, without the NUL.
///
/// # Safety
/// `p` points to a NUL-terminated string that outlives `'a`.
unsafe fn cstr<'a>(p: *const u8) -> &'a [u8] {
    let mut n = 0;
    // SAFETY: reads stop at the NUL, within the string.
    unsafe {
        while *p.add(n) != 0 {
            n += 1;
        }
        core::slice::from_raw_parts(p, n)
    }
}

fn strerror(errno: i32) -> &'static [u8] {
    match errno {
        1 => b"Operation not permitted",
        2 => b"No such file or directory",
        7 => b"Argument list too long",
        8 => b"Exec format error",
        12 => b"Cannot allocate memory",
        13 => b"Permission denied",
        20 => b"Not a directory",
        21 => b"Is a directory",
        26 => b"Text file busy",
        36 => b"File name too long",
        40 => b"Too many levels of symbolic links",
        _ => b"system error",
    }
}

/// Reports a failure of the init itself and exits.
fn fail(what: &[u8], errno: i32, code: i32) -> ! {
    let mut m = Msg::new();
    m.push(b"berth-init: ")
        .push(what)
        .push(b": ")
        .push(strerror(errno))
        .push(b"\n");
    sys::write_all(2, m.bytes());
    sys::exit(code)
}

/// A message assembled in a fixed buffer (written with one write, so lines do not interleave).
struct Msg {
    buf: [u8; 512],
    len: usize,
}

impl Msg {
    fn new() -> Msg {
        Msg {
            buf: [0; 512],
            len: 0,
        }
    }

    /// Appends `s`, truncated to what fits.
    fn push(&mut self, s: &[u8]) -> &mut Msg {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
        self
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}
