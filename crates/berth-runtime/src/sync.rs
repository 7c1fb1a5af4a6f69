//! The parent <-> container-init channel: a close-on-exec `SOCK_SEQPACKET` socket pair.
//!
//! Parent to child: `Go` (the child is in its cgroup, it may set up) and `Start` (exec now).
//! Child to parent: `Ready` (set up, waiting for `Start`) or an error. A successful `execve` closes the
//! child's end, so the parent reads end-of-file. A process with a terminal first sends `Pty` with the
//! master of the pty it made in the container's devpts (`SCM_RIGHTS`).

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};

use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

use crate::error::{ExecErrorKind, Result, RuntimeError};

const GO: u8 = b'G';
const START: u8 = b'S';
const READY: u8 = b'R';
const ERROR: u8 = b'E';
const PTY: u8 = b'P';
const USERNS: u8 = b'U';
const MAPPED: u8 = b'M';
const PID: u8 = b'I';
const JOINED: u8 = b'J';
/// Error kinds on the wire: 0 is a setup error, the others are [`ExecErrorKind`]s.
const KIND_INIT: u8 = 0;
const MAX_MESSAGE: usize = 16 * 1024;

/// What the child said.
#[derive(Debug)]
pub(crate) enum ChildMessage {
    Ready,
    /// The master of the terminal the child made for itself.
    Pty(OwnedFd),
    /// The child made its user namespace and waits for the parent to write the id mappings.
    Userns,
    /// The host pid of the container's init, forked by the child inside its namespaces.
    Pid(i32),
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

    /// `recv`, also taking a descriptor passed with the message.
    fn recv_with_fd(&self, buf: &mut [u8]) -> Result<(usize, Option<OwnedFd>), Errno> {
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        loop {
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let mut iov = [IoSliceMut::new(&mut *buf)];
            match rustix::net::recvmsg(&self.0, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC) {
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e),
                Ok(msg) => {
                    let mut fd = None;
                    for m in control.drain() {
                        if let RecvAncillaryMessage::ScmRights(fds) = m {
                            // Any descriptor beyond the first is dropped (closed) here.
                            fd = fds.into_iter().next().or(fd);
                        }
                    }
                    return Ok((msg.bytes, fd));
                }
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
            return match self.recv_with_fd(&mut buf) {
                // A child that exits with our message unread resets the connection, and the kernel
                // reports that before the child's own last message: the reset is reported once, so
                // read again for that message.
                Err(Errno::CONNRESET) if !reset => {
                    reset = true;
                    continue;
                }
                Ok((0, _)) | Err(Errno::CONNRESET) => ChildMessage::Closed,
                Err(e) => ChildMessage::Failed(RuntimeError::io("reading from container init", e)),
                Ok((n, Some(fd))) if buf[..n] == [PTY] => ChildMessage::Pty(fd),
                Ok((n, _)) => decode(&buf[..n]),
            };
        }
    }

    // ---- child side ----

    /// Waits for `Go` (or `Start`); `false` when the parent went away.
    fn wait_for(&self, want: u8) -> bool {
        let mut buf = [0u8; 16];
        matches!(self.recv(&mut buf), Ok(n) if n >= 1 && buf[0] == want)
    }

    /// The child is in its cgroup now.
    pub(crate) fn send_joined(&self) {
        let _ = self.send(&[JOINED]);
    }

    pub(crate) fn wait_joined(&self) -> Result<()> {
        if self.wait_for(JOINED) {
            Ok(())
        } else {
            Err(RuntimeError::Init(
                "parent went away before the cgroup was joined".into(),
            ))
        }
    }

    pub(crate) fn send_mapped(&self) {
        let _ = self.send(&[MAPPED]);
    }

    /// In the child: asks the parent for the mappings of the user namespace just made.
    pub(crate) fn request_mapping(&self) -> Result<()> {
        self.send(&[USERNS])
            .map_err(|e| RuntimeError::io("asking for id mappings", e))?;
        if self.wait_for(MAPPED) {
            Ok(())
        } else {
            Err(RuntimeError::Init(
                "parent went away before writing id mappings".into(),
            ))
        }
    }

    pub(crate) fn send_pid(&self, pid: i32) -> Result<()> {
        let mut msg = vec![PID];
        msg.extend_from_slice(&pid.to_le_bytes());
        self.send(&msg)
            .map_err(|e| RuntimeError::io("sending the init's pid", e))
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

    /// Hands the master of the child's terminal to the parent.
    pub(crate) fn send_pty(&self, master: &OwnedFd) -> Result<()> {
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        let fds = [master.as_fd()];
        control.push(SendAncillaryMessage::ScmRights(&fds));
        loop {
            match rustix::net::sendmsg(
                &self.0,
                &[IoSlice::new(&[PTY])],
                &mut control,
                SendFlags::NOSIGNAL,
            ) {
                Err(Errno::INTR) => continue,
                Err(e) => return Err(RuntimeError::io("sending the terminal to the parent", e)),
                Ok(_) => return Ok(()),
            }
        }
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
        [USERNS] => ChildMessage::Userns,
        [PID, a, b, c, d] => ChildMessage::Pid(i32::from_le_bytes([*a, *b, *c, *d])),
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
    fn a_pty_master_crosses_with_its_message() {
        let (parent, child) = channel().unwrap();
        let (master, _slave) = crate::pty::open_pty().unwrap();
        child.send_pty(&master).unwrap();
        child.send_ready().unwrap();
        let got = match parent.read_child() {
            ChildMessage::Pty(fd) => fd,
            other => panic!("{other:?}"),
        };
        // The same open file: the same pty number.
        let n = |fd: &OwnedFd| rustix::pty::ptsname(fd, Vec::new()).unwrap();
        assert_eq!(n(&got), n(&master));
        assert!(matches!(parent.read_child(), ChildMessage::Ready));
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
