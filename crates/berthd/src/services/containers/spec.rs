//! Docker's container semantics turned into an OCI runtime spec (`config.json`): the
//! ENTRYPOINT/CMD rules, environment, user lookup in the image, capabilities, resources.

use super::record::{ContainerRecord, Paths};
use super::sharing::{Join, SharedNamespaces, Shm};
use berth_api::container::{ContainerConfig, HostConfig};
use berth_image::ContainerConfig as ImageRuntimeConfig;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const DEFAULT_SHM_SIZE: i64 = 64 << 20;
/// Docker's default for containers' open files, clamped to what the host allows.
const DEFAULT_NOFILE: u64 = 1_048_576;
const RLIMIT_NAMES: &[&str] = &[
    "RLIMIT_AS",
    "RLIMIT_CORE",
    "RLIMIT_CPU",
    "RLIMIT_DATA",
    "RLIMIT_FSIZE",
    "RLIMIT_LOCKS",
    "RLIMIT_MEMLOCK",
    "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE",
    "RLIMIT_NOFILE",
    "RLIMIT_NPROC",
    "RLIMIT_RSS",
    "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
    "RLIMIT_SIGPENDING",
    "RLIMIT_STACK",
];

/// Fills a create request's config with the image's defaults, as Docker's `merge` does.
pub fn merge_image_config(user: &mut ContainerConfig, image: Option<&ImageRuntimeConfig>) {
    let Some(image) = image else { return };
    if user.user.is_empty() {
        user.user = image.user.clone();
    }
    if let Some(ports) = &image.exposed_ports {
        let mine = user.exposed_ports.get_or_insert_with(BTreeMap::new);
        for (k, v) in ports {
            mine.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    match (&mut user.env, &image.env) {
        (None, Some(img)) => user.env = Some(img.clone()),
        (Some(mine), Some(img)) => {
            for e in img {
                let key = e.split('=').next().unwrap_or(e);
                if !mine.iter().any(|m| m.split('=').next() == Some(key)) {
                    mine.push(e.clone());
                }
            }
        }
        _ => {}
    }
    let user_entrypoint_set = user.entrypoint.as_ref().is_some_and(|e| !e.is_empty());
    if !user_entrypoint_set {
        if user.cmd.as_ref().is_none_or(|c| c.is_empty()) {
            user.cmd = image.cmd.clone();
        }
        if user.entrypoint.is_none() {
            user.entrypoint = image.entrypoint.clone();
        }
    }
    if user.working_dir.is_empty() {
        user.working_dir = image.working_dir.clone();
    }
    if let Some(vols) = &image.volumes {
        let mine = user.volumes.get_or_insert_with(BTreeMap::new);
        for (k, v) in vols {
            mine.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    if let Some(labels) = &image.labels {
        let mine = user.labels.get_or_insert_with(BTreeMap::new);
        for (k, v) in labels {
            mine.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    if user.stop_signal.as_deref().unwrap_or("").is_empty() && !image.stop_signal.is_empty() {
        user.stop_signal = Some(image.stop_signal.clone());
    }
    if user.healthcheck.is_none() {
        user.healthcheck = image.extra.get("Healthcheck").cloned();
    }
    if user.shell.is_none() {
        user.shell = image.shell.clone();
    }
}

/// Path and arguments from the merged entrypoint and cmd; `[""]` as entrypoint means none.
pub fn command(config: &ContainerConfig) -> Result<(String, Vec<String>), String> {
    let entrypoint: Vec<String> = match &config.entrypoint {
        Some(e) if e.len() == 1 && e[0].is_empty() => vec![],
        Some(e) => e.clone(),
        None => vec![],
    };
    let mut all = entrypoint;
    all.extend(config.cmd.clone().unwrap_or_default());
    if all.is_empty() {
        return Err("No command specified".into());
    }
    let path = all.remove(0);
    Ok((path, all))
}

/// The process environment: the config's, with `PATH`, `HOSTNAME` and (for a TTY) `TERM`.
pub fn environment(config: &ContainerConfig, hostname: &str) -> Vec<String> {
    let mut env = vec![format!("HOSTNAME={hostname}")];
    let user_env = config.env.clone().unwrap_or_default();
    if !user_env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if config.tty && !user_env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    for e in user_env {
        let key = e.split('=').next().unwrap_or(&e).to_string();
        env.retain(|x| x.split('=').next() != Some(key.as_str()));
        env.push(e);
    }
    env
}

/// uid, gid and supplementary groups for `user` (`name`, `uid`, `uid:gid`, `name:group`), looked
/// up in the container's own /etc/passwd and /etc/group.
pub fn resolve_user(rootfs: &Path, user: &str, group_add: &[String]) -> Result<(u32, u32, Vec<u32>), String> {
    let passwd = read_in_root(rootfs, "etc/passwd");
    let group = read_in_root(rootfs, "etc/group");
    let (u, g) = user
        .split_once(':')
        .map(|(u, g)| (u, Some(g)))
        .unwrap_or((user, None));
    let passwd_entry = |pred: &dyn Fn(&[&str]) -> bool| -> Option<(u32, u32)> {
        passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() >= 4 && pred(f))
            .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
    };
    let (uid, mut gid) = if u.is_empty() {
        (0, 0)
    } else if let Ok(uid) = u.parse::<u32>() {
        (uid, passwd_entry(&|f| f[2] == u).map(|e| e.1).unwrap_or(0))
    } else {
        passwd_entry(&|f| f[0] == u)
            .ok_or_else(|| format!("unable to find user {u}: no matching entries in passwd file"))?
    };
    let group_id = |name: &str| -> Result<u32, String> {
        if let Ok(n) = name.parse::<u32>() {
            return Ok(n);
        }
        group
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() >= 3 && f[0] == name)
            .and_then(|f| f[2].parse().ok())
            .ok_or_else(|| format!("unable to find group {name}: no matching entries in group file"))
    };
    if let Some(g) = g {
        gid = group_id(g)?;
    }
    let mut additional = Vec::new();
    // Supplementary groups the user is a member of, as in the image's /etc/group.
    if !u.is_empty() {
        let uname = passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() >= 3 && f[2] == uid.to_string())
            .map(|f| f[0].to_string());
        if let Some(name) = uname {
            for f in group.lines().map(|l| l.split(':').collect::<Vec<_>>()) {
                if f.len() >= 4 && f[3].split(',').any(|m| m == name) {
                    if let Ok(g) = f[2].parse::<u32>() {
                        if g != gid {
                            additional.push(g);
                        }
                    }
                }
            }
        }
    }
    for g in group_add {
        additional.push(group_id(g)?);
    }
    Ok((uid, gid, additional))
}

/// Reads a file inside the container's root without following symlinks out of it.
fn read_in_root(rootfs: &Path, rel: &str) -> String {
    use rustix::fs::{openat2, Mode, OFlags, ResolveFlags, CWD};
    let Ok(root) = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return String::new();
    };
    match openat2(
        &root,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT,
    ) {
        Ok(fd) => {
            let _ = CWD;
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut s);
            s
        }
        Err(_) => String::new(),
    }
}

fn capability_set(host: &HostConfig) -> Result<Vec<String>, String> {
    let norm = |c: &str| {
        let c = c.to_ascii_uppercase();
        if c.starts_with("CAP_") || c == "ALL" {
            c
        } else {
            format!("CAP_{c}")
        }
    };
    let all: Vec<String> = (0..64)
        .map_while(berth_runtime::capability_name)
        .map(String::from)
        .collect();
    let available = host_capabilities();
    if host.privileged {
        return Ok(available);
    }
    let mut caps = berth_runtime::default_docker_capabilities();
    let drops: Vec<String> = host.cap_drop.iter().flatten().map(|c| norm(c)).collect();
    let adds: Vec<String> = host.cap_add.iter().flatten().map(|c| norm(c)).collect();
    for c in drops.iter().chain(&adds) {
        if c != "ALL" && !all.contains(c) {
            return Err(format!("unknown capability: \"{c}\""));
        }
    }
    if drops.iter().any(|c| c == "ALL") {
        caps.clear();
    } else {
        caps.retain(|c| !drops.contains(c));
    }
    if adds.iter().any(|c| c == "ALL") {
        caps = all;
    } else {
        for c in adds {
            if !caps.contains(&c) {
                caps.push(c);
            }
        }
    }
    caps.retain(|c| available.contains(c));
    Ok(caps)
}

/// The capabilities berthd itself may grant: those in its own bounding set (root in some sandboxes
/// lacks a few, and asking for one of those fails the container's capset).
pub fn host_capabilities() -> Vec<String> {
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:").map(|v| v.trim().to_string()))
        })
        .and_then(|hex| u64::from_str_radix(&hex, 16).ok())
        .unwrap_or(u64::MAX);
    (0..64u32)
        .map_while(|n| berth_runtime::capability_name(n).map(|name| (n, name)))
        .filter(|(n, _)| bounding & (1u64 << n) != 0)
        .map(|(_, name)| name.to_string())
        .collect()
}

