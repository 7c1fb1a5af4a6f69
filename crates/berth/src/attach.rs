//! The client side of a hijacked stream (attach, exec): Docker's multiplexed frames to stdout
//! and stderr, local stdin to the container, a raw terminal for `-t`, and window size changes.

use anyhow::Result;
use std::io::{IsTerminal, Write};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Puts the terminal on stdin into raw mode for the life of the guard.
pub struct RawTerminal {
    saved: Option<rustix::termios::Termios>,
}

impl RawTerminal {
    pub fn enable() -> RawTerminal {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return RawTerminal { saved: None };
        }
        let Ok(saved) = rustix::termios::tcgetattr(&stdin) else {
            return RawTerminal { saved: None };
        };
        let mut raw = saved.clone();
        raw.make_raw();
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw);
        RawTerminal { saved: Some(saved) }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ =
                rustix::termios::tcsetattr(std::io::stdin(), rustix::termios::OptionalActions::Now, saved);
        }
    }
}

/// The terminal's size as (rows, cols), when stdout is a terminal.
pub fn terminal_size() -> Option<(u16, u16)> {
    let out = std::io::stdout();
    if !out.is_terminal() {
        return None;
    }
    let ws = rustix::termios::tcgetwinsize(&out).ok()?;
    Some((ws.ws_row, ws.ws_col))
}

/// Runs a hijacked session to completion: output until the daemon closes the stream; stdin (if
/// `send_stdin`) until EOF, then a half-close. With `tty`, output is raw bytes; otherwise
/// 8-byte-header frames. Ctrl-P Ctrl-Q on a terminal detaches (returns `true`).
pub async fn run_session<S>(stream: S, tty: bool, send_stdin: bool) -> Result<bool>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (detach_tx, mut detach_rx) = tokio::sync::oneshot::channel::<()>();
    let input = tokio::spawn(async move {
        if !send_stdin {
            return;
        }
        let detect = tty && std::io::stdin().is_terminal();
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 8192];
        let mut prev_ctrl_p = false;
        loop {
            let n = match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if detect {
                for &b in &buf[..n] {
                    if prev_ctrl_p && b == 0x11 {
                        let _ = detach_tx.send(());
                        return;
                    }
                    prev_ctrl_p = b == 0x10;
                }
            }
            if wr.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
        // stdin ended: tell the container (half-close), keep reading its output.
        let _ = wr.shutdown().await;
        std::mem::forget(wr);
    });
    let output = async {
        let mut stdout = std::io::stdout();
        let mut stderr = std::io::stderr();
        if tty {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = rd.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                stdout.write_all(&buf[..n])?;
                stdout.flush()?;
            }
        } else {
            let mut header = [0u8; 8];
            while rd.read_exact(&mut header).await.is_ok() {
                let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
                let mut payload = vec![0u8; len];
                if rd.read_exact(&mut payload).await.is_err() {
                    break;
                }
                match header[0] {
                    2 => {
                        stderr.write_all(&payload)?;
                        stderr.flush()?;
                    }
                    _ => {
                        stdout.write_all(&payload)?;
                        stdout.flush()?;
                    }
                }
            }
        }
        anyhow::Ok(())
    };
    let detached = tokio::select! {
        r = output => { r?; false }
        Ok(()) = &mut detach_rx => true,
    };
    input.abort();
    Ok(detached)
}
