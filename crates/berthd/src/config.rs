//! Daemon configuration: command-line flags over `/etc/berth/daemon.json` (Docker's daemon.json
//! keys where they apply) over defaults.

use anyhow::{bail, Context};
use clap::Parser;
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG_FILE: &str = "/etc/berth/daemon.json";

#[derive(Debug, Parser)]
#[command(
    name = "berthd",
    version,
    about = "Berth daemon: serves the Docker Engine API on a Unix socket"
)]
pub struct Args {
    /// Socket to listen on, as unix:///path (repeatable)
    #[arg(short = 'H', long = "host", value_name = "URL")]
    pub hosts: Vec<String>,
    /// Root directory of persistent state
    #[arg(long = "root", alias = "data-root", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Root directory of runtime state (sockets, pid file)
    #[arg(long = "exec-root", value_name = "DIR")]
    pub exec_root: Option<PathBuf>,
    /// Log level: debug, info, warn, error, fatal
    #[arg(short = 'l', long = "log-level", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Daemon configuration file
    #[arg(long = "config-file", value_name = "FILE", default_value = DEFAULT_CONFIG_FILE)]
    pub config_file: PathBuf,
    /// Enable debug logging
    #[arg(short = 'D', long = "debug")]
    pub debug: bool,
    /// Parent cgroup of all containers
    #[arg(long = "cgroup-parent", value_name = "NAME")]
    pub cgroup_parent: Option<String>,
    /// Bridge of the default network ("none": no bridge network)
    #[arg(short = 'b', long = "bridge", value_name = "NAME")]
    pub bridge: Option<String>,
    /// The bridge's address and subnet, e.g. 172.20.0.1/16
    #[arg(long = "bip", value_name = "CIDR")]
    pub bip: Option<String>,
    /// Run containers in a user namespace: "default" (the dockremap user), user[:group], or
    /// uid[:gid], with ids from /etc/subuid and /etc/subgid
    #[arg(long = "userns-remap", value_name = "USER[:GROUP]")]
    pub userns_remap: Option<String>,
}

/// The keys of Docker's daemon.json that Berth reads. Unknown keys are refused, as dockerd does.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileConfig {
    hosts: Option<Vec<String>>,
    data_root: Option<PathBuf>,
    exec_root: Option<PathBuf>,
    log_level: Option<String>,
    debug: Option<bool>,
    labels: Option<Vec<String>>,
    insecure_registries: Option<Vec<String>>,
    registry_mirrors: Option<Vec<String>>,
    experimental: Option<bool>,
    #[serde(rename = "storage-driver")]
    storage_driver: Option<String>,
    log_driver: Option<String>,
    cgroup_parent: Option<String>,
    bridge: Option<String>,
    bip: Option<String>,
    log_opts: Option<std::collections::BTreeMap<String, String>>,
    userns_remap: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub sockets: Vec<PathBuf>,
    pub root: PathBuf,
    pub exec_root: PathBuf,
    pub log_level: String,
    pub labels: Vec<String>,
    pub insecure_registries: Vec<String>,
    pub registry_mirrors: Vec<String>,
    pub experimental: bool,
    pub cgroup_parent: String,
    pub bridge: String,
    pub bip: Option<String>,
    pub userns_remap: Option<String>,
}

impl Config {
    pub fn load(args: Args) -> anyhow::Result<Config> {
        let file = read_file(&args.config_file)?;
        if let Some(driver) = file
            .storage_driver
            .as_deref()
            .filter(|d| *d != "overlay2" && *d != "overlay")
        {
            bail!("storage driver {driver:?} is not supported: berth uses overlay");
        }
        let _ = (&file.log_driver, &file.log_opts);
        let hosts = if args.hosts.is_empty() {
            file.hosts.unwrap_or_default()
        } else {
            args.hosts
        };
        let exec_root = args
            .exec_root
            .or(file.exec_root)
            .unwrap_or_else(|| "/run/berth".into());
        let mut sockets = Vec::new();
        for h in &hosts {
            sockets.push(parse_host(h)?);
        }
        if sockets.is_empty() {
            sockets.push(exec_root.join("berth.sock"));
        }
        let debug = args.debug || file.debug.unwrap_or(false);
        let log_level = args
            .log_level
            .or(file.log_level)
            .unwrap_or_else(|| if debug { "debug" } else { "info" }.into());
        Ok(Config {
            sockets,
            root: args
                .root
                .or(file.data_root)
                .unwrap_or_else(|| "/var/lib/berth".into()),
            exec_root,
            log_level,
            labels: file.labels.unwrap_or_default(),
            insecure_registries: file.insecure_registries.unwrap_or_default(),
            registry_mirrors: file.registry_mirrors.unwrap_or_default(),
            experimental: file.experimental.unwrap_or(false),
            cgroup_parent: args
                .cgroup_parent
                .or(file.cgroup_parent)
                .unwrap_or_else(|| "berth".into()),
            bridge: args.bridge.or(file.bridge).unwrap_or_else(|| "berth0".into()),
            bip: args.bip.or(file.bip),
            userns_remap: args.userns_remap.or(file.userns_remap).filter(|u| !u.is_empty()),
        })
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("invalid configuration in {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && path == Path::new(DEFAULT_CONFIG_FILE) => {
            Ok(FileConfig::default())
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn parse_host(h: &str) -> anyhow::Result<PathBuf> {
    match h.strip_prefix("unix://") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        Some(_) => Ok(PathBuf::from("/run/berth/berth.sock")),
        None if h.starts_with('/') => Ok(PathBuf::from(h)),
        None => bail!("unsupported host {h:?}: berthd listens on unix:///path sockets only"),
    }
}
