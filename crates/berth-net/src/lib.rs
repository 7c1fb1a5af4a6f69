//! Berth networking: the low-level pieces a container engine needs for bridge networks.
//!
//! - [`Ipv4Net`] and [`choose_subnet`]: subnet arithmetic and picking a free subnet for a new network;
//! - [`Ipam`]: address allocation inside one subnet, persisted as a JSON file;
//! - [`Bridge`]: a Linux bridge with the network's gateway address;
//! - [`attach`] / [`detach`]: a veth pair from a bridge into a container's network namespace;
//! - [`Nat`]: masquerade, forwarding and port-publishing rules (iptables, every rule tagged with a comment);
//! - [`PortProxy`]: a userland TCP proxy for published ports (reaches containers from 127.0.0.1 too).
//!
//! The crate knows nothing about HTTP or Docker's API. Everything it creates, it can remove.

mod bridge;
pub mod dns;
mod endpoint;
mod error;
mod ipam;
mod nat;
mod netlink;
mod proxy;
mod subnet;

pub use bridge::Bridge;
pub use dns::{
    bind_in_netns, resolv_conf_for_container, upstreams_for_container, DnsServer, DnsServerConfig,
    DnsServerHandle, NameResolver, NameTable, Upstreams,
};
pub use endpoint::{attach, default_mac, detach, Endpoint, EndpointConfig, Netns};
pub use error::{Error, Result};
pub use ipam::Ipam;
pub use nat::{enable_ip_forward, Nat, PortMapping, Protocol};
pub use netlink::host_routes;
pub use proxy::PortProxy;
pub use subnet::{choose_subnet, default_pools, Ipv4Net};
