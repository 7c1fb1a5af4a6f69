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
