//! Pseudo-terminals for containers started with a TTY (`docker run -t`).

use std::os::fd::{AsFd, OwnedFd};

use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;

use crate::error::{Result, RuntimeError};

/// Opens a new pty pair: (master, slave), both close-on-exec. The slave becomes the container's stdin,
/// stdout and stderr (pass it as all three [`crate::Stdio`] fds with `console: true`); the caller keeps the
/// master.
pub fn open_pty() -> Result<(OwnedFd, OwnedFd)> {
    let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
    let master = rustix::pty::openpt(flags).map_err(|e| RuntimeError::io("opening /dev/ptmx", e))?;
    rustix::pty::grantpt(&master).map_err(|e| RuntimeError::io("grantpt", e))?;
    rustix::pty::unlockpt(&master).map_err(|e| RuntimeError::io("unlockpt", e))?;
    let slave = rustix::pty::ioctl_tiocgptpeer(&master, flags)
        .map_err(|e| RuntimeError::io("opening the pty slave", e))?;
    Ok((master, slave))
}

/// Sets the window size of a pty (through its master).
pub fn resize<Fd: AsFd>(master: Fd, rows: u16, cols: u16) -> Result<()> {
    let size = Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(master, size).map_err(|e| RuntimeError::io("resizing the pty", e))
}
