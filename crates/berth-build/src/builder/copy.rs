//! COPY and ADD: picking the sources (globs as Go's `filepath.Match`, the source itself followed
//! if it is a symlink, as the classic builder does), digesting what they hold for the cache, and
//! copying them into a root mounted writable over a fresh upper directory.
//!
//! Docker's rules: a source directory's contents (not the directory) are copied; a destination
//! ending in `/`, or one that is a directory in the image, receives files under their own names;
//! several sources need such a destination. Files and created directories belong to root (or
//! `--chown`), modes are kept (or `--chmod`). ADD also unpacks local tar archives (plain or gzip).

use super::rootfs::resolve_in_root;
use super::BuildError;
use sha2::{Digest as _, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// One thing to copy.
#[derive(Debug, Clone)]
pub enum CopySource {
    /// A path inside the source root (the context or another image), already resolved.
    Path { rel: String, full: PathBuf },
    /// An inline heredoc file.
    Inline { name: String, content: String },
    /// A file ADD downloaded from a URL: `name` from the URL's path, placed with mode 0600 (as
    /// the classic builder) and never unpacked.
    Downloaded { name: String, full: PathBuf },
}

#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    pub chown: Option<(u32, u32)>,
    pub chmod: Option<u32>,
    /// ADD: unpack local tar archives.
    pub unpack_archives: bool,
}

/// Finds the sources a COPY/ADD names in `root`; `what` names the root in errors.
pub fn find_sources(root: &Path, patterns: &[String], what: &str) -> Result<Vec<CopySource>, BuildError> {
    let mut out = Vec::new();
    for pattern in patterns {
        let clean = clean_rel(pattern);
        let found: Vec<String> = if has_glob(&clean) {
            let mut m = Vec::new();
            glob_walk(root, "", &clean.split('/').collect::<Vec<_>>(), &mut m)?;
            m.sort();
            m
        } else if clean.is_empty() {
            vec![String::new()]
        } else {
            let full = resolve_in_root(root, &clean, true)?;
            if std::fs::symlink_metadata(&full).is_err() {
                vec![]
            } else {
                vec![clean.clone()]
            }
        };
        if found.is_empty() {
            return Err(BuildError::user(format!(
                "COPY failed: file not found in {what}: stat {pattern}: file does not exist"
            )));
        }
        for rel in found {
            let full = resolve_in_root(root, &rel, true)?;
            out.push(CopySource::Path { rel, full });
        }
    }
    Ok(out)
}

/// `./a/../b/` -> `b`; leading `/` and `..` above the root removed (sources stay in the root).
pub(crate) fn clean_rel(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

fn has_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

fn glob_walk(root: &Path, prefix: &str, parts: &[&str], out: &mut Vec<String>) -> Result<(), BuildError> {
    let Some((first, rest)) = parts.split_first() else {
        out.push(prefix.to_string());
        return Ok(());
    };
    let dir = if prefix.is_empty() {
        root.to_path_buf()
    } else {
        resolve_in_root(root, prefix, true)?
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok().and_then(|e| e.file_name().into_string().ok()))
        .collect();
    names.sort();
    for name in names {
        if glob_match(first, &name) {
            let path = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            glob_walk(root, &path, rest, out)?;
        }
    }
    Ok(())
}

/// Go's `filepath.Match` for one path component: `*`, `?`, `[...]` (`^` negates), `\` escapes.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|i| go(&p[1..], &n[i..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some('[') => {
                let Some(&c) = n.first() else { return false };
                let mut i = 1;
                let negate = matches!(p.get(1), Some('^' | '!'));
                if negate {
                    i += 1;
                }
                let mut matched = false;
                let mut first = true;
                while i < p.len() && (first || p[i] != ']') {
                    first = false;
                    let mut lo = p[i];
                    if lo == '\\' && i + 1 < p.len() {
                        i += 1;
                        lo = p[i];
                    }
                    let mut hi = lo;
                    if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|c| *c != ']') {
                        hi = p[i + 2];
                        i += 2;
                    }
                    if lo <= c && c <= hi {
                        matched = true;
                    }
                    i += 1;
                }
                if i >= p.len() {
                    return false;
                }
                matched != negate && go(&p[i + 1..], &n[1..])
            }
            Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && go(&p[2..], &n[1..]),
            Some(c) => n.first() == Some(c) && go(&p[1..], &n[1..]),
        }
    }
    go(&p, &n)
}

