//! How containers join networks: at start (their `NetworkMode` network first, then the others
//! they were connected to), `network connect`/`disconnect` while they run, the embedded DNS server
//! for user-defined networks, and restoring all of it after a daemon restart.

use super::error::{ContainerError, Result};
use super::{spec, ContainerRecord, ContainerService, Entry};
use crate::services::network::{Attachment, Join, NetworkError};
use berth_api::container::CreateRequest;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// What a container asked for on one network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointSettings {
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub ipv4: Option<String>,
    #[serde(default)]
    pub mac: Option<String>,
}

/// `02:42:ac:11:00:02` -> bytes; `None` for anything else.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| {
            if p.len() == 2 {
                u8::from_str_radix(p, 16).ok()
            } else {
                None
            }
        })
        .collect::<Option<_>>()?;
    parts.try_into().ok()
}

impl From<NetworkError> for ContainerError {
    fn from(e: NetworkError) -> Self {
        match e {
            NetworkError::NotFound(n) => ContainerError::NoSuchNetwork(n),
            NetworkError::Conflict(m) => ContainerError::Conflict(m),
            NetworkError::Forbidden(m) => ContainerError::Forbidden(m),
            NetworkError::Invalid(m) => ContainerError::Invalid(m),
            NetworkError::Internal(m) => ContainerError::Internal(m),
        }
    }
}

