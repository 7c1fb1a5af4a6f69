//! A container's mounts as Docker defines them: `-v` (HostConfig.Binds), `--mount`
//! (HostConfig.Mounts), `--volumes-from`, and the image's `VOLUME`s, turned into mount points that
//! the record keeps, inspect shows and the OCI spec mounts.

use super::error::{ContainerError, Result};
use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Component, Path};

/// One mount of a container, fixed at create.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MountPoint {
    /// `bind`, `volume` or `tmpfs`.
    pub kind: String,
    /// The volume's name (volumes only).
    #[serde(default)]
    pub name: String,
    /// The host path: a bind's source, or the volume's data directory.
    #[serde(default)]
    pub source: String,
    pub destination: String,
    pub rw: bool,
    /// As the user wrote it (`ro,z`); what inspect shows as `Mode`.
    #[serde(default)]
    pub mode: String,
    /// `rprivate`, `rshared`, ... (binds).
    #[serde(default)]
    pub propagation: String,
    /// `bind-nonrecursive` (`BindOptions.NonRecursive`): mounts below the source stay out.
    #[serde(default)]
    pub non_recursive: bool,
    /// Copy what the image has at the destination into the volume while it is empty.
    #[serde(default)]
    pub copy_data: bool,
    /// tmpfs mount options (`size=...`, `mode=...`).
    #[serde(default)]
    pub tmpfs_options: Vec<String>,
}

impl MountPoint {
    /// Docker's entry in inspect's `Mounts`.
    pub fn to_json(&self) -> Value {
        match self.kind.as_str() {
            "volume" => json!({
                "Type": "volume", "Name": self.name, "Source": self.source,
                "Destination": self.destination, "Driver": "local", "Mode": self.mode, "RW": self.rw,
                "Propagation": "",
            }),
            kind => json!({
                "Type": kind, "Source": self.source, "Destination": self.destination,
                "Mode": self.mode, "RW": self.rw, "Propagation": self.propagation,
            }),
        }
    }
}

const PROPAGATIONS: &[&str] = &["shared", "rshared", "slave", "rslave", "private", "rprivate"];

fn invalid_spec(raw: &str) -> ContainerError {
    ContainerError::Invalid(format!("invalid volume specification: '{raw}'"))
}

fn check_destination(kind: &str, dest: &str) -> Result<()> {
    if !dest.starts_with('/') {
        return Err(ContainerError::Invalid(format!(
            "invalid mount config for type \"{kind}\": invalid mount path: '{dest}' mount path must be absolute"
        )));
    }
    if Path::new(dest)
        .components()
        .all(|c| matches!(c, Component::RootDir))
    {
        return Err(ContainerError::Invalid(format!(
            "invalid mount config for type \"{kind}\": invalid specification: destination can't be '/'"
        )));
    }
    Ok(())
}

/// One `-v` entry: `src:dst[:mode]`, `name:dst[:mode]`, or `dst` (an anonymous volume).
pub fn parse_bind(raw: &str) -> Result<MountPoint> {
    let parts: Vec<&str> = raw.split(':').collect();
    let (source, dest, mode) = match parts.as_slice() {
        [dest] => ("", *dest, ""),
        [source, dest] => (*source, *dest, ""),
        [source, dest, mode] => (*source, *dest, *mode),
        _ => return Err(invalid_spec(raw)),
    };
    if dest.is_empty() || (parts.len() > 1 && source.is_empty()) {
        return Err(invalid_spec(raw));
    }
    let mut rw = true;
    let mut copy_data = true;
    let mut propagation = String::new();
    let mut seen_rw = false;
    for m in mode.split(',').filter(|m| !m.is_empty()) {
        match m {
            "ro" | "rw" if !seen_rw => {
                seen_rw = true;
                rw = m == "rw";
            }
            "z" | "Z" => {}
            "nocopy" => copy_data = false,
            p if PROPAGATIONS.contains(&p) && propagation.is_empty() => propagation = p.into(),
            _ => return Err(ContainerError::Invalid(format!("invalid mode: {mode}"))),
        }
    }
    let kind = if source.starts_with('/') { "bind" } else { "volume" };
    check_destination(kind, dest)?;
    if kind == "bind" {
        check_destination("bind", source).map_err(|_| invalid_spec(raw))?;
        return Ok(MountPoint {
            kind: kind.into(),
            source: clean(source),
            destination: clean(dest),
            rw,
            mode: mode.into(),
            propagation: if propagation.is_empty() {
                "rprivate".into()
            } else {
                propagation
            },
            ..Default::default()
        });
    }
    if !propagation.is_empty() {
        return Err(ContainerError::Invalid(format!(
            "invalid mode: {mode}: propagation is only for bind mounts"
        )));
    }
    if !source.is_empty() {
        crate::services::volumes::validate_name(source)
            .map_err(|e| ContainerError::Invalid(e.to_string()))?;
    }
    Ok(MountPoint {
        kind: kind.into(),
        name: source.into(),
        destination: clean(dest),
        rw,
        mode: if mode.is_empty() { "z".into() } else { mode.into() },
        copy_data,
        ..Default::default()
    })
}

