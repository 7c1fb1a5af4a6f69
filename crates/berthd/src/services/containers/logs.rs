//! Reading a container's log (Docker's json-file format, written by its shim) for `logs`, with
//! `tail`, `since`/`until`, `timestamps` and `follow`.

use super::Entry;
use bytes::Bytes;
use serde::Deserialize;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub stdout: bool,
    pub stderr: bool,
    pub follow: bool,
    pub timestamps: bool,
    /// Only entries at or after this time (Unix nanoseconds).
    pub since: Option<i128>,
    /// Only entries before this time (Unix nanoseconds).
    pub until: Option<i128>,
    pub tail: Option<usize>,
}

#[derive(Deserialize)]
struct Line {
    log: String,
    stream: String,
    time: String,
}

/// Streams the log as API frames (multiplexed unless the container has a TTY) into a channel.
pub fn stream(entry: Arc<Entry>, path: PathBuf, opts: LogOptions, tty: bool) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(64);
    tokio::task::spawn_blocking(move || {
        let handle = tokio::runtime::Handle::current();
        let send = |line: &Line| -> bool {
            let Some(frame) = frame(line, &opts, tty) else {
                return true;
            };
            handle.block_on(tx.send(frame)).is_ok()
        };
        // Rotated files first, oldest (highest number) first.
        let mut files: Vec<PathBuf> = (1..100)
            .map(|n| rotated(&path, n))
            .take_while(|p| p.exists())
            .collect();
        files.reverse();
        let mut lines: Vec<Line> = Vec::new();
        for f in &files {
            read_lines(f, 0, &mut lines);
        }
        let mut offset = read_lines(&path, 0, &mut lines);
        if let Some(n) = opts.tail {
            let skip = lines.len().saturating_sub(n);
            lines.drain(..skip);
        }
        for l in &lines {
            if !send(l) {
                return;
            }
        }
        if !opts.follow {
            return;
        }
        let life = entry.life();
        loop {
            let running = life.borrow().running && !life.borrow().removed;
            let mut fresh = Vec::new();
            if std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) < offset {
                offset = 0; // rotated under us
            }
            offset = read_lines(&path, offset, &mut fresh);
            for l in &fresh {
                if !send(l) {
                    return;
                }
            }
            if !running || tx.is_closed() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    });
    rx
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// Reads whole lines from `offset`; returns the offset after the last whole line.
fn read_lines(path: &Path, offset: u64, out: &mut Vec<Line>) -> u64 {
    let Ok(mut f) = std::fs::File::open(path) else {
        return offset;
    };
    if f.seek(SeekFrom::Start(offset)).is_err() {
        return offset;
    }
    let mut r = BufReader::new(f);
    let mut pos = offset;
    let mut buf = String::new();
    loop {
        buf.clear();
        match r.read_line(&mut buf) {
            Ok(0) | Err(_) => return pos,
            Ok(n) if !buf.ends_with('\n') => {
                let _ = n;
                return pos; // a line still being written
            }
            Ok(n) => {
                pos += n as u64;
                if let Ok(l) = serde_json::from_str::<Line>(&buf) {
                    out.push(l);
                }
            }
        }
    }
}

fn frame(line: &Line, opts: &LogOptions, tty: bool) -> Option<Bytes> {
    let stream = match line.stream.as_str() {
        "stdout" if opts.stdout => berth_shim::STREAM_STDOUT,
        "stderr" if opts.stderr => berth_shim::STREAM_STDERR,
        _ => return None,
    };
    if opts.since.is_some() || opts.until.is_some() {
        let t = chrono::DateTime::parse_from_rfc3339(&line.time)
            .ok()?
            .timestamp_nanos_opt()? as i128;
        if opts.since.is_some_and(|s| t < s) || opts.until.is_some_and(|u| t >= u) {
            return None;
        }
    }
    let mut payload = String::new();
    if opts.timestamps {
        payload.push_str(&line.time);
        payload.push(' ');
    }
    payload.push_str(&line.log);
    let mut out = Vec::with_capacity(payload.len() + 8);
    if !tty {
        out.extend_from_slice(&berth_shim::frame_header(stream, payload.len()));
    }
    out.extend_from_slice(payload.as_bytes());
    Some(Bytes::from(out))
}

/// Docker's `since`/`until`: Unix seconds with an optional fraction, RFC 3339, or a duration
/// before now (`10m`, `1h30m`).
pub fn parse_time(s: &str) -> Option<i128> {
    if s.is_empty() {
        return None;
    }
    if let Some((secs, frac)) = s.split_once('.').or(Some((s, ""))) {
        if let Ok(secs) = secs.parse::<i128>() {
            let frac_ns = if frac.is_empty() {
                0
            } else {
                format!("{frac:0<9}")[..9].parse::<i128>().ok()?
            };
            return Some(secs * 1_000_000_000 + frac_ns);
        }
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return t.timestamp_nanos_opt().map(i128::from);
    }
    let mut total = 0f64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
        } else {
            let n: f64 = num.parse().ok()?;
            num.clear();
            total += n * match c {
                'h' => 3600.0,
                'm' => 60.0,
                's' => 1.0,
                _ => return None,
            };
        }
    }
    if !num.is_empty() {
        return None;
    }
    let now = chrono::Utc::now().timestamp_nanos_opt()? as i128;
    Some(now - (total * 1e9) as i128)
}