/// A digest of everything the sources hold (paths in order, types, modes, owners, bytes, link
/// targets), for the cache key.
pub fn content_digest(sources: &[CopySource]) -> Result<String, BuildError> {
    let mut h = Sha256::new();
    for s in sources {
        match s {
            CopySource::Inline { name, content } => {
                h.update(format!("inline {name} {}\0", content.len()));
                h.update(content);
            }
            CopySource::Path { rel, full } => {
                h.update(format!("src {rel}\0"));
                digest_tree(full, "", &mut h)?;
            }
            CopySource::Downloaded { name, full } => {
                h.update(format!("url {name}\0"));
                digest_tree(full, "", &mut h)?;
            }
        }
    }
    Ok(hex::encode(h.finalize()))
}

fn digest_tree(path: &Path, rel: &str, h: &mut Sha256) -> Result<(), BuildError> {
    let m = std::fs::symlink_metadata(path)?;
    h.update(format!("{rel}\0{:o}\0{}\0{}\0", m.mode(), m.uid(), m.gid()));
    let ft = m.file_type();
    if ft.is_symlink() {
        h.update(std::fs::read_link(path)?.as_os_str().as_encoded_bytes());
    } else if ft.is_file() {
        h.update(m.len().to_le_bytes());
        let mut f = File::open(path)?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    } else if ft.is_dir() {
        for name in sorted_names(path)? {
            digest_tree(&path.join(&name), &format!("{rel}/{name}"), h)?;
        }
    }
    h.update([0]);
    Ok(())
}

fn sorted_names(dir: &Path) -> Result<Vec<String>, BuildError> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name();
        names.push(
            name.into_string()
                .map_err(|n| BuildError::user(format!("file name {n:?} is not UTF-8")))?,
        );
    }
    names.sort();
    Ok(names)
}

/// Copies `sources` to `dest` (absolute, in the container) inside `root`.
pub fn copy_into(
    root: &Path,
    sources: &[CopySource],
    dest: &str,
    opts: &CopyOptions,
) -> Result<(), BuildError> {
    let multiple = sources.len() > 1;
    let dest_is_dir_named = dest.ends_with('/') || dest.ends_with("/.");
    let dest_exists_as_dir = resolve_in_root(root, dest, true)?.is_dir();
    if multiple && !dest_is_dir_named {
        return Err(BuildError::user(
            "When using COPY with more than one source file, the destination must be a directory and end with a /",
        ));
    }
    let (uid, gid) = opts.chown.unwrap_or((0, 0));
    for s in sources {
        match s {
            CopySource::Inline { name, content } => {
                let target = if dest_is_dir_named || dest_exists_as_dir {
                    format!("{}/{}", dest.trim_end_matches('/'), name)
                } else {
                    dest.to_string()
                };
                let parent = parent_of(&target);
                make_dirs(root, &parent, uid, gid)?;
                let mode = opts.chmod.unwrap_or(0o644);
                write_file(root, &target, &mut content.as_bytes(), mode, uid, gid)?;
            }
            CopySource::Downloaded { name, full } => {
                let target = if dest_is_dir_named || dest_exists_as_dir {
                    format!("{}/{}", dest.trim_end_matches('/'), name)
                } else {
                    dest.to_string()
                };
                make_dirs(root, &parent_of(&target), uid, gid)?;
                let mode = opts.chmod.unwrap_or(0o600);
                write_file(root, &target, &mut File::open(full)?, mode, uid, gid)?;
            }
            CopySource::Path { rel, full } => {
                let m = std::fs::symlink_metadata(full)?;
                if m.is_dir() {
                    make_dirs(root, dest, uid, gid)?;
                    for name in sorted_names(full)? {
                        place(root, &join(dest, &name), &full.join(&name), opts)?;
                    }
                } else if opts.unpack_archives && m.is_file() && is_archive(full)? {
                    make_dirs(root, dest, uid, gid)?;
                    unpack_archive(root, dest, full)?;
                } else {
                    let base = rel.rsplit('/').next().unwrap_or(rel);
                    let target = if dest_is_dir_named || dest_exists_as_dir {
                        join(dest, base)
                    } else {
                        dest.to_string()
                    };
                    make_dirs(root, &parent_of(&target), uid, gid)?;
                    place(root, &target, full, opts)?;
                }
            }
        }
    }
    Ok(())
}