fn seccomp(host: &HostConfig, caps: &[String]) -> Result<Option<Value>, String> {
    if host.privileged {
        return Ok(None);
    }
    for opt in host.security_opt.iter().flatten() {
        let (k, v) = opt.split_once(['=', ':']).unwrap_or((opt.as_str(), ""));
        if k == "seccomp" {
            if v == "unconfined" {
                return Ok(None);
            }
            let text = std::fs::read_to_string(v)
                .map_err(|e| format!("opening seccomp profile ({v}) failed: {e}"))?;
            let profile: Value =
                serde_json::from_str(&text).map_err(|e| format!("decoding seccomp profile failed: {e}"))?;
            return Ok(Some(docker_profile_to_oci(profile)));
        }
    }
    // As Docker: the default profile also allows the syscalls that the granted capabilities need.
    Ok(Some(
        serde_json::to_value(berth_runtime::docker_seccomp_for_capabilities(caps))
            .map_err(|e| e.to_string())?,
    ))
}

/// A Docker seccomp profile file (`--security-opt seccomp=FILE`) in OCI form: Docker's own keys
/// (`archMap`, per-rule `includes`/`excludes`) have no OCI meaning and are dropped.
fn docker_profile_to_oci(mut profile: Value) -> Value {
    if let Some(obj) = profile.as_object_mut() {
        if !obj.contains_key("architectures") {
            let arches: Vec<Value> = obj
                .get("archMap")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .flat_map(|m| {
                    std::iter::once(m["architecture"].clone())
                        .chain(m["subArchitectures"].as_array().cloned().unwrap_or_default())
                })
                .collect();
            if !arches.is_empty() {
                obj.insert("architectures".into(), Value::Array(arches));
            }
        }
        obj.remove("archMap");
        if let Some(Value::Array(rules)) = obj.get_mut("syscalls") {
            for r in rules.iter_mut().filter_map(Value::as_object_mut) {
                r.remove("includes");
                r.remove("excludes");
                r.remove("comment");
            }
        }
    }
    profile
}

