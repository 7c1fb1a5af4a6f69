//! A container as berthd keeps it: created from a request, persisted as JSON in its directory
//! (written atomically), and shown in Docker's shapes.

use berth_api::container::{ContainerConfig, ContainerState, HostConfig, ZERO_TIME};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const RECORD_FILE: &str = "config.v2.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    pub created: String,
    pub image_id: String,
    /// The image as the user named it (`busybox`).
    pub image_name: String,
    /// The container's config, merged with the image's defaults.
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    pub path: String,
    pub args: Vec<String>,
    pub state: ContainerState,
    pub restart_count: i64,
    /// Image layer directories, top first (overlay lowerdirs).
    pub lower_dirs: Vec<PathBuf>,
    #[serde(default)]
    pub has_been_started: bool,
    /// Stopped by `docker stop` (the restart policy waits for the next start).
    #[serde(default)]
    pub manually_stopped: bool,
    /// Its places on networks while it runs (the first is its `NetworkMode` network).
    #[serde(default)]
    pub networks: Vec<crate::services::network::Attachment>,
    /// Per network: the aliases and address asked for (`--network-alias`, `--ip`, `connect`).
    #[serde(default)]
    pub endpoints_config: BTreeMap<String, super::networking::EndpointSettings>,
    /// Volumes, binds and tmpfs mounts (`-v`, `--mount`, `--volumes-from`, image VOLUMEs).
    #[serde(default)]
    pub mount_points: Vec<super::mounts::MountPoint>,
}

/// Where a container's files live.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
    pub shim: PathBuf,
}

impl Paths {
    pub fn new(containers_root: &Path, shims_root: &Path, id: &str) -> Paths {
        Paths {
            dir: containers_root.join(id),
            shim: shims_root.join(id),
        }
    }
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    pub fn log(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}-json.log"))
    }
    pub fn hosts(&self) -> PathBuf {
        self.dir.join("hosts")
    }
    pub fn hostname(&self) -> PathBuf {
        self.dir.join("hostname")
    }
    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }
    pub fn record(&self) -> PathBuf {
        self.dir.join(RECORD_FILE)
    }
}