fn join(dir: &str, name: &str) -> String {
    format!("{}/{}", dir.trim_end_matches('/'), name)
}

fn parent_of(path: &str) -> String {
    let t = path.trim_end_matches('/');
    match t.rfind('/') {
        Some(0) | None => "/".into(),
        Some(i) => t[..i].to_string(),
    }
}

/// `mkdir -p` inside the root; directories it creates get mode 0755 and `uid:gid`.
fn make_dirs(root: &Path, dir: &str, uid: u32, gid: u32) -> Result<(), BuildError> {
    let mut path = String::new();
    for c in dir.split('/').filter(|c| !c.is_empty() && *c != ".") {
        path.push('/');
        path.push_str(c);
        let resolved = resolve_in_root(root, &path, true)?;
        match std::fs::symlink_metadata(&resolved) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(BuildError::user(format!("{path} exists and is not a directory")));
            }
            Err(_) => {
                // `create_dir_all`: a symlink in the image may point at a path that does not
                // exist yet (still inside the root).
                std::fs::create_dir_all(&resolved)?;
                std::fs::set_permissions(&resolved, std::fs::Permissions::from_mode(0o755))?;
                std::os::unix::fs::lchown(&resolved, Some(uid), Some(gid))?;
            }
        }
    }
    Ok(())
}

/// Copies one source entry (recursively) to `target` in the root.
fn place(root: &Path, target: &str, src: &Path, opts: &CopyOptions) -> Result<(), BuildError> {
    let m = std::fs::symlink_metadata(src)?;
    let (uid, gid) = opts.chown.unwrap_or((0, 0));
    let ft = m.file_type();
    if ft.is_dir() {
        let resolved = resolve_in_root(root, target, true)?;
        match std::fs::symlink_metadata(&resolved) {
            Ok(e) if e.is_dir() => {}
            Ok(_) => {
                std::fs::remove_file(&resolved)?;
                std::fs::create_dir(&resolved)?;
            }
            Err(_) => std::fs::create_dir(&resolved)?,
        }
        let mode = opts.chmod.unwrap_or(m.mode() & 0o7777);
        std::fs::set_permissions(&resolved, std::fs::Permissions::from_mode(mode))?;
        std::os::unix::fs::lchown(&resolved, Some(uid), Some(gid))?;
        for name in sorted_names(src)? {
            place(root, &join(target, &name), &src.join(&name), opts)?;
        }
    } else if ft.is_symlink() {
        let path = replaceable(root, target)?;
        std::os::unix::fs::symlink(std::fs::read_link(src)?, &path)?;
        std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
    } else if ft.is_file() {
        let mode = opts.chmod.unwrap_or(m.mode() & 0o7777);
        write_file(root, target, &mut File::open(src)?, mode, uid, gid)?;
    }
    // Sockets, fifos and devices in a context are not copied (as Docker).
    Ok(())
}

