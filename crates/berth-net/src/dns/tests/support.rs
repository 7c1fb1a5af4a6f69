//! Test helpers: a network namespace guard, a DNS client that asks from inside a namespace, and a
//! small upstream DNS server on 127.0.0.1 in the host namespace.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use crate::dns::run_in_netns;

pub fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("run {args:?}: {e}"))
}

fn ok(args: &[&str]) {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace (`ip netns add`) with `lo` up, deleted on drop.
pub struct TestNetns(pub String);

impl TestNetns {
    pub fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "bdns{}x{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let _ = run(&["ip", "netns", "del", &name]);
        ok(&["ip", "netns", "add", &name]);
        let guard = TestNetns(name);
        ok(&["ip", "-n", &guard.0, "link", "set", "lo", "up"]);
        guard
    }

    pub fn path(&self) -> PathBuf {
        format!("/run/netns/{}", self.0).into()
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.0]);
    }
}

/// A query for `name` and `rtype`, with RD set as stub resolvers send it.
pub fn make_query(name: &str, rtype: RecordType) -> Message {
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    query
}

/// Sends `query` to `server` from a socket made inside the namespace at `netns` (over TCP with the
/// 2-byte length prefix, or UDP) and returns the reply, checking that it carries the query's ID.
pub async fn ask_message(netns: &Path, server: SocketAddr, query: Message, tcp: bool) -> Message {
    let netns = netns.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let bytes = query.to_vec().unwrap();
        let timeout = Some(Duration::from_secs(15));
        let raw = if tcp {
            let mut stream = run_in_netns(&netns, || {
                TcpStream::connect_timeout(&server, Duration::from_secs(5))
            })
            .unwrap();
            stream.set_read_timeout(timeout).unwrap();
            stream.write_all(&(bytes.len() as u16).to_be_bytes()).unwrap();
            stream.write_all(&bytes).unwrap();
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).unwrap();
            let mut raw = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut raw).unwrap();
            raw
        } else {
            let socket = run_in_netns(&netns, || UdpSocket::bind("127.0.0.1:0")).unwrap();
            socket.set_read_timeout(timeout).unwrap();
            socket.send_to(&bytes, server).unwrap();
            let mut buf = vec![0u8; 65535];
            let (len, from) = socket.recv_from(&mut buf).unwrap();
            assert_eq!(from, server);
            buf.truncate(len);
            buf
        };
        let reply = Message::from_vec(&raw).unwrap();
        assert_eq!(reply.id, query.id, "the reply has the query's ID");
        reply
    })
    .await
    .unwrap()
}

/// Sends raw bytes over UDP from inside `netns` and parses the reply.
pub async fn ask_raw(netns: &Path, server: SocketAddr, raw: &[u8]) -> Message {
    let (netns, raw) = (netns.to_path_buf(), raw.to_vec());
    tokio::task::spawn_blocking(move || {
        let socket = run_in_netns(&netns, || UdpSocket::bind("127.0.0.1:0")).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        socket.send_to(&raw, server).unwrap();
        let mut buf = vec![0u8; 65535];
        let len = socket.recv(&mut buf).unwrap();
        Message::from_vec(&buf[..len]).unwrap()
    })
    .await
    .unwrap()
}

pub async fn ask(netns: &Path, server: SocketAddr, name: &str, rtype: RecordType, tcp: bool) -> Message {
    ask_message(netns, server, make_query(name, rtype), tcp).await
}

/// The IPv4 addresses in a reply's answer section.
pub fn a_records(reply: &Message) -> Vec<Ipv4Addr> {
    reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(A(ip)) => Some(*ip),
            _ => None,
        })
        .collect()
}

/// The address `external.test` has upstream.
pub const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

/// An upstream DNS server on 127.0.0.1 (UDP and TCP on one port) in the host namespace:
/// - `external.test` A: [`EXTERNAL_IP`];
/// - `big.test` A: over UDP an empty truncated (TC) answer, over TCP ten addresses 198.51.100.1-10;
/// - anything else: NXDOMAIN.
///
/// It counts the queries it gets per transport. Stopped on drop.
pub struct TestUpstream {
    pub addr: SocketAddr,
    pub udp_queries: Arc<AtomicUsize>,
    pub tcp_queries: Arc<AtomicUsize>,
    _tasks: JoinSet<()>,
}

impl TestUpstream {
    pub async fn start() -> Self {
        let (udp, tcp) = loop {
            let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let port = udp.local_addr().unwrap().port();
            if let Ok(tcp) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        let (udp_queries, tcp_queries) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut tasks = JoinSet::new();
        let counter = udp_queries.clone();
        tasks.spawn(async move {
            let mut buf = vec![0u8; 65535];
            while let Ok((len, client)) = udp.recv_from(&mut buf).await {
                counter.fetch_add(1, Ordering::SeqCst);
                let reply = upstream_reply(&Message::from_vec(&buf[..len]).unwrap(), false);
                let _ = udp.send_to(&reply.to_vec().unwrap(), client).await;
            }
        });
        let counter = tcp_queries.clone();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((mut stream, _)) = tcp.accept().await {
                let counter = counter.clone();
                connections.spawn(async move {
                    while let Ok(len) = stream.read_u16().await {
                        let mut raw = vec![0u8; usize::from(len)];
                        stream.read_exact(&mut raw).await.unwrap();
                        counter.fetch_add(1, Ordering::SeqCst);
                        let reply = upstream_reply(&Message::from_vec(&raw).unwrap(), true)
                            .to_vec()
                            .unwrap();
                        stream
                            .write_all(&(reply.len() as u16).to_be_bytes())
                            .await
                            .unwrap();
                        stream.write_all(&reply).await.unwrap();
                    }
                });
            }
        });
        TestUpstream {
            addr,
            udp_queries,
            tcp_queries,
            _tasks: tasks,
        }
    }

    pub fn udp_count(&self) -> usize {
        self.udp_queries.load(Ordering::SeqCst)
    }

    pub fn tcp_count(&self) -> usize {
        self.tcp_queries.load(Ordering::SeqCst)
    }
}

fn upstream_reply(request: &Message, tcp: bool) -> Message {
    let query = request.queries[0].clone();
    let mut reply = Message::response(request.id, OpCode::Query);
    reply.metadata = Metadata::response_from_request(&request.metadata);
    reply.metadata.recursion_available = true;
    reply.add_query(query.clone());
    let a = |ip: Ipv4Addr| Record::from_rdata(query.name().clone(), 30, RData::A(A(ip)));
    match (
        query.name().to_ascii().to_ascii_lowercase().as_str(),
        query.query_type(),
    ) {
        ("external.test.", RecordType::A) => {
            reply.add_answer(a(EXTERNAL_IP));
        }
        ("external.test.", _) => {}
        ("big.test.", RecordType::A) if !tcp => reply.metadata.truncation = true,
        ("big.test.", RecordType::A) => {
            reply.add_answers((1..=10).map(|i| a(Ipv4Addr::new(198, 51, 100, i))));
        }
        _ => reply.metadata.response_code = ResponseCode::NXDomain,
    }
    reply
}