impl ContainerRecord {
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }

    /// The command line as `docker ps` shows it.
    pub fn command(&self) -> String {
        std::iter::once(self.path.as_str())
            .chain(self.args.iter().map(String::as_str))
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `Up 2 minutes`, `Exited (0) 3 seconds ago`, `Created`, as `docker ps` shows.
    pub fn status_text(&self) -> String {
        let since = |t: &str| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| human_duration((chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds()))
                .unwrap_or_default()
        };
        match self.state.status.as_str() {
            "running" if self.state.paused => format!("Up {} (Paused)", since(&self.state.started_at)),
            "running" => match self.state.health.as_ref().and_then(|h| h["Status"].as_str()) {
                Some("starting") => format!("Up {} (health: starting)", since(&self.state.started_at)),
                Some(h) => format!("Up {} ({h})", since(&self.state.started_at)),
                None => format!("Up {}", since(&self.state.started_at)),
            },
            "paused" => format!("Up {} (Paused)", since(&self.state.started_at)),
            "restarting" => format!(
                "Restarting ({}) {} ago",
                self.state.exit_code,
                since(&self.state.finished_at)
            ),
            "exited" if self.state.finished_at != ZERO_TIME => {
                format!(
                    "Exited ({}) {} ago",
                    self.state.exit_code,
                    since(&self.state.finished_at)
                )
            }
            "exited" => format!("Exited ({})", self.state.exit_code),
            "dead" => "Dead".into(),
            "removing" => "Removal In Progress".into(),
            _ => "Created".into(),
        }
    }

    /// `GET /containers/{id}/json`.
    pub fn inspect(&self, paths: &Paths) -> Value {
        let mut host_config = serde_json::to_value(&self.host_config).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut host_config {
            if m.get("NetworkMode")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                m.insert("NetworkMode".into(), json!("bridge"));
            }
        }
        json!({
            "Id": self.id,
            "Created": self.created,
            "Path": self.path,
            "Args": self.args,
            "State": self.state,
            "Image": self.image_id,
            "ResolvConfPath": paths.resolv_conf(),
            "HostnamePath": paths.hostname(),
            "HostsPath": paths.hosts(),
            "LogPath": paths.log(&self.id),
            "Name": format!("/{}", self.name),
            "RestartCount": self.restart_count,
            "Driver": "overlay",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": null,
            "HostConfig": host_config,
            "GraphDriver": {
                "Name": "overlay",
                "Data": {
                    "LowerDir": self.lower_dirs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":"),
                    "UpperDir": paths.upper(),
                    "WorkDir": paths.work(),
                    "MergedDir": paths.rootfs(),
                }
            },
            "Mounts": self.mounts_json(),
            "Config": self.config,
            "NetworkSettings": self.network_settings(),
        })
    }

    /// Docker's `NetworkSettings`: the container's addresses on its networks (the top-level fields
    /// are the default bridge's, as Docker shows them) and its published ports.
    fn network_settings(&self) -> Value {
        let mut ports = serde_json::Map::new();
        for p in self.config.exposed_ports.iter().flat_map(|m| m.keys()) {
            ports.insert(p.clone(), Value::Null);
        }
        let mut networks = serde_json::Map::new();
        for att in &self.networks {
            for p in &att.ports {
                let key = format!("{}/{}", p.container_port, p.protocol);
                let entry = ports.entry(key).or_insert_with(|| json!([]));
                if !entry.is_array() {
                    *entry = json!([]);
                }
                entry
                    .as_array_mut()
                    .expect("array")
                    .push(json!({"HostIp": p.host_ip, "HostPort": p.host_port.to_string()}));
            }
            let e = &att.endpoint;
            let mut dns_names = Vec::new();
            if att.network != "bridge" {
                dns_names.push(self.name.clone());
                dns_names.push(self.short_id().to_string());
                dns_names.extend(att.aliases.iter().cloned());
            }
            networks.insert(
                att.network.clone(),
                json!({
                    "IPAMConfig": self.endpoints_config.get(&att.network).and_then(|s| s.ipv4.clone()).map(|ip| json!({"IPv4Address": ip})),
                    "Links": null, "Aliases": if att.aliases.is_empty() { Value::Null } else { json!(att.aliases) },
                    "MacAddress": e.mac_string(), "DriverOpts": null, "GwPriority": 0,
                    "NetworkID": att.network_id, "EndpointID": att.endpoint_id,
                    "Gateway": e.gateway.map(|g| g.to_string()).unwrap_or_default(),
                    "IPAddress": e.ip.to_string(), "IPPrefixLen": e.prefix, "IPv6Gateway": "",
                    "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                    "DNSNames": if dns_names.is_empty() { Value::Null } else { json!(dns_names) },
                }),
            );
        }
        let bridge = self.networks.iter().find(|a| a.network == "bridge");
        let (ip, gateway, prefix, mac, endpoint_id) = match bridge {
            Some(att) => (
                att.endpoint.ip.to_string(),
                att.endpoint.gateway.map(|g| g.to_string()).unwrap_or_default(),
                att.endpoint.prefix,
                att.endpoint.mac_string(),
                att.endpoint_id.clone(),
            ),
            None => (String::new(), String::new(), 0, String::new(), String::new()),
        };
        json!({
            "Bridge": "", "SandboxID": "", "SandboxKey": "", "Ports": ports, "HairpinMode": false,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "SecondaryIPAddresses": null,
            "SecondaryIPv6Addresses": null, "EndpointID": endpoint_id, "Gateway": gateway, "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "IPAddress": ip, "IPPrefixLen": prefix, "IPv6Gateway": "", "MacAddress": mac,
            "Networks": networks
        })
    }

    /// Published ports as `GET /containers/json` lists them.
    fn port_list(&self) -> Value {
        let mut out = Vec::new();
        for att in &self.networks {
            for p in &att.ports {
                out.push(json!({"IP": p.host_ip, "PrivatePort": p.container_port, "PublicPort": p.host_port, "Type": p.protocol}));
            }
        }
        Value::Array(out)
    }

    /// One entry of `GET /containers/json`.
    pub fn summary(&self) -> Value {
        let created = chrono::DateTime::parse_from_rfc3339(&self.created)
            .map(|t| t.timestamp())
            .unwrap_or(0);
        json!({
            "Id": self.id,
            "Names": [format!("/{}", self.name)],
            "Image": self.image_name,
            "ImageID": self.image_id,
            "Command": self.command(),
            "Created": created,
            "Ports": self.port_list(),
            "Labels": self.config.labels.clone().unwrap_or_default(),
            "State": self.state.status,
            "Status": self.status_text(),
            "HostConfig": {"NetworkMode": if self.host_config.network_mode.is_empty() { "bridge" } else { &self.host_config.network_mode }},
            "NetworkSettings": {"Networks": self.network_settings()["Networks"]},
            "Mounts": self.mounts_json(),
        })
    }

    fn mounts_json(&self) -> Vec<Value> {
        self.mount_points.iter().map(|m| m.to_json()).collect()
    }
}

/// go-units HumanDuration, from seconds.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let (m, h) = (s / 60, s / 3600);
    match () {
        _ if s < 1 => "Less than a second".into(),
        _ if s == 1 => "1 second".into(),
        _ if s < 60 => format!("{s} seconds"),
        _ if m == 1 => "About a minute".into(),
        _ if m < 60 => format!("{m} minutes"),
        _ if h == 1 => "About an hour".into(),
        _ if h < 48 => format!("{h} hours"),
        _ if h < 24 * 7 * 2 => format!("{} days", h / 24),
        _ if h < 24 * 30 * 2 => format!("{} weeks", h / 24 / 7),
        _ if h < 24 * 365 * 2 => format!("{} months", h / 24 / 30),
        _ => format!("{} years", h / 24 / 365),
    }
}
