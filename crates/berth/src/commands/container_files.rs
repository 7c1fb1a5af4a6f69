//! `cp`, `diff`, `export` (also under `container ...`).

use crate::client::{self, Client, DaemonError};
use anyhow::{bail, Context, Result};
use berth_api::Query;
use clap::{Args, Subcommand};
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};
use serde::Deserialize;
use std::io::{IsTerminal, Write};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum FilesCommand {
    /// Copy files/folders between a container and the local filesystem
    Cp(CpArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(DiffArgs),
    /// Export a container's filesystem as a tar archive
    Export(ExportArgs),
}

pub async fn run(client: &Client, cmd: FilesCommand) -> Result<()> {
    match cmd {
        FilesCommand::Cp(a) => cp(client, a).await,
        FilesCommand::Diff(a) => diff(client, a).await,
        FilesCommand::Export(a) => export(client, a).await,
    }
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    container: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Change {
    path: String,
    kind: u8,
}

async fn diff(client: &Client, a: DiffArgs) -> Result<()> {
    let changes: Vec<Change> = client
        .get(&format!("/containers/{}/changes", a.container), &Query::default())
        .await?;
    let mut out = std::io::stdout().lock();
    for c in changes {
        let k = match c.kind {
            0 => "C",
            1 => "A",
            2 => "D",
            _ => "?",
        };
        writeln!(out, "{k} {}", c.path)?;
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
    container: String,
}

/// Writes a response body to `out`.
async fn copy_body(resp: hyper::Response<hyper::body::Incoming>, out: &mut dyn Write) -> Result<()> {
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame
            .context("the daemon failed while sending the archive")?
            .into_data()
        {
            out.write_all(&data)?;
        }
    }
    out.flush()?;
    Ok(())
}

async fn export(client: &Client, a: ExportArgs) -> Result<()> {
    if a.output.is_none() && std::io::stdout().is_terminal() {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let resp = client
        .request(
            Method::GET,
            &format!("/containers/{}/export", a.container),
            &Query::default(),
            client::empty(),
            None,
        )
        .await?;
    match &a.output {
        Some(path) => {
            // Beside the target, renamed on success: a failed export leaves no half file.
            let tmp = path.with_file_name(format!(
                ".{}.berth-export-{}",
                path.file_name().unwrap_or_default().to_string_lossy(),
                std::process::id()
            ));
            let f = std::fs::File::create(&tmp)
                .with_context(|| format!("failed to export container: {}", tmp.display()))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            let r = copy_body(resp, &mut w).await;
            drop(w);
            match r {
                Ok(()) => Ok(std::fs::rename(&tmp, path)?),
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    Err(e)
                }
            }
        }
        None => copy_body(resp, &mut std::io::BufWriter::new(std::io::stdout().lock())).await,
    }
}

#[derive(Debug, Args)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short = 'a', long)]
    archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long = "follow-link")]
    follow_link: bool,
    /// Suppress progress output during copy
    #[arg(short = 'q', long)]
    quiet: bool,
    /// CONTAINER:SRC_PATH, a local path, or - (a tar stream on STDIN)
    #[arg(value_name = "SRC")]
    src: String,
    /// CONTAINER:DEST_PATH, a local path, or - (a tar stream to STDOUT)
    #[arg(value_name = "DEST")]
    dest: String,
}

/// `CONTAINER:PATH` -> (Some(container), path); a local path (`/x`, `./x`, `x` without `:`,
/// `-`) -> (None, path).
fn split_arg(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') || arg.starts_with('.') {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.is_empty() => (Some(c), p),
        _ => (None, arg),
    }
}

/// Docker's `X-Docker-Container-Path-Stat`.
#[derive(Debug, Deserialize)]
struct PathStat {
    name: String,
    mode: u32,
    #[serde(rename = "linkTarget", default)]
    link_target: String,
}

impl PathStat {
    fn is_dir(&self) -> bool {
        self.mode & (1 << 31) != 0
    }
}

