//! The embedded DNS server (Docker's 127.0.0.11) of containers on user-defined networks.
//!
//! For each such container the daemon binds a UDP socket and a TCP listener to `127.0.0.11:53` inside
//! the container's network namespace ([`bind_in_netns`]), writes a resolv.conf pointing there
//! ([`resolv_conf_for_container`]) and serves both with a [`DnsServer`]. Names of containers (and their
//! aliases) on the requester's networks are answered from a shared, live [`NameTable`]; everything else
//! is forwarded to the host's resolvers ([`Upstreams`]) from sockets of the daemon's own namespace.

mod answer;
mod forward;
mod netns;
mod resolv_conf;
mod server;
mod table;
#[cfg(test)]
mod tests;

pub use answer::CONTAINER_TTL;
pub use forward::Upstreams;
pub use netns::{bind_in_netns, run_in_netns};
pub use resolv_conf::{
    parse_nameservers, resolv_conf_for_container, upstreams_for_container, DEFAULT_NAMESERVERS,
    EMBEDDED_DNS_IP,
};
pub use server::{DnsServer, DnsServerConfig, DnsServerHandle};
pub use table::{DnsEntry, NameResolver, NameTable};