pub(super) fn resources(host: &HostConfig) -> Value {
    let devices = if host.privileged {
        json!([{ "allow": true, "access": "rwm" }])
    } else {
        serde_json::to_value(berth_runtime::default_docker_device_rules()).unwrap_or_default()
    };
    let mut r = json!({ "devices": devices });
    let mut memory = serde_json::Map::new();
    if host.memory > 0 {
        memory.insert("limit".into(), json!(host.memory));
        // Docker: with --memory and no --memory-swap, swap is twice the memory.
        let swap = match host.memory_swap {
            0 => host.memory * 2,
            s => s,
        };
        memory.insert("swap".into(), json!(swap));
    }
    if host.memory_reservation > 0 {
        memory.insert("reservation".into(), json!(host.memory_reservation));
    }
    if let Some(s) = host.memory_swappiness.filter(|s| *s >= 0) {
        memory.insert("swappiness".into(), json!(s));
    }
    if host.oom_kill_disable == Some(true) {
        memory.insert("disableOOMKiller".into(), json!(true));
    }
    if !memory.is_empty() {
        r["memory"] = Value::Object(memory);
    }
    let mut cpu = serde_json::Map::new();
    if host.cpu_shares > 0 {
        cpu.insert("shares".into(), json!(host.cpu_shares));
    }
    if host.nano_cpus > 0 {
        let period: i64 = 100_000;
        cpu.insert("period".into(), json!(period));
        cpu.insert("quota".into(), json!(host.nano_cpus * period / 1_000_000_000));
    } else {
        if host.cpu_period > 0 {
            cpu.insert("period".into(), json!(host.cpu_period));
        }
        if host.cpu_quota != 0 {
            cpu.insert("quota".into(), json!(host.cpu_quota));
        }
    }
    if !host.cpuset_cpus.is_empty() {
        cpu.insert("cpus".into(), json!(host.cpuset_cpus));
    }
    if !host.cpuset_mems.is_empty() {
        cpu.insert("mems".into(), json!(host.cpuset_mems));
    }
    if !cpu.is_empty() {
        r["cpu"] = Value::Object(cpu);
    }
    if let Some(p) = host.pids_limit.filter(|p| *p > 0) {
        r["pids"] = json!({ "limit": p });
    }
    if host.blkio_weight > 0 {
        r["blockIO"] = json!({ "weight": host.blkio_weight });
    }
    r
}

