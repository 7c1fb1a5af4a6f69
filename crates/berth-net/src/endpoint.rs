//! Container endpoints: a veth pair whose host side is a port of a bridge and whose other side is
//! `eth0` in the container's network namespace.

use std::collections::hash_map::DefaultHasher;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::netlink::{self, connect, is_errno};

/// A network namespace: the one of a process, or a bind-mounted one (`/run/netns/NAME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Netns {
    Pid(u32),
    Path(PathBuf),
}

impl Netns {
    pub fn path(&self) -> PathBuf {
        match self {
            Netns::Pid(pid) => PathBuf::from(format!("/proc/{pid}/ns/net")),
            Netns::Path(p) => p.clone(),
        }
    }
}

impl From<u32> for Netns {
    fn from(pid: u32) -> Self {
        Netns::Pid(pid)
    }
}

impl From<&Path> for Netns {
    fn from(path: &Path) -> Self {
        Netns::Path(path.to_path_buf())
    }
}

/// What the container side of an endpoint gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    pub ip: Ipv4Addr,
    pub prefix: u8,
    /// The default route goes via this address; `None` for no default route.
    pub gateway: Option<Ipv4Addr>,
    /// `None`: [`default_mac`] of the address.
    pub mac: Option<[u8; 6]>,
    /// The interface name inside the namespace, `eth0` by default.
    pub ifname: String,
}

impl EndpointConfig {
    pub fn new(ip: Ipv4Addr, prefix: u8, gateway: Option<Ipv4Addr>) -> Self {
        EndpointConfig {
            ip,
            prefix,
            gateway,
            mac: None,
            ifname: "eth0".to_string(),
        }
    }
}

/// An attached endpoint: enough to report it (`docker inspect`) and to detach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The host side of the veth pair (`veth1a2b3c4`), a port of `bridge`.
    pub host_veth: String,
    pub bridge: String,
    pub ifname: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub mac: [u8; 6],
}

impl Endpoint {
    /// The MAC address as Docker prints it: `02:42:ac:11:00:02`.
    pub fn mac_string(&self) -> String {
        self.mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// Docker's classic MAC for an address: `02:42` followed by the four bytes of the IPv4 address.
pub fn default_mac(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// Creates a veth pair, makes its host side (`veth<hash>`) a port of `bridge` and up, moves the other
/// side into `netns`, renames it `cfg.ifname`, sets its MAC and address, brings it and `lo` up and adds
/// the default route via `cfg.gateway`.
///
/// On failure, the veth pair is removed again.
pub async fn attach(netns: &Netns, bridge: &str, cfg: &EndpointConfig) -> Result<Endpoint> {
    let ns_path = netns.path();
    let ns_file = File::open(&ns_path).map_err(|e| Error::io(format!("open {}", ns_path.display()), e))?;
    let handle = connect()?;
    let bridge_index = netlink::require_link(&handle, bridge).await?;

    let (host, peer) = create_veth_pair(&handle, &ns_path, cfg.ip).await?;
    let endpoint = Endpoint {
        host_veth: host.clone(),
        bridge: bridge.to_string(),
        ifname: cfg.ifname.clone(),
        ip: cfg.ip,
        prefix: cfg.prefix,
        gateway: cfg.gateway,
        mac: cfg.mac.unwrap_or_else(|| default_mac(cfg.ip)),
    };
    let result = async {
        let host_index = netlink::require_link(&handle, &host).await?;
        handle
            .link()
            .set(
                LinkUnspec::new_with_index(host_index)
                    .controller(bridge_index)
                    .up()
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("attach {host} to {bridge}"), e))?;
        let peer_index = netlink::require_link(&handle, &peer).await?;
        handle
            .link()
            .set(
                LinkUnspec::new_with_index(peer_index)
                    .setns_by_fd(ns_file.as_raw_fd())
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("move {peer} to {}", ns_path.display()), e))?;
        configure_in_netns(ns_file, peer, endpoint.clone()).await
    }
    .await;
    if let Err(e) = result {
        let _ = netlink::delete_link(&handle, &host).await;
        return Err(e);
    }
    tracing::debug!(veth = %host, bridge, ip = %cfg.ip, netns = %ns_path.display(), "attached endpoint");
    Ok(endpoint)
}

/// Deletes the host side of the endpoint's veth pair (the kernel deletes the container side with it).
/// Detaching an endpoint that is already gone (its namespace died) is not an error.
pub async fn detach(endpoint: &Endpoint) -> Result<()> {
    let handle = connect()?;
    netlink::delete_link(&handle, &endpoint.host_veth).await?;
    Ok(())
}

/// Creates `veth<7 hex>` with peer `vp<7 hex>`, retrying on a name clash.
async fn create_veth_pair(handle: &Handle, ns_path: &Path, ip: Ipv4Addr) -> Result<(String, String)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut attempt = 0;
    loop {
        let mut h = DefaultHasher::new();
        (
            ns_path,
            ip,
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
        )
            .hash(&mut h);
        std::time::SystemTime::now().hash(&mut h);
        let suffix = format!("{:07x}", h.finish() & 0xfff_ffff);
        let (host, peer) = (format!("veth{suffix}"), format!("vp{suffix}"));
        match handle
            .link()
            .add(LinkVeth::new(&host, &peer).build())
            .execute()
            .await
        {
            Ok(()) => return Ok((host, peer)),
            Err(e) if is_errno(&e, libc::EEXIST) && attempt < 5 => attempt += 1,
            Err(e) => return Err(Error::netlink(format!("create veth pair {host}"), e)),
        }
    }
}

/// Finishes the container side from inside its namespace: a dedicated thread joins the namespace (only
/// that thread's namespace changes, never the process's) and opens a netlink socket there.
async fn configure_in_netns(ns_file: File, peer: String, ep: Endpoint) -> Result<()> {
    let (tx, rx) = futures::channel::oneshot::channel();
    std::thread::Builder::new()
        .name("berth-netns".into())
        .spawn(move || {
            let result = (|| {
                rustix::thread::move_into_link_name_space(
                    ns_file.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .map_err(|e| Error::io("setns", e.into()))?;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| Error::io("build netns runtime", e))?;
                rt.block_on(configure_container_side(&peer, &ep))
            })();
            let _ = tx.send(result);
        })
        .map_err(|e| Error::io("spawn netns thread", e))?;
    rx.await
        .map_err(|_| Error::io("netns thread", std::io::Error::other("thread panicked")))?
}

async fn configure_container_side(peer: &str, ep: &Endpoint) -> Result<()> {
    let handle = connect()?;
    let index = netlink::require_link(&handle, peer).await?;
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(index)
                .name(ep.ifname.clone())
                .address(ep.mac.to_vec())
                .build(),
        )
        .execute()
        .await
        .map_err(|e| Error::netlink(format!("rename {peer} to {}", ep.ifname), e))?;
    handle
        .address()
        .add(index, IpAddr::V4(ep.ip), ep.prefix)
        .execute()
        .await
        .map_err(|e| Error::netlink(format!("add {}/{} to {}", ep.ip, ep.prefix, ep.ifname), e))?;
    netlink::set_up(&handle, index, &ep.ifname).await?;
    if let Some(lo) = netlink::link_index(&handle, "lo").await? {
        netlink::set_up(&handle, lo, "lo").await?;
    }
    if let Some(gateway) = ep.gateway {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .output_interface(index)
            .build();
        match handle.route().add(route).execute().await {
            Ok(()) => {}
            Err(e) if is_errno(&e, libc::EEXIST) => {}
            Err(e) => return Err(Error::netlink(format!("add default route via {gateway}"), e)),
        }
    }
    Ok(())
}
