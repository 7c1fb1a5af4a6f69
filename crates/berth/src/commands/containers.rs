//! Container commands: `run`, `create`, `start`, `ps`, `logs`, `stop`, `kill`, `restart`, `rm`,
//! `wait`, `attach`, `container ...`.

use super::ExitCode;
use crate::attach::{run_session, terminal_size, RawTerminal};
use crate::client::{self, Client, DaemonError};
use crate::output::print_rows;
use crate::units::ram_in_bytes;
use anyhow::{bail, Context, Result};
use berth_api::{Filters, Query};
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Map, Value};
use std::io::{IsTerminal, Write};

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Create and run a new container from an image
    Run(RunArgs),
    /// Create a new container
    Create(CreateArgs),
    /// Start one or more stopped containers
    Start(StartArgs),
    /// List containers
    #[command(visible_aliases = ["list", "ps"])]
    Ls(PsArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Restart one or more containers
    Restart(StopArgs),
    /// Remove one or more containers
    Rm(RmArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(NamesArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(AttachArgs),
    /// Execute a command in a running container
    Exec(ExecArgs),
    /// Display detailed information on one or more containers
    Inspect(super::images::InspectArgs),
    /// Remove all stopped containers
    Prune(PruneArgs),
    #[command(flatten)]
    Ops(super::container_ops::OpsCommand),
    #[command(flatten)]
    Files(super::container_files::FilesCommand),
}

pub async fn run_container_command(client: &Client, cmd: ContainerCommand) -> Result<()> {
    match cmd {
        ContainerCommand::Run(a) => run(client, a).await,
        ContainerCommand::Create(a) => create_cmd(client, a).await,
        ContainerCommand::Start(a) => start(client, a).await,
        ContainerCommand::Ls(a) => ps(client, a).await,
        ContainerCommand::Logs(a) => logs(client, a).await,
        ContainerCommand::Stop(a) => stop(client, a, "stop").await,
        ContainerCommand::Kill(a) => kill(client, a).await,
        ContainerCommand::Restart(a) => stop(client, a, "restart").await,
        ContainerCommand::Rm(a) => rm(client, a).await,
        ContainerCommand::Wait(a) => wait(client, a).await,
        ContainerCommand::Attach(a) => attach(client, a).await,
        ContainerCommand::Exec(a) => exec(client, a).await,
        ContainerCommand::Inspect(mut a) => {
            a.set_type("container");
            super::images::inspect(client, &a, true).await
        }
        ContainerCommand::Prune(a) => prune(client, a).await,
        ContainerCommand::Ops(c) => super::container_ops::run(client, c).await,
        ContainerCommand::Files(c) => super::container_files::run(client, c).await,
    }
}

/// The flags `create` and `run` share: everything that goes into the container's config.
#[derive(Debug, Args, Clone)]
pub struct CreateFlags {
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    tty: bool,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    env_file: Vec<std::path::PathBuf>,
    /// Set meta data on a container
    #[arg(short = 'l', long = "label")]
    label: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long = "user")]
    user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    entrypoint: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    hostname: Option<String>,
    /// Container NIS domain name
    #[arg(long)]
    domainname: Option<String>,
    /// Write the container ID to the file
    #[arg(long)]
    cidfile: Option<std::path::PathBuf>,
    /// Give extended privileges to this container
    #[arg(long)]
    privileged: bool,
    /// User namespace to use ("host": not the daemon's userns-remap one)
    #[arg(long)]
    userns: Option<String>,
    /// PID namespace to use ("host" or "container:<name|id>")
    #[arg(long)]
    pid: Option<String>,
    /// IPC mode to use ("private", "shareable", "host", "none" or "container:<name|id>")
    #[arg(long)]
    ipc: Option<String>,
    /// UTS namespace to use ("host")
    #[arg(long)]
    uts: Option<String>,
    /// Add a host device to the container (HOST[:CONTAINER][:PERMISSIONS])
    #[arg(long)]
    device: Vec<String>,
    /// Add a rule to the cgroup allowed devices list ("c 42:* rmw")
    #[arg(long = "device-cgroup-rule")]
    device_cgroup_rule: Vec<String>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    init: bool,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    cap_drop: Vec<String>,
    /// Security Options
    #[arg(long = "security-opt")]
    security_opt: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    read_only: bool,
    /// Size of /dev/shm
    #[arg(long = "shm-size")]
    shm_size: Option<String>,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout")]
    stop_timeout: Option<i64>,
    /// Restart policy to apply when a container exits
    #[arg(long, default_value = "no")]
    restart: String,
    /// Automatically remove the container and its associated anonymous volumes when it exits
    #[arg(long)]
    rm: bool,
    /// Memory limit
    #[arg(short = 'm', long)]
    memory: Option<String>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long = "memory-swap")]
    memory_swap: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation")]
    memory_reservation: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    cpus: Option<f64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    cpu_shares: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit")]
    pids_limit: Option<i64>,
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable
    #[arg(long = "blkio-weight")]
    blkio_weight: Option<u16>,
    /// Ulimit options
    #[arg(long)]
    ulimit: Vec<String>,
    /// Mount a tmpfs directory
    #[arg(long)]
    tmpfs: Vec<String>,
    /// Bind mount a volume
    #[arg(short = 'v', long = "volume")]
    volume: Vec<String>,
    /// Attach a filesystem mount to the container
    #[arg(long = "mount")]
    mount: Vec<String>,
    /// Mount volumes from the specified container(s)
    #[arg(long = "volumes-from")]
    volumes_from: Vec<String>,
    /// Log driver for the container
    #[arg(long = "log-driver")]
    log_driver: Option<String>,
    /// Log driver options
    #[arg(long = "log-opt")]
    log_opt: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host")]
    add_host: Vec<String>,
    /// Set custom DNS servers
    #[arg(long)]
    dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search")]
    dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option")]
    dns_option: Vec<String>,
    /// Add additional groups to join
    #[arg(long = "group-add")]
    group_add: Vec<String>,
    /// Sysctl options
    #[arg(long)]
    sysctl: Vec<String>,
    /// Tune host's OOM preferences (-1000 to 1000)
    #[arg(long = "oom-score-adj")]
    oom_score_adj: Option<i64>,
    /// Expose a port or a range of ports
    #[arg(long)]
    expose: Vec<String>,
    /// Publish a container's port(s) to the host
    #[arg(short = 'p', long)]
    publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// Connect a container to a network
    #[arg(long = "network", alias = "net")]
    network: Option<String>,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias", alias = "net-alias")]
    network_alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long = "ip")]
    ip: Option<String>,
    /// Container MAC address (e.g., 92:d0:c6:0a:29:33)
    #[arg(long = "mac-address")]
    mac_address: Option<String>,
    /// Command to run to check health
    #[arg(long = "health-cmd")]
    health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h)
    #[arg(long = "health-interval")]
    health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h)
    #[arg(long = "health-timeout")]
    health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long = "health-retries")]
    health_retries: Option<i64>,
    /// Start period for the container to initialize before counting retries (ms|s|m|h)
    #[arg(long = "health-start-period")]
    health_start_period: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    no_healthcheck: bool,
    /// Image
    #[arg(value_name = "IMAGE")]
    image: String,
    /// Command and arguments
    #[arg(value_name = "COMMAND", trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct CreateArgs {
    /// Print help (`-h` is --hostname, as in docker)
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    #[command(flatten)]
    flags: CreateFlags,
}

