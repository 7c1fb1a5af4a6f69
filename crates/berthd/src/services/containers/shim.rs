//! berthd's side of the shim protocol (see `berth_shim`): spawning a shim, and one-command
//! connections to it.

use std::io;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Where the `berth-shim` binary is: `$BERTH_SHIM`, or beside the running berthd.
pub fn shim_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_SHIM") {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("berth-shim")))
        .unwrap_or_else(|| PathBuf::from("berth-shim"))
}

pub async fn connect(state: &Path) -> io::Result<UnixStream> {
    let (path, _dir) = berth_shim::socket_path(state)?;
    UnixStream::connect(path).await
}

/// Reads one `\n`-terminated line, byte by byte, so that nothing after it is consumed.
pub async fn read_line(s: &mut UnixStream) -> io::Result<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        if s.read(&mut b).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "shim closed the connection",
            ));
        }
        if b[0] == b'\n' {
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
        line.push(b[0]);
    }
}

/// Sends one command and returns the one-line answer.
pub async fn command(state: &Path, line: &str) -> io::Result<String> {
    let mut s = connect(state).await?;
    s.write_all(format!("{line}\n").as_bytes()).await?;
    read_line(&mut s).await
}

/// Opens an attach stream; after this the connection carries output frames (and stdin).
pub async fn attach(state: &Path, stdin: bool, stdout: bool, stderr: bool) -> io::Result<UnixStream> {
    let mut s = connect(state).await?;
    let line = format!(
        "ATTACH {} {} {}\n",
        u8::from(stdin),
        u8::from(stdout),
        u8::from(stderr)
    );
    s.write_all(line.as_bytes()).await?;
    let answer = read_line(&mut s).await?;
    if answer != "OK" {
        return Err(io::Error::other(format!("shim refused attach: {answer}")));
    }
    Ok(s)
}

/// The exit status the shim left behind, if the container has exited.
pub fn read_exit_file(state: &Path) -> Option<berth_shim::ExitStatus> {
    let text = std::fs::read_to_string(state.join(berth_shim::EXIT_FILE)).ok()?;
    berth_shim::ExitStatus::parse(text.trim())
}