fn default_devices() -> Value {
    let dev = |path: &str, major: u32, minor: u32| json!({"path": path, "type": "c", "major": major, "minor": minor, "fileMode": 0o666, "uid": 0, "gid": 0});
    json!([
        dev("/dev/null", 1, 3),
        dev("/dev/zero", 1, 5),
        dev("/dev/full", 1, 7),
        dev("/dev/random", 1, 8),
        dev("/dev/urandom", 1, 9),
        dev("/dev/tty", 5, 0)
    ])
}

fn rlimits(host: &HostConfig) -> Result<Value, String> {
    let host_hard = |res| rustix::process::getrlimit(res).maximum.unwrap_or(u64::MAX);
    let nofile_hard = host_hard(rustix::process::Resource::Nofile);
    let mut limits: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let n = DEFAULT_NOFILE.min(nofile_hard);
    limits.insert("RLIMIT_NOFILE".into(), (n, n));
    for u in host.ulimits.iter().flatten() {
        let name = format!("RLIMIT_{}", u.name.to_ascii_uppercase());
        if !RLIMIT_NAMES.contains(&name.as_str()) {
            return Err(format!("invalid ulimit type: {}", u.name));
        }
        if u.soft > u.hard {
            return Err(format!(
                "ulimit soft limit must be less than or equal to hard limit: {} > {}",
                u.soft, u.hard
            ));
        }
        limits.insert(name, (u.soft as u64, u.hard as u64));
    }
    Ok(Value::Array(
        limits
            .into_iter()
            .map(|(t, (soft, hard))| json!({"type": t, "soft": soft, "hard": hard}))
            .collect(),
    ))
}

/// Where `--init` mounts the init in the container (Docker's path).
pub const INIT_PATH: &str = "/sbin/docker-init";

/// The init binary for `--init`: `$BERTH_INIT`, else `berth-init` beside berthd.
fn init_binary() -> Result<PathBuf, String> {
    let path = match std::env::var_os("BERTH_INIT").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()
            .map_err(|e| format!("--init: cannot locate berthd's executable: {e}"))?
            .with_file_name("berth-init"),
    };
    if !path.is_file() {
        return Err(format!(
            "--init: the init binary {} does not exist (build berth-init, or set BERTH_INIT)",
            path.display()
        ));
    }
    Ok(path)
}