#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Print help (`-h` is --hostname, as in docker)
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Run container in background and print container ID
    #[arg(short = 'd', long)]
    detach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    detach_keys: Option<String>,
    #[command(flatten)]
    flags: CreateFlags,
}

fn key_values(items: &[String]) -> Map<String, Value> {
    items
        .iter()
        .map(|i| {
            i.split_once('=')
                .map(|(k, v)| (k.to_string(), json!(v)))
                .unwrap_or((i.clone(), json!("")))
        })
        .collect()
}

fn env_list(f: &CreateFlags) -> Result<Vec<String>> {
    environment(&f.env_file, &f.env)
}

/// `--env-file` lines (blank lines and `#` comments skipped), then `-e` values, as docker reads them.
fn environment(files: &[std::path::PathBuf], vars: &[String]) -> Result<Vec<String>> {
    let mut env = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).with_context(|| format!("open {}", file.display()))?;
        env.extend(
            text.lines()
                .map(str::trim_start)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(expand_env),
        );
    }
    env.extend(vars.iter().map(|e| expand_env(e)));
    Ok(env)
}

/// `-e NAME` without a value takes NAME from the caller's environment, as docker does.
fn expand_env(e: &str) -> String {
    if e.contains('=') {
        e.to_string()
    } else {
        std::env::var(e)
            .map(|v| format!("{e}={v}"))
            .unwrap_or_else(|_| e.to_string())
    }
}

fn size(s: &Option<String>) -> Result<i64> {
    match s {
        Some(s) if s == "-1" => Ok(-1),
        Some(s) => ram_in_bytes(s),
        None => Ok(0),
    }
}

/// `--network-alias` and `--ip` belong to the `--network` network (the docker CLI's rule).
fn endpoints_config(f: &CreateFlags) -> Value {
    if f.network_alias.is_empty() && f.ip.is_none() && f.mac_address.is_none() {
        return json!({});
    }
    let network = f.network.clone().unwrap_or_else(|| "default".into());
    let mut ep = json!({"Aliases": f.network_alias});
    if let Some(ip) = &f.ip {
        ep["IPAMConfig"] = json!({"IPv4Address": ip});
    }
    if let Some(mac) = &f.mac_address {
        ep["MacAddress"] = json!(mac);
    }
    json!({ network: ep })
}