fn decode_stat(resp: &hyper::Response<hyper::body::Incoming>) -> Result<PathStat> {
    let v = resp
        .headers()
        .get("X-Docker-Container-Path-Stat")
        .context("the daemon sent no path stat")?;
    let json = unbase64(v.as_bytes()).context("bad path stat header")?;
    serde_json::from_slice(&json).context("bad path stat header")
}

fn unbase64(s: &[u8]) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let s: Vec<u8> = s.iter().copied().filter(|c| *c != b'=').collect();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// What is at `path` in the container; `None` when nothing is.
async fn stat(client: &Client, container: &str, path: &str) -> Result<Option<PathStat>> {
    let mut q = Query::default();
    q.push("path", path);
    match client
        .request(
            Method::HEAD,
            &format!("/containers/{container}/archive"),
            &q,
            client::empty(),
            None,
        )
        .await
    {
        Ok(resp) => Ok(Some(decode_stat(&resp)?)),
        Err(e) => match e.downcast_ref::<DaemonError>() {
            Some(d) if d.status == StatusCode::NOT_FOUND => {
                // HEAD answers carry no message: tell missing files from missing containers.
                client
                    .get::<serde_json::Value>(&format!("/containers/{container}/json"), &Query::default())
                    .await?;
                Ok(None)
            }
            _ => Err(e),
        },
    }
}

async fn cp(client: &Client, a: CpArgs) -> Result<()> {
    let _ = a.quiet;
    match (split_arg(&a.src), split_arg(&a.dest)) {
        ((Some(_), _), (Some(_), _)) => bail!("copying between containers is not supported"),
        ((None, _), (None, _)) => bail!("must specify at least one container source"),
        ((Some(c), src), (None, dest)) => copy_from(client, &a, c, src, dest).await,
        ((None, src), (Some(c), dest)) => copy_to(client, &a, src, c, dest).await,
    }
}

fn abs(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

/// The base name Docker gives a path (`.` for `dir/.`).
fn base_of(path: &str) -> String {
    if path == "." || path.ends_with("/.") {
        return ".".into();
    }
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".".into())
}

async fn copy_from(client: &Client, a: &CpArgs, container: &str, src: &str, dest: &str) -> Result<()> {
    let mut src = abs(src);
    let mut rebase_to: Option<String> = None;
    if a.follow_link {
        if let Some(st) = stat(client, container, &src).await? {
            if !st.link_target.is_empty() {
                rebase_to = Some(base_of(&src));
                src = st.link_target;
            }
        }
    }
    let mut q = Query::default();
    q.push("path", src.clone());
    let resp = client
        .request(
            Method::GET,
            &format!("/containers/{container}/archive"),
            &q,
            client::empty(),
            None,
        )
        .await?;
    if dest == "-" {
        return copy_body(resp, &mut std::io::BufWriter::new(std::io::stdout().lock())).await;
    }
    let st = decode_stat(&resp)?;
    let src_name = st.name.clone();
    let top = rebase_to.unwrap_or_else(|| src_name.clone());
    let dest_path = Path::new(dest);
    // (directory to extract into, what the top entry is called there)
    let (into, new_top) = match std::fs::metadata(dest_path) {
        Ok(m) if m.is_dir() => (dest_path.to_path_buf(), top),
        Ok(_) if st.is_dir() => bail!("cannot copy a directory to a file: {dest}"),
        Ok(_) => (parent_of(dest_path), base_of(dest)),
        Err(_) => {
            if dest.ends_with('/') && !st.is_dir() {
                bail!("destination directory {dest} does not exist");
            }
            let parent = parent_of(dest_path);
            if !parent.is_dir() {
                bail!("no such directory: {}", parent.display());
            }
            if src_name == "." {
                std::fs::create_dir(dest_path)?;
                (dest_path.to_path_buf(), ".".into())
            } else {
                (parent, base_of(dest))
            }
        }
    };
    let mut body = resp.into_body();
    let (tx, rx) = std::sync::mpsc::sync_channel::<bytes::Bytes>(8);
    let preserve_owner = a.archive;
    let extractor = std::thread::spawn(move || {
        extract_local(
            ChannelReader {
                rx,
                buf: bytes::Bytes::new(),
            },
            &into,
            &src_name,
            &new_top,
            preserve_owner,
        )
    });
    let mut sent = Ok(());
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Ok(data) = f.into_data() {
                    if tx.send(data).is_err() {
                        break;
                    }
                }
            }
            Err(e) => {
                sent = Err(anyhow::Error::from(e).context("the daemon failed while sending the archive"));
                break;
            }
        }
    }
    drop(tx);
    let extracted = extractor
        .join()
        .map_err(|_| anyhow::anyhow!("extraction panicked"))?;
    sent?;
    extracted
}

