//! Running a closure inside another network namespace without moving the calling thread there.

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsFd;
use std::path::Path;

/// Runs `f` on a short-lived dedicated thread that first joins the network namespace at `netns`
/// (`/proc/<pid>/ns/net` or `/run/netns/NAME`), and returns what it returns.
///
/// Only that thread changes namespace, and it exits when `f` returns, so no thread of a pool (tokio's,
/// rayon's) is ever left in a foreign namespace. Sockets made by `f` stay in the namespace they were
/// made in wherever they are used later. This blocks the caller until `f` is done: call it from
/// `spawn_blocking` on an async runtime if `f` can take long (binding sockets does not).
pub fn run_in_netns<T, F>(netns: &Path, f: F) -> io::Result<T>
where
    T: Send,
    F: FnOnce() -> io::Result<T> + Send,
{
    let ns_file =
        File::open(netns).map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", netns.display())))?;
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("berth-netns".into())
            .spawn_scoped(scope, move || {
                rustix::thread::move_into_link_name_space(
                    ns_file.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("setns: {e}")))?;
                f()
            })?;
        thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("netns thread panicked")))
    })
}

/// Binds a UDP socket and a TCP listener to `addr` inside the network namespace at `netns` (for the
/// embedded DNS server: `127.0.0.11:53`). Both are blocking std sockets; [`DnsServer`] makes them
/// non-blocking.
///
/// [`DnsServer`]: super::DnsServer
pub fn bind_in_netns(netns: &Path, addr: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    run_in_netns(netns, || {
        let udp =
            UdpSocket::bind(addr).map_err(|e| io::Error::new(e.kind(), format!("bind udp {addr}: {e}")))?;
        let tcp =
            TcpListener::bind(addr).map_err(|e| io::Error::new(e.kind(), format!("bind tcp {addr}: {e}")))?;
        Ok((udp, tcp))
    })
}
