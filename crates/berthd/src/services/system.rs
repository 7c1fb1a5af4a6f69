//! System information: `/version`, `/info`, `/system/df`.

use super::Daemon;
use berth_api::version::{CURRENT, MINIMUM};
use serde_json::{json, Value};

pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn kernel_version() -> String {
    rustix::system::uname().release().to_string_lossy().into_owned()
}

pub fn arch_go() -> &'static str {
    berth_image::manifest::host_architecture()
}

pub fn version() -> Value {
    let kernel = kernel_version();
    json!({
        "Platform": {"Name": "Berth Engine"},
        "Components": [{
            "Name": "Engine",
            "Version": ENGINE_VERSION,
            "Details": {
                "ApiVersion": CURRENT.to_string(),
                "Arch": arch_go(),
                "BuildTime": "",
                "Experimental": "false",
                "GitCommit": "",
                "GoVersion": "n/a (Rust)",
                "KernelVersion": kernel,
                "MinAPIVersion": MINIMUM.to_string(),
                "Os": "linux"
            }
        }],
        "Version": ENGINE_VERSION,
        "ApiVersion": CURRENT.to_string(),
        "MinAPIVersion": MINIMUM.to_string(),
        "GitCommit": "",
        "GoVersion": "n/a (Rust)",
        "Os": "linux",
        "Arch": arch_go(),
        "KernelVersion": kernel,
        "BuildTime": ""
    })
}

/// Which cgroup hierarchy the host has: "2" (unified), or "1" (v1 or hybrid).
pub fn cgroup_version() -> &'static str {
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    }
}

fn os_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "Linux".into())
}

fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

pub async fn info(d: &Daemon) -> Value {
    let images = d.images.count().await;
    let (containers, running, paused, stopped) = d.containers.counts();
    let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let hostname = rustix::system::uname().nodename().to_string_lossy().into_owned();
    let mut security = vec!["name=seccomp,profile=builtin"];
    if d.userns.is_some() {
        security.push("name=userns");
    }
    let insecure: Vec<String> = std::iter::once("127.0.0.0/8".to_string())
        .chain(d.config.insecure_registries.iter().cloned())
        .collect();
    json!({
        "ID": d.id,
        "Containers": containers,
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": stopped,
        "Images": images,
        "Driver": "overlay",
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
        "Plugins": {
            "Volume": ["local"],
            "Network": ["bridge", "host", "none"],
            "Authorization": null,
            "Log": ["json-file"]
        },
        "MemoryLimit": true,
        "SwapLimit": true,
        "CpuCfsPeriod": true,
        "CpuCfsQuota": true,
        "CPUShares": true,
        "CPUSet": true,
        "PidsLimit": true,
        "IPv4Forwarding": true,
        "Debug": d.config.log_level == "debug",
        "NFd": std::fs::read_dir("/proc/self/fd").map(|r| r.count()).unwrap_or(0),
        "OomKillDisable": false,
        "NGoroutines": 0,
        "SystemTime": chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, false),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version(),
        "NEventsListener": 0,
        "KernelVersion": kernel_version(),
        "OperatingSystem": os_name(),
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {
            "InsecureRegistryCIDRs": insecure,
            "IndexConfigs": {
                "docker.io": {"Name": "docker.io", "Mirrors": d.config.registry_mirrors, "Secure": true, "Official": true}
            },
            "Mirrors": d.config.registry_mirrors
        },
        "NCPU": ncpu,
        "MemTotal": mem_total(),
        "GenericResources": null,
        "DockerRootDir": d.config.root,
        "HttpProxy": std::env::var("HTTP_PROXY").unwrap_or_default(),
        "HttpsProxy": std::env::var("HTTPS_PROXY").unwrap_or_default(),
        "NoProxy": std::env::var("NO_PROXY").unwrap_or_default(),
        "Name": hostname,
        "Labels": d.config.labels,
        "ExperimentalBuild": d.config.experimental,
        "ServerVersion": ENGINE_VERSION,
        "Runtimes": {"berth": {"path": "berthd"}},
        "DefaultRuntime": "berth",
        "Swarm": {
            "NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": false,
            "Error": "", "RemoteManagers": null
        },
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "berth-init",
        "ContainerdCommit": {"ID": ""},
        "RuncCommit": {"ID": ""},
        "InitCommit": {"ID": ""},
        "SecurityOptions": security,
        "Warnings": null
    })
}
