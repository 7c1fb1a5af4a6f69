//! `--device` and `--device-cgroup-rule`: host device nodes made in the container, and the
//! device-cgroup rules that let it use them (after Docker's default rules).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use berth_api::container::{DeviceMapping, HostConfig};
use serde_json::{json, Value};

/// The spec's `linux.devices` entries and the allow rules to add to `linux.resources.devices`.
#[derive(Debug, Default)]
pub struct Devices {
    pub nodes: Vec<Value>,
    pub rules: Vec<Value>,
}

/// Resolves `--device` mappings on the host (a directory brings every device below it) and
/// parses `--device-cgroup-rule`s, with dockerd's messages.
pub fn plan(host: &HostConfig) -> Result<Devices, String> {
    let mut out = Devices::default();
    for m in host.devices.iter().flatten() {
        add_mapping(m, &mut out)?;
    }
    for rule in host.device_cgroup_rules.iter().flatten() {
        out.rules.push(parse_rule(rule)?);
    }
    Ok(out)
}

fn add_mapping(m: &DeviceMapping, out: &mut Devices) -> Result<(), String> {
    let access = if m.cgroup_permissions.is_empty() {
        "rwm"
    } else {
        m.cgroup_permissions.as_str()
    };
    if access.chars().any(|c| !"rwm".contains(c)) {
        return Err(format!("invalid device mode: {access}"));
    }
    let gather = |e: std::io::Error| {
        format!(
            "error gathering device information while adding custom device {:?}: {}",
            m.path_on_host,
            go_error(&e)
        )
    };
    let host = std::fs::canonicalize(&m.path_on_host).map_err(gather)?;
    let inside = if m.path_in_container.is_empty() {
        PathBuf::from(&m.path_on_host)
    } else {
        PathBuf::from(&m.path_in_container)
    };
    let meta = std::fs::metadata(&host).map_err(gather)?;
    if meta.is_dir() {
        // Every device node below it, at the same place below the container's path.
        let mut found = Vec::new();
        walk(&host, &[], &mut found).map_err(gather)?;
        for (path, meta) in found {
            let rel = path.strip_prefix(&host).expect("below the directory");
            add_node(&inside.join(rel), &meta, access, out);
        }
        return Ok(());
    }
    if !is_device(&meta) {
        return Err(format!(
            "error gathering device information while adding custom device {:?}: not a device node",
            m.path_on_host
        ));
    }
    add_node(&inside, &meta, access, out);
    Ok(())
}

fn is_device(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_char_device() || meta.file_type().is_block_device()
}

fn add_node(inside: &Path, meta: &std::fs::Metadata, access: &str, out: &mut Devices) {
    let typ = if meta.file_type().is_block_device() {
        "b"
    } else {
        "c"
    };
    let (major, minor) = (rustix::fs::major(meta.rdev()), rustix::fs::minor(meta.rdev()));
    out.nodes.push(json!({
        "path": inside, "type": typ, "major": major, "minor": minor,
        "fileMode": meta.mode() & 0o7777, "uid": meta.uid(), "gid": meta.gid(),
    }));
    out.rules
        .push(json!({"allow": true, "type": typ, "major": major, "minor": minor, "access": access}));
}

/// The device nodes below `dir`, recursively, leaving out the names in `skip`; symlinks are
/// not followed, and a node that vanishes meanwhile is passed over (as runc's `GetDevices`).
fn walk(dir: &Path, skip: &[&str], found: &mut Vec<(PathBuf, std::fs::Metadata)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if skip.contains(&entry.file_name().to_string_lossy().as_ref()) {
            continue;
        }
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.is_dir() {
            walk(&entry.path(), skip, found)?;
        } else if is_device(&meta) {
            found.push((entry.path(), meta));
        }
    }
    Ok(())
}

/// What runc's `HostDevices` leaves out of /dev: the container has its own of these.
const NOT_FROM_HOST: &[&str] = &[
    "pts",
    "shm",
    "fd",
    "mqueue",
    ".lxc",
    ".lxd-mounts",
    ".udev",
    "console",
    "ptmx",
];

/// A privileged container's share of the host: every device node of its /dev, at the same path.
pub fn add_host_devices(out: &mut Devices) {
    let mut found = Vec::new();
    if let Err(e) = walk(Path::new("/dev"), NOT_FROM_HOST, &mut found) {
        tracing::warn!(error = %e, "listing the host's devices");
    }
    for (path, meta) in found {
        add_node(&path, &meta, "rwm", out);
    }
}

/// `c 42:* rmw`, as `devices.allow` takes it.
fn parse_rule(rule: &str) -> Result<Value, String> {
    let bad = || format!("invalid device cgroup format '{rule}'");
    let fields: Vec<&str> = rule.split_whitespace().collect();
    let [typ, numbers, access] = fields[..] else {
        return Err(bad());
    };
    if !matches!(typ, "a" | "b" | "c") || access.is_empty() || access.chars().any(|c| !"rwm".contains(c)) {
        return Err(bad());
    }
    let (major, minor) = numbers.split_once(':').ok_or_else(bad)?;
    let number = |n: &str| -> Result<Value, String> {
        match n {
            "*" => Ok(Value::Null),
            n => n.parse::<u32>().map(|n| json!(n)).map_err(|_| bad()),
        }
    };
    Ok(
        json!({"allow": true, "type": typ, "major": number(major)?, "minor": number(minor)?, "access": access}),
    )
}

/// Go's wording of an OS error (`no such file or directory`), as dockerd prints it.
fn go_error(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cgroup_rules() {
        assert_eq!(
            parse_rule("c 42:* rmw").unwrap(),
            json!({"allow": true, "type": "c", "major": 42, "minor": null, "access": "rmw"})
        );
        assert_eq!(parse_rule("b 8:16 r").unwrap()["minor"], 16);
        for bad in ["c 42 rmw", "x 1:2 r", "c 1:2 rx", "c a:2 r", "c 1:2"] {
            assert_eq!(
                parse_rule(bad).unwrap_err(),
                format!("invalid device cgroup format '{bad}'")
            );
        }
    }

    #[test]
    fn maps_a_device_and_refuses_what_is_not_one() {
        let null = DeviceMapping {
            path_on_host: "/dev/null".into(),
            path_in_container: "/dev/mynull".into(),
            cgroup_permissions: "rw".into(),
        };
        let mut out = Devices::default();
        add_mapping(&null, &mut out).unwrap();
        assert_eq!(out.nodes[0]["path"], "/dev/mynull");
        assert_eq!(
            (out.nodes[0]["major"].clone(), out.nodes[0]["minor"].clone()),
            (json!(1), json!(3))
        );
        assert_eq!(out.rules[0]["access"], "rw");
        let missing = DeviceMapping {
            path_on_host: "/dev/berth-nope".into(),
            ..Default::default()
        };
        assert_eq!(
            add_mapping(&missing, &mut out).unwrap_err(),
            "error gathering device information while adding custom device \"/dev/berth-nope\": no such file or directory"
        );
        let file = DeviceMapping {
            path_on_host: "/etc/hostname".into(),
            ..Default::default()
        };
        assert!(add_mapping(&file, &mut out)
            .unwrap_err()
            .ends_with("not a device node"));
    }
}
