//! The crate's error type.

use std::net::{Ipv4Addr, SocketAddr};

use crate::subnet::Ipv4Net;

/// Everything that can go wrong in `berth-net`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("netlink: {context}: {source}")]
    Netlink {
        context: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("iptables {args}: {message}")]
    Iptables { args: String, message: String },
    #[error("ipam state {path}: {source}")]
    State {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid subnet {0:?}")]
    InvalidSubnet(String),
    #[error("ipam state {path} is for subnet {found}, not {wanted}")]
    SubnetMismatch {
        path: String,
        found: Ipv4Net,
        wanted: Ipv4Net,
    },
    #[error("no available IPv4 addresses on this network's address pools: {0}")]
    Exhausted(Ipv4Net),
    #[error("Address already in use: {0}")]
    AddressInUse(Ipv4Addr),
    #[error("address {ip} is not a usable address of {subnet}")]
    OutOfRange { ip: Ipv4Addr, subnet: Ipv4Net },
    #[error("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network")]
    NoSubnet,
    #[error("link {0} not found")]
    LinkNotFound(String),
    #[error("Bind for {0} failed: port is already allocated")]
    PortAllocated(SocketAddr),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn netlink(context: impl Into<String>, source: rtnetlink::Error) -> Self {
        Error::Netlink {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
