//! The server loop: one container's UDP socket and TCP listener, each query in its own task.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use super::answer::{format_error, local_answer, reply_to, truncated};
use super::forward::{read_tcp_message, write_tcp_message, Upstreams};
use super::table::NameResolver;

/// How a [`DnsServer`] answers.
#[derive(Debug, Clone)]
pub struct DnsServerConfig {
    /// The key of the container the server listens for, passed to the [`NameResolver`].
    pub requester: String,
    /// Where names the table does not know go. No servers: such queries get SERVFAIL.
    pub upstreams: Upstreams,
    /// At most this many queries are handled at once over UDP, and at most this many TCP connections
    /// are open at once; past that, datagrams wait in (and overflow from) the socket's buffer and
    /// connections in the listen backlog.
    pub max_concurrent: usize,
    /// A TCP connection with no query for this long is closed.
    pub tcp_idle_timeout: Duration,
}

impl DnsServerConfig {
    pub fn new(requester: impl Into<String>, upstreams: Upstreams) -> Self {
        DnsServerConfig {
            requester: requester.into(),
            upstreams,
            max_concurrent: 100,
            tcp_idle_timeout: Duration::from_secs(10),
        }
    }
}

/// The embedded DNS server of one container. See [`DnsServer::spawn`].
pub struct DnsServer;

/// A running [`DnsServer`]. Dropping it stops the server (soon, on the runtime); [`shutdown`] stops it
/// and waits until both sockets are closed.
///
/// [`shutdown`]: DnsServerHandle::shutdown
pub struct DnsServerHandle {
    /// Sending on it, or dropping it (which closes the channel), ends the loops.
    stop: watch::Sender<()>,
    loops: Vec<JoinHandle<()>>,
    udp_addr: SocketAddr,
    tcp_addr: SocketAddr,
}

impl DnsServerHandle {
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    /// Stops serving, aborts the queries in flight and waits until the sockets are closed.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(());
        for task in std::mem::take(&mut self.loops) {
            let _ = task.await;
        }
    }
}

/// What every query task needs.
struct Shared {
    resolver: Arc<dyn NameResolver>,
    config: DnsServerConfig,
}

impl DnsServer {
    /// Serves `udp` and `tcp` (made by [`bind_in_netns`](super::bind_in_netns)) on the current tokio
    /// runtime until the returned handle is dropped or shut down. Must be called within a runtime whose
    /// threads are in the host's namespace (as the daemon's are): the sockets that forward queries
    /// upstream are made on those threads, so a host resolver on 127.0.0.53 is reachable.
    pub fn spawn(
        udp: std::net::UdpSocket,
        tcp: std::net::TcpListener,
        resolver: Arc<dyn NameResolver>,
        config: DnsServerConfig,
    ) -> io::Result<DnsServerHandle> {
        udp.set_nonblocking(true)?;
        tcp.set_nonblocking(true)?;
        let udp = UdpSocket::from_std(udp)?;
        let tcp = TcpListener::from_std(tcp)?;
        let (udp_addr, tcp_addr) = (udp.local_addr()?, tcp.local_addr()?);
        let shared = Arc::new(Shared { resolver, config });
        let (stop, stop_rx) = watch::channel(());
        let loops = vec![
            tokio::spawn(serve_udp(Arc::new(udp), shared.clone(), stop_rx.clone())),
            tokio::spawn(serve_tcp(tcp, shared, stop_rx)),
        ];
        tracing::debug!(%udp_addr, "embedded DNS server started");
        Ok(DnsServerHandle {
            stop,
            loops,
            udp_addr,
            tcp_addr,
        })
    }
}

