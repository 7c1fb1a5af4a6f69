//! Small helpers over `rtnetlink`: connections, link lookup, errno checks, host routes.

use std::net::Ipv4Addr;

use futures::TryStreamExt;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use crate::error::{Error, Result};
use crate::subnet::Ipv4Net;

/// The main routing table (`ip route` shows it).
const RT_TABLE_MAIN: u8 = 254;

/// Opens a netlink socket in the calling thread's network namespace and drives it on the current tokio
/// runtime. The connection task ends when the handle (and its clones) are dropped.
pub(crate) fn connect() -> Result<Handle> {
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|e| Error::io("open netlink socket", e))?;
    tokio::spawn(connection);
    Ok(handle)
}

/// Whether a netlink error carries the given errno.
pub(crate) fn is_errno(err: &rtnetlink::Error, errno: i32) -> bool {
    matches!(err, rtnetlink::Error::NetlinkError(m) if m.raw_code().abs() == errno)
}

/// The index of the link called `name`, or `None` if there is none.
pub(crate) async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(Some(link.header.index)),
        Ok(None) => Ok(None),
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
        Err(e) => Err(Error::netlink(format!("get link {name}"), e)),
    }
}

pub(crate) async fn require_link(handle: &Handle, name: &str) -> Result<u32> {
    link_index(handle, name)
        .await?
        .ok_or_else(|| Error::LinkNotFound(name.to_string()))
}

pub(crate) async fn set_up(handle: &Handle, index: u32, what: &str) -> Result<()> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|e| Error::netlink(format!("set {what} up"), e))
}

/// Deletes a link by name; `Ok(false)` if it did not exist.
pub(crate) async fn delete_link(handle: &Handle, name: &str) -> Result<bool> {
    let Some(index) = link_index(handle, name).await? else {
        return Ok(false);
    };
    match handle.link().del(index).execute().await {
        Ok(()) => Ok(true),
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(false),
        Err(e) => Err(Error::netlink(format!("delete link {name}"), e)),
    }
}

/// The destinations of the IPv4 routes of the host's main table (what `ip route` lists), default routes
/// included as `0.0.0.0/0`. Feed them to [`choose_subnet`](crate::choose_subnet).
pub async fn host_routes() -> Result<Vec<Ipv4Net>> {
    let handle = connect()?;
    let mut routes = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    let mut out = Vec::new();
    while let Some(route) = routes
        .try_next()
        .await
        .map_err(|e| Error::netlink("dump routes", e))?
    {
        let table = route.attributes.iter().find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        });
        if table.unwrap_or(u32::from(route.header.table)) != u32::from(RT_TABLE_MAIN) {
            continue;
        }
        let dest = route
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
                _ => None,
            })
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        if let Some(net) = Ipv4Net::new(dest, route.header.destination_prefix_length) {
            out.push(net);
        }
    }
    Ok(out)
}