/// The OCI runtime spec for a container whose rootfs is mounted at `paths.rootfs()`.
/// `shared`: the namespaces joined (`--network`, `--pid`, `--ipc` `container:<name>` or host) and
/// where `/dev/shm` comes from.
pub fn build(
    rec: &ContainerRecord,
    paths: &Paths,
    cgroup: &str,
    shared: &SharedNamespaces,
    id_mappings: Option<(Value, Value)>,
) -> Result<Value, String> {
    let host = &rec.host_config;
    let config = &rec.config;
    let hostname = if shared.uts_host {
        rustix::system::uname().nodename().to_string_lossy().into_owned()
    } else if config.hostname.is_empty() {
        rec.short_id().to_string()
    } else {
        config.hostname.clone()
    };
    let (uid, gid, additional) = resolve_user(
        &paths.rootfs(),
        &config.user,
        host.group_add.as_deref().unwrap_or(&[]),
    )?;
    let caps = capability_set(host)?;
    let cwd = if config.working_dir.is_empty() {
        "/".to_string()
    } else {
        config.working_dir.clone()
    };
    let shm = shm_size(host);
    let bind = |dest: &str, src: &Path| json!({"destination": dest, "type": "bind", "source": src, "options": ["rbind", "rprivate"]});
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", if host.privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro", "nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        bind("/etc/resolv.conf", &paths.resolv_conf()),
        bind("/etc/hostname", &paths.hostname()),
        bind("/etc/hosts", &paths.hosts()),
    ];
    match &shared.shm {
        Shm::Private => mounts.push(json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", format!("size={shm}")]})),
        Shm::Bind(dir) => mounts.push(bind("/dev/shm", dir)),
        Shm::None => {}
    }
    let mut args: Vec<String> = std::iter::once(rec.path.clone())
        .chain(rec.args.iter().cloned())
        .collect();
    if host.init == Some(true) {
        let init = init_binary()?;
        mounts.push(json!({"destination": INIT_PATH, "type": "bind", "source": init, "options": ["bind", "ro", "rprivate"]}));
        args.splice(0..0, [INIT_PATH.to_string(), "--".to_string()]);
    }
    for (dest, opts) in host.tmpfs.iter().flatten() {
        let mut o: Vec<String> = vec!["nosuid".into(), "nodev".into(), "noexec".into()];
        o.extend(opts.split(',').filter(|s| !s.is_empty()).map(String::from));
        mounts.push(json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": o}));
    }
    mounts.extend(super::mounts::spec_mounts(&rec.mount_points));
    // Parents before children, as Docker sorts them: a volume at /etc goes under the /etc/hosts bind.
    mounts.sort_by_key(|m| {
        Path::new(m["destination"].as_str().unwrap_or("/"))
            .components()
            .count()
    });
    let mut namespaces = vec![json!({"type": "mount"}), json!({"type": "cgroup"})];
    for (typ, join) in [("pid", &shared.pid), ("ipc", &shared.ipc)] {
        match join {
            Join::New => namespaces.push(json!({"type": typ})),
            Join::Path(path) => namespaces.push(json!({"type": typ, "path": path})),
            Join::Host => {}
        }
    }
    if !shared.uts_host {
        namespaces.push(json!({"type": "uts"}));
    }
    match shared.net.as_deref() {
        Some(path) => namespaces.push(json!({"type": "network", "path": path})),
        None if network_mode(host) != "host" => namespaces.push(json!({"type": "network"})),
        None => {}
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": cgroup,
        "resources": resources(host),
        "devices": default_devices(),
        "sysctl": host.sysctls.clone().unwrap_or_default(),
        "rootfsPropagation": "rprivate",
    });
    let mut extra = super::devices::plan(host)?;
    if host.privileged {
        // As with dockerd: every device of the host's /dev (looked up at start, not at create).
        super::devices::add_host_devices(&mut extra);
    }
    linux["devices"]
        .as_array_mut()
        .expect("devices")
        .extend(extra.nodes);
    if !host.privileged {
        linux["resources"]["devices"]
            .as_array_mut()
            .expect("device rules")
            .extend(extra.rules);
    }
    if let Some((uids, gids)) = id_mappings {
        linux["namespaces"]
            .as_array_mut()
            .expect("namespaces")
            .push(json!({"type": "user"}));
        linux["uidMappings"] = uids;
        linux["gidMappings"] = gids;
    }
    if !host.privileged {
        linux["maskedPaths"] = json!(host
            .masked_paths
            .clone()
            .unwrap_or_else(berth_runtime::default_docker_masked_paths));
        linux["readonlyPaths"] = json!(host
            .readonly_paths
            .clone()
            .unwrap_or_else(berth_runtime::default_docker_readonly_paths));
    }
    if let Some(s) = seccomp(host, &caps)? {
        linux["seccomp"] = s;
    }
    let mut process = json!({
        "terminal": config.tty,
        "user": {"uid": uid, "gid": gid, "additionalGids": additional},
        "args": args,
        "env": environment(config, &hostname),
        "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "inheritable": [], "ambient": []},
        "rlimits": rlimits(host)?,
        "noNewPrivileges": !host.privileged,
    });
    if host.oom_score_adj != 0 {
        process["oomScoreAdj"] = json!(host.oom_score_adj);
    }
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": paths.rootfs(), "readonly": host.readonly_rootfs},
        "hostname": hostname,
        "domainname": config.domainname,
        "mounts": mounts,
        "linux": linux,
    });
    if shared.uts_host {
        // The host's names: nothing to set.
        let spec = spec.as_object_mut().expect("object");
        spec.remove("hostname");
        spec.remove("domainname");
    }
    Ok(spec)
}

/// The size of `/dev/shm` (`--shm-size`, 64 MiB by default).
pub fn shm_size(host: &HostConfig) -> i64 {
    if host.shm_size > 0 {
        host.shm_size
    } else {
        DEFAULT_SHM_SIZE
    }
}

/// The network a container joins: `bridge` (the default), `none`, or `host`.
pub fn network_mode(host: &HostConfig) -> &str {
    match host.network_mode.as_str() {
        "" | "default" | "bridge" => "bridge",
        other => other,
    }
}

