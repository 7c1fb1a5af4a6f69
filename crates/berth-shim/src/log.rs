//! The container log in Docker's json-file format: one JSON object per line of output,
//! `{"log":"hi\n","stream":"stdout","time":"2026-01-01T00:00:00.123456789Z"}`, with size-based
//! rotation (`log` -> `log.1` -> `log.2` ...) like Docker's `max-size`/`max-file` options.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::time::write_rfc3339;

/// A line longer than this is written in pieces of this size (Docker's partial messages).
pub const MAX_LINE: usize = 16 * 1024;

pub struct JsonLog {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: Option<u64>,
    max_files: u32,
    /// The unfinished last line of stdout and of stderr.
    pending: [Vec<u8>; 2],
    /// Encoded entries not yet written (reused between writes).
    buf: Vec<u8>,
}

impl JsonLog {
    /// Opens (appends to) the log at `path`. `max_size` in bytes; `max_files` counts the live file
    /// (so 1 means truncate in place when full, 3 keeps `log.1` and `log.2`).
    pub fn open(path: &Path, max_size: Option<u64>, max_files: u32) -> io::Result<JsonLog> {
        let file = open_log(path)?;
        let size = file.metadata()?.len();
        Ok(JsonLog {
            path: path.to_path_buf(),
            file,
            size,
            max_size: max_size.filter(|&s| s > 0),
            max_files: max_files.max(1),
            pending: [Vec::new(), Vec::new()],
            buf: Vec::new(),
        })
    }

