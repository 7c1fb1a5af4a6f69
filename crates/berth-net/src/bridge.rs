//! Linux bridges: create (or adopt) one with the network's gateway address, bring it up, delete it.

use std::net::{IpAddr, Ipv4Addr};

use rtnetlink::LinkBridge;

use crate::error::{Error, Result};
use crate::netlink::{self, connect, is_errno};
use crate::subnet::Ipv4Net;

/// A Linux bridge that exists on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    pub name: String,
    pub index: u32,
}

impl Bridge {
    /// Creates the bridge `name` (or adopts an existing one), gives it `gateway/prefix` (unless it has
    /// it already) and brings it up.
    pub async fn ensure(name: &str, gateway: Ipv4Addr, subnet: Ipv4Net) -> Result<Bridge> {
        let handle = connect()?;
        let index = match netlink::link_index(&handle, name).await? {
            Some(index) => index,
            None => {
                match handle.link().add(LinkBridge::new(name).build()).execute().await {
                    Ok(()) => {}
                    // Lost a race with another creator: adopt theirs.
                    Err(e) if is_errno(&e, libc::EEXIST) => {}
                    Err(e) => return Err(Error::netlink(format!("create bridge {name}"), e)),
                }
                tracing::debug!(bridge = name, "created bridge");
                netlink::require_link(&handle, name).await?
            }
        };
        match handle
            .address()
            .add(index, IpAddr::V4(gateway), subnet.prefix())
            .execute()
            .await
        {
            Ok(()) => {}
            Err(e) if is_errno(&e, libc::EEXIST) => {}
            Err(e) => {
                return Err(Error::netlink(
                    format!("add {gateway}/{} to {name}", subnet.prefix()),
                    e,
                ))
            }
        }
        netlink::set_up(&handle, index, name).await?;
        Ok(Bridge {
            name: name.to_string(),
            index,
        })
    }

    /// The bridge `name`, if it exists.
    pub async fn get(name: &str) -> Result<Option<Bridge>> {
        let handle = connect()?;
        Ok(netlink::link_index(&handle, name).await?.map(|index| Bridge {
            name: name.to_string(),
            index,
        }))
    }

    /// Deletes the bridge `name` (its ports are detached by the kernel); `Ok(false)` if it did not exist.
    pub async fn delete(name: &str) -> Result<bool> {
        let handle = connect()?;
        let deleted = netlink::delete_link(&handle, name).await?;
        if deleted {
            tracing::debug!(bridge = name, "deleted bridge");
        }
        Ok(deleted)
    }
}
