//! Root tests: a real namespace, the server bound at 127.0.0.11:53 inside it, queries from inside it.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::PTR;
use hickory_proto::rr::{RData, RecordType};

use super::support::{a_records, ask, ask_raw, make_query, run, TestNetns, TestUpstream, EXTERNAL_IP};
use crate::dns::{
    bind_in_netns, run_in_netns, DnsServer, DnsServerConfig, DnsServerHandle, NameTable, Upstreams,
    CONTAINER_TTL, EMBEDDED_DNS_IP,
};

const DNS: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(EMBEDDED_DNS_IP), 53);
const WEB_IP: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 3);

/// A namespace for container `c1` with the server in it. `c1` is on `mynet` with `web` (alias
/// `alias1`); `hidden` is on `other`, a network `c1` is not on.
struct Fixture {
    server: Option<DnsServerHandle>,
    table: Arc<NameTable>,
    ns: TestNetns,
}

impl Fixture {
    async fn start(upstreams: Upstreams) -> Self {
        Self::start_with(DnsServerConfig::new("c1", upstreams)).await
    }

    async fn start_with(config: DnsServerConfig) -> Self {
        let ns = TestNetns::new();
        let table = Arc::new(NameTable::new());
        table.add_endpoint("mynet", "c1", Ipv4Addr::new(172, 30, 0, 2), &["client".into()]);
        table.add_endpoint("mynet", "c2", WEB_IP, &["web".into(), "alias1".into()]);
        table.add_endpoint("other", "c3", Ipv4Addr::new(172, 31, 0, 5), &["hidden".into()]);
        let server = DnsServer::start_in_netns(&ns.path(), DNS, table.clone(), config)
            .await
            .unwrap();
        Fixture {
            server: Some(server),
            table,
            ns,
        }
    }

    async fn ask(&self, name: &str, rtype: RecordType, tcp: bool) -> hickory_proto::op::Message {
        ask(&self.ns.path(), DNS, name, rtype, tcp).await
    }
}

