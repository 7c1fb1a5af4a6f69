//! The parent <-> container-init channel: a close-on-exec `SOCK_SEQPACKET` socket pair.
//!
//! Parent to child: `Go` (the child is in its cgroup, it may set up) and `Start` (exec now).
//! Child to parent: `Ready` (set up, waiting for `Start`) or an error. A successful `execve` closes the
//! child's end, so the parent reads end-of-file.

use std::os::fd::OwnedFd;

use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use crate::error::{ExecErrorKind, Result, RuntimeError};

const GO: u8 = b'G';
const START: u8 = b'S';
const READY: u8 = b'R';
const ERROR: u8 = b'E';
/// Error kinds on the wire: 0 is a setup error, the others are [`ExecErrorKind`]s.
const KIND_INIT: u8 = 0;
const MAX_MESSAGE: usize = 16 * 1024;

/// What the child said.
#[derive(Debug)]
pub(crate) enum ChildMessage {
    Ready,
    Failed(RuntimeError),
    /// The child's end closed: it exec'd (or died without a word).
    Closed,
}

/// One end of the channel.
#[derive(Debug)]
pub(crate) struct SyncSocket(OwnedFd);

/// Creates the channel: (parent end, child end), both close-on-exec.
pub(crate) fn channel() -> Result<(SyncSocket, SyncSocket)> {
    let (a, b) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| RuntimeError::io("socketpair", e))?;
    Ok((SyncSocket(a), SyncSocket(b)))
}

impl SyncSocket {
    fn send(&self, msg: &[u8]) -> Result<(), Errno> {
        loop {
            match rustix::net::send(&self.0, msg, SendFlags::NOSIGNAL) {
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e),
                Ok(_) => return Ok(()),
            }
        }
    }

    fn recv(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        loop {
            match rustix::net::recv(&self.0, &mut *buf, RecvFlags::empty()) {
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e),
                Ok((n, _)) => return Ok(n),
            }
        }
    }

    // ---- parent side ----

    /// Tells the child to go on with its setup.
    pub(crate) fn send_go(&self) {
        // A child that already died is noticed by the following `read_child`.
        let _ = self.send(&[GO]);
    }

    /// Tells the child to exec.
    pub(crate) fn send_start(&self) {
        // EPIPE: the child already failed and its message is waiting in the socket.
        let _ = self.send(&[START]);
    }

    /// Waits for the child's next message.
    pub(crate) fn read_child(&self) -> ChildMessage {
        let mut buf = vec![0u8; MAX_MESSAGE + 8];
        let mut reset = false;
        loop {
            return match self.recv(&mut buf) {
                // A child that exits with our message unread resets the connection, and the kernel
                // reports that before the child's own last message: the reset is reported once, so
                // read again for that message.
                Err(Errno::CONNRESET) if !reset => {
                    reset = true;
                    continue;
                }
                Ok(0) | Err(Errno::CONNRESET) => ChildMessage::Closed,
                Err(e) => ChildMessage::Failed(RuntimeError::io("reading from container init", e)),
                Ok(n) => decode(&buf[..n]),
            };
        }
    }

    // ---- child side ----

    /// Waits for `Go` (or `Start`); `false` when the parent went away.
    fn wait_for(&self, want: u8) -> bool {
        let mut buf = [0u8; 16];
        matches!(self.recv(&mut buf), Ok(n) if n >= 1 && buf[0] == want)
    }

    pub(crate) fn wait_go(&self) -> Result<()> {
        if self.wait_for(GO) {
            Ok(())
        } else {
            Err(RuntimeError::Init("parent went away before setup".into()))
        }
    }

    pub(crate) fn wait_start(&self) -> Result<()> {
        if self.wait_for(START) {
            Ok(())
        } else {
            Err(RuntimeError::Init("parent went away before start".into()))
        }
    }

    pub(crate) fn send_ready(&self) -> Result<()> {
        self.send(&[READY])
            .map_err(|e| RuntimeError::io("signalling ready", e))
    }

    /// Reports an error to the parent (best effort: the child exits right after).
    pub(crate) fn send_error(&self, err: &RuntimeError) {
        let (kind, text) = match err {
            RuntimeError::Exec { kind, message } => (kind.to_byte(), message.clone()),
            RuntimeError::Init(message) => (KIND_INIT, message.clone()),
            other => (KIND_INIT, other.to_string()),
        };
        let mut msg = Vec::with_capacity(2 + text.len().min(MAX_MESSAGE));
        msg.push(ERROR);
        msg.push(kind);
        let mut end = text.len().min(MAX_MESSAGE);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        msg.extend_from_slice(&text.as_bytes()[..end]);
        let _ = self.send(&msg);
    }
}

fn decode(msg: &[u8]) -> ChildMessage {
    match msg {
        [READY, ..] => ChildMessage::Ready,
        [ERROR, kind, text @ ..] => {
            let message = String::from_utf8_lossy(text).into_owned();
            match ExecErrorKind::from_byte(*kind) {
                Some(kind) => ChildMessage::Failed(RuntimeError::Exec { kind, message }),
                None => ChildMessage::Failed(RuntimeError::Init(message)),
            }
        }
        _ => ChildMessage::Failed(RuntimeError::Init("garbled message from container init".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_survives_a_reset_connection() {
        let (parent, child) = channel().unwrap();
        // The child fails before reading Start, and exits with Start unread: the kernel then reports
        // ECONNRESET ahead of the child's message.
        parent.send_start();
        child.send_error(&RuntimeError::Exec {
            kind: ExecErrorKind::NotFound,
            message: "gone".into(),
        });
        drop(child);
        match parent.read_child() {
            ChildMessage::Failed(RuntimeError::Exec {
                kind: ExecErrorKind::NotFound,
                message,
            }) => {
                assert_eq!(message, "gone")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parent.read_child(), ChildMessage::Closed));
    }

    #[test]
    fn ready_then_closed() {
        let (parent, child) = channel().unwrap();
        child.send_ready().unwrap();
        drop(child);
        assert!(matches!(parent.read_child(), ChildMessage::Ready));
        assert!(matches!(parent.read_child(), ChildMessage::Closed));
    }
}