fn parent_of(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

struct ChannelReader {
    rx: std::sync::mpsc::Receiver<bytes::Bytes>,
    buf: bytes::Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.recv() {
                Ok(b) => self.buf = b,
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf = self.buf.slice(n..);
        Ok(n)
    }
}

/// `path` with its top component `old` renamed `new`, as plain relative components; `None` for
/// a path that is not under `old` or that would leave the destination.
fn rebase(path: &Path, old: &str, new: &str) -> Option<PathBuf> {
    let comps: Vec<Component> = path.components().filter(|c| *c != Component::CurDir).collect();
    let mut rest = comps.as_slice();
    if old != "." {
        match rest.first() {
            Some(Component::Normal(n)) if *n == std::ffi::OsStr::new(old) => rest = &rest[1..],
            _ => return None,
        }
    }
    let mut out = PathBuf::new();
    if new != "." {
        out.push(new);
    }
    for c in rest {
        match c {
            Component::Normal(n) => out.push(n),
            _ => return None,
        }
    }
    Some(out)
}

/// Refuses to write through a symlink: no component of `rel` but the last may be one.
fn check_no_symlinks(base: &Path, rel: &Path) -> Result<()> {
    let mut p = base.to_path_buf();
    let n = rel.components().count();
    for (i, c) in rel.components().enumerate() {
        p.push(c);
        if i + 1 == n {
            break;
        }
        if let Ok(m) = std::fs::symlink_metadata(&p) {
            if m.file_type().is_symlink() {
                bail!("refusing to extract through symlink {}", p.display());
            }
        }
    }
    Ok(())
}

fn extract_local(
    reader: impl std::io::Read,
    into: &Path,
    old_top: &str,
    new_top: &str,
    preserve_owner: bool,
) -> Result<()> {
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().context("reading the archive")? {
        let mut entry = entry.context("reading the archive")?;
        let path = entry.path().context("bad name in the archive")?.into_owned();
        let Some(rel) = rebase(&path, old_top, new_top) else {
            bail!("unexpected entry {} in the archive", path.display());
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        check_no_symlinks(into, &rel)?;
        let dst = into.join(&rel);
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        if entry.header().entry_type().is_hard_link() {
            let target = entry
                .link_name()?
                .context("hard link without a target")?
                .into_owned();
            let Some(trel) = rebase(&target, old_top, new_top) else {
                bail!("hard link {} points outside the archive", path.display());
            };
            check_no_symlinks(into, &trel)?;
            let _ = std::fs::remove_file(&dst);
            std::fs::hard_link(into.join(trel), &dst)
                .with_context(|| format!("linking {}", dst.display()))?;
            continue;
        }
        if let Ok(m) = std::fs::symlink_metadata(&dst) {
            let is_dir_entry = entry.header().entry_type().is_dir();
            if !(m.is_dir() && is_dir_entry) {
                if m.is_dir() {
                    std::fs::remove_dir_all(&dst)?;
                } else {
                    std::fs::remove_file(&dst)?;
                }
            }
        }
        entry.set_preserve_permissions(true);
        entry.set_preserve_mtime(true);
        entry.set_unpack_xattrs(false);
        entry
            .unpack(&dst)
            .with_context(|| format!("extracting {}", dst.display()))?;
        if preserve_owner {
            let h = entry.header();
            if let (Ok(uid), Ok(gid)) = (h.uid(), h.gid()) {
                let _ = std::os::unix::fs::lchown(&dst, Some(uid as u32), Some(gid as u32));
            }
        }
    }
    Ok(())
}

async fn copy_to(client: &Client, a: &CpArgs, src: &str, container: &str, dest: &str) -> Result<()> {
    let dest = abs(dest);
    let mut q = Query::default();
    let body = if src == "-" {
        q.push("path", dest.clone());
        client::streaming(tokio::io::stdin())
    } else {
        let src_path = Path::new(src);
        let meta = if a.follow_link {
            std::fs::metadata(src_path)
        } else {
            std::fs::symlink_metadata(src_path)
        }
        .with_context(|| format!("could not find the file {src}"))?;
        let contents = base_of(src) == ".";
        let (into, top) = match stat(client, container, &dest).await? {
            Some(st) if st.is_dir() => (dest.clone(), if contents { ".".into() } else { base_of(src) }),
            Some(_) if meta.is_dir() => bail!("cannot copy a directory to a file: {container}:{dest}"),
            Some(_) => (parent_container_path(&dest), base_of(&dest)),
            None => {
                if dest.ends_with('/') && !meta.is_dir() {
                    bail!("destination directory {container}:{dest} does not exist");
                }
                (parent_container_path(&dest), base_of(&dest))
            }
        };
        q.push("path", into);
        let src_path = if a.follow_link {
            std::fs::canonicalize(src_path)?
        } else {
            src_path.to_path_buf()
        };
        let (w, r) = tokio::io::duplex(1 << 16);
        tokio::task::spawn_blocking(move || {
            let w = tokio_util::io::SyncIoBridge::new(w);
            let mut b = tar::Builder::new(w);
            b.follow_symlinks(false);
            let r = if meta.is_dir() {
                b.append_dir_all(&top, &src_path)
            } else {
                b.append_path_with_name(&src_path, &top)
            };
            if let Err(e) = r.and_then(|()| b.finish()) {
                eprintln!("Error: reading {}: {e}", src_path.display());
            }
        });
        client::streaming(r)
    };
    q.push("noOverwriteDirNonDir", "true");
    if a.archive {
        q.push("copyUIDGID", "true");
    }
    let resp = client
        .request(
            Method::PUT,
            &format!("/containers/{container}/archive"),
            &q,
            body,
            Some("application/x-tar"),
        )
        .await?;
    resp.into_body().collect().await?;
    Ok(())
}

fn parent_container_path(p: &str) -> String {
    match Path::new(p).parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_string_lossy().into_owned(),
        _ => "/".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_split_into_container_and_path() {
        assert_eq!(split_arg("web:/etc/passwd"), (Some("web"), "/etc/passwd"));
        assert_eq!(split_arg("/tmp/x:y"), (None, "/tmp/x:y"));
        assert_eq!(split_arg("./a:b"), (None, "./a:b"));
        assert_eq!(split_arg("-"), (None, "-"));
        assert_eq!(split_arg("file"), (None, "file"));
    }

    #[test]
    fn base64_round_trip() {
        assert_eq!(unbase64(b"Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(unbase64(b"Zm8=").unwrap(), b"fo");
        assert_eq!(unbase64(b"Zg==").unwrap(), b"f");
    }

    #[test]
    fn rebase_renames_the_top_and_refuses_escapes() {
        let r = |p: &str, o: &str, n: &str| rebase(Path::new(p), o, n);
        assert_eq!(r("passwd", "passwd", "pw"), Some(PathBuf::from("pw")));
        assert_eq!(r("etc/a/b", "etc", "x"), Some(PathBuf::from("x/a/b")));
        assert_eq!(r("./a", ".", "."), Some(PathBuf::from("a")));
        assert_eq!(r("./a", ".", "d"), Some(PathBuf::from("d/a")));
        assert_eq!(r("etc/../../x", "etc", "etc"), None);
        assert_eq!(r("other", "etc", "etc"), None);
    }
}