fn upstreams(upstream: &TestUpstream) -> Upstreams {
    Upstreams::new(vec![upstream.addr]).with_timeout(Duration::from_secs(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_a_for_names_and_aliases_in_any_case() {
    let upstream = TestUpstream::start().await;
    let fx = Fixture::start(upstreams(&upstream)).await;
    for name in ["web", "web.", "WeB", "ALIAS1.", "web.mynet", "Web.MyNet."] {
        let reply = fx.ask(name, RecordType::A, false).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError, "{name}");
        assert_eq!(a_records(&reply), vec![WEB_IP], "{name}");
        assert_eq!(reply.answers[0].ttl, CONTAINER_TTL);
        assert!(reply.metadata.recursion_available);
    }
    assert_eq!(upstream.udp_count(), 0, "known names are not forwarded");

    // A container on a network c1 is not on is not visible: forwarded, and the upstream says NXDOMAIN.
    let reply = fx.ask("hidden", RecordType::A, false).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(upstream.udp_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aaaa_of_a_known_name_is_empty_noerror() {
    let upstream = TestUpstream::start().await;
    let fx = Fixture::start(upstreams(&upstream)).await;
    let reply = fx.ask("web", RecordType::AAAA, false).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.answers.is_empty());
    assert_eq!(upstream.udp_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ptr_of_a_container_address() {
    let upstream = TestUpstream::start().await;
    let fx = Fixture::start(upstreams(&upstream)).await;
    let reply = fx.ask("3.0.30.172.in-addr.arpa.", RecordType::PTR, false).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(reply.answers.len(), 1);
    match &reply.answers[0].data {
        RData::PTR(PTR(name)) => assert_eq!(name.to_ascii(), "web.mynet."),
        other => panic!("not a PTR: {other:?}"),
    }
    // An address outside our networks goes upstream.
    let reply = fx.ask("5.0.31.172.in-addr.arpa.", RecordType::PTR, false).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(upstream.udp_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_are_forwarded_over_udp_and_tcp() {
    let upstream = TestUpstream::start().await;
    let fx = Fixture::start(upstreams(&upstream)).await;
    let reply = fx.ask("external.test", RecordType::A, false).await;
    assert_eq!(a_records(&reply), vec![EXTERNAL_IP]);
    assert_eq!((upstream.udp_count(), upstream.tcp_count()), (1, 0));

    // Over TCP, local names are answered and forwarded ones go upstream over TCP too.
    let reply = fx.ask("web", RecordType::A, true).await;
    assert_eq!(a_records(&reply), vec![WEB_IP]);
    let reply = fx.ask("EXTERNAL.test", RecordType::A, true).await;
    assert_eq!(a_records(&reply), vec![EXTERNAL_IP]);
    assert_eq!((upstream.udp_count(), upstream.tcp_count()), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_upstream_answer_is_retried_over_tcp() {
    let upstream = TestUpstream::start().await;
    let fx = Fixture::start(upstreams(&upstream)).await;
    let reply = fx.ask("big.test", RecordType::A, false).await;
    assert!(!reply.metadata.truncation);
    let expected: Vec<Ipv4Addr> = (1..=10).map(|i| Ipv4Addr::new(198, 51, 100, i)).collect();
    assert_eq!(a_records(&reply), expected);
    assert_eq!((upstream.udp_count(), upstream.tcp_count()), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servfail_when_no_upstream_answers() {
    // Nothing listens on `dead`'s port (refused at once); `silent` takes queries and never answers.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let fx = Fixture::start(
        Upstreams::new(vec![dead, silent.local_addr().unwrap()]).with_timeout(Duration::from_millis(500)),
    )
    .await;
    let reply = fx.ask("external.test", RecordType::A, false).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    let mut buf = [0u8; 512];
    silent.set_nonblocking(true).unwrap();
    assert!(silent.recv(&mut buf).is_ok(), "the silent upstream was asked");
    // Local names do not depend on upstreams.
    assert_eq!(
        a_records(&fx.ask("web", RecordType::A, false).await),
        vec![WEB_IP]
    );
    assert_eq!(a_records(&fx.ask("web", RecordType::A, true).await), vec![WEB_IP]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falls_through_to_the_next_upstream() {
    let upstream = TestUpstream::start().await;
    let dead = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let fx =
        Fixture::start(Upstreams::new(vec![dead, upstream.addr]).with_timeout(Duration::from_secs(2))).await;
    let reply = fx.ask("external.test", RecordType::A, false).await;
    assert_eq!(a_records(&reply), vec![EXTERNAL_IP]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_updates_are_seen_live() {
    let upstream = TestUpstream::start().await;
    let fx = Fixture::start(upstreams(&upstream)).await;
    assert_eq!(
        fx.ask("newbie", RecordType::A, false)
            .await
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
    let ips = [Ipv4Addr::new(172, 30, 0, 7), Ipv4Addr::new(172, 30, 0, 8)];
    fx.table
        .add_endpoint("mynet", "c7", ips[0], &["newbie".into(), "shared".into()]);
    fx.table.add_endpoint("mynet", "c8", ips[1], &["shared".into()]);
    assert_eq!(
        a_records(&fx.ask("newbie", RecordType::A, false).await),
        vec![ips[0]]
    );
    let mut shared = a_records(&fx.ask("shared", RecordType::A, false).await);
    shared.sort();
    assert_eq!(shared, ips.to_vec(), "an alias of two containers answers both");

    assert!(fx.table.remove_endpoint("mynet", "c7"));
    assert_eq!(
        fx.ask("newbie", RecordType::A, false)
            .await
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
    assert_eq!(
        a_records(&fx.ask("shared", RecordType::A, false).await),
        vec![ips[1]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busybox_nslookup_in_the_namespace() {
    let upstream = TestUpstream::start().await;
    let fx = Fixture::start(upstreams(&upstream)).await;
    let ns = fx.ns.0.clone();
    let out = tokio::task::spawn_blocking(move || {
        run(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "busybox",
            "nslookup",
            "web",
            "127.0.0.11",
        ])
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "nslookup failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("172.30.0.3"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_the_sockets() {
    let upstream = TestUpstream::start().await;
    let mut fx = Fixture::start(upstreams(&upstream)).await;
    assert_eq!(
        a_records(&fx.ask("web", RecordType::A, false).await),
        vec![WEB_IP]
    );
    fx.server.take().unwrap().shutdown().await;
    // The address is free again: a new server can take it (as after a daemon restart).
    let path = fx.ns.path();
    let rebound = tokio::task::spawn_blocking(move || bind_in_netns(&path, DNS))
        .await
        .unwrap();
    assert!(rebound.is_ok(), "{rebound:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_local_answers_are_truncated_over_udp_only() {
    let upstream = TestUpstream::start().await;
    let fx = Fixture::start(upstreams(&upstream)).await;
    for i in 0..60 {
        let ip = Ipv4Addr::new(172, 30, 1, i);
        fx.table
            .add_endpoint("mynet", &format!("many{i}"), ip, &["many".into()]);
    }
    let reply = fx.ask("many", RecordType::A, false).await;
    assert!(reply.metadata.truncation, "60 A records do not fit in 512 bytes");
    assert!(reply.answers.is_empty());
    let reply = fx.ask("many", RecordType::A, true).await;
    assert!(!reply.metadata.truncation);
    assert_eq!(a_records(&reply).len(), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_queries_get_formerr() {
    let upstream = TestUpstream::start().await;
    let fx = Fixture::start(upstreams(&upstream)).await;
    // A header announcing one question, and no question.
    let raw = [0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    let reply = ask_raw(&fx.ns.path(), DNS, &raw).await;
    assert_eq!(reply.id, 0x1234);
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_is_bounded() {
    // One query at a time: a query stuck on a silent upstream holds back the next one, so replies come
    // in order even though the second one is answered locally.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let upstreams =
        Upstreams::new(vec![silent.local_addr().unwrap()]).with_timeout(Duration::from_millis(500));
    let mut config = DnsServerConfig::new("c1", upstreams);
    config.max_concurrent = 1;
    let fx = Fixture::start_with(config).await;
    let path = fx.ns.path();
    let codes = tokio::task::spawn_blocking(move || {
        let socket = run_in_netns(&path, || std::net::UdpSocket::bind("127.0.0.1:0")).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        for name in ["external.test", "web"] {
            socket
                .send_to(&make_query(name, RecordType::A).to_vec().unwrap(), DNS)
                .unwrap();
        }
        let mut buf = vec![0u8; 4096];
        (0..2)
            .map(|_| {
                let len = socket.recv(&mut buf).unwrap();
                Message::from_vec(&buf[..len]).unwrap().metadata.response_code
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(codes, [ResponseCode::ServFail, ResponseCode::NoError]);
}
