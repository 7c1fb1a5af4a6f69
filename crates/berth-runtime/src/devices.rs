//! `/dev` inside the rootfs: device nodes (the OCI defaults plus `linux.devices`), the standard
//! symlinks, and `/dev/console` for a container with a terminal.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};
use rustix::fs::{AtFlags, FileType, Mode};
use rustix::io::Errno;

use crate::error::{Result, RuntimeError};
use crate::mounts::sys_mount;
use crate::root_dir::{fd_path, RootDir};

const MS_BIND: u32 = 4096;

/// A device node to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceNode {
    pub path: PathBuf,
    pub block: bool,
    pub major: u32,
    pub minor: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The devices every container gets (OCI runtime spec, "Default Devices").
const DEFAULTS: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// The default devices plus `linux.devices` (which win on the same path).
pub(crate) fn plan(spec_devices: &[LinuxDevice]) -> Result<Vec<DeviceNode>> {
    let mut nodes: Vec<DeviceNode> = DEFAULTS
        .iter()
        .map(|(name, major, minor)| DeviceNode {
            path: Path::new("/dev").join(name),
            block: false,
            major: *major,
            minor: *minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        })
        .collect();
    for d in spec_devices {
        let block = match d.typ() {
            LinuxDeviceType::B => true,
            LinuxDeviceType::C | LinuxDeviceType::U => false,
            other => {
                return Err(RuntimeError::Unsupported(format!(
                    "device {} of type {}",
                    d.path().display(),
                    other.as_str()
                )))
            }
        };
        if !d.path().starts_with("/dev") {
            return Err(RuntimeError::InvalidSpec(format!(
                "device {} is not under /dev",
                d.path().display()
            )));
        }
        let node = DeviceNode {
            path: d.path().clone(),
            block,
            major: u32::try_from(d.major()).unwrap_or(0),
            minor: u32::try_from(d.minor()).unwrap_or(0),
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        };
        nodes.retain(|n| n.path != node.path);
        nodes.push(node);
    }
    Ok(nodes)
}

/// Creates the nodes (mknod; a bind mount of the host's node where mknod is not allowed), the
/// `/dev` symlinks, and `/dev/console` bound to the terminal on fd 0 when `console`.
pub(crate) fn create(root: &RootDir, nodes: &[DeviceNode], console: bool) -> Result<()> {
    for node in nodes {
        create_node(root, node)?;
    }
    let dev = root.mkdir_all(Path::new("/dev"), 0o755)?;
    let links = [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
    ];
    for (name, target) in links {
        match rustix::fs::symlinkat(target, &dev, name) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(RuntimeError::io(format!("symlink /dev/{name}"), e)),
        }
    }
    // With a private devpts at /dev/pts, /dev/ptmx must be its ptmx.
    if rustix::fs::statat(&dev, "pts/ptmx", AtFlags::SYMLINK_NOFOLLOW).is_ok() {
        match rustix::fs::unlinkat(&dev, "ptmx", AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(RuntimeError::io("removing /dev/ptmx", e)),
        }
        rustix::fs::symlinkat("pts/ptmx", &dev, "ptmx")
            .map_err(|e| RuntimeError::io("symlink /dev/ptmx", e))?;
    }
    if console {
        // The terminal's own mount belongs to the caller's mount namespace, which bind mounts cannot take
        // from: bind its path (e.g. /dev/pts/3) in ours instead.
        let pty =
            std::fs::read_link("/proc/self/fd/0").map_err(|e| RuntimeError::io("finding the terminal", e))?;
        let target = root.create_file(Path::new("/dev/console"), 0o600)?;
        sys_mount(
            &pty.to_string_lossy(),
            &fd_path(&target),
            "",
            MS_BIND,
            "",
            Path::new("/dev/console"),
        )?;
    }
    Ok(())
}

fn create_node(root: &RootDir, node: &DeviceNode) -> Result<()> {
    let parent = node.path.parent().unwrap_or(Path::new("/dev"));
    let name = node
        .path
        .file_name()
        .ok_or_else(|| RuntimeError::InvalidSpec("empty device path".into()))?;
    let dir = root.mkdir_all(parent, 0o755)?;
    let file_type = if node.block {
        FileType::BlockDevice
    } else {
        FileType::CharacterDevice
    };
    let dev = rustix::fs::makedev(node.major, node.minor);
    match rustix::fs::mknodat(&dir, name, file_type, Mode::from_raw_mode(node.mode), dev) {
        Ok(()) => {}
        Err(Errno::EXIST) => return Ok(()),
        Err(Errno::PERM) => return bind_host_node(root, node),
        Err(e) => return Err(RuntimeError::io(format!("mknod {}", node.path.display()), e)),
    }
    let err = |e| RuntimeError::io(format!("setting up {}", node.path.display()), e);
    // mknod's mode went through the umask; set it exactly.
    rustix::fs::chmodat(&dir, name, Mode::from_raw_mode(node.mode), AtFlags::empty()).map_err(err)?;
    rustix::fs::chownat(
        &dir,
        name,
        Some(rustix::fs::Uid::from_raw(node.uid)),
        Some(rustix::fs::Gid::from_raw(node.gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(err)?;
    Ok(())
}

/// Where mknod is refused (e.g. in a user namespace): bind the host's node of the same path.
fn bind_host_node(root: &RootDir, node: &DeviceNode) -> Result<()> {
    let target = root.create_file(&node.path, 0o600)?;
    sys_mount(
        &node.path.to_string_lossy(),
        &fd_path(&target),
        "",
        MS_BIND,
        "",
        &node.path,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_devices_override_defaults() {
        let fuse: LinuxDevice = serde_json::from_str(
            r#"{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438}"#,
        )
        .unwrap();
        let null: LinuxDevice =
            serde_json::from_str(r#"{"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "uid": 7}"#)
                .unwrap();
        let nodes = plan(&[fuse, null]).unwrap();
        assert_eq!(nodes.len(), 7);
        assert_eq!(
            nodes.iter().filter(|n| n.path == Path::new("/dev/null")).count(),
            1
        );
        assert_eq!(
            nodes
                .iter()
                .find(|n| n.path == Path::new("/dev/null"))
                .unwrap()
                .uid,
            7
        );
        assert_eq!(nodes.last().unwrap().mode, 0o666);
    }
}
