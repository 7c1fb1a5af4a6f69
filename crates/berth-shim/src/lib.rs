//! The shim protocol, shared by `berth-shim` (server) and berthd (client).
//!
//! One `berth-shim` process runs per container. It outlives berthd: it owns the container's stdio
//! (pipes or a pty), writes the container's log in Docker's json-file format, reaps the container,
//! and keeps its exit status. berthd talks to it over a Unix socket, `<state>/shim.sock`, one
//! command per connection; the first line of a connection is the command (ASCII, `\n`-terminated).
//!
//! | command                          | answer |
//! |----------------------------------|--------|
//! | `ATTACH <in> <out> <err>` (0/1)  | `OK\n`, then output frames until the container exits; bytes the client sends are the container's stdin (when `<in>` is 1 and the container has stdin open); a client shutting down its write side closes the container's stdin when the container is stdin-once |
//! | `START`                          | `OK <pid>\n`, or `ERR <exit-code> <message>\n` when the process could not be executed (127 not found, 126 not executable) |
//! | `WAIT`                           | blocks until the container has exited: `EXIT <code> <oom 0/1> <finished-at RFC 3339>\n` (at once if it already has) |
//! | `KILL <signal number>`           | `OK\n` or `ERR <message>\n` |
//! | `RESIZE <rows> <cols> [<exec-pid>]` | `OK\n` (resizes the container's pty, or that exec session's) or `ERR <message>\n` |
//! | `STATE`                          | `CREATED <pid>\n`, `RUNNING <pid>\n` or `EXITED <code> <oom> <finished-at>\n` |
//! | `EXEC <json ExecRequest>`        | `OK <pid>\n` then frames as for ATTACH (stdin likewise) and finally a frame of stream 3 whose payload is `EXIT <code>`; or `ERR <exit-code> <message>\n` |
//!
//! Output frames are Docker's multiplexed-stream frames: an 8-byte header `[stream, 0, 0, 0,
//! len: u32 big-endian]` then `len` bytes; stream 1 is stdout, 2 stderr (with a TTY all output is
//! stream 1), 3 the shim's own messages.
//!
//! Start-up: berthd runs `berth-shim run ...` with a pipe as fd 3 (`--ready-fd 3`). The shim detaches
//! (fork: the process berthd started exits 0 at once; the shim goes on in a new session, as child
//! subreaper), creates the cgroup and the container process (which waits for `START`), binds
//! `shim.sock`, then writes `READY <pid>\n` or `ERROR <message>\n` to that pipe and closes it. Read
//! that one line ([`read_ready`]) rather than waiting for end-of-file: the container's init holds a
//! close-on-exec copy of the pipe until it execs at `START`.
//! When the container exits the shim flushes output to the log and to attached clients, writes
//! `<state>/exit` atomically (`<code> <oom> <finished-at>\n`), answers waiters, removes the cgroup,
//! and exits.
//!
//! Before `START`: `KILL` kills the waiting init (the container then exits with 128 + signal). The
//! runtime looks the command up while creating the container; when it is missing the init is gone
//! already, but the container stays `CREATED` until `START`, which answers `ERR 127 ...` and ends
//! it with that code (as `docker start` does).
//!
//! Other files in `<state>`: `pid` (the container's init pid, written before `READY`), `shim.pid`
//! (the shim's own pid) and `shim.log` (the shim's own errors; usually absent). Once the shim has
//! removed `shim.sock` (it exits shortly after), a client that cannot connect reads `exit` instead:
//! [`read_exit_file`].

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const SOCKET_NAME: &str = "shim.sock";
pub const EXIT_FILE: &str = "exit";
pub const PID_FILE: &str = "pid";
pub const SHIM_PID_FILE: &str = "shim.pid";
pub const SHIM_LOG_FILE: &str = "shim.log";

pub const STREAM_STDOUT: u8 = 1;
pub const STREAM_STDERR: u8 = 2;
pub const STREAM_SYSTEM: u8 = 3;

/// A process to run inside a running container (`docker exec`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecRequest {
    pub process: oci_spec::runtime::Process,
    pub stdin: bool,
}

/// The 8-byte frame header for `len` bytes of `stream`.
pub fn frame_header(stream: u8, len: usize) -> [u8; 8] {
    let n = (len as u32).to_be_bytes();
    [stream, 0, 0, 0, n[0], n[1], n[2], n[3]]
}

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: i32,
    pub oom_killed: bool,
    /// RFC 3339 with nanoseconds, UTC.
    pub finished_at: String,
}

impl ExitStatus {
    pub fn to_line(&self) -> String {
        format!("{} {} {}", self.code, u8::from(self.oom_killed), self.finished_at)
    }

    /// Parses `<code> <oom> <finished-at>`.
    pub fn parse(s: &str) -> Option<ExitStatus> {
        let mut it = s.split_whitespace();
        let code = it.next()?.parse().ok()?;
        let oom_killed = it.next()? == "1";
        let finished_at = it.next()?.to_string();
        Some(ExitStatus {
            code,
            oom_killed,
            finished_at,
        })
    }
}

/// Reads the shim's start-up answer from the ready pipe: `Ok(pid)` of the container's init, or
/// `Err(message)`. Reads one line only (see the start-up notes above). EOF without a line means the
/// shim died during start-up.
pub fn read_ready(pipe: &mut impl Read) -> io::Result<Result<i32, String>> {
    let line = read_line(pipe)?;
    if let Some(pid) = line.strip_prefix("READY ") {
        return pid
            .trim()
            .parse()
            .map(Ok)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad ready line {line:?}")));
    }
    Ok(Err(line.strip_prefix("ERROR ").unwrap_or(&line).to_string()))
}