/// `8000-8002` -> 8000, 8001, 8002; `80` -> 80.
fn port_range(s: &str) -> Result<Vec<u16>> {
    let bad = || anyhow::anyhow!("invalid port range: {s}");
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b): (u16, u16) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
    if a > b {
        return Err(bad());
    }
    Ok((a..=b).collect())
}

/// One `-p [ip:][hostPort:]containerPort[/proto]` (ranges allowed) as `PortBindings` entries.
fn publish_spec(raw: &str) -> Result<Vec<(String, Value)>> {
    let (spec, proto) = raw.rsplit_once('/').unwrap_or((raw, "tcp"));
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        bail!("invalid proto: {proto}");
    }
    let parts: Vec<&str> = spec.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => ("", "", *c),
        [h, c] => ("", *h, *c),
        [ip, h, c] => (*ip, *h, *c),
        _ => bail!("invalid port format for --publish: {raw}"),
    };
    if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
        bail!("invalid IP address: {ip}");
    }
    let containers = port_range(container)?;
    let hosts = if host.is_empty() {
        Vec::new()
    } else {
        port_range(host)?
    };
    if !hosts.is_empty() && hosts.len() != containers.len() && hosts.len() != 1 {
        bail!("invalid ranges specified for container and host Ports: {container} and {host}");
    }
    Ok(containers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let host_port = match hosts.len() {
                0 => String::new(),
                1 if containers.len() > 1 => hosts[0].to_string(),
                _ => hosts[i].to_string(),
            };
            (
                format!("{c}/{proto}"),
                json!({"HostIp": ip, "HostPort": host_port}),
            )
        })
        .collect())
}

/// The `POST /containers/create` body for these flags, as the docker CLI builds it.
fn create_body(f: &CreateFlags, attach: bool) -> Result<Value> {
    let mut exposed = Map::new();
    for p in &f.expose {
        let (ports, proto) = p.split_once('/').unwrap_or((p, "tcp"));
        for port in port_range(ports)? {
            exposed.insert(format!("{port}/{proto}"), json!({}));
        }
    }
    let mut bindings = Map::new();
    for p in &f.publish {
        for (key, binding) in publish_spec(p)? {
            exposed.insert(key.clone(), json!({}));
            bindings
                .entry(key)
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .expect("array")
                .push(binding);
        }
    }
    let ulimits: Vec<Value> = f
        .ulimit
        .iter()
        .map(|u| {
            let (name, lim) = u
                .split_once('=')
                .with_context(|| format!("invalid ulimit argument: {u}"))?;
            let (soft, hard) = lim.split_once(':').unwrap_or((lim, lim));
            let soft: i64 = soft
                .parse()
                .with_context(|| format!("invalid ulimit argument: {u}"))?;
            let hard: i64 = hard
                .parse()
                .with_context(|| format!("invalid ulimit argument: {u}"))?;
            Ok(json!({"Name": name, "Soft": soft, "Hard": hard}))
        })
        .collect::<Result<_>>()?;
    let tmpfs: Map<String, Value> = f
        .tmpfs
        .iter()
        .map(|t| {
            t.split_once(':')
                .map(|(p, o)| (p.to_string(), json!(o)))
                .unwrap_or((t.clone(), json!("")))
        })
        .collect();
    let (restart_name, retries) = match f.restart.split_once(':') {
        Some((n, r)) => (
            n.to_string(),
            r.parse::<i64>()
                .with_context(|| format!("invalid restart policy {}", f.restart))?,
        ),
        None => (f.restart.clone(), 0),
    };
    if f.rm && !matches!(restart_name.as_str(), "" | "no") {
        bail!("conflicting options: cannot specify both --restart and --rm");
    }
    let nano_cpus = f.cpus.map(|c| (c * 1e9) as i64).unwrap_or(0);
    // As the docker CLI: `-v /path` is an anonymous volume (Config.Volumes), the rest are Binds.
    let (anonymous, binds): (Vec<&String>, Vec<&String>) = f.volume.iter().partition(|v| !v.contains(':'));
    let volumes: Map<String, Value> = anonymous.into_iter().map(|v| (v.clone(), json!({}))).collect();
    let mounts = f
        .mount
        .iter()
        .map(|m| super::mount_flag::parse(m))
        .collect::<Result<Vec<Value>>>()?;
    let stdin = f.interactive;
    Ok(json!({
        "Hostname": f.hostname.clone().unwrap_or_default(),
        "Domainname": f.domainname.clone().unwrap_or_default(),
        "User": f.user.clone().unwrap_or_default(),
        "AttachStdin": attach && stdin,
        "AttachStdout": attach,
        "AttachStderr": attach,
        "ExposedPorts": exposed,
        "Tty": f.tty,
        "OpenStdin": stdin,
        "StdinOnce": attach && stdin,
        "Env": env_list(f)?,
        "Cmd": if f.command.is_empty() { Value::Null } else { json!(f.command) },
        "Image": f.image,
        "WorkingDir": f.workdir.clone().unwrap_or_default(),
        "Entrypoint": f.entrypoint.as_ref().map(|e| json!([e])).unwrap_or(Value::Null),
        "Labels": key_values(&f.label),
        "Healthcheck": healthcheck(f)?,
        "StopSignal": f.stop_signal,
        "StopTimeout": f.stop_timeout,
        "Volumes": volumes,
        "HostConfig": {
            "Binds": binds,
            "Mounts": mounts,
            "VolumesFrom": f.volumes_from,
            "ContainerIDFile": f.cidfile.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            "LogConfig": {"Type": f.log_driver.clone().unwrap_or_default(), "Config": key_values(&f.log_opt)},
            "NetworkMode": f.network.clone().unwrap_or_default(),
            "PortBindings": bindings,
            "PublishAllPorts": f.publish_all,
            "RestartPolicy": {"Name": restart_name, "MaximumRetryCount": retries},
            "AutoRemove": f.rm,
            "CapAdd": f.cap_add,
            "CapDrop": f.cap_drop,
            "Dns": f.dns,
            "DnsOptions": f.dns_option,
            "DnsSearch": f.dns_search,
            "ExtraHosts": f.add_host,
            "GroupAdd": f.group_add,
            "OomScoreAdj": f.oom_score_adj.unwrap_or(0),
            "Privileged": f.privileged,
            "UsernsMode": f.userns.clone().unwrap_or_default(),
            "PidMode": f.pid.clone().unwrap_or_default(),
            "IpcMode": f.ipc.clone().unwrap_or_default(),
            "UTSMode": f.uts.clone().unwrap_or_default(),
            "Devices": f.device.iter().map(|d| device_mapping(d)).collect::<Result<Vec<_>>>()?,
            "DeviceCgroupRules": f.device_cgroup_rule,
            "Init": if f.init { json!(true) } else { Value::Null },
            "ReadonlyRootfs": f.read_only,
            "SecurityOpt": f.security_opt,
            "Tmpfs": tmpfs,
            "ShmSize": size(&f.shm_size)?,
            "Sysctls": key_values(&f.sysctl),
            "CpuShares": f.cpu_shares.unwrap_or(0),
            "Memory": size(&f.memory)?,
            "MemorySwap": size(&f.memory_swap)?,
            "MemoryReservation": size(&f.memory_reservation)?,
            "NanoCpus": nano_cpus,
            "CpusetCpus": f.cpuset_cpus.clone().unwrap_or_default(),
            "BlkioWeight": f.blkio_weight.unwrap_or(0),
            "PidsLimit": f.pids_limit,
            "Ulimits": ulimits,
        },
        "NetworkingConfig": {"EndpointsConfig": endpoints_config(f)},
    }))
}

