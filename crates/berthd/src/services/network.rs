//! The default bridge network: a Linux bridge with NAT to the outside, an address for each
//! container, and published ports (a userland proxy, as docker-proxy, plus DNAT for traffic from
//! other hosts). Built on `berth_net`; knows nothing of HTTP.

use berth_net::{
    Bridge, Endpoint, EndpointConfig, Ipam, Ipv4Net, Nat, Netns, PortMapping, PortProxy, Protocol,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub const DEFAULT_BRIDGE: &str = "berth0";

/// A published port as inspect shows it: `80/tcp` -> `0.0.0.0:8080`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PublishedPort {
    pub container_port: u16,
    pub protocol: String,
    pub host_ip: String,
    pub host_port: u16,
}

/// A container's place on the bridge, kept in its record so a restarted berthd can restore it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attachment {
    pub endpoint: Endpoint,
    pub ports: Vec<PublishedPort>,
}

#[derive(Clone)]
pub struct NetworkService {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    bridge: String,
    subnet: Ipv4Net,
    ipam: Mutex<Ipam>,
    nat: Nat,
    proxies: Mutex<HashMap<String, Vec<PortProxy>>>,
}

impl NetworkService {
    /// Sets up the bridge (`--bridge`, `none` for no bridge network) with the subnet of `--bip`, or
    /// the one chosen before, or a free one.
    pub async fn open(
        root: &std::path::Path,
        bridge: &str,
        bip: Option<&str>,
    ) -> anyhow::Result<NetworkService> {
        if bridge == "none" {
            return Ok(NetworkService { inner: None });
        }
        let dir = root.join("network");
        std::fs::create_dir_all(&dir)?;
        let ipam_path: PathBuf = dir.join(format!("{bridge}.ipam.json"));
        let subnet = match bip {
            // Docker's --bip names the gateway address in the subnet: 172.20.0.1/16.
            Some(cidr) => {
                let bad = || {
                    anyhow::anyhow!(
                        "invalid --bip {cidr}: expected an address and prefix, such as 172.20.0.1/16"
                    )
                };
                let (addr, prefix) = cidr.split_once('/').ok_or_else(bad)?;
                let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
                let prefix: u8 = prefix.parse().map_err(|_| bad())?;
                Ipv4Net::new(addr, prefix).ok_or_else(bad)?
            }
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
        Bridge::ensure(bridge, subnet.gateway(), subnet).await?;
        let nat = if bridge == DEFAULT_BRIDGE {
            Nat::default()
        } else {
            Nat::with_names(&format!("B-{bridge}"), &format!("berth-{bridge}"))
        };
        nat.init()?;
        nat.add_network(subnet, bridge)?;
        tracing::info!(%bridge, %subnet, "bridge network ready");
        Ok(NetworkService {
            inner: Some(Arc::new(Inner {
                bridge: bridge.to_string(),
                subnet,
                ipam: Mutex::new(ipam),
                nat,
                proxies: Mutex::new(HashMap::new()),
            })),
        })
    }

    pub fn bridge(&self) -> Option<&str> {
        self.inner.as_ref().map(|i| i.bridge.as_str())
    }

    pub fn subnet(&self) -> Option<Ipv4Net> {
        self.inner.as_ref().map(|i| i.subnet)
    }

    /// Gives the container whose init is `pid` an address on the bridge and publishes its ports.
    /// On failure nothing is left behind.
    pub async fn connect(
        &self,
        container: &str,
        pid: i32,
        bindings: &[(u16, String, String, u16)],
    ) -> Result<Attachment, String> {
        let inner = self
            .inner
            .as_ref()
            .ok_or("the bridge network is disabled (--bridge none)")?;
        let ip = inner
            .ipam
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allocate()
            .map_err(|e| e.to_string())?;
        let cfg = EndpointConfig::new(ip, inner.subnet.prefix(), Some(inner.subnet.gateway()));
        let endpoint = match berth_net::attach(&Netns::Pid(pid as u32), &inner.bridge, &cfg).await {
            Ok(e) => e,
            Err(e) => {
                let _ = inner.ipam.lock().unwrap_or_else(|p| p.into_inner()).release(ip);
                return Err(format!("attaching to the bridge: {e}"));
            }
        };
        let attachment = Attachment {
            endpoint,
            ports: Vec::new(),
        };
        match self.publish(container, &attachment.endpoint, bindings).await {
            Ok(ports) => Ok(Attachment { ports, ..attachment }),
            Err(e) => {
                self.disconnect(container, &attachment).await;
                Err(e)
            }
        }
    }

    async fn publish(
        &self,
        container: &str,
        endpoint: &Endpoint,
        bindings: &[(u16, String, String, u16)],
    ) -> Result<Vec<PublishedPort>, String> {
        let inner = self.inner.as_ref().ok_or("no bridge network")?;
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
                    .map_err(|_| format!("invalid host IP {host_ip}"))?
            };
            let mut host_port = *host_port;
            if protocol == Protocol::Tcp {
                let proxy = PortProxy::spawn(bind_ip, host_port, endpoint.ip, *container_port)
                    .await
                    .map_err(|e| {
                        format!(
                            "driver failed programming external connectivity on endpoint {container}: {e}"
                        )
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
                bridge: inner.bridge.clone(),
            };
            inner.nat.add_port(&mapping).map_err(|e| e.to_string())?;
            ports.push(PublishedPort {
                container_port: *container_port,
                protocol: proto.clone(),
                host_ip: bind_ip.to_string(),
                host_port,
            });
        }
        inner
            .proxies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(container.to_string(), proxies);
        Ok(ports)
    }

    /// After a berthd restart: the kernel kept the veth and rules; the proxies need starting again.
    pub async fn restore(&self, container: &str, attachment: &Attachment) {
        let Some(inner) = self.inner.as_ref() else { return };
        let _ = inner
            .ipam
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allocate_specific(attachment.endpoint.ip);
        let mut proxies = Vec::new();
        for p in attachment.ports.iter().filter(|p| p.protocol != "udp") {
            let ip: Ipv4Addr = p.host_ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
            match PortProxy::spawn(ip, p.host_port, attachment.endpoint.ip, p.container_port).await {
                Ok(proxy) => proxies.push(proxy),
                Err(e) => tracing::warn!(%container, error = %e, "could not restore a published port"),
            }
        }
        inner
            .proxies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(container.to_string(), proxies);
    }

    /// Takes the container off the bridge: ports, rules, address, veth.
    pub async fn disconnect(&self, container: &str, attachment: &Attachment) {
        let Some(inner) = self.inner.as_ref() else { return };
        inner
            .proxies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(container);
        if let Err(e) = inner.nat.remove_all_for(attachment.endpoint.ip) {
            tracing::warn!(%container, error = %e, "removing NAT rules");
        }
        let _ = berth_net::detach(&attachment.endpoint).await;
        let _ = inner
            .ipam
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .release(attachment.endpoint.ip);
    }
}
