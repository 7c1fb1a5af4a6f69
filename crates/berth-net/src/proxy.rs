//! A userland TCP proxy for a published port, as Docker's `docker-proxy`: it holds the host port (so a
//! second publication of it fails) and serves connections the DNAT rules cannot, such as those to
//! 127.0.0.1 or from the container's own bridge.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::error::{Error, Result};

/// A running proxy; dropping it (or [`PortProxy::stop`]) closes the port and every proxied connection.
#[derive(Debug)]
pub struct PortProxy {
    local: SocketAddr,
    target: SocketAddr,
    task: JoinHandle<()>,
}

impl PortProxy {
    /// Listens on `host_ip:host_port` (port 0: any free port, see [`PortProxy::local_addr`]) and forwards
    /// each connection to `container_ip:container_port`. Must be called inside a tokio runtime.
    ///
    /// A port already in use fails with Docker's message:
    /// `Bind for 0.0.0.0:8080 failed: port is already allocated`.
    pub async fn spawn(
        host_ip: Ipv4Addr,
        host_port: u16,
        container_ip: Ipv4Addr,
        container_port: u16,
    ) -> Result<PortProxy> {
        let bind = SocketAddr::V4(SocketAddrV4::new(host_ip, host_port));
        let listener = TcpListener::bind(bind).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => Error::PortAllocated(bind),
            _ => Error::io(format!("listen on {bind}"), e),
        })?;
        let local = listener.local_addr().map_err(|e| Error::io("local address", e))?;
        let target = SocketAddr::V4(SocketAddrV4::new(container_ip, container_port));
        let task = tokio::spawn(serve(listener, target));
        tracing::debug!(%local, %target, "port proxy started");
        Ok(PortProxy { local, target, task })
    }

    /// The address the proxy listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Closes the port and every proxied connection.
    pub fn stop(self) {}
}

impl Drop for PortProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, target: SocketAddr) {
    // Connections live in this set: aborting the accept task drops it, which aborts them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    connections.spawn(async move {
                        if let Err(e) = proxy_one(client, target).await {
                            tracing::debug!(%peer, %target, error = %e, "proxied connection ended");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(%target, error = %e, "port proxy accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn proxy_one(mut client: TcpStream, target: SocketAddr) -> std::io::Result<()> {
    let mut upstream = TcpStream::connect(target).await?;
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}