/// One `--mount` entry (HostConfig.Mounts), in the API's JSON shape.
pub fn parse_mount(m: &Value) -> Result<MountPoint> {
    let kind = m["Type"].as_str().unwrap_or("");
    let source = m["Source"].as_str().unwrap_or("");
    let target = m["Target"].as_str().unwrap_or("");
    let read_only = m["ReadOnly"].as_bool().unwrap_or(false);
    let bad = |msg: &str| ContainerError::Invalid(format!("invalid mount config for type \"{kind}\": {msg}"));
    if !matches!(kind, "bind" | "volume" | "tmpfs") {
        return Err(ContainerError::Invalid(format!("mount type unknown: {kind:?}")));
    }
    if target.is_empty() {
        return Err(bad("field Target must not be empty"));
    }
    check_destination(kind, target)?;
    let has = |field: &str| m.get(field).is_some_and(|v| !v.is_null());
    for (field, allowed) in [
        ("BindOptions", "bind"),
        ("VolumeOptions", "volume"),
        ("TmpfsOptions", "tmpfs"),
    ] {
        if has(field) && kind != allowed {
            return Err(bad(&format!("field {field} must not be specified")));
        }
    }
    match kind {
        "bind" => {
            if source.is_empty() {
                return Err(bad("field Source must not be empty"));
            }
            if !source.starts_with('/') {
                return Err(bad(&format!(
                    "invalid mount path: '{source}' mount path must be absolute"
                )));
            }
            let create = m["BindOptions"]["CreateMountpoint"].as_bool().unwrap_or(false);
            if !Path::new(source).exists() {
                if create {
                    std::fs::create_dir_all(source)?;
                } else {
                    return Err(bad(&format!("bind source path does not exist: {source}")));
                }
            }
            let propagation = m["BindOptions"]["Propagation"].as_str().unwrap_or("");
            if !propagation.is_empty() && !PROPAGATIONS.contains(&propagation) {
                return Err(bad(&format!("invalid propagation mode: {propagation}")));
            }
            Ok(MountPoint {
                kind: kind.into(),
                source: clean(source),
                destination: clean(target),
                rw: !read_only,
                propagation: if propagation.is_empty() {
                    "rprivate".into()
                } else {
                    propagation.into()
                },
                non_recursive: m["BindOptions"]["NonRecursive"].as_bool().unwrap_or(false),
                ..Default::default()
            })
        }
        "volume" => {
            if !source.is_empty() {
                crate::services::volumes::validate_name(source)
                    .map_err(|e| ContainerError::Invalid(e.to_string()))?;
            }
            Ok(MountPoint {
                kind: kind.into(),
                name: source.into(),
                destination: clean(target),
                rw: !read_only,
                mode: "z".into(),
                copy_data: !m["VolumeOptions"]["NoCopy"].as_bool().unwrap_or(false),
                ..Default::default()
            })
        }
        _ => {
            if !source.is_empty() {
                return Err(bad("field Source must not be specified"));
            }
            let mut opts = Vec::new();
            match m["TmpfsOptions"]["SizeBytes"].as_i64() {
                Some(n) if n < 0 => return Err(bad("invalid tmpfs size")),
                Some(n) if n > 0 => opts.push(format!("size={n}")),
                _ => {}
            }
            if let Some(mode) = m["TmpfsOptions"]["Mode"].as_u64().filter(|m| *m != 0) {
                opts.push(format!("mode={mode:o}"));
            }
            Ok(MountPoint {
                kind: kind.into(),
                destination: clean(target),
                rw: !read_only,
                tmpfs_options: opts,
                ..Default::default()
            })
        }
    }
}

/// `--volumes-from c[:ro|:rw]`: the name, and whether the mode overrides the mounts' own.
pub fn parse_volumes_from(raw: &str) -> Result<(&str, Option<bool>)> {
    match raw.split_once(':') {
        None => Ok((raw, None)),
        Some((name, "rw")) => Ok((name, Some(true))),
        Some((name, "ro")) => Ok((name, Some(false))),
        Some((_, mode)) => Err(ContainerError::Invalid(format!("invalid mode: {mode}"))),
    }
}

/// Adds `m` unless another mount already has its destination. `strict` (the user's own `-v` and
/// `--mount`) refuses a duplicate as Docker does; later sources (volumes-from, image VOLUMEs)
/// quietly yield to what the user asked for.
pub fn add(list: &mut Vec<MountPoint>, m: MountPoint, strict: bool) -> Result<()> {
    if list.iter().any(|x| x.destination == m.destination) {
        if strict {
            return Err(ContainerError::Invalid(format!(
                "Duplicate mount point: {}",
                m.destination
            )));
        }
        return Ok(());
    }
    list.push(m);
    Ok(())
}