/// Where to bind or connect the shim's socket: `<state>/shim.sock`, or, when that path is longer
/// than a socket address holds (108 bytes, with a long exec-root), the same file reached through
/// `/proc/self/fd/<dir>/shim.sock`; the returned directory must stay open while the path is used.
pub fn socket_path(state_dir: &Path) -> io::Result<(PathBuf, Option<std::fs::File>)> {
    let full = state_dir.join(SOCKET_NAME);
    if full.as_os_str().len() < 100 {
        return Ok((full, None));
    }
    let dir = std::fs::File::open(state_dir)?;
    let short = format!(
        "/proc/self/fd/{}/{SOCKET_NAME}",
        std::os::fd::AsRawFd::as_raw_fd(&dir)
    );
    Ok((PathBuf::from(short), Some(dir)))
}

/// Connects to the shim of the container whose state directory is `state_dir`.
pub fn connect(state_dir: &Path) -> io::Result<UnixStream> {
    let (path, _dir) = socket_path(state_dir)?;
    UnixStream::connect(path)
}

/// Sends one command line (without its `\n`) on a new connection and returns the first reply line,
/// without its `\n`. Good for `START`, `WAIT`, `KILL`, `RESIZE` and `STATE`; for `ATTACH` and `EXEC`
/// use [`connect`], [`send_command`], [`read_line`] and [`read_frame`] to keep the connection.
pub fn command(state_dir: &Path, line: &str) -> io::Result<String> {
    let mut s = connect(state_dir)?;
    send_command(&mut s, line)?;
    read_line(&mut s)
}

/// Writes `line` and a `\n`.
pub fn send_command(stream: &mut UnixStream, line: &str) -> io::Result<()> {
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    stream.write_all(&buf)
}

/// Reads one `\n`-terminated line byte by byte (so nothing after it is consumed) and returns it
/// without the `\n`. EOF before any `\n` is `UnexpectedEof`.
pub fn read_line(stream: &mut impl Read) -> io::Result<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match stream.read(&mut b) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "shim closed the connection",
                ))
            }
            Ok(_) if b[0] == b'\n' => break,
            Ok(_) => line.push(b[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        if line.len() > 64 * 1024 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "reply line too long"));
        }
    }
    String::from_utf8(line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Reads one output frame: `Some((stream, payload))`, or `None` at a clean EOF between frames.
pub fn read_frame(stream: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut hdr = [0u8; 8];
    let mut got = 0;
    while got < hdr.len() {
        match stream.read(&mut hdr[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "truncated frame header",
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload)?;
    Ok(Some((hdr[0], payload)))
}

/// The exit status the shim left in `<state>/exit`, if it has written one.
pub fn read_exit_file(state_dir: &Path) -> io::Result<Option<ExitStatus>> {
    match std::fs::read_to_string(state_dir.join(EXIT_FILE)) {
        Ok(s) => Ok(ExitStatus::parse(&s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&frame_header(STREAM_STDERR, 3));
        buf.extend_from_slice(b"err");
        buf.extend_from_slice(&frame_header(STREAM_SYSTEM, 0));
        let mut r = &buf[..];
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some((STREAM_STDERR, b"err".to_vec()))
        );
        assert_eq!(read_frame(&mut r).unwrap(), Some((STREAM_SYSTEM, Vec::new())));
        assert_eq!(read_frame(&mut r).unwrap(), None);
        let mut short = &buf[..4];
        assert!(read_frame(&mut short).is_err());
    }

    #[test]
    fn read_line_stops_at_newline() {
        let mut r = &b"OK 42\nrest"[..];
        assert_eq!(read_line(&mut r).unwrap(), "OK 42");
        assert_eq!(r, b"rest");
        assert!(read_line(&mut r).is_err());
    }

    #[test]
    fn ready_lines() {
        assert_eq!(read_ready(&mut &b"READY 42\n"[..]).unwrap(), Ok(42));
        assert_eq!(
            read_ready(&mut &b"ERROR no cgroup\n"[..]).unwrap(),
            Err("no cgroup".to_string())
        );
        assert!(read_ready(&mut &b""[..]).is_err());
    }

    #[test]
    fn exit_status_line() {
        let e = ExitStatus {
            code: 137,
            oom_killed: true,
            finished_at: "2026-01-01T00:00:00.000000001Z".into(),
        };
        assert_eq!(ExitStatus::parse(&e.to_line()), Some(e));
    }
}

#[cfg(test)]
mod socket_path_tests {
    use super::*;

    #[test]
    fn a_state_dir_too_long_for_a_socket_address_still_works() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("x".repeat(60)).join("y".repeat(60));
        std::fs::create_dir_all(&deep).unwrap();
        assert!(deep.join(SOCKET_NAME).as_os_str().len() > 108);
        let (path, _dir) = socket_path(&deep).unwrap();
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(deep.join(SOCKET_NAME).exists(), "bound in the state directory");
        let mut client = connect(&deep).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        use std::io::Write;
        client.write_all(b"ping\n").unwrap();
        assert_eq!(read_line(&mut server).unwrap(), "ping");
    }
}