/// Ports to publish as (container port, protocol, host IP, host port; 0 = any free port): the
/// `PortBindings`, and with `-P` every exposed port that has none.
pub fn port_bindings(
    config: &ContainerConfig,
    host: &HostConfig,
) -> Result<Vec<(u16, String, String, u16)>, String> {
    let split = |key: &str| -> Result<(u16, String), String> {
        let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
        let port: u16 = port
            .parse()
            .map_err(|_| format!("invalid port specification: \"{key}\""))?;
        Ok((port, proto.to_string()))
    };
    let mut out = Vec::new();
    if let Some(Value::Object(bindings)) = &host.port_bindings {
        for (key, list) in bindings {
            let (port, proto) = split(key)?;
            for b in list.as_array().into_iter().flatten() {
                let host_ip = b["HostIp"].as_str().unwrap_or("").to_string();
                let host_port = match b["HostPort"].as_str().unwrap_or("") {
                    "" => 0,
                    p => p.parse().map_err(|_| format!("invalid host port: {p}"))?,
                };
                out.push((port, proto.clone(), host_ip, host_port));
            }
        }
    }
    if host.publish_all_ports {
        for key in config.exposed_ports.iter().flat_map(|p| p.keys()) {
            let (port, proto) = split(key)?;
            if !out.iter().any(|(p, pr, _, _)| *p == port && *pr == proto) {
                out.push((port, proto, String::new(), 0));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(entrypoint: Option<Vec<&str>>, cmd: Option<Vec<&str>>) -> ContainerConfig {
        ContainerConfig {
            entrypoint: entrypoint.map(|v| v.into_iter().map(String::from).collect()),
            cmd: cmd.map(|v| v.into_iter().map(String::from).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn entrypoint_and_cmd_follow_dockers_rules() {
        let image = ImageRuntimeConfig {
            entrypoint: Some(vec!["/entry".into()]),
            cmd: Some(vec!["default".into()]),
            ..Default::default()
        };
        let mut c = cfg(None, None);
        merge_image_config(&mut c, Some(&image));
        assert_eq!(command(&c).unwrap(), ("/entry".into(), vec!["default".into()]));
        let mut c = cfg(None, Some(vec!["echo", "hi"]));
        merge_image_config(&mut c, Some(&image));
        assert_eq!(
            command(&c).unwrap(),
            ("/entry".into(), vec!["echo".into(), "hi".into()])
        );
        // A new entrypoint drops the image's CMD.
        let mut c = cfg(Some(vec!["/bin/other"]), None);
        merge_image_config(&mut c, Some(&image));
        assert_eq!(command(&c).unwrap(), ("/bin/other".into(), vec![]));
        // --entrypoint "" clears it: the command alone runs.
        let mut c = cfg(Some(vec![""]), Some(vec!["echo", "x"]));
        merge_image_config(&mut c, Some(&image));
        assert_eq!(command(&c).unwrap(), ("echo".into(), vec!["x".into()]));
        let mut c = cfg(Some(vec![""]), None);
        merge_image_config(&mut c, Some(&image));
        assert_eq!(command(&c).unwrap_err(), "No command specified");
    }

    #[test]
    fn environment_is_merged_with_path_and_hostname() {
        let mut c = cfg(None, None);
        c.env = Some(vec!["A=1".into()]);
        let image = ImageRuntimeConfig {
            env: Some(vec!["A=0".into(), "B=2".into()]),
            ..Default::default()
        };
        merge_image_config(&mut c, Some(&image));
        c.tty = true;
        let env = environment(&c, "box");
        assert_eq!(
            env,
            [
                "HOSTNAME=box",
                &format!("PATH={DEFAULT_PATH}"),
                "TERM=xterm",
                "A=1",
                "B=2"
            ]
        );
    }

    #[test]
    fn users_resolve_in_the_image() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\napp:x:1000:1000::/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nwheel:x:10:app\n",
        )
        .unwrap();
        assert_eq!(resolve_user(dir.path(), "", &[]).unwrap(), (0, 0, vec![]));
        assert_eq!(
            resolve_user(dir.path(), "nobody", &[]).unwrap(),
            (65534, 65534, vec![])
        );
        assert_eq!(
            resolve_user(dir.path(), "65534", &[]).unwrap(),
            (65534, 65534, vec![])
        );
        assert_eq!(
            resolve_user(dir.path(), "app", &[]).unwrap(),
            (1000, 1000, vec![10])
        );
        assert_eq!(
            resolve_user(dir.path(), "123:wheel", &[]).unwrap(),
            (123, 10, vec![])
        );
        assert!(resolve_user(dir.path(), "ghost", &[])
            .unwrap_err()
            .contains("unable to find user ghost"));
    }

    #[test]
    fn passwd_symlinked_out_of_the_root_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("etc/passwd")).unwrap();
        // Resolved inside the root, the link points at <root>/etc/passwd itself: nothing to read.
        assert!(resolve_user(dir.path(), "root", &[]).is_err());
    }
}