/// `--device HOST[:CONTAINER][:PERMISSIONS]`, as the docker CLI reads it.
fn device_mapping(spec: &str) -> Result<Value> {
    let is_mode = |s: &str| !s.is_empty() && s.chars().all(|c| "rwm".contains(c));
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, perms) = match parts[..] {
        [src] => (src, src, "rwm"),
        [src, mode] if is_mode(mode) => (src, src, mode),
        [src, dst] => (src, dst, "rwm"),
        [src, dst, mode] if is_mode(mode) => (src, dst, mode),
        _ => bail!("invalid device specification: {spec}"),
    };
    if !dst.starts_with('/') {
        bail!("invalid device specification: {spec}: the path in the container must be absolute");
    }
    Ok(json!({"PathOnHost": src, "PathInContainer": dst, "CgroupPermissions": perms}))
}

/// Go's duration syntax (`1s`, `500ms`, `1m30s`) in nanoseconds.
fn go_duration(s: &str) -> Result<i64> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek().filter(|n| n.is_ascii_alphabetic() || **n == 'µ') {
            unit.push(n);
            chars.next();
        }
        let n: f64 = num.parse().with_context(|| format!("invalid duration {s:?}"))?;
        num.clear();
        total += n * match unit.as_str() {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => bail!("invalid duration {s:?}: unknown unit {unit:?}"),
        };
    }
    if !num.is_empty() {
        bail!("invalid duration {s:?}: missing unit");
    }
    Ok(total as i64)
}

