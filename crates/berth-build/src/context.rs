//! The build context: the tar the client sends (plain or compressed), unpacked into a private
//! directory with the image store's layer rules (no `..`, nothing written through a symlink,
//! no absolute paths), then trimmed by `.dockerignore` as the classic builder does.

use crate::dockerignore::DockerIgnore;
use std::io::Read;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("invalid build context: {0}")]
    Invalid(String),
    #[error("build context: {0}")]
    Io(#[from] std::io::Error),
}

/// Unpacks the context tar into `dest` (which must be empty or absent), then removes what
/// `.dockerignore` excludes (never the Dockerfile or `.dockerignore` itself).
pub fn unpack_context<R: Read>(reader: R, dest: &Path, dockerfile: &str) -> Result<(), ContextError> {
    std::fs::create_dir_all(dest)?;
    berth_image::layer::apply_layer(reader, dest).map_err(|e| ContextError::Invalid(e.to_string()))?;
    let ignore_text = match std::fs::read_to_string(dest.join(".dockerignore")) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let ignore = DockerIgnore::parse(&ignore_text).map_err(|e| ContextError::Invalid(e.to_string()))?;
    let keep = [
        crate::dockerignore::clean_path(dockerfile),
        ".dockerignore".to_string(),
    ];
    prune_ignored(dest, "", &ignore, &keep)?;
    Ok(())
}

fn prune_ignored(root: &Path, rel: &str, ignore: &DockerIgnore, keep: &[String]) -> std::io::Result<()> {
    let dir = root.join(rel);
    let mut names: Vec<_> = std::fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let Some(name) = name.to_str() else { continue };
        let path = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        let full = root.join(&path);
        let is_dir = std::fs::symlink_metadata(&full)?.is_dir();
        if ignore.matches(&path) && !keep.contains(&path) {
            if is_dir && ignore.may_include_under(&path) {
                prune_ignored(root, &path, ignore, keep)?;
            } else if is_dir {
                std::fs::remove_dir_all(&full)?;
            } else {
                std::fs::remove_file(&full)?;
            }
        } else if is_dir {
            prune_ignored(root, &path, ignore, keep)?;
        }
    }
    Ok(())
}

/// The client side: writes the context directory `dir` as a tar the way the docker CLI does:
/// what `.dockerignore` excludes is left out (the Dockerfile and `.dockerignore` always go),
/// entries sorted, owned by 0:0, with their modes and mtimes; symlinks are sent as links.
pub fn write_context_tar<W: std::io::Write>(dir: &Path, dockerfile: &str, out: W) -> Result<W, ContextError> {
    let patterns = match std::fs::read_to_string(dir.join(".dockerignore")) {
        Ok(text) => crate::dockerignore::read_ignore_file(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let patterns = crate::dockerignore::keep_build_files(patterns, dockerfile, false);
    let ignore = DockerIgnore::new(&patterns).map_err(|e| ContextError::Invalid(e.to_string()))?;
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    add_tree(&mut tar, dir, "", &ignore)?;
    Ok(tar.into_inner()?)
}

fn add_tree<W: std::io::Write>(
    tar: &mut tar::Builder<W>,
    root: &Path,
    rel: &str,
    ignore: &DockerIgnore,
) -> Result<(), ContextError> {
    let mut names: Vec<String> = std::fs::read_dir(root.join(rel))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let full = root.join(&path);
        let meta = std::fs::symlink_metadata(&full)?;
        let excluded = ignore.matches(&path);
        if excluded && !(meta.is_dir() && ignore.may_include_under(&path)) {
            continue;
        }
        if !excluded || !meta.is_dir() {
            let mut header = tar::Header::new_gnu();
            header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
            // As the docker CLI: the context is sent owned by root.
            header.set_uid(0);
            header.set_gid(0);
            header.set_username("")?;
            header.set_groupname("")?;
            if meta.is_file() {
                tar.append_data(&mut header, &path, std::fs::File::open(&full)?)?;
            } else if meta.file_type().is_symlink() {
                tar.append_link(&mut header, &path, std::fs::read_link(&full)?)?;
            } else if meta.is_dir() {
                header.set_size(0);
                tar.append_data(&mut header, format!("{path}/"), std::io::empty())?;
            }
        }
        if meta.is_dir() {
            add_tree(tar, root, &path, ignore)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod client_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_client_tar_leaves_out_ignored_files_and_keeps_modes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(
            d.join(".dockerignore"),
            "node_modules\n*.log\nDockerfile\n!keep.log\n",
        )
        .unwrap();
        std::fs::create_dir_all(d.join("node_modules/big")).unwrap();
        std::fs::write(d.join("node_modules/big/x.js"), "x").unwrap();
        std::fs::write(d.join("debug.log"), "noise").unwrap();
        std::fs::write(d.join("keep.log"), "kept").unwrap();
        std::fs::write(d.join("secret"), "s").unwrap();
        std::fs::set_permissions(d.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink("keep.log", d.join("link")).unwrap();

        let bytes = write_context_tar(d, "Dockerfile", Vec::new()).unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut seen = Vec::new();
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
            let path = e.path().unwrap().to_string_lossy().into_owned();
            if path == "secret" {
                assert_eq!(h.mode().unwrap() & 0o7777, 0o600);
            }
            if path == "link" {
                assert_eq!(e.link_name().unwrap().unwrap().to_str(), Some("keep.log"));
            }
            seen.push(path);
        }
        // The Dockerfile goes although .dockerignore names it; the rest as the patterns say.
        assert_eq!(
            seen,
            [".dockerignore", "Dockerfile", "keep.log", "link", "secret"]
        );
    }
}
