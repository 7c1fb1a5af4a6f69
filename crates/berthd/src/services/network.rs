//! Networks: the default `bridge` network and user-defined bridge networks. Each is a Linux
//! bridge with its own subnet, address allocations that survive restarts, NAT to the outside (none
//! for `--internal`), published ports (a userland proxy, as docker-proxy, plus DNAT for traffic
//! from other hosts), and, on user-defined networks, names served by the embedded DNS server.
//! Built on `berth_net`; knows nothing of HTTP.

use berth_net::dns::{DnsServer, DnsServerConfig, DnsServerHandle, NameTable, Upstreams, EMBEDDED_DNS_IP};
use berth_net::{
    Bridge, Endpoint, EndpointConfig, Ipam, Ipv4Net, Nat, Netns, PortMapping, PortProxy, Protocol,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const DEFAULT_BRIDGE: &str = "berth0";
/// Networks every daemon has and nobody can create or remove.
const PREDEFINED: &[&str] = &["bridge", "host", "none", "default"];

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("network {0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Internal(String),
}

type Result<T, E = NetworkError> = std::result::Result<T, E>;

fn internal(e: impl std::fmt::Display) -> NetworkError {
    NetworkError::Internal(e.to_string())
}

/// A network as kept on disk (`<root>/network/networks/<id>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub id: String,
    pub name: String,
    /// The Linux bridge.
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    #[serde(default)]
    pub ip_range: Option<Ipv4Net>,
    #[serde(default)]
    pub internal: bool,
    /// Made by `network create` with `--subnet`: only then may containers ask for an address.
    #[serde(default)]
    pub user_subnet: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    pub created: String,
    /// The default `bridge` network: no names by DNS there, as in Docker.
    #[serde(default)]
    pub default: bool,
}

/// What `network create` asks for.
#[derive(Debug, Clone, Default)]
pub struct CreateNetwork {
    pub name: String,
    pub driver: String,
    pub internal: bool,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

/// A published port as inspect shows it: `80/tcp` -> `0.0.0.0:8080`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PublishedPort {
    pub container_port: u16,
    pub protocol: String,
    pub host_ip: String,
    pub host_port: u16,
}

/// A container's place on one network, kept in its record so a restarted berthd can restore it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(default)]
    pub network_id: String,
    #[serde(default)]
    pub network: String,
    #[serde(default)]
    pub endpoint_id: String,
    pub endpoint: Endpoint,
    pub ports: Vec<PublishedPort>,
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// A container joining a network.
pub struct Join<'a> {
    pub container_id: &'a str,
    pub container_name: &'a str,
    pub pid: i32,
    /// The interface name in the container (`eth0`, `eth1`, ...).
    pub ifname: String,
    pub bindings: &'a [(u16, String, String, u16)],
    pub ip: Option<Ipv4Addr>,
    pub aliases: Vec<String>,
    /// `--mac-address`; otherwise Docker's `02:42` + the IPv4 address.
    pub mac: Option<[u8; 6]>,
}

struct Net {
    record: NetworkRecord,
    ipam: Mutex<Ipam>,
    nat: Nat,
    proxies: Mutex<HashMap<String, Vec<PortProxy>>>,
    /// Running containers on the network: ID -> (name, attachment).
    endpoints: Mutex<BTreeMap<String, (String, Attachment)>>,
}

impl Net {
    fn is_default(&self) -> bool {
        self.record.default
    }
}