fn healthcheck(f: &CreateFlags) -> Result<Value> {
    if f.no_healthcheck {
        if f.health_cmd.is_some() {
            bail!("--no-healthcheck conflicts with --health-* options");
        }
        return Ok(json!({"Test": ["NONE"]}));
    }
    let any = f.health_cmd.is_some()
        || f.health_interval.is_some()
        || f.health_timeout.is_some()
        || f.health_retries.is_some()
        || f.health_start_period.is_some();
    if !any {
        return Ok(Value::Null);
    }
    let dur = |d: &Option<String>| d.as_deref().map(go_duration).transpose().map(|v| v.unwrap_or(0));
    Ok(json!({
        "Test": f.health_cmd.as_ref().map(|c| json!(["CMD-SHELL", c])).unwrap_or(Value::Null),
        "Interval": dur(&f.health_interval)?,
        "Timeout": dur(&f.health_timeout)?,
        "StartPeriod": dur(&f.health_start_period)?,
        "Retries": f.health_retries.unwrap_or(0),
    }))
}

async fn create(client: &Client, f: &CreateFlags, attach: bool) -> Result<String> {
    let mut q = Query::default();
    if let Some(n) = &f.name {
        q.push("name", n.clone());
    }
    let body = create_body(f, attach)?;
    if let Some(cidfile) = &f.cidfile {
        if cidfile.exists() {
            bail!(
                "container ID file found, make sure the other container isn't running or delete {}",
                cidfile.display()
            );
        }
    }
    let v: Value = client.post_json("/containers/create", &q, &body).await?;
    let id = v["Id"]
        .as_str()
        .context("no container ID in the daemon's answer")?
        .to_string();
    for w in v["Warnings"].as_array().into_iter().flatten() {
        eprintln!("WARNING: {}", w.as_str().unwrap_or_default());
    }
    if let Some(cidfile) = &f.cidfile {
        std::fs::write(cidfile, &id).with_context(|| format!("writing {}", cidfile.display()))?;
    }
    Ok(id)
}

async fn create_cmd(client: &Client, a: CreateArgs) -> Result<()> {
    let id = create(client, &a.flags, false).await?;
    println!("{id}");
    Ok(())
}

/// Starts a created container; a failure is reported as docker does and becomes the exit code
/// docker gives it (127 command not found, 126 not executable, 125 otherwise).
async fn start_or_exit(client: &Client, id: &str) -> Result<()> {
    if let Err(e) = client
        .call(
            Method::POST,
            &format!("/containers/{id}/start"),
            &Query::default(),
        )
        .await
    {
        eprintln!("berth: {e}");
        let code = e
            .downcast_ref::<DaemonError>()
            .map(|d| start_failure_code(&d.message))
            .unwrap_or(125);
        return Err(ExitCode(code).into());
    }
    Ok(())
}

/// Exit code docker gives a `run` whose start failed, from the daemon's message.
fn start_failure_code(message: &str) -> i32 {
    if message.contains("executable file not found") || message.contains("no such file or directory") {
        127
    } else if message.contains("permission denied") {
        126
    } else {
        125
    }
}

async fn run(client: &Client, a: RunArgs) -> Result<()> {
    let f = &a.flags;
    let attach = !a.detach;
    let id = match create(client, f, attach).await {
        Ok(id) => id,
        Err(e) => {
            eprintln!("berth: {e}");
            return Err(ExitCode(125).into());
        }
    };
    if a.detach {
        start_or_exit(client, &id).await?;
        println!("{id}");
        return Ok(());
    }
    let mut q = Query::default();
    q.push("stream", "1").push("stdout", "1").push("stderr", "1");
    if f.interactive {
        q.push("stdin", "1");
    }
    let stream = client
        .hijack(&format!("/containers/{id}/attach"), &q, client::empty(), None)
        .await?;
    let condition = if f.rm { "removed" } else { "next-exit" };
    let mut wq = Query::default();
    wq.push("condition", condition);
    // The wait is in place (its headers came back) before the container starts, so even a
    // container that exits and is removed at once is seen.
    let wait_resp = client
        .request(
            Method::POST,
            &format!("/containers/{id}/wait"),
            &wq,
            client::empty(),
            None,
        )
        .await?;
    let waiter = tokio::spawn(async move {
        let bytes = http_body_util::BodyExt::collect(wait_resp.into_body())
            .await?
            .to_bytes();
        anyhow::Ok(serde_json::from_slice::<Value>(&bytes)?)
    });
    if let Err(e) = start_or_exit(client, &id).await {
        if f.rm {
            let mut rq = Query::default();
            rq.push("force", "1");
            let _ = client
                .call(Method::DELETE, &format!("/containers/{id}"), &rq)
                .await;
        }
        return Err(e);
    }
    let _raw = if f.tty && f.interactive {
        Some(RawTerminal::enable())
    } else {
        None
    };
    if f.tty {
        if let Some((rows, cols)) = terminal_size() {
            let mut rq = Query::default();
            rq.push("h", rows.to_string()).push("w", cols.to_string());
            let _ = client
                .call(Method::POST, &format!("/containers/{id}/resize"), &rq)
                .await;
        }
    }
    let detached = run_session(stream, f.tty, f.interactive).await?;
    drop(_raw);
    if detached {
        return Ok(());
    }
    let status = waiter.await.context("waiting for the container")??;
    let code = status["StatusCode"].as_i64().unwrap_or(0) as i32;
    if code != 0 {
        return Err(ExitCode(code).into());
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short = 'a', long)]
    attach: bool,
    /// Attach container's STDIN
    #[arg(short = 'i', long)]
    interactive: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

