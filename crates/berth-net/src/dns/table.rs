//! What the embedded DNS server knows: the names and addresses of the containers on each network.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::RwLock;

/// Answers the embedded DNS server's lookups. `requester` is the key the server was started with (the
/// container whose namespace the server listens in): only the networks that container is on count.
///
/// [`NameTable`] is the implementation the daemon uses; the trait lets a caller plug in another one.
pub trait NameResolver: Send + Sync + 'static {
    /// The IPv4 addresses of `name` (without trailing dot, any case) as seen from `requester`, or
    /// `None` when the name is not a container on its networks (the query is then forwarded). An empty
    /// list means the name is known but has no IPv4 address.
    fn lookup_name(&self, requester: &str, name: &str) -> Option<Vec<Ipv4Addr>>;

    /// The name to answer a PTR query for `ip` with (`web.mynet`), when `ip` is a container's address
    /// on one of `requester`'s networks.
    fn lookup_ip(&self, requester: &str, ip: Ipv4Addr) -> Option<String>;
}

/// One container's entry on one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsEntry {
    pub ip: Ipv4Addr,
    /// The names it answers to on that network: the container name first (it names the PTR answer),
    /// then its network aliases, short ID, ...
    pub names: Vec<String>,
}

/// The live table of container names per network, shared (`Arc<NameTable>`) between the daemon, which
/// updates it as containers come and go, and every running [`DnsServer`](super::DnsServer).
///
/// Lookups follow Docker: names match case-insensitively, with or without a trailing dot, as `name`
/// (every network of the requester, in order of network name; the first network with a match wins)
/// and as `name.<network>` (that network only). An alias shared by several containers of a network
/// answers with all their addresses.
#[derive(Debug, Default)]
pub struct NameTable {
    /// network name -> container key -> entry.
    networks: RwLock<BTreeMap<String, BTreeMap<String, DnsEntry>>>,
}

impl NameTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the entry of `container` on `network`.
    pub fn add_endpoint(&self, network: &str, container: &str, ip: Ipv4Addr, names: &[String]) {
        let entry = DnsEntry {
            ip,
            names: names
                .iter()
                .map(|n| normalize(n))
                .filter(|n| !n.is_empty())
                .collect(),
        };
        let mut networks = self.networks.write().unwrap_or_else(|e| e.into_inner());
        networks
            .entry(network.to_string())
            .or_default()
            .insert(container.to_string(), entry);
    }

    /// Removes the entry of `container` on `network`; `false` if there was none.
    pub fn remove_endpoint(&self, network: &str, container: &str) -> bool {
        let mut networks = self.networks.write().unwrap_or_else(|e| e.into_inner());
        let Some(entries) = networks.get_mut(network) else {
            return false;
        };
        let removed = entries.remove(container).is_some();
        if entries.is_empty() {
            networks.remove(network);
        }
        removed
    }

    /// Removes every entry of `container`, on all networks.
    pub fn remove_container(&self, container: &str) {
        let mut networks = self.networks.write().unwrap_or_else(|e| e.into_inner());
        networks.retain(|_, entries| {
            entries.remove(container);
            !entries.is_empty()
        });
    }

    /// The entry of `container` on `network`.
    pub fn entry(&self, network: &str, container: &str) -> Option<DnsEntry> {
        let networks = self.networks.read().unwrap_or_else(|e| e.into_inner());
        networks.get(network)?.get(container).cloned()
    }
}

impl NameResolver for NameTable {
    fn lookup_name(&self, requester: &str, name: &str) -> Option<Vec<Ipv4Addr>> {
        let name = normalize(name);
        let networks = self.networks.read().unwrap_or_else(|e| e.into_inner());
        let mine = || {
            networks
                .iter()
                .filter(|(_, entries)| entries.contains_key(requester))
        };
        let matches = |entries: &BTreeMap<String, DnsEntry>, wanted: &str| -> Vec<Ipv4Addr> {
            entries
                .values()
                .filter(|e| e.names.iter().any(|n| n == wanted))
                .map(|e| e.ip)
                .collect()
        };
        for (_, entries) in mine() {
            let ips = matches(entries, &name);
            if !ips.is_empty() {
                return Some(ips);
            }
        }
        // `name.<network>`: network names may hold dots too, so every split point is a candidate.
        for (network, entries) in mine() {
            let Some(short) = name
                .strip_suffix(network.to_ascii_lowercase().as_str())
                .and_then(|rest| rest.strip_suffix('.'))
            else {
                continue;
            };
            let ips = matches(entries, short);
            if !ips.is_empty() {
                return Some(ips);
            }
        }
        None
    }

    fn lookup_ip(&self, requester: &str, ip: Ipv4Addr) -> Option<String> {
        let networks = self.networks.read().unwrap_or_else(|e| e.into_inner());
        networks
            .iter()
            .filter(|(_, entries)| entries.contains_key(requester))
            .find_map(|(network, entries)| {
                let entry = entries.values().find(|e| e.ip == ip)?;
                let name = entry.names.first()?;
                Some(format!("{name}.{network}"))
            })
    }
}

/// Lower case, no trailing dot: the form names are stored and compared in.
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}
