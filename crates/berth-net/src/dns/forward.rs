//! Forwarding a query to the upstream resolvers, from sockets of the calling (host) namespace.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Where and how queries are forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstreams {
    /// Tried in order until one answers.
    pub servers: Vec<SocketAddr>,
    /// How long to wait for one server (per transport attempt).
    pub timeout: Duration,
}

impl Upstreams {
    /// Docker's timeout for an upstream server.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(4);

    pub fn new(servers: Vec<SocketAddr>) -> Self {
        Upstreams {
            servers,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// The `nameserver` lines of a resolv.conf text (port 53); 8.8.8.8 and 8.8.4.4 if it has none.
    pub fn from_resolv_conf(resolv_conf: &str) -> Self {
        Self::new(super::upstreams_for_container(resolv_conf, &[]))
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends `query` (a whole DNS message) to each server in turn, over TCP if `over_tcp`, else over UDP
    /// with a retry over TCP when the UDP answer is truncated. Returns the first answer that is not
    /// SERVFAIL or REFUSED (such an answer if there is nothing better), with the query's own ID; `None`
    /// if no server answered.
    pub async fn forward(&self, query: &[u8], over_tcp: bool) -> Option<Vec<u8>> {
        if query.len() < 12 {
            return None; // shorter than a DNS header
        }
        let client_id = [query[0], query[1]];
        // A fresh random ID per forwarded query: answers cannot be guessed by someone spoofing the
        // upstream, and two clients that picked the same ID do not get each other's answers.
        let mut query = query.to_vec();
        let id: u16 = rand::random();
        query[..2].copy_from_slice(&id.to_be_bytes());

        let mut fallback = None;
        for &server in &self.servers {
            let result = if over_tcp {
                self.exchange_tcp(server, &query, id).await
            } else {
                match self.exchange_udp(server, &query, id).await {
                    Ok((_, message)) if message.metadata.truncation => {
                        tracing::debug!(%server, "truncated answer over UDP, retrying over TCP");
                        self.exchange_tcp(server, &query, id).await
                    }
                    other => other,
                }
            };
            let (mut reply, message) = match result {
                Ok(reply) => reply,
                Err(e) => {
                    tracing::debug!(%server, error = %e, "upstream DNS server did not answer");
                    continue;
                }
            };
            // The ID is the first two bytes of every DNS message: put the client's back.
            reply[..2].copy_from_slice(&client_id);
            match message.metadata.response_code {
                ResponseCode::ServFail | ResponseCode::Refused => fallback = Some(reply),
                _ => return Some(reply),
            }
        }
        fallback
    }

    async fn exchange_udp(
        &self,
        server: SocketAddr,
        query: &[u8],
        id: u16,
    ) -> io::Result<(Vec<u8>, Message)> {
        let local: SocketAddr = match server.ip() {
            IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local).await?;
        // Connected: the kernel drops datagrams from anyone else, and reports ICMP errors (a dead
        // server fails at once instead of after the timeout).
        socket.connect(server).await?;
        socket.send(query).await?;
        let mut buf = vec![0u8; 65535];
        tokio::time::timeout(self.timeout, async {
            loop {
                let len = socket.recv(&mut buf).await?;
                if let Some(message) = parse_reply(&buf[..len], id) {
                    buf.truncate(len);
                    return Ok((buf, message));
                }
                // A late answer to an earlier query, or garbage: keep waiting.
            }
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "timed out"))?
    }

    async fn exchange_tcp(
        &self,
        server: SocketAddr,
        query: &[u8],
        id: u16,
    ) -> io::Result<(Vec<u8>, Message)> {
        tokio::time::timeout(self.timeout, async {
            let mut stream = TcpStream::connect(server).await?;
            write_tcp_message(&mut stream, query).await?;
            let reply = read_tcp_message(&mut stream).await?;
            match parse_reply(&reply, id) {
                Some(message) => Ok((reply, message)),
                None => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not an answer to the query",
                )),
            }
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "timed out"))?
    }
}

/// Writes a DNS message with its 2-byte length prefix (DNS over TCP).
pub(crate) async fn write_tcp_message<W: AsyncWriteExt + Unpin>(w: &mut W, message: &[u8]) -> io::Result<()> {
    let len = u16::try_from(message.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "DNS message over 65535 bytes"))?;
    let mut framed = Vec::with_capacity(message.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(message);
    w.write_all(&framed).await
}

/// Reads one length-prefixed DNS message (DNS over TCP).
pub(crate) async fn read_tcp_message<R: AsyncReadExt + Unpin>(r: &mut R) -> io::Result<Vec<u8>> {
    let len = r.read_u16().await?;
    let mut message = vec![0u8; usize::from(len)];
    r.read_exact(&mut message).await?;
    Ok(message)
}

/// `raw` parsed, if it is a response with ID `id`.
fn parse_reply(raw: &[u8], id: u16) -> Option<Message> {
    let message = Message::from_vec(raw).ok()?;
    (message.id == id && message.message_type == MessageType::Response).then_some(message)
}
