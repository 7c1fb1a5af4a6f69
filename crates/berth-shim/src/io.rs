//! Small fd helpers and the signal self-pipe.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

use rustix::io::Errno;

/// Reads once, retrying on EINTR. `Ok(0)` is EOF; EAGAIN comes back as `Err(WouldBlock)`.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match rustix::io::read(fd, &mut *buf) {
            Err(Errno::INTR) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// Writes once, retrying on EINTR.
pub fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    loop {
        match rustix::io::write(fd, buf) {
            Err(Errno::INTR) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// Sends on a socket without raising SIGPIPE, retrying on EINTR.
pub fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    loop {
        match rustix::net::send(fd, buf, rustix::net::SendFlags::NOSIGNAL) {
            Err(Errno::INTR) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    rustix::io::ioctl_fionbio(fd, true).map_err(io::Error::from)
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(io::Error::from)
}

pub fn dev_null(write: bool) -> io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let mode = if write { OFlags::RDWR } else { OFlags::RDONLY };
    rustix::fs::open("/dev/null", mode | OFlags::CLOEXEC, Mode::empty()).map_err(io::Error::from)
}

pub fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// The write end of the self-pipe, for the signal handler.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_sigchld(_sig: libc::c_int) {
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        let saved = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        // SAFETY: write(2) is async-signal-safe; the buffer is a valid one-byte array. The pipe is
        // non-blocking, so a full pipe (a wake-up already pending) just fails with EAGAIN.
        unsafe {
            libc::write(fd, [0u8].as_ptr().cast(), 1);
            *libc::__errno_location() = saved;
        }
    }
}

extern "C" fn on_ignored(_sig: libc::c_int) {}

fn set_handler(sig: libc::c_int, handler: extern "C" fn(libc::c_int)) -> io::Result<()> {
    // SAFETY: a zeroed sigaction is valid (empty mask, no flags); the handler is a plain extern "C"
    // function that only makes async-signal-safe calls.
    let rc = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as usize;
        sa.sa_flags = libc::SA_RESTART | libc::SA_NOCLDSTOP;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Installs the handlers: SIGCHLD wakes the event loop through the returned pipe's read end; SIGPIPE
/// and SIGHUP get a handler that does nothing. (A caught signal, unlike an ignored one, goes back to
/// its default in a process that execs, so the container does not inherit ignored signals.)
pub fn install_signal_handlers() -> io::Result<OwnedFd> {
    let (r, w) = pipe()?;
    set_nonblocking(r.as_fd())?;
    set_nonblocking(w.as_fd())?;
    let raw: RawFd = w.as_raw_fd();
    // The write end lives as long as the process: the handler may run at any time.
    std::mem::forget(w);
    SIGNAL_PIPE.store(raw, Ordering::Relaxed);
    set_handler(libc::SIGCHLD, on_sigchld)?;
    set_handler(libc::SIGPIPE, on_ignored)?;
    set_handler(libc::SIGHUP, on_ignored)?;
    Ok(r)
}

/// Empties the self-pipe.
pub fn drain_signal_pipe(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 64];
    while matches!(read(fd, &mut buf), Ok(n) if n > 0) {}
}

/// Drops the page-table entries of the shim's own code and read-only data (the `r-xp` mapping of
/// the executable and its `r--p` mapping at offset 0). Start-up (parsing config.json, creating
/// the container) touches most of the binary; the event loop needs little of it. The pages stay in
/// the page cache, so whatever is needed again comes back on the next access without I/O; until
/// then it no longer counts in this process's RSS/PSS. Only mappings that are never written are
/// dropped (the RELRO `r--p` mapping after the code is not at offset 0 and is left alone).
pub fn trim_code_pages() {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for line in maps.lines() {
        // 00400000-0052d000 r-xp 00000000 fe:00 5384546   /path/to/berth-shim
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms), Some(offset)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let path = f.nth(2);
        if path != exe.to_str() {
            continue;
        }
        let clean = perms == "r-xp" || (perms == "r--p" && offset.bytes().all(|b| b == b'0'));
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16)) else {
            continue;
        };
        if clean && end > start {
            // SAFETY: madvise(MADV_DONTNEED) on a private file mapping of our executable that is
            // never written: later accesses fault the same bytes back in from the file.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
            }
        }
    }
}