/// The host path for a new non-directory at `target`: the parent resolved in the root, and any
/// non-directory already there removed.
fn replaceable(root: &Path, target: &str) -> Result<PathBuf, BuildError> {
    let name = target.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    if name.is_empty() || name == ".." || name == "." {
        return Err(BuildError::user(format!("invalid destination {target}")));
    }
    let parent = resolve_in_root(root, &parent_of(target), true)?;
    let path = parent.join(name);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_dir() => Err(BuildError::user(format!(
            "cannot overwrite directory {target} with a file"
        ))),
        Ok(_) => {
            std::fs::remove_file(&path)?;
            Ok(path)
        }
        Err(_) => Ok(path),
    }
}

fn write_file(
    root: &Path,
    target: &str,
    data: &mut dyn Read,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<(), BuildError> {
    let path = replaceable(root, target)?;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)?;
    std::io::copy(data, &mut f)?;
    f.flush()?;
    std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
    // After chown, which clears set-id bits.
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn is_archive(path: &Path) -> Result<bool, BuildError> {
    let mut head = [0u8; 512];
    let mut f = File::open(path)?;
    let mut n = 0;
    while n < head.len() {
        let r = f.read(&mut head[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    let gzip = n >= 2 && head[..2] == [0x1f, 0x8b];
    let tar = n >= 262 && &head[257..262] == b"ustar";
    Ok(gzip || tar)
}

fn unpack_archive(root: &Path, dest: &str, archive: &Path) -> Result<(), BuildError> {
    let f = File::open(archive)?;
    let reader: Box<dyn Read> = {
        let mut head = [0u8; 2];
        let mut probe = File::open(archive)?;
        let n = probe.read(&mut head)?;
        if n == 2 && head == [0x1f, 0x8b] {
            Box::new(flate2::read::GzDecoder::new(f))
        } else {
            Box::new(f)
        }
    };
    let target = resolve_in_root(root, dest, true)?;
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(true);
    ar.set_overwrite(true);
    // `unpack` refuses `..` entries and writes through no symlink out of `target`.
    ar.unpack(&target)
        .map_err(|e| BuildError::user(format!("ADD failed: unpacking {}: {e}", archive.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_go() {
        assert!(glob_match("*.txt", "a.txt"));
        assert!(!glob_match("*.txt", "a.txz"));
        assert!(glob_match("f?le", "file"));
        assert!(glob_match("[a-c]x", "bx"));
        assert!(!glob_match("[^a-c]x", "bx"));
        assert!(glob_match("\\*", "*"));
        assert!(!glob_match("[a", "a"));
    }

    #[test]
    fn copies_follow_docker_rules_and_stay_in_the_root() {
        let src = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("dir/sub")).unwrap();
        std::fs::write(src.path().join("dir/sub/f"), b"x").unwrap();
        std::fs::write(src.path().join("a.txt"), b"a").unwrap();
        std::fs::write(src.path().join("b.txt"), b"b").unwrap();
        // A symlink in the image pointing out of the root must not lead writes outside.
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("evil")).unwrap();

        let srcs = find_sources(src.path(), &["*.txt".into()], "build context").unwrap();
        assert_eq!(srcs.len(), 2);
        let opts = CopyOptions::default();
        assert!(copy_into(root.path(), &srcs, "/t", &opts).is_err());
        copy_into(root.path(), &srcs, "/t/", &opts).unwrap();
        assert_eq!(std::fs::read(root.path().join("t/b.txt")).unwrap(), b"b");

        let dir = find_sources(src.path(), &["dir".into()], "build context").unwrap();
        copy_into(root.path(), &dir, "/evil/app", &opts).unwrap();
        assert_eq!(
            std::fs::read(
                root.path()
                    .join(outside.path().strip_prefix("/").unwrap())
                    .join("app/sub/f")
            )
            .unwrap(),
            b"x"
        );
        assert!(!outside.path().join("app").exists());

        let missing = find_sources(src.path(), &["nope".into()], "build context").unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
        let d1 = content_digest(&srcs).unwrap();
        std::fs::write(src.path().join("a.txt"), b"changed").unwrap();
        assert_ne!(d1, content_digest(&srcs).unwrap());
    }
}