impl DnsServer {
    /// [`bind_in_netns`](super::bind_in_netns) `addr` (`127.0.0.11:53`) in the namespace at `netns`,
    /// then [`spawn`](DnsServer::spawn): what the daemon does for each container on a user-defined
    /// network.
    pub async fn start_in_netns(
        netns: &Path,
        addr: SocketAddr,
        resolver: Arc<dyn NameResolver>,
        config: DnsServerConfig,
    ) -> io::Result<DnsServerHandle> {
        let netns = netns.to_path_buf();
        let (udp, tcp) = tokio::task::spawn_blocking(move || super::bind_in_netns(&netns, addr))
            .await
            .map_err(io::Error::other)??;
        DnsServer::spawn(udp, tcp, resolver, config)
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, shared: Arc<Shared>, mut stop: watch::Receiver<()>) {
    let limit = Arc::new(Semaphore::new(shared.config.max_concurrent.max(1)));
    let mut queries = JoinSet::new();
    let mut buf = vec![0u8; 65535];
    loop {
        while queries.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = stop.changed() => break,
            permit = limit.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (len, client) = tokio::select! {
            _ = stop.changed() => break,
            received = socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                Err(e) => {
                    tracing::debug!(error = %e, "embedded DNS: UDP receive failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let request = buf[..len].to_vec();
        let (socket, shared) = (socket.clone(), shared.clone());
        queries.spawn(async move {
            let _permit = permit;
            if let Some(reply) = handle_query(&shared, &request, false).await {
                if let Err(e) = socket.send_to(&reply, client).await {
                    tracing::debug!(%client, error = %e, "embedded DNS: UDP send failed");
                }
            }
        });
    }
    queries.shutdown().await;
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<()>) {
    let limit = Arc::new(Semaphore::new(shared.config.max_concurrent.max(1)));
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = stop.changed() => break,
            permit = limit.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "embedded DNS: TCP accept failed");
                    // Out of file descriptors, typically: do not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        connections.spawn(async move {
            let _permit = permit;
            serve_tcp_connection(stream, &shared).await;
        });
    }
    connections.shutdown().await;
}

/// Answers the queries of one TCP connection in turn, until the client closes it or goes idle.
async fn serve_tcp_connection(mut stream: TcpStream, shared: &Shared) {
    let idle = shared.config.tcp_idle_timeout;
    loop {
        let request = match tokio::time::timeout(idle, read_tcp_message(&mut stream)).await {
            Ok(Ok(request)) => request,
            _ => return,
        };
        let Some(reply) = handle_query(shared, &request, true).await else {
            return;
        };
        if write_tcp_message(&mut stream, &reply).await.is_err() {
            return;
        }
    }
}

/// The reply to one raw query, or `None` to stay silent (it was not a query at all).
async fn handle_query(shared: &Shared, raw: &[u8], over_tcp: bool) -> Option<Vec<u8>> {
    let request = match Message::from_vec(raw) {
        Ok(request) => request,
        Err(e) => {
            tracing::debug!(error = %e, "embedded DNS: malformed query");
            return format_error(raw);
        }
    };
    if request.message_type != MessageType::Query {
        return None;
    }
    let reply = if request.op_code != OpCode::Query {
        encode(reply_to(&request, ResponseCode::NotImp))?
    } else if request.queries.len() != 1 {
        encode(reply_to(&request, ResponseCode::FormErr))?
    } else if let Some(answer) = local_answer(&request, &*shared.resolver, &shared.config.requester) {
        encode(answer)?
    } else {
        match shared.config.upstreams.forward(raw, over_tcp).await {
            Some(reply) => reply,
            None => {
                let query = &request.queries[0];
                tracing::debug!(name = %query.name(), "embedded DNS: no upstream answered");
                encode(reply_to(&request, ResponseCode::ServFail))?
            }
        }
    };
    if !over_tcp && reply.len() > usize::from(request.max_payload()) {
        return Some(truncated(&request, &reply));
    }
    Some(reply)
}

fn encode(message: Message) -> Option<Vec<u8>> {
    message
        .to_vec()
        .map_err(|e| tracing::warn!(error = %e, "embedded DNS: cannot encode a reply"))
        .ok()
}
