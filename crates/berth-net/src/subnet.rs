//! IPv4 subnet arithmetic and the choice of a free subnet for a new network.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// An IPv4 network: a network address (host bits zero) and a prefix length, written `172.17.0.0/16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Net {
    network: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Net {
    /// The network containing `addr` with `prefix` bits (host bits are cleared). `None` if `prefix > 32`.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        if prefix > 32 {
            return None;
        }
        Some(Ipv4Net {
            network: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        })
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The netmask, e.g. `255.255.0.0` for a /16.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask(self.prefix))
    }

    /// The last address of the network.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !mask(self.prefix))
    }

    /// Number of addresses in the network (2^(32-prefix)).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The `n`th address of the network (0 is the network address), if inside it.
    pub fn nth(&self, n: u64) -> Option<Ipv4Addr> {
        (n < self.size()).then(|| Ipv4Addr::from(u32::from(self.network) + n as u32))
    }

    /// The conventional gateway: the first address after the network address (`.1`).
    pub fn gateway(&self) -> Ipv4Addr {
        self.nth(1).unwrap_or(self.network)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.network)
    }

    /// Whether the two networks share at least one address.
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = Error;

    /// Parses `a.b.c.d/n`; host bits must be zero (Docker rejects `172.17.0.1/16` as a subnet too).
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::InvalidSubnet(s.to_string());
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let net = Ipv4Net::new(addr, prefix).ok_or_else(bad)?;
        if net.network != addr {
            return Err(bad());
        }
        Ok(net)
    }
}

impl Serialize for Ipv4Net {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Net {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Docker's default local pools, in order: 172.17.0.0/16 .. 172.31.0.0/16, then 192.168.0.0/20 ..
/// 192.168.240.0/20.
pub fn default_pools() -> impl Iterator<Item = Ipv4Net> {
    let big = (17u8..=31).filter_map(|b| Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16));
    let small = (0u8..16).filter_map(|i| Ipv4Net::new(Ipv4Addr::new(192, 168, i * 16, 0), 20));
    big.chain(small)
}

/// The first default pool that overlaps neither a host route nor an existing network.
///
/// Default routes (`0.0.0.0/0`) are ignored, as Docker does: they overlap everything.
/// ```
/// use berth_net::{choose_subnet, Ipv4Net};
/// let route: Ipv4Net = "172.17.0.0/16".parse().unwrap();
/// let net = choose_subnet(&[route], &[]).unwrap();
/// assert_eq!(net.to_string(), "172.18.0.0/16");
/// ```
pub fn choose_subnet(routes: &[Ipv4Net], existing: &[Ipv4Net]) -> Option<Ipv4Net> {
    default_pools().find(|candidate| {
        !routes
            .iter()
            .filter(|r| r.prefix > 0)
            .any(|r| r.overlaps(candidate))
            && !existing.iter().any(|n| n.overlaps(candidate))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn arithmetic() {
        let n = net("172.17.0.0/16");
        assert_eq!(n.gateway(), Ipv4Addr::new(172, 17, 0, 1));
        assert_eq!(n.broadcast(), Ipv4Addr::new(172, 17, 255, 255));
        assert_eq!(n.netmask(), Ipv4Addr::new(255, 255, 0, 0));
        assert!(n.contains(Ipv4Addr::new(172, 17, 3, 4)));
        assert!(!n.contains(Ipv4Addr::new(172, 18, 0, 1)));
        assert!(n.overlaps(&net("172.0.0.0/8")));
        assert!(net("172.0.0.0/8").overlaps(&n));
        assert!(!n.overlaps(&net("172.18.0.0/16")));
        assert!("172.17.0.1/16".parse::<Ipv4Net>().is_err());
        assert!("172.17.0.0/33".parse::<Ipv4Net>().is_err());
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"172.17.0.0/16\"");
    }

    #[test]
    fn choose() {
        assert_eq!(
            choose_subnet(&[net("0.0.0.0/0")], &[]),
            Some(net("172.17.0.0/16"))
        );
        let routes = [net("172.17.0.0/16"), net("172.19.5.0/24")];
        assert_eq!(
            choose_subnet(&routes, &[net("172.18.0.0/16")]),
            Some(net("172.20.0.0/16"))
        );
        let all: Vec<Ipv4Net> = (17..=31).map(|b| net(&format!("172.{b}.0.0/16"))).collect();
        assert_eq!(
            choose_subnet(&all, &[net("192.168.0.0/20")]),
            Some(net("192.168.16.0/20"))
        );
        assert_eq!(
            choose_subnet(&[net("172.16.0.0/12"), net("192.168.0.0/16")], &[]),
            None
        );
    }
}