async fn start(client: &Client, a: StartArgs) -> Result<()> {
    if a.attach || a.interactive {
        let name = &a.containers[0];
        let info: Value = client
            .get(&format!("/containers/{name}/json"), &Query::default())
            .await?;
        let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
        let mut q = Query::default();
        q.push("stream", "1").push("stdout", "1").push("stderr", "1");
        if a.interactive {
            q.push("stdin", "1");
        }
        let stream = client
            .hijack(&format!("/containers/{name}/attach"), &q, client::empty(), None)
            .await?;
        client
            .call(
                Method::POST,
                &format!("/containers/{name}/start"),
                &Query::default(),
            )
            .await?;
        let _raw = if tty && a.interactive {
            Some(RawTerminal::enable())
        } else {
            None
        };
        run_session(stream, tty, a.interactive).await?;
        let mut wq = Query::default();
        wq.push("condition", "not-running");
        let status: Value = client
            .json(Method::POST, &format!("/containers/{name}/wait"), &wq)
            .await?;
        let code = status["StatusCode"].as_i64().unwrap_or(0) as i32;
        return if code == 0 {
            Ok(())
        } else {
            Err(ExitCode(code).into())
        };
    }
    each(&a.containers, |c| async move {
        client
            .call(Method::POST, &format!("/containers/{c}/start"), &Query::default())
            .await?;
        println!("{c}");
        Ok(())
    })
    .await
}

/// Runs `f` for each name, reporting failures on stderr; exit 1 if any failed (as docker).
pub(super) async fn each<'a, F, Fut>(names: &'a [String], f: F) -> Result<()>
where
    F: Fn(&'a String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut failed = false;
    for n in names {
        if let Err(e) = f(n).await {
            eprintln!("{e}");
            failed = true;
        }
    }
    if failed {
        Err(ExitCode(1).into())
    } else {
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    all: bool,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter")]
    filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    format: Option<String>,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long = "last")]
    last: Option<i64>,
    /// Show the latest created container (includes all states)
    #[arg(short = 'l', long)]
    latest: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Only display container IDs
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Display total file sizes
    #[arg(short = 's', long)]
    size: bool,
}

pub async fn ps(client: &Client, a: PsArgs) -> Result<()> {
    let mut filters = Filters::default();
    for f in &a.filter {
        let (k, v) = f
            .split_once('=')
            .with_context(|| format!("bad format of filter (expected name=value): {f}"))?;
        filters.add(k, v);
    }
    let mut q = Query::default();
    if a.all {
        q.push("all", "1");
    }
    if let Some(n) = a.last {
        q.push("limit", n.to_string());
    }
    if a.latest {
        q.push("limit", "1");
    }
    if a.size {
        q.push("size", "1");
    }
    if !filters.is_empty() {
        q.push("filters", filters.to_json());
    }
    let list: Vec<Value> = client.get("/containers/json", &q).await?;
    let short = |id: &str| {
        if a.no_trunc {
            id.to_string()
        } else {
            id.chars().take(12).collect()
        }
    };
    if a.quiet {
        for c in &list {
            println!("{}", short(c["Id"].as_str().unwrap_or_default()));
        }
        return Ok(());
    }
    let rows: Vec<Value> = list
        .iter()
        .map(|c| {
            let command = c["Command"].as_str().unwrap_or_default();
            let command = if a.no_trunc || command.chars().count() <= 20 {
                format!("\"{command}\"")
            } else {
                format!("\"{}…\"", command.chars().take(19).collect::<String>())
            };
            let names: Vec<String> =
                c["Names"].as_array().into_iter().flatten().filter_map(|n| n.as_str()).map(|n| n.trim_start_matches('/').to_string()).collect();
            json!({
                "ID": short(c["Id"].as_str().unwrap_or_default()),
                "Image": c["Image"],
                "Command": command,
                "CreatedAt": c["Created"],
                "RunningFor": crate::units::since(c["Created"].as_i64().unwrap_or(0)),
                "Status": c["Status"],
                "State": c["State"],
                "Ports": ports_text(&c["Ports"]),
                "Names": names.join(","),
                "Labels": c["Labels"].as_object().map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(",")).unwrap_or_default(),
                "Size": format!(
                    "{} (virtual {})",
                    crate::units::human_size(c["SizeRw"].as_f64().unwrap_or(0.0)),
                    crate::units::human_size(c["SizeRootFs"].as_f64().unwrap_or(0.0))
                ),
                "Mounts": c["Mounts"].as_array().map(|m| m.iter().map(|m| {
                    let name = m["Name"].as_str().filter(|n| !n.is_empty()).or(m["Source"].as_str()).unwrap_or("");
                    if a.no_trunc { name.to_string() } else { name.chars().take(15).collect::<String>() }
                }).collect::<Vec<_>>().join(",")).unwrap_or_default(),
                "Networks": c["NetworkSettings"]["Networks"].as_object().map(|n| n.keys().cloned().collect::<Vec<_>>().join(",")).unwrap_or_default(),
            })
        })
        .collect();
    let table = if a.size {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}\t{{.Size}}"
    } else {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
    };
    print_rows(
        a.format.as_deref(),
        table,
        &rows,
        &[
            ("ID", "CONTAINER ID"),
            ("Image", "IMAGE"),
            ("Command", "COMMAND"),
            ("CreatedAt", "CREATED AT"),
            ("RunningFor", "CREATED"),
            ("Status", "STATUS"),
            ("State", "STATE"),
            ("Ports", "PORTS"),
            ("Names", "NAMES"),
            ("Labels", "LABELS"),
            ("Size", "SIZE"),
            ("Mounts", "MOUNTS"),
            ("Networks", "NETWORKS"),
        ],
    )
}