/// The OCI spec's entries for these mount points.
pub fn spec_mounts(list: &[MountPoint]) -> Vec<Value> {
    list.iter()
        .map(|m| {
            let ro = if m.rw { None } else { Some("ro".to_string()) };
            match m.kind.as_str() {
                "tmpfs" => {
                    let mut o: Vec<String> = vec!["nosuid".into(), "nodev".into(), "noexec".into()];
                    o.extend(m.tmpfs_options.iter().cloned());
                    o.extend(ro);
                    json!({"destination": m.destination, "type": "tmpfs", "source": "tmpfs", "options": o})
                }
                _ => {
                    let propagation = if m.propagation.is_empty() {
                        "rprivate".to_string()
                    } else {
                        m.propagation.clone()
                    };
                    let bind = if m.non_recursive { "bind" } else { "rbind" };
                    let mut o = vec![bind.to_string(), propagation];
                    o.extend(ro);
                    json!({"destination": m.destination, "type": "bind", "source": m.source, "options": o})
                }
            }
        })
        .collect()
}

/// Docker's copy-up: when a volume is still empty, it gets what the image has at the mount's
/// destination (files, ownership, modes, times). `rootfs` is the container's mounted root; the
/// destination is resolved inside it, so an image's symlinks cannot point the copy elsewhere.
pub fn copy_up(rootfs: &Path, destination: &str, volume: &Path) -> std::io::Result<()> {
    use rustix::fs::open;
    let root = open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let src = match super::files::resolve::open_in_root(
        root.as_fd(),
        Path::new(destination),
        OFlags::RDONLY | OFlags::DIRECTORY,
        true,
    ) {
        Ok(fd) => fd,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => return Ok(()),
        Err(e) => return Err(e),
    };
    let dst = open(
        volume,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut entries = rustix::fs::Dir::read_from(&dst)?;
    if entries.any(|e| e.is_ok_and(|e| !matches!(e.file_name().to_bytes(), b"." | b".."))) {
        return Ok(());
    }
    let st = rustix::fs::fstat(&src)?;
    copy_dir(src.as_fd(), dst.as_fd())?;
    copy_owner_and_mode(dst.as_fd(), &st)
}

fn copy_owner_and_mode(fd: BorrowedFd<'_>, st: &rustix::fs::Stat) -> std::io::Result<()> {
    rustix::fs::fchown(
        fd,
        Some(rustix::fs::Uid::from_raw(st.st_uid)),
        Some(rustix::fs::Gid::from_raw(st.st_gid)),
    )?;
    rustix::fs::fchmod(fd, Mode::from_raw_mode(st.st_mode & 0o7777))?;
    Ok(())
}

fn copy_dir(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> std::io::Result<()> {
    let nofollow = OFlags::NOFOLLOW | OFlags::CLOEXEC;
    for entry in rustix::fs::Dir::read_from(src)? {
        let entry = entry?;
        let name = entry.file_name();
        if matches!(name.to_bytes(), b"." | b"..") {
            continue;
        }
        let st = rustix::fs::statat(src, name, AtFlags::SYMLINK_NOFOLLOW)?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                rustix::fs::mkdirat(dst, name, Mode::from_raw_mode(0o700))?;
                let s = rustix::fs::openat(
                    src,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | nofollow,
                    Mode::empty(),
                )?;
                let d = rustix::fs::openat(
                    dst,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | nofollow,
                    Mode::empty(),
                )?;
                copy_dir(s.as_fd(), d.as_fd())?;
                copy_owner_and_mode(d.as_fd(), &st)?;
            }
            FileType::RegularFile => {
                let s = rustix::fs::openat(src, name, OFlags::RDONLY | nofollow, Mode::empty())?;
                let d = rustix::fs::openat(
                    dst,
                    name,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | nofollow,
                    Mode::from_raw_mode(0o600),
                )?;
                let (mut s, mut d) = (std::fs::File::from(s), std::fs::File::from(d));
                std::io::copy(&mut s, &mut d)?;
                copy_owner_and_mode(d.as_fd(), &st)?;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(src, name, Vec::new())?;
                rustix::fs::symlinkat(&target, dst, name)?;
                rustix::fs::chownat(
                    dst,
                    name,
                    Some(rustix::fs::Uid::from_raw(st.st_uid)),
                    Some(rustix::fs::Gid::from_raw(st.st_gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )?;
            }
            FileType::Fifo | FileType::CharacterDevice | FileType::BlockDevice => {
                let kind = FileType::from_raw_mode(st.st_mode);
                rustix::fs::mknodat(
                    dst,
                    name,
                    kind,
                    Mode::from_raw_mode(st.st_mode & 0o7777),
                    st.st_rdev,
                )?;
                rustix::fs::chownat(
                    dst,
                    name,
                    Some(rustix::fs::Uid::from_raw(st.st_uid)),
                    Some(rustix::fs::Gid::from_raw(st.st_gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )?;
            }
            _ => continue,
        }
        let times = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: st.st_atime as _,
                tv_nsec: st.st_atime_nsec as _,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: st.st_mtime as _,
                tv_nsec: st.st_mtime_nsec as _,
            },
        };
        rustix::fs::utimensat(dst, name, &times, AtFlags::SYMLINK_NOFOLLOW)?;
    }
    Ok(())
}

/// A path without trailing slashes, `.` or doubled separators (`/data/` -> `/data`).
fn clean(p: &str) -> String {
    let mut out = String::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(n) => {
                out.push('/');
                out.push_str(&n.to_string_lossy());
            }
            Component::ParentDir => out.push_str("/.."),
            _ => {}
        }
    }
    if out.is_empty() {
        "/".into()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_parse_as_docker_does() {
        let v = parse_bind("data:/srv/data").unwrap();
        assert_eq!(
            (v.kind.as_str(), v.name.as_str(), v.rw, v.mode.as_str()),
            ("volume", "data", true, "z")
        );
        assert!(v.copy_data);
        let v = parse_bind("data:/srv/:ro,nocopy").unwrap();
        assert_eq!(
            (v.destination.as_str(), v.rw, v.copy_data),
            ("/srv", false, false)
        );
        let b = parse_bind("/tmp/x:/x:ro,rshared").unwrap();
        assert_eq!(
            (b.kind.as_str(), b.rw, b.propagation.as_str()),
            ("bind", false, "rshared")
        );
        let b = parse_bind("/tmp/x:/x").unwrap();
        assert_eq!((b.propagation.as_str(), b.mode.as_str()), ("rprivate", ""));
        let anon = parse_bind("/cache").unwrap();
        assert_eq!((anon.kind.as_str(), anon.name.as_str()), ("volume", ""));

        for bad in [
            "a:b:c:d",
            ":/x",
            "data:rel",
            "data:/",
            "/x:/y:bogus",
            "/x:/y:ro,rw",
            "a/b:/x",
            "v:/x:rshared",
        ] {
            assert!(parse_bind(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_bind("/x:/y:bogus").unwrap_err().to_string(),
            "invalid mode: bogus"
        );
    }

    #[test]
    fn mounts_parse_as_docker_does() {
        let t = parse_mount(
            &json!({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1048576, "Mode": 448}}),
        )
        .unwrap();
        assert_eq!(t.tmpfs_options, vec!["size=1048576", "mode=700"]);
        let v = parse_mount(&json!({"Type": "volume", "Source": "v1", "Target": "/d", "ReadOnly": true, "VolumeOptions": {"NoCopy": true}}))
            .unwrap();
        assert_eq!((v.rw, v.copy_data), (false, false));
        let e =
            parse_mount(&json!({"Type": "bind", "Source": "/no/such/dir/here", "Target": "/d"})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid mount config for type \"bind\": bind source path does not exist: /no/such/dir/here"
        );
        assert!(parse_mount(&json!({"Type": "tmpfs", "Source": "x", "Target": "/d"})).is_err());
        assert!(
            parse_mount(&json!({"Type": "bind", "Source": "/tmp", "Target": "/d", "VolumeOptions": {}}))
                .is_err()
        );
        assert!(parse_mount(&json!({"Type": "npipe", "Target": "/d"})).is_err());
        assert!(parse_mount(&json!({"Type": "volume", "Source": "v"})).is_err());
    }

    #[test]
    fn duplicates_and_order() {
        let mut list = Vec::new();
        add(&mut list, parse_bind("vol:/a/b").unwrap(), true).unwrap();
        add(&mut list, parse_bind("/tmp:/a").unwrap(), true).unwrap();
        assert!(add(&mut list, parse_bind("web:/a/").unwrap(), true).is_err());
        add(&mut list, parse_bind("web:/a").unwrap(), false).unwrap();
        assert_eq!(list.len(), 2);
        list[0].source = "/vol/v".into();
        let spec = spec_mounts(&list);
        assert_eq!(spec[1]["destination"], "/a");
        assert_eq!(spec[0]["source"], "/vol/v");
        assert_eq!(spec[0]["options"], json!(["rbind", "rprivate"]));
        let nonrec =
            json!({"Type": "bind", "Source": "/tmp", "Target": "/t", "BindOptions": {"NonRecursive": true}});
        let spec = spec_mounts(&[parse_mount(&nonrec).unwrap()]);
        assert_eq!(spec[0]["options"], json!(["bind", "rprivate"]));
    }
}