    /// Logs `data` read from the container's `stream` (1 stdout, 2 stderr): complete lines are
    /// written at once, a trailing partial line is kept until its newline, [`MAX_LINE`] bytes or
    /// [`JsonLog::flush`].
    pub fn write(&mut self, stream: u8, data: &[u8]) -> io::Result<()> {
        let idx = usize::from(stream == berth_shim::STREAM_STDERR);
        let now = SystemTime::now();
        let mut rest = data;
        while !rest.is_empty() {
            let pending = &mut self.pending[idx];
            let room = MAX_LINE - pending.len();
            let window = &rest[..rest.len().min(room)];
            match window.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let line_end = i + 1;
                    if pending.is_empty() {
                        self.entry(idx, &rest[..line_end], now)?;
                    } else {
                        let mut line = std::mem::take(&mut self.pending[idx]);
                        line.extend_from_slice(&rest[..line_end]);
                        self.entry(idx, &line, now)?;
                        line.clear();
                        self.pending[idx] = line;
                    }
                    rest = &rest[line_end..];
                }
                None if window.len() == room => {
                    // A full line's worth without a newline: write it as a partial entry.
                    let mut line = std::mem::take(&mut self.pending[idx]);
                    line.extend_from_slice(window);
                    self.entry(idx, &line, now)?;
                    line.clear();
                    self.pending[idx] = line;
                    rest = &rest[window.len()..];
                }
                None => {
                    pending.extend_from_slice(rest);
                    rest = &[];
                }
            }
        }
        self.write_out()?;
        self.trim();
        Ok(())
    }

    /// Writes any partial lines (at exit).
    pub fn flush(&mut self) -> io::Result<()> {
        let now = SystemTime::now();
        for idx in 0..2 {
            if !self.pending[idx].is_empty() {
                let line = std::mem::take(&mut self.pending[idx]);
                self.entry(idx, &line, now)?;
            }
        }
        self.write_out()?;
        self.trim();
        Ok(())
    }

    /// Encodes one entry into `buf`, rotating first when the file is full.
    fn entry(&mut self, idx: usize, line: &[u8], now: SystemTime) -> io::Result<()> {
        if let Some(max) = self.max_size {
            if self.size + self.buf.len() as u64 >= max {
                self.write_out()?;
                self.rotate()?;
            }
        }
        self.buf.extend_from_slice(b"{\"log\":\"");
        escape_json(line, &mut self.buf);
        self.buf.extend_from_slice(if idx == 0 {
            b"\",\"stream\":\"stdout\",\"time\":\""
        } else {
            b"\",\"stream\":\"stderr\",\"time\":\""
        });
        write_rfc3339(now, &mut self.buf);
        self.buf.extend_from_slice(b"\"}\n");
        Ok(())
    }

    fn write_out(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let r = self.file.write_all(&self.buf);
        // Count what we meant to write even on error: the next rotation check stays conservative.
        self.size += self.buf.len() as u64;
        self.buf.clear();
        r
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.max_files <= 1 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        let name = |n: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        for n in (1..self.max_files - 1).rev() {
            match fs::rename(name(n), name(n + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        fs::rename(&self.path, name(1))?;
        self.file = open_log(&self.path)?;
        self.size = 0;
        Ok(())
    }

    /// Gives back memory after a burst of output.
    fn trim(&mut self) {
        if self.buf.capacity() > 64 * 1024 {
            self.buf = Vec::new();
        }
        for p in &mut self.pending {
            if p.is_empty() && p.capacity() > 4096 {
                *p = Vec::new();
            }
        }
    }
}

fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

/// Escapes `s` for a JSON string the way Docker's json-file driver does (Go's encoding/json):
/// `"` `\` and control characters, `<` `>` `&` as `\u003c` ..., U+2028/U+2029, and invalid UTF-8
/// as U+FFFD.
pub fn escape_json(s: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for chunk in s.utf8_chunks() {
        let valid = chunk.valid();
        let bytes = valid.as_bytes();
        let mut start = 0;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            let esc: Option<&[u8]> = match b {
                b'"' => Some(b"\\\""),
                b'\\' => Some(b"\\\\"),
                b'\n' => Some(b"\\n"),
                b'\r' => Some(b"\\r"),
                b'\t' => Some(b"\\t"),
                0..=0x1f | b'<' | b'>' | b'&' => Some(b""),
                0xe2 if bytes.get(i + 1) == Some(&0x80) && matches!(bytes.get(i + 2), Some(0xa8 | 0xa9)) => {
                    Some(b"")
                }
                _ => None,
            };
            match esc {
                None => i += 1,
                Some(e) => {
                    out.extend_from_slice(&bytes[start..i]);
                    if !e.is_empty() {
                        out.extend_from_slice(e);
                        i += 1;
                    } else if b == 0xe2 {
                        out.extend_from_slice(if bytes[i + 2] == 0xa8 {
                            b"\\u2028"
                        } else {
                            b"\\u2029"
                        });
                        i += 3;
                    } else {
                        out.extend_from_slice(b"\\u00");
                        out.push(HEX[usize::from(b >> 4)]);
                        out.push(HEX[usize::from(b & 0xf)]);
                        i += 1;
                    }
                    start = i;
                }
            }
        }
        out.extend_from_slice(&bytes[start..]);
        if !chunk.invalid().is_empty() {
            out.extend_from_slice(b"\\ufffd");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &[u8]) -> String {
        let mut v = Vec::new();
        escape_json(s, &mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn escapes_like_docker() {
        assert_eq!(esc(b"hi\n"), "hi\\n");
        assert_eq!(esc(b"a\"b\\c\td\r"), "a\\\"b\\\\c\\td\\r");
        assert_eq!(esc(b"<a&b>"), "\\u003ca\\u0026b\\u003e");
        assert_eq!(esc(b"\x01\x1b["), "\\u0001\\u001b[");
        assert_eq!(esc("é\u{2028}x\u{2029}".as_bytes()), "é\\u2028x\\u2029");
        assert_eq!(esc(b"a\xffb"), "a\\ufffdb");
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn splits_lines_and_keeps_partials() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c-json.log");
        let mut log = JsonLog::open(&p, None, 1).unwrap();
        log.write(1, b"one\ntw").unwrap();
        log.write(2, b"err\n").unwrap();
        log.write(1, b"o\nthree").unwrap();
        let l = lines(&p);
        assert_eq!(l.len(), 3);
        assert_eq!(l[0]["log"], "one\n");
        assert_eq!(l[0]["stream"], "stdout");
        assert_eq!(l[1]["log"], "err\n");
        assert_eq!(l[1]["stream"], "stderr");
        assert_eq!(l[2]["log"], "two\n");
        let t = l[0]["time"].as_str().unwrap();
        assert_eq!(t.len(), 30, "{t}");
        assert!(t.ends_with('Z'));
        log.flush().unwrap();
        let l = lines(&p);
        assert_eq!(l.len(), 4);
        assert_eq!(l[3]["log"], "three");
    }

    #[test]
    fn long_lines_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let mut log = JsonLog::open(&p, None, 1).unwrap();
        let mut data = vec![b'x'; MAX_LINE * 2 + 10];
        data.push(b'\n');
        log.write(1, &data[..100]).unwrap();
        log.write(1, &data[100..]).unwrap();
        let l = lines(&p);
        assert_eq!(l.len(), 3);
        assert_eq!(l[0]["log"].as_str().unwrap().len(), MAX_LINE);
        assert_eq!(l[1]["log"].as_str().unwrap().len(), MAX_LINE);
        assert_eq!(l[2]["log"].as_str().unwrap(), "xxxxxxxxxx\n");
    }

    #[test]
    fn rotates() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let mut log = JsonLog::open(&p, Some(200), 3).unwrap();
        for i in 0..20 {
            log.write(1, format!("line {i}\n").as_bytes()).unwrap();
        }
        let rotated = |n: u32| dir.path().join(format!("log.{n}"));
        assert!(rotated(1).exists());
        assert!(rotated(2).exists());
        assert!(!rotated(3).exists());
        for f in [p.clone(), rotated(1), rotated(2)] {
            let len = fs::metadata(&f).unwrap().len();
            assert!(len < 200 + 100, "{len}");
        }
        let last = lines(&p);
        assert_eq!(last.last().unwrap()["log"], "line 19\n");
        let older = lines(&rotated(1));
        let n_last = last.len();
        assert_eq!(older.last().unwrap()["log"], format!("line {}\n", 19 - n_last));

        // One file: truncated in place.
        let p1 = dir.path().join("single");
        let mut log = JsonLog::open(&p1, Some(200), 1).unwrap();
        for i in 0..20 {
            log.write(2, format!("line {i}\n").as_bytes()).unwrap();
        }
        assert!(!dir.path().join("single.1").exists());
        assert!(fs::metadata(&p1).unwrap().len() < 300);
        assert_eq!(lines(&p1).last().unwrap()["log"], "line 19\n");
    }
}