/// `docker ps`'s PORTS column: `0.0.0.0:8080->80/tcp, 443/tcp`.
fn ports_text(ports: &Value) -> String {
    let mut out: Vec<String> = ports
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let private = format!("{}/{}", p["PrivatePort"], p["Type"].as_str().unwrap_or("tcp"));
            match p["PublicPort"].as_u64() {
                Some(public) => format!("{}:{public}->{private}", p["IP"].as_str().unwrap_or("0.0.0.0")),
                None => private,
            }
        })
        .collect();
    out.dedup();
    out.join(", ")
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short = 'f', long)]
    follow: bool,
    /// Show logs since timestamp or relative (e.g. 42m for 42 minutes)
    #[arg(long)]
    since: Option<String>,
    /// Show logs before a timestamp or relative (e.g. 42m for 42 minutes)
    #[arg(long)]
    until: Option<String>,
    /// Show timestamps
    #[arg(short = 't', long)]
    timestamps: bool,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    container: String,
}

async fn logs(client: &Client, a: LogsArgs) -> Result<()> {
    let info: Value = client
        .get(&format!("/containers/{}/json", a.container), &Query::default())
        .await?;
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let id = info["Id"].as_str().unwrap_or(&a.container).to_string();
    let mut q = Query::default();
    q.push("stdout", "1")
        .push("stderr", "1")
        .push("tail", a.tail.clone());
    if a.follow {
        q.push("follow", "1");
    }
    if a.timestamps {
        q.push("timestamps", "1");
    }
    if let Some(s) = &a.since {
        q.push("since", s.clone());
    }
    if let Some(u) = &a.until {
        q.push("until", u.clone());
    }
    let resp = client
        .request(
            Method::GET,
            &format!("/containers/{id}/logs"),
            &q,
            client::empty(),
            None,
        )
        .await?;
    let body = http_body_util::BodyStream::new(resp.into_body());
    let reader = tokio_util::io::StreamReader::new(futures::TryStreamExt::map_ok(
        futures::TryStreamExt::map_err(body, std::io::Error::other),
        |frame| frame.into_data().unwrap_or_default(),
    ));
    let stream = tokio::io::join(reader, tokio::io::sink());
    run_session(stream, tty, false).await?;
    Ok(())
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Signal to send to the container
    #[arg(short = 's', long)]
    signal: Option<String>,
    /// Seconds to wait before killing the container
    #[arg(short = 't', long = "timeout", alias = "time")]
    timeout: Option<i64>,
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

async fn stop(client: &Client, a: StopArgs, verb: &str) -> Result<()> {
    each(&a.containers, |c| {
        let signal = a.signal.clone();
        async move {
            let mut q = Query::default();
            if let Some(t) = a.timeout {
                q.push("t", t.to_string());
            }
            if let Some(s) = signal {
                q.push("signal", s);
            }
            client
                .call(Method::POST, &format!("/containers/{c}/{verb}"), &q)
                .await?;
            println!("{c}");
            Ok(())
        }
    })
    .await
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short = 's', long, default_value = "KILL")]
    signal: String,
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

async fn kill(client: &Client, a: KillArgs) -> Result<()> {
    let signal = &a.signal;
    each(&a.containers, |c| async move {
        let mut q = Query::default();
        q.push("signal", signal.clone());
        client
            .call(Method::POST, &format!("/containers/{c}/kill"), &q)
            .await?;
        println!("{c}");
        Ok(())
    })
    .await
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short = 'f', long)]
    force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short = 'v', long)]
    volumes: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

async fn rm(client: &Client, a: RmArgs) -> Result<()> {
    each(&a.containers, |c| async move {
        let mut q = Query::default();
        if a.force {
            q.push("force", "1");
        }
        if a.volumes {
            q.push("v", "1");
        }
        client
            .call(Method::DELETE, &format!("/containers/{c}"), &q)
            .await?;
        println!("{c}");
        Ok(())
    })
    .await
}