/// `NetworkingConfig.EndpointsConfig` of a create request (or one `connect`'s `EndpointConfig`).
pub fn endpoints_config(networking: &Option<Value>) -> BTreeMap<String, EndpointSettings> {
    networking
        .as_ref()
        .and_then(|n| n["EndpointsConfig"].as_object())
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    // The docker CLI names the default network `default`.
                    let k = if k == "default" { "bridge" } else { k.as_str() };
                    (k.to_string(), endpoint_settings(v))
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn endpoint_settings(v: &Value) -> EndpointSettings {
    EndpointSettings {
        aliases: v["Aliases"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
            .unwrap_or_default(),
        ipv4: v["IPAMConfig"]["IPv4Address"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(String::from),
        mac: v["MacAddress"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(String::from),
    }
}

/// Networks a container is not "on" in the bridge sense.
fn is_special(mode: &str) -> bool {
    matches!(mode, "host" | "none") || mode.starts_with("container:")
}

impl ContainerService {
    /// At create: the networks named must exist, and addresses asked for must be addresses.
    pub(super) fn check_networks(&self, req: &CreateRequest) -> Result<()> {
        let mode = spec::network_mode(&req.host_config);
        if let Some(mac) = req.config.mac_address.as_deref().filter(|m| !m.is_empty()) {
            parse_mac(mac).ok_or_else(|| ContainerError::Invalid(format!("invalid MAC address: {mac}")))?;
        }
        if let Some(other) = mode.strip_prefix("container:") {
            self.resolve(other)?;
        }
        if !is_special(mode) && mode != "bridge" {
            self.inner.network.get(mode)?;
        }
        for (name, settings) in endpoints_config(&req.networking_config) {
            if !is_special(&name) {
                self.inner.network.get(&name)?;
            }
            if let Some(ip) = &settings.ipv4 {
                ip.parse::<Ipv4Addr>()
                    .map_err(|_| ContainerError::Invalid(format!("invalid IPv4 address: {ip}")))?;
            }
            if let Some(mac) = &settings.mac {
                parse_mac(mac)
                    .ok_or_else(|| ContainerError::Invalid(format!("invalid MAC address: {mac}")))?;
            }
        }
        Ok(())
    }

    /// `--network container:<name>`: the other container's network namespace, and its hosts and
    /// resolv.conf (copied, as the container sees the same network).
    pub(super) fn shared_netns(
        &self,
        rec: &ContainerRecord,
        paths: &super::Paths,
    ) -> Result<Option<std::path::PathBuf>> {
        let Some(other) = spec::network_mode(&rec.host_config).strip_prefix("container:") else {
            return Ok(None);
        };
        let entry = self.resolve(other)?;
        let o = entry.record();
        if !o.state.running || o.state.pid <= 0 {
            return Err(ContainerError::Conflict(format!(
                "cannot join network namespace of a non running container: {}",
                o.id
            )));
        }
        if o.id == rec.id {
            return Err(ContainerError::Invalid(
                "cannot join own network namespace".into(),
            ));
        }
        for (from, to) in [
            (entry.paths.hosts(), paths.hosts()),
            (entry.paths.resolv_conf(), paths.resolv_conf()),
        ] {
            // In place: the file is bind-mounted into the container.
            std::fs::write(&to, std::fs::read(&from)?)?;
        }
        Ok(Some(std::path::PathBuf::from(format!(
            "/proc/{}/ns/net",
            o.state.pid
        ))))
    }

    /// The networks to join at start, primary first.
    fn wanted_networks(rec: &ContainerRecord) -> Vec<(String, EndpointSettings)> {
        let mode = spec::network_mode(&rec.host_config);
        if is_special(mode) {
            return Vec::new();
        }
        let mut primary = rec.endpoints_config.get(mode).cloned().unwrap_or_default();
        // Before API 1.44 the address came in the container config.
        if primary.mac.is_none() {
            primary.mac = rec.config.mac_address.clone().filter(|m| !m.is_empty());
        }
        let mut out = vec![(mode.to_string(), primary)];
        for (name, settings) in &rec.endpoints_config {
            if name != mode && !is_special(name) {
                out.push((name.clone(), settings.clone()));
            }
        }
        out
    }

    /// At start, before the process runs: joins the container's networks, writes its hosts and
    /// resolv.conf, and starts its DNS server on user-defined networks.
    pub(super) async fn connect_networks(&self, entry: &Arc<Entry>) -> Result<()> {
        let rec = entry.record();
        let wanted = Self::wanted_networks(&rec);
        if wanted.is_empty() {
            return Ok(());
        }
        let pid: i32 = std::fs::read_to_string(entry.paths.shim.join(berth_shim::PID_FILE))
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| ContainerError::Internal("the shim did not record the container's pid".into()))?;
        // The runtime checks the command before START; when it is missing, the init is already gone
        // and START reports why (exit 127): no network to set up for it.
        let alive = || std::path::Path::new(&format!("/proc/{pid}/ns/net")).exists();
        if !alive() {
            return Ok(());
        }
        let bindings = spec::port_bindings(&rec.config, &rec.host_config).map_err(ContainerError::Invalid)?;
        let mut attached: Vec<Attachment> = Vec::new();
        for (i, (network, settings)) in wanted.iter().enumerate() {
            let ip = settings.ipv4.as_deref().and_then(|ip| ip.parse().ok());
            let join = Join {
                container_id: &rec.id,
                container_name: &rec.name,
                pid,
                ifname: format!("eth{i}"),
                bindings: if i == 0 { &bindings } else { &[] },
                ip,
                aliases: settings.aliases.clone(),
                mac: settings.mac.as_deref().and_then(parse_mac),
            };
            match self.inner.network.connect(network, join).await {
                Ok(att) => attached.push(att),
                Err(e) => {
                    self.disconnect_networks(&rec.id, &attached).await;
                    // The init died meanwhile (its command is missing): START tells why.
                    if !alive() {
                        return Ok(());
                    }
                    return Err(e.into());
                }
            }
        }
        if let Err(e) = self.finish_join(entry, &rec, pid, &attached).await {
            self.disconnect_networks(&rec.id, &attached).await;
            return Err(e);
        }
        let rec = entry.update(|r| r.networks = attached);
        self.persist(entry, &rec);
        Ok(())
    }

    /// The container's own names in /etc/hosts, and its resolvers (the embedded DNS server when
    /// it is on a user-defined network).
    async fn finish_join(
        &self,
        entry: &Entry,
        rec: &ContainerRecord,
        pid: i32,
        attached: &[Attachment],
    ) -> Result<()> {
        let hostname = if rec.config.hostname.is_empty() {
            rec.short_id().to_string()
        } else {
            rec.config.hostname.clone()
        };
        // Rewritten in place: the file is bind-mounted into the container, a rename would not show.
        let hosts = std::fs::read_to_string(entry.paths.hosts()).unwrap_or_default();
        let mut hosts: String = hosts
            .lines()
            .filter(|l| !l.ends_with(&format!("\t{hostname}")))
            .map(|l| format!("{l}\n"))
            .collect();
        if let Some(first) = attached.first() {
            hosts.push_str(&format!("{}\t{hostname}\n", first.endpoint.ip));
        }
        std::fs::write(entry.paths.hosts(), hosts)?;
        let user_networks: Vec<&Attachment> = attached
            .iter()
            .filter(|a| self.inner.network.has_dns(&a.network_id))
            .collect();
        let host = &rec.host_config;
        let list = |v: &Option<Vec<String>>| v.clone().unwrap_or_default();
        let embedded = !user_networks.is_empty();
        if embedded {
            let forward = user_networks
                .iter()
                .any(|a| !self.inner.network.is_internal(&a.network_id));
            self.inner
                .network
                .start_dns(&rec.id, pid, &list(&host.dns), forward)
                .await?;
        }
        let resolv = self.inner.network.resolv_conf(
            &list(&host.dns),
            &list(&host.dns_search),
            &list(&host.dns_options),
            embedded,
        );
        std::fs::write(entry.paths.resolv_conf(), resolv)?;
        Ok(())
    }

    /// Takes the container off every network it is on, and stops its DNS server.
    pub(super) async fn disconnect_networks(&self, id: &str, attached: &[Attachment]) {
        for att in attached {
            self.inner.network.disconnect(id, att).await;
        }
        self.inner.network.stop_dns(id);
    }

    /// After a daemon restart, for a container that still runs.
    pub(super) async fn restore_networks(&self, rec: &ContainerRecord) {
        for att in &rec.networks {
            self.inner.network.restore(&rec.id, &rec.name, att).await;
        }
        let user: Vec<&Attachment> = rec
            .networks
            .iter()
            .filter(|a| self.inner.network.has_dns(&a.network_id))
            .collect();
        if !user.is_empty() && rec.state.pid > 0 {
            let forward = user
                .iter()
                .any(|a| !self.inner.network.is_internal(&a.network_id));
            let dns = rec.host_config.dns.clone().unwrap_or_default();
            if let Err(e) = self
                .inner
                .network
                .start_dns(&rec.id, rec.state.pid as i32, &dns, forward)
                .await
            {
                tracing::warn!(id = %rec.short_id(), error = %e, "could not restart the DNS server");
            }
        }
    }

    /// `POST /networks/{id}/connect`: a running container joins at once; a stopped one at its
    /// next start.
    pub async fn connect_to(&self, name: &str, network: &str, settings: EndpointSettings) -> Result<()> {
        let entry = self.resolve(name)?;
        let _op = entry.op.lock().await;
        let rec = entry.record();
        let net = self.inner.network.get(network)?;
        let mode = spec::network_mode(&rec.host_config);
        if is_special(mode) {
            return Err(ContainerError::Forbidden(
                "container sharing network namespace with another container or host cannot be connected to any other network".into(),
            ));
        }
        let on_it = rec.networks.iter().any(|a| a.network_id == net.id)
            || (!rec.state.running
                && (Self::wanted_networks(&rec)
                    .iter()
                    .any(|(n, _)| self.inner.network.get(n).is_ok_and(|x| x.id == net.id))));
        if on_it {
            return Err(ContainerError::Forbidden(format!(
                "endpoint with name {} already exists in network {}",
                rec.name, net.name
            )));
        }
        if rec.state.running {
            let pid = rec.state.pid as i32;
            let join = Join {
                container_id: &rec.id,
                container_name: &rec.name,
                pid,
                ifname: format!("eth{}", rec.networks.len()),
                bindings: &[],
                ip: settings.ipv4.as_deref().and_then(|ip| ip.parse().ok()),
                aliases: settings.aliases.clone(),
                mac: settings.mac.as_deref().and_then(parse_mac),
            };
            let att = self.inner.network.connect(&net.id, join).await?;
            let mut all = rec.networks.clone();
            all.push(att.clone());
            if let Err(e) = self.finish_join(&entry, &rec, pid, &all).await {
                self.inner.network.disconnect(&rec.id, &att).await;
                return Err(e);
            }
            let rec = entry.update(|r| {
                r.networks.push(att);
                r.endpoints_config.insert(net.name.clone(), settings);
            });
            self.persist(&entry, &rec);
        } else {
            let rec = entry.update(|r| {
                r.endpoints_config.insert(net.name.clone(), settings);
            });
            self.persist(&entry, &rec);
        }
        self.inner.events.publish(
            "network",
            "connect",
            &net.id,
            BTreeMap::from([
                ("container".into(), rec.id.clone()),
                ("name".into(), net.name.clone()),
                ("type".into(), "bridge".into()),
            ]),
        );
        Ok(())
    }

    /// `POST /networks/{id}/disconnect`.
    pub async fn disconnect_from(&self, name: &str, network: &str, force: bool) -> Result<()> {
        let entry = match self.resolve(name) {
            Ok(e) => e,
            Err(e) if force => {
                tracing::debug!(error = %e, "disconnect of an unknown container");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let _op = entry.op.lock().await;
        let rec = entry.record();
        let net = self.inner.network.get(network)?;
        let att = rec.networks.iter().find(|a| a.network_id == net.id).cloned();
        let configured = rec
            .endpoints_config
            .keys()
            .any(|k| k == &net.name || k == &net.id)
            || spec::network_mode(&rec.host_config) == net.name;
        if att.is_none() && !configured {
            return Err(ContainerError::Forbidden(format!(
                "container {} is not connected to network {}",
                rec.id, net.name
            )));
        }
        if let Some(att) = &att {
            self.inner.network.disconnect(&rec.id, att).await;
        }
        let rec = entry.update(|r| {
            r.networks.retain(|a| a.network_id != net.id);
            r.endpoints_config.retain(|k, _| k != &net.name && k != &net.id);
            if spec::network_mode(&r.host_config) == net.name {
                // Docker leaves the container on no network rather than silently on another one.
                r.host_config.network_mode = "none".into();
            }
        });
        if att.is_some()
            && !rec
                .networks
                .iter()
                .any(|a| self.inner.network.has_dns(&a.network_id))
        {
            self.inner.network.stop_dns(&rec.id);
        }
        self.persist(&entry, &rec);
        self.inner.events.publish(
            "network",
            "disconnect",
            &net.id,
            BTreeMap::from([
                ("container".into(), rec.id.clone()),
                ("name".into(), net.name.clone()),
                ("type".into(), "bridge".into()),
            ]),
        );
        Ok(())
    }
}
