//! An image's filesystem as the builder sees it: the image's layer directories overlaid
//! (read-only, or writable over a fresh upper directory for a COPY/ADD step), and path
//! resolution inside such a root that follows symlinks the way the container would see them,
//! never out of the root.

use std::ffi::CString;
use std::path::{Component, Path, PathBuf};

use super::BuildError;

/// An overlay mount that is unmounted when dropped.
pub struct OverlayMount {
    target: PathBuf,
}

impl OverlayMount {
    /// Mounts `lowers` (top first; an empty list means an empty root) at `target`, writable
    /// over `upper` when given (`work` is overlayfs's work dir), read-only otherwise.
    pub fn mount(
        lowers: &[PathBuf],
        upper: Option<(&Path, &Path)>,
        empty: &Path,
        target: &Path,
    ) -> Result<OverlayMount, BuildError> {
        std::fs::create_dir_all(target)?;
        std::fs::create_dir_all(empty)?;
        let mut lowers: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        // Overlayfs without an upper dir needs two lower dirs; an empty one at the bottom
        // changes nothing.
        lowers.push(empty.display().to_string());
        let mut data = format!("lowerdir={}", lowers.join(":"));
        let mut flags = rustix::mount::MountFlags::empty();
        match upper {
            Some((upper, work)) => {
                std::fs::create_dir_all(upper)?;
                std::fs::create_dir_all(work)?;
                // Whole files and plain whiteouts only, so the upper dir diffs into a layer.
                data.push_str(&format!(
                    ",upperdir={},workdir={},redirect_dir=off,metacopy=off,index=off",
                    upper.display(),
                    work.display()
                ));
            }
            None => flags |= rustix::mount::MountFlags::RDONLY,
        }
        let data = CString::new(data).map_err(|_| BuildError::internal("NUL in a layer path"))?;
        rustix::mount::mount("overlay", target, "overlay", flags, Some(data.as_c_str()))
            .map_err(|e| BuildError::internal(format!("mounting image layers: {e}")))?;
        Ok(OverlayMount {
            target: target.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.target
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        if let Err(e) = rustix::mount::unmount(&self.target, rustix::mount::UnmountFlags::empty()) {
            tracing::warn!(path = %self.target.display(), error = %e, "unmounting build overlay; detaching");
            let _ = rustix::mount::unmount(&self.target, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

/// Resolves `path` (absolute or relative to the root) inside `root`, following symlinks as a
/// process chrooted at `root` would (`..` stops at the root; absolute link targets start from
/// the root). With `follow_last` false a symlink in the last component is not followed.
/// Components that do not exist are kept as they are.
pub fn resolve_in_root(root: &Path, path: &str, follow_last: bool) -> Result<PathBuf, BuildError> {
    let mut pending: Vec<String> = components(path).into_iter().rev().collect();
    let mut current: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = pending.pop() {
        if c == ".." {
            current.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&current);
        candidate.push(&c);
        let is_last = pending.is_empty();
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() && (!is_last || follow_last) => {
                links += 1;
                if links > 40 {
                    return Err(BuildError::user(format!(
                        "too many levels of symbolic links: {path}"
                    )));
                }
                let target = std::fs::read_link(&candidate)?;
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    current.clear();
                }
                pending.extend(components(&target).into_iter().rev());
            }
            _ => current.push(c),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&current);
    Ok(out)
}

/// The normal components of a slash path, with `..` kept (resolved by the caller).
fn components(path: &str) -> Vec<String> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("/usr/bin", root.join("bin")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", root.join("escape")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("abs")).unwrap();
        assert_eq!(
            resolve_in_root(root, "/bin/sh", true).unwrap(),
            root.join("usr/bin/sh")
        );
        assert_eq!(
            resolve_in_root(root, "escape/x", true).unwrap(),
            root.join("etc/x")
        );
        assert_eq!(
            resolve_in_root(root, "/abs", true).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(resolve_in_root(root, "/abs", false).unwrap(), root.join("abs"));
        assert_eq!(resolve_in_root(root, "/../../x", true).unwrap(), root.join("x"));
    }
}