#[derive(Clone)]
pub struct NetworkService {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    nets: Mutex<BTreeMap<String, Arc<Net>>>,
    dns: Arc<NameTable>,
    dns_servers: Mutex<HashMap<String, DnsServerHandle>>,
    host_resolv_conf: String,
    /// Serialises creates and removes (subnet choice, bridge names).
    change: tokio::sync::Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn random_id() -> String {
    let mut b = [0u8; 32];
    let _ = rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty());
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn nat_for(bridge: &str) -> Nat {
    if bridge == DEFAULT_BRIDGE {
        Nat::default()
    } else {
        Nat::with_names(&format!("B-{bridge}"), &format!("berth-{bridge}"))
    }
}

fn parse_net(s: &str) -> Result<Ipv4Net> {
    let bad = || NetworkError::Invalid(format!("invalid CIDR address: {s}"));
    let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    Ipv4Net::new(addr, prefix).ok_or_else(bad)
}

/// Sets up a network's bridge and rules (idempotent: also at every daemon start).
async fn bring_up(rec: &NetworkRecord) -> Result<Nat> {
    Bridge::ensure(&rec.bridge, rec.gateway, rec.subnet)
        .await
        .map_err(internal)?;
    let nat = nat_for(&rec.bridge);
    nat.init().map_err(internal)?;
    if rec.internal {
        nat.add_internal_network(rec.subnet, &rec.bridge)
    } else {
        nat.add_network(rec.subnet, &rec.bridge)
    }
    .map_err(internal)?;
    Ok(nat)
}

impl NetworkService {
    /// Sets up the default bridge (`--bridge`, `none` for none) with the subnet of `--bip`, or the
    /// one chosen before, or a free one; then brings up the user-defined networks.
    pub async fn open(root: &Path, bridge: &str, bip: Option<&str>) -> anyhow::Result<NetworkService> {
        let dir = root.join("network");
        std::fs::create_dir_all(dir.join("networks"))?;
        let mut nets = BTreeMap::new();
        if bridge != "none" {
            let net = Self::open_default(&dir, bridge, bip).await?;
            nets.insert(net.record.id.clone(), Arc::new(net));
        }
        for entry in std::fs::read_dir(dir.join("networks"))? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let rec: NetworkRecord = match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "skipping unreadable network");
                    continue;
                }
            };
            let ipam_path = dir.join(format!("{}.ipam.json", rec.id));
            let ipam = match Ipam::load(&ipam_path) {
                Ok(i) => i,
                Err(_) => Ipam::open_with(&ipam_path, rec.subnet, rec.gateway, rec.ip_range)?,
            };
            let nat = bring_up(&rec).await?;
            tracing::info!(network = %rec.name, bridge = %rec.bridge, subnet = %rec.subnet, "network ready");
            nets.insert(
                rec.id.clone(),
                Arc::new(Net {
                    record: rec,
                    ipam: Mutex::new(ipam),
                    nat,
                    proxies: Mutex::default(),
                    endpoints: Mutex::default(),
                }),
            );
        }
        for net in nets.values() {
            for other in nets.values().filter(|o| o.record.id != net.record.id) {
                net.nat.isolate(&net.record.bridge, &other.record.bridge)?;
            }
        }
        Ok(NetworkService {
            inner: Arc::new(Inner {
                dir,
                nets: Mutex::new(nets),
                dns: Arc::new(NameTable::new()),
                dns_servers: Mutex::default(),
                host_resolv_conf: std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
                change: tokio::sync::Mutex::new(()),
            }),
        })
    }

    async fn open_default(dir: &Path, bridge: &str, bip: Option<&str>) -> anyhow::Result<Net> {
        let ipam_path = dir.join(format!("{bridge}.ipam.json"));
        let subnet = match bip {
            // Docker's --bip names the gateway address in the subnet: 172.20.0.1/16.
            Some(cidr) => parse_net(cidr).map_err(|_| {
                anyhow::anyhow!("invalid --bip {cidr}: expected an address and prefix, such as 172.20.0.1/16")
            })?,
            None => match Ipam::load(&ipam_path) {
                Ok(ipam) => ipam.subnet(),
                Err(_) => {
                    let routes = berth_net::host_routes().await?;
                    berth_net::choose_subnet(&routes, &[])
                        .ok_or_else(|| anyhow::anyhow!("no free subnet for the bridge network: set --bip"))?
                }
            },
        };
        let ipam = match Ipam::load(&ipam_path) {
            Ok(i) if i.subnet() == subnet => i,
            _ => Ipam::open(&ipam_path, subnet)?,
        };
        let id_path = dir.join(format!("{bridge}.id"));
        let id = match std::fs::read_to_string(&id_path) {
            Ok(id) if id.trim().len() == 64 => id.trim().to_string(),
            _ => {
                let id = random_id();
                berth_image::content::write_atomic(&id_path, id.as_bytes())?;
                id
            }
        };
        let record = NetworkRecord {
            id,
            name: "bridge".into(),
            bridge: bridge.into(),
            subnet,
            gateway: subnet.gateway(),
            ip_range: None,
            internal: false,
            user_subnet: bip.is_some(),
            labels: BTreeMap::new(),
            options: BTreeMap::from([
                ("com.docker.network.bridge.default_bridge".into(), "true".into()),
                ("com.docker.network.bridge.name".into(), bridge.into()),
            ]),
            created: "0001-01-01T00:00:00Z".into(),
            default: true,
        };
        let nat = bring_up(&record).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        tracing::info!(%bridge, %subnet, "bridge network ready");
        Ok(Net {
            record,
            ipam: Mutex::new(ipam),
            nat,
            proxies: Mutex::default(),
            endpoints: Mutex::default(),
        })
    }

    /// A network by name, full ID or unique ID prefix (`bridge` is the default network).
    fn find(&self, name: &str) -> Result<Arc<Net>> {
        let nets = lock(&self.inner.nets);
        if let Some(n) = nets
            .values()
            .find(|n| n.record.name == name || n.record.id == name)
        {
            return Ok(n.clone());
        }
        let matches: Vec<&Arc<Net>> = nets.values().filter(|n| n.record.id.starts_with(name)).collect();
        match matches.as_slice() {
            [one] if !name.is_empty() => Ok((*one).clone()),
            [] | [_] => Err(NetworkError::NotFound(name.into())),
            _ => Err(NetworkError::Invalid(format!(
                "network {name} is ambiguous ({} matches found based on ID prefix)",
                matches.len()
            ))),
        }
    }

    /// The record of a network, if it exists.
    pub fn get(&self, name: &str) -> Result<NetworkRecord> {
        self.find(name).map(|n| n.record.clone())
    }

    /// `POST /networks/create`.
    pub async fn create(&self, req: CreateNetwork) -> Result<NetworkRecord> {
        let _change = self.inner.change.lock().await;
        let name = req.name.trim().to_string();
        if name.is_empty() {
            return Err(NetworkError::Invalid("network name must not be empty".into()));
        }
        if PREDEFINED.contains(&name.as_str()) {
            return Err(NetworkError::Forbidden(format!(
                "operation is not permitted on predefined {name} network"
            )));
        }
        if !matches!(req.driver.as_str(), "" | "bridge") {
            return Err(NetworkError::NotFound(format!(
                "plugin \"{}\" not found",
                req.driver
            )));
        }
        let existing: Vec<NetworkRecord> = lock(&self.inner.nets)
            .values()
            .map(|n| n.record.clone())
            .collect();
        if existing.iter().any(|n| n.name == name) {
            return Err(NetworkError::Conflict(format!(
                "network with name {name} already exists"
            )));
        }
        let subnet = match &req.subnet {
            Some(s) => {
                let subnet = parse_net(s)?;
                if existing.iter().any(|n| n.subnet.overlaps(&subnet)) {
                    return Err(NetworkError::Conflict(
                        "invalid pool request: Pool overlaps with other one on this address space".into(),
                    ));
                }
                subnet
            }
            None => {
                let routes = berth_net::host_routes().await.map_err(internal)?;
                let taken: Vec<Ipv4Net> = existing.iter().map(|n| n.subnet).collect();
                berth_net::choose_subnet(&routes, &taken).ok_or_else(|| {
                    NetworkError::Internal(
                        "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network".into(),
                    )
                })?
            }
        };
        if subnet.size() < 4 {
            return Err(NetworkError::Invalid(format!("subnet {subnet} is too small")));
        }
        let gateway = match &req.gateway {
            Some(g) => {
                let ip: Ipv4Addr = g
                    .parse()
                    .map_err(|_| NetworkError::Invalid(format!("invalid gateway address {g}")))?;
                if !subnet.contains(ip) || ip == subnet.network() || ip == subnet.broadcast() {
                    return Err(NetworkError::Invalid(format!(
                        "no matching subnet for gateway {g}"
                    )));
                }
                ip
            }
            None => subnet.gateway(),
        };
        let ip_range = match &req.ip_range {
            Some(r) => {
                let range = parse_net(r)?;
                if !subnet.contains(range.network()) || range.prefix() < subnet.prefix() {
                    return Err(NetworkError::Invalid(format!("no matching subnet for range {r}")));
                }
                Some(range)
            }
            None => None,
        };
        let id = random_id();
        let bridge = req
            .options
            .get("com.docker.network.bridge.name")
            .cloned()
            .unwrap_or_else(|| format!("br-{}", &id[..12]));
        if bridge.is_empty()
            || bridge.len() > 15
            || bridge.contains('/')
            || bridge.contains(char::is_whitespace)
        {
            return Err(NetworkError::Invalid(format!("invalid bridge name {bridge:?}")));
        }
        if existing.iter().any(|n| n.bridge == bridge) {
            return Err(NetworkError::Conflict(format!(
                "bridge name {bridge} is already used by another network"
            )));
        }
        let record = NetworkRecord {
            id: id.clone(),
            name,
            bridge,
            subnet,
            gateway,
            ip_range,
            internal: req.internal,
            user_subnet: req.subnet.is_some(),
            labels: req.labels,
            options: req.options,
            created: berth_image::time::now_rfc3339_nano(),
            default: false,
        };
        let ipam_path = self.inner.dir.join(format!("{id}.ipam.json"));
        let others: Vec<String> = existing.iter().map(|n| n.bridge.clone()).collect();
        let made = async {
            let nat = bring_up(&record).await?;
            for other in &others {
                nat.isolate(&record.bridge, other).map_err(internal)?;
                nat_for(other).isolate(other, &record.bridge).map_err(internal)?;
            }
            let ipam = Ipam::open_with(&ipam_path, subnet, gateway, ip_range).map_err(internal)?;
            berth_image::content::write_atomic(
                &self.record_path(&id),
                &serde_json::to_vec_pretty(&record).expect("network serialises"),
            )
            .map_err(internal)?;
            Ok::<_, NetworkError>((nat, ipam))
        }
        .await;
        let (nat, ipam) = match made {
            Ok(x) => x,
            Err(e) => {
                self.tear_down(&record).await;
                let _ = std::fs::remove_file(&ipam_path);
                return Err(e);
            }
        };
        lock(&self.inner.nets).insert(
            id,
            Arc::new(Net {
                record: record.clone(),
                ipam: Mutex::new(ipam),
                nat,
                proxies: Mutex::default(),
                endpoints: Mutex::default(),
            }),
        );
        Ok(record)
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.inner.dir.join("networks").join(format!("{id}.json"))
    }

    /// Removes a network's bridge and rules, and the other networks' rules that isolate them from
    /// it. `rec` is no longer in `nets`.
    async fn tear_down(&self, rec: &NetworkRecord) {
        if let Err(e) = nat_for(&rec.bridge).remove_all() {
            tracing::warn!(network = %rec.name, error = %e, "removing the network's iptables rules");
        }
        let others: Vec<Arc<Net>> = lock(&self.inner.nets).values().cloned().collect();
        for other in others {
            if let Err(e) = other.nat.remove_isolation(&rec.bridge) {
                tracing::warn!(network = %other.record.name, error = %e, "removing an isolation rule");
            }
        }
        if let Err(e) = Bridge::delete(&rec.bridge).await {
            tracing::warn!(network = %rec.name, error = %e, "removing the network's bridge");
        }
    }

    /// `DELETE /networks/{id}`: refused while containers run on it.
    pub async fn remove(&self, name: &str) -> Result<NetworkRecord> {
        if matches!(name, "host" | "none") {
            return Err(NetworkError::Forbidden(format!(
                "{name} is a pre-defined network and cannot be removed"
            )));
        }
        let _change = self.inner.change.lock().await;
        let net = self.find(name)?;
        if net.is_default() {
            return Err(NetworkError::Forbidden(
                "bridge is a pre-defined network and cannot be removed".into(),
            ));
        }
        let users: Vec<String> = lock(&net.endpoints).values().map(|(n, _)| n.clone()).collect();
        if !users.is_empty() {
            return Err(NetworkError::Conflict(format!(
                "error while removing network: network {} id {} has active endpoints ({})",
                net.record.name,
                net.record.id,
                users.join(", ")
            )));
        }
        // The record goes first: a crash after it leaves no network that half exists.
        std::fs::remove_file(self.record_path(&net.record.id)).map_err(internal)?;
        lock(&self.inner.nets).remove(&net.record.id);
        self.tear_down(&net.record).await;
        let _ = std::fs::remove_file(self.inner.dir.join(format!("{}.ipam.json", net.record.id)));
        Ok(net.record.clone())
    }

    /// `POST /networks/prune`: user-defined networks no container runs on.
    pub async fn prune(&self, keep: impl Fn(&NetworkRecord) -> bool) -> Vec<String> {
        let candidates: Vec<NetworkRecord> = lock(&self.inner.nets)
            .values()
            .filter(|n| !n.is_default() && lock(&n.endpoints).is_empty())
            .map(|n| n.record.clone())
            .filter(|r| !keep(r))
            .collect();
        let mut removed = Vec::new();
        for rec in candidates {
            if self.remove(&rec.id).await.is_ok() {
                removed.push(rec.name);
            }
        }
        removed
    }

    /// All networks as `GET /networks` shows them, the predefined ones included.
    pub fn list(&self) -> Vec<Value> {
        let nets: Vec<Arc<Net>> = lock(&self.inner.nets).values().cloned().collect();
        let mut out: Vec<Value> = nets.iter().map(|n| self.to_json(n)).collect();
        for (name, driver) in [("host", "host"), ("none", "null")] {
            out.push(json!({
                "Name": name, "Id": name, "Created": "0001-01-01T00:00:00Z", "Scope": "local", "Driver": driver,
                "EnableIPv4": true, "EnableIPv6": false, "IPAM": {"Driver": "default", "Options": null, "Config": []},
                "Internal": false, "Attachable": false, "Ingress": false, "ConfigFrom": {"Network": ""},
                "ConfigOnly": false, "Containers": {}, "Options": {}, "Labels": {}
            }));
        }
        out
    }

    /// One network (`GET /networks/{id}`), predefined ones included.
    pub fn inspect(&self, name: &str) -> Result<Value> {
        if let Ok(net) = self.find(name) {
            return Ok(self.to_json(&net));
        }
        self.list()
            .into_iter()
            .find(|n| n["Name"] == name)
            .ok_or_else(|| NetworkError::NotFound(name.into()))
    }

    fn to_json(&self, net: &Net) -> Value {
        let r = &net.record;
        let mut config = json!({"Subnet": r.subnet.to_string(), "Gateway": r.gateway.to_string()});
        if let Some(range) = r.ip_range {
            config["IPRange"] = json!(range.to_string());
        }
        let containers: serde_json::Map<String, Value> = lock(&net.endpoints)
            .iter()
            .map(|(id, (name, att))| {
                (
                    id.clone(),
                    json!({
                        "Name": name, "EndpointID": att.endpoint_id, "MacAddress": att.endpoint.mac_string(),
                        "IPv4Address": format!("{}/{}", att.endpoint.ip, att.endpoint.prefix), "IPv6Address": ""
                    }),
                )
            })
            .collect();
        json!({
            "Name": r.name, "Id": r.id, "Created": r.created, "Scope": "local", "Driver": "bridge",
            "EnableIPv4": true, "EnableIPv6": false,
            "IPAM": {"Driver": "default", "Options": {}, "Config": [config]},
            "Internal": r.internal, "Attachable": false, "Ingress": false, "ConfigFrom": {"Network": ""},
            "ConfigOnly": false, "Containers": containers, "Options": r.options, "Labels": r.labels,
        })
    }

    /// Gives a container an address on a network and publishes its ports there. On failure
    /// nothing is left behind.
    pub async fn connect(&self, network: &str, join: Join<'_>) -> Result<Attachment> {
        let net = self.find(network)?;
        if lock(&net.endpoints).contains_key(join.container_id) {
            return Err(NetworkError::Forbidden(format!(
                "endpoint with name {} already exists in network {}",
                join.container_name, net.record.name
            )));
        }
        let ip = {
            let mut ipam = lock(&net.ipam);
            match join.ip {
                Some(_) if net.is_default() => {
                    return Err(NetworkError::Invalid(
                        "user specified IP address is supported on user defined networks only".into(),
                    ));
                }
                Some(ip) => {
                    if !net.record.user_subnet {
                        return Err(NetworkError::Invalid(
                            "user specified IP address is supported only when connecting to networks with user configured subnets".into(),
                        ));
                    }
                    ipam.allocate_specific(ip)
                        .map_err(|e| NetworkError::Invalid(e.to_string()))?;
                    ip
                }
                None => ipam.allocate().map_err(internal)?,
            }
        };
        let gateway = (!net.record.internal).then_some(net.record.gateway);
        let mut cfg = EndpointConfig::new(ip, net.record.subnet.prefix(), gateway);
        cfg.ifname = join.ifname.clone();
        cfg.mac = join.mac;
        let endpoint = match berth_net::attach(&Netns::Pid(join.pid as u32), &net.record.bridge, &cfg).await {
            Ok(e) => e,
            Err(e) => {
                let _ = lock(&net.ipam).release(ip);
                return Err(NetworkError::Internal(format!(
                    "attaching to network {}: {e}",
                    net.record.name
                )));
            }
        };
        let mut attachment = Attachment {
            network_id: net.record.id.clone(),
            network: net.record.name.clone(),
            endpoint_id: random_id(),
            endpoint,
            ports: Vec::new(),
            aliases: join.aliases.clone(),
        };
        match self
            .publish(&net, join.container_id, &attachment.endpoint, join.bindings)
            .await
        {
            Ok(ports) => attachment.ports = ports,
            Err(e) => {
                self.release(&net, join.container_id, &attachment).await;
                return Err(e);
            }
        }
        self.register(&net, join.container_id, join.container_name, &attachment);
        Ok(attachment)
    }

    /// Records a running endpoint and, on user-defined networks, its names for the DNS server.
    fn register(&self, net: &Net, container_id: &str, container_name: &str, att: &Attachment) {
        lock(&net.endpoints).insert(container_id.into(), (container_name.into(), att.clone()));
        if !net.is_default() {
            let mut names = vec![container_name.to_string(), container_id[..12].to_string()];
            names.extend(att.aliases.iter().cloned());
            self.inner
                .dns
                .add_endpoint(&net.record.name, container_id, att.endpoint.ip, &names);
        }
    }

    async fn publish(
        &self,
        net: &Net,
        container: &str,
        endpoint: &Endpoint,
        bindings: &[(u16, String, String, u16)],
    ) -> Result<Vec<PublishedPort>> {
        let mut ports = Vec::new();
        let mut proxies = Vec::new();
        for (container_port, proto, host_ip, host_port) in bindings {
            let protocol = if proto == "udp" {
                Protocol::Udp
            } else {
                Protocol::Tcp
            };
            let bind_ip: Ipv4Addr = if host_ip.is_empty() {
                Ipv4Addr::UNSPECIFIED
            } else {
                host_ip
                    .parse()
                    .map_err(|_| NetworkError::Invalid(format!("invalid host IP {host_ip}")))?
            };
            let mut host_port = *host_port;
            if protocol == Protocol::Tcp {
                let proxy = PortProxy::spawn(bind_ip, host_port, endpoint.ip, *container_port)
                    .await
                    .map_err(|e| {
                        NetworkError::Internal(format!(
                            "driver failed programming external connectivity on endpoint {container}: {e}"
                        ))
                    })?;
                host_port = proxy.local_addr().port();
                proxies.push(proxy);
            }
            let mapping = PortMapping {
                protocol,
                host_ip: (!bind_ip.is_unspecified()).then_some(bind_ip),
                host_port,
                container_ip: endpoint.ip,
                container_port: *container_port,
                bridge: net.record.bridge.clone(),
            };
            net.nat.add_port(&mapping).map_err(internal)?;
            ports.push(PublishedPort {
                container_port: *container_port,
                protocol: proto.clone(),
                host_ip: bind_ip.to_string(),
                host_port,
            });
        }
        lock(&net.proxies).insert(container.to_string(), proxies);
        Ok(ports)
    }

    /// The network an attachment is on (records from before user networks name only the bridge).
    fn net_of(&self, att: &Attachment) -> Option<Arc<Net>> {
        let nets = lock(&self.inner.nets);
        nets.get(&att.network_id)
            .or_else(|| nets.values().find(|n| n.record.bridge == att.endpoint.bridge))
            .cloned()
    }

    /// After a berthd restart: the kernel kept the veth and rules; the proxies, the address
    /// bookkeeping and the DNS names need restoring.
    pub async fn restore(&self, container_id: &str, container_name: &str, att: &Attachment) {
        let Some(net) = self.net_of(att) else {
            tracing::warn!(container = %container_id, network = %att.network, "network of a running container is gone");
            return;
        };
        let _ = lock(&net.ipam).allocate_specific(att.endpoint.ip);
        let mut proxies = Vec::new();
        for p in att.ports.iter().filter(|p| p.protocol != "udp") {
            let ip: Ipv4Addr = p.host_ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
            match PortProxy::spawn(ip, p.host_port, att.endpoint.ip, p.container_port).await {
                Ok(proxy) => proxies.push(proxy),
                Err(e) => {
                    tracing::warn!(container = %container_id, error = %e, "could not restore a published port")
                }
            }
        }
        lock(&net.proxies).insert(container_id.to_string(), proxies);
        self.register(&net, container_id, container_name, att);
    }

    /// Takes the container off one network: ports, rules, address, veth, DNS names.
    pub async fn disconnect(&self, container: &str, att: &Attachment) {
        let Some(net) = self.net_of(att) else {
            let _ = berth_net::detach(&att.endpoint).await;
            return;
        };
        self.release(&net, container, att).await;
    }

    async fn release(&self, net: &Net, container: &str, att: &Attachment) {
        lock(&net.proxies).remove(container);
        lock(&net.endpoints).remove(container);
        self.inner.dns.remove_endpoint(&net.record.name, container);
        if let Err(e) = net.nat.remove_all_for(att.endpoint.ip) {
            tracing::warn!(%container, error = %e, "removing NAT rules");
        }
        let _ = berth_net::detach(&att.endpoint).await;
        let _ = lock(&net.ipam).release(att.endpoint.ip);
    }

    /// Whether a network gives names by DNS (every user-defined network does).
    pub fn has_dns(&self, network: &str) -> bool {
        self.find(network).is_ok_and(|n| !n.is_default())
    }

    /// The container's resolv.conf: the embedded server's address on user-defined networks, the
    /// host's resolvers (without loopback ones) otherwise.
    pub fn resolv_conf(
        &self,
        dns: &[String],
        search: &[String],
        options: &[String],
        embedded: bool,
    ) -> String {
        berth_net::dns::resolv_conf_for_container(
            &self.inner.host_resolv_conf,
            dns,
            search,
            options,
            embedded,
        )
    }

    /// Starts the embedded DNS server inside the container's network namespace (127.0.0.11:53).
    /// `forward`: whether names it does not know go to the host's resolvers (not from internal
    /// networks).
    pub async fn start_dns(&self, container: &str, pid: i32, dns: &[String], forward: bool) -> Result<()> {
        if lock(&self.inner.dns_servers).contains_key(container) {
            return Ok(());
        }
        let servers = if forward {
            berth_net::dns::upstreams_for_container(&self.inner.host_resolv_conf, dns)
        } else {
            Vec::new()
        };
        let config = DnsServerConfig::new(container, Upstreams::new(servers));
        let handle = DnsServer::start_in_netns(
            &Netns::Pid(pid as u32).path(),
            (EMBEDDED_DNS_IP, 53).into(),
            self.inner.dns.clone(),
            config,
        )
        .await
        .map_err(|e| NetworkError::Internal(format!("starting the embedded DNS server: {e}")))?;
        lock(&self.inner.dns_servers).insert(container.into(), handle);
        Ok(())
    }

    pub fn stop_dns(&self, container: &str) {
        lock(&self.inner.dns_servers).remove(container);
        self.inner.dns.remove_container(container);
    }

    /// Whether the network is `--internal` (no way out).
    pub fn is_internal(&self, network: &str) -> bool {
        self.find(network).is_ok_and(|n| n.record.internal)
    }
}