#[derive(Debug, Args)]
pub struct NamesArgs {
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

async fn wait(client: &Client, a: NamesArgs) -> Result<()> {
    each(&a.containers, |c| async move {
        let v: Value = client
            .json(Method::POST, &format!("/containers/{c}/wait"), &Query::default())
            .await?;
        println!("{}", v["StatusCode"]);
        Ok(())
    })
    .await
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long = "no-stdin")]
    no_stdin: bool,
    container: String,
}

async fn attach(client: &Client, a: AttachArgs) -> Result<()> {
    let info: Value = client
        .get(&format!("/containers/{}/json", a.container), &Query::default())
        .await?;
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let stdin = !a.no_stdin && info["Config"]["OpenStdin"].as_bool().unwrap_or(false);
    let mut q = Query::default();
    q.push("stream", "1").push("stdout", "1").push("stderr", "1");
    if stdin {
        q.push("stdin", "1");
    }
    let stream = client
        .hijack(
            &format!("/containers/{}/attach", a.container),
            &q,
            client::empty(),
            None,
        )
        .await?;
    let _raw = if tty && stdin && std::io::stdin().is_terminal() {
        Some(RawTerminal::enable())
    } else {
        None
    };
    run_session(stream, tty, stdin).await?;
    Ok(())
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    force: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long)]
    filter: Vec<String>,
}

async fn prune(client: &Client, a: PruneArgs) -> Result<()> {
    if !a.force {
        eprint!(
            "WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] "
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            return Ok(());
        }
    }
    let mut filters = Filters::default();
    for f in &a.filter {
        let (k, v) = f
            .split_once('=')
            .with_context(|| format!("bad format of filter: {f}"))?;
        filters.add(k, v);
    }
    let mut q = Query::default();
    if !filters.is_empty() {
        q.push("filters", filters.to_json());
    }
    let v: Value = client.json(Method::POST, "/containers/prune", &q).await?;
    if let Some(ids) = v["ContainersDeleted"].as_array().filter(|a| !a.is_empty()) {
        println!("Deleted Containers:");
        for id in ids {
            println!("{}", id.as_str().unwrap_or_default());
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        crate::units::human_size(v["SpaceReclaimed"].as_f64().unwrap_or(0.0))
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short = 'd', long)]
    detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    tty: bool,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    env_file: Vec<std::path::PathBuf>,
    /// Give extended privileges to the command
    #[arg(long)]
    privileged: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    detach_keys: Option<String>,
    container: String,
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    command: Vec<String>,
}

async fn exec(client: &Client, a: ExecArgs) -> Result<()> {
    let env = environment(&a.env_file, &a.env)?;
    let body = json!({
        "User": a.user.clone().unwrap_or_default(),
        "Privileged": a.privileged,
        "Tty": a.tty,
        "AttachStdin": a.interactive && !a.detach,
        "AttachStderr": !a.detach,
        "AttachStdout": !a.detach,
        "Detach": a.detach,
        "DetachKeys": a.detach_keys.clone().unwrap_or_default(),
        "Env": env,
        "WorkingDir": a.workdir.clone().unwrap_or_default(),
        "Cmd": a.command,
    });
    let created: Value = client
        .post_json(
            &format!("/containers/{}/exec", a.container),
            &Query::default(),
            &body,
        )
        .await?;
    let id = created["Id"]
        .as_str()
        .context("no exec ID in the daemon's answer")?
        .to_string();
    let start = json!({"Detach": a.detach, "Tty": a.tty});
    if a.detach {
        let resp = client
            .request(
                Method::POST,
                &format!("/exec/{id}/start"),
                &Query::default(),
                client::json_body(&start),
                Some("application/json"),
            )
            .await?;
        http_body_util::BodyExt::collect(resp.into_body()).await?;
        return Ok(());
    }
    let stream = client
        .hijack(
            &format!("/exec/{id}/start"),
            &Query::default(),
            client::json_body(&start),
            Some("application/json"),
        )
        .await?;
    let raw = if a.tty && a.interactive {
        Some(RawTerminal::enable())
    } else {
        None
    };
    if a.tty {
        if let Some((rows, cols)) = terminal_size() {
            let mut rq = Query::default();
            rq.push("h", rows.to_string()).push("w", cols.to_string());
            let _ = client
                .call(Method::POST, &format!("/exec/{id}/resize"), &rq)
                .await;
        }
    }
    run_session(stream, a.tty, a.interactive).await?;
    drop(raw);
    let info: Value = client.get(&format!("/exec/{id}/json"), &Query::default()).await?;
    match info["ExitCode"].as_i64() {
        Some(0) | None => Ok(()),
        Some(code) => Err(ExitCode(code as i32).into()),
    }
}
