//! NAT rules and port publishing end to end, then removal of everything (root only).
//!
//! Traffic goes only to 127.0.0.1 and to addresses inside the namespaces the test makes.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use berth_net::{
    attach, detach, Bridge, EndpointConfig, Ipv4Net, Nat, Netns, PortMapping, PortProxy, Protocol,
};
use common::{link_exists, ok, uniq, LinkGuard, NatGuard, NetnsGuard};
use tokio::io::AsyncReadExt;

async fn read_from(addr: SocketAddr) -> String {
    let mut stream = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut out))
        .await
        .expect("read timed out")
        .unwrap();
    out
}

async fn wait_for(addr: SocketAddr) {
    tokio::task::spawn_blocking(move || common::wait_for_port(addr, Duration::from_secs(5)))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_port_then_remove_everything() {
    let pid = std::process::id();
    let tag = format!("bt{pid}");
    let nat = Nat::with_names(&format!("BT{pid}"), &tag);
    let _nat_guard = NatGuard(nat.clone());
    let subnet: Ipv4Net = "10.201.3.0/24".parse().unwrap();
    let gateway = subnet.gateway();
    let br = uniq("br");
    let _br_guard = LinkGuard(br.clone());
    let ns_a = NetnsGuard::new(&uniq("pa"));
    let ns_b = NetnsGuard::new(&uniq("pb"));

    Bridge::ensure(&br, gateway, subnet).await.unwrap();
    nat.init().unwrap();
    nat.init().unwrap();
    nat.add_network(subnet, &br).unwrap();
    nat.add_network(subnet, &br).unwrap();
    let ip_a = subnet.nth(2).unwrap();
    let ip_b = subnet.nth(3).unwrap();
    let ep_a = attach(
        &Netns::Path(ns_a.path()),
        &br,
        &EndpointConfig::new(ip_a, 24, Some(gateway)),
    )
    .await
    .unwrap();
    let _veth_a = LinkGuard(ep_a.host_veth.clone());
    let ep_b = attach(
        &Netns::Path(ns_b.path()),
        &br,
        &EndpointConfig::new(ip_b, 24, Some(gateway)),
    )
    .await
    .unwrap();
    let _veth_b = LinkGuard(ep_b.host_veth.clone());

    // A tiny server in A: answers "hi" to every connection.
    let _server = ns_a.spawn(&["busybox", "nc", "-ll", "-p", "80", "-e", "echo", "hi"]);
    wait_for(SocketAddr::from((ip_a, 80))).await;

    let mapping = PortMapping {
        protocol: Protocol::Tcp,
        host_ip: None,
        host_port: 18080,
        container_ip: ip_a,
        container_port: 80,
        bridge: br.clone(),
    };
    let proxy = PortProxy::spawn(Ipv4Addr::UNSPECIFIED, 18080, ip_a, 80)
        .await
        .unwrap();
    nat.add_port(&mapping).unwrap();
    nat.add_port(&mapping).unwrap();
    assert_eq!(proxy.local_addr(), SocketAddr::from(([0, 0, 0, 0], 18080)));

    // From the host, through 127.0.0.1.
    assert_eq!(
        read_from(SocketAddr::from(([127, 0, 0, 1], 18080))).await.trim(),
        "hi"
    );
    // From another container, through the gateway's address.
    let out = ns_b.exec(&["timeout", "5", "busybox", "nc", &gateway.to_string(), "18080"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hi");

    // The port is taken now: Docker's message.
    let err = PortProxy::spawn(Ipv4Addr::UNSPECIFIED, 18080, ip_a, 80)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Bind for 0.0.0.0:18080 failed: port is already allocated"
    );

    // The rules, each once, with our comments.
    let nat_rules = ok(&["iptables", "-t", "nat", "-S"]);
    let dnat = format!(
        "-A BT{pid} ! -i {br} -p tcp -m tcp --dport 18080 -m comment --comment \"{tag}:ip:{ip_a}\" -j DNAT --to-destination {ip_a}:80"
    );
    assert_eq!(nat_rules.lines().filter(|l| *l == dnat).count(), 1, "{nat_rules}");
    let masq = format!(
        "-A POSTROUTING -s {subnet} ! -o {br} -m comment --comment \"{tag}:net:{subnet}\" -j MASQUERADE"
    );
    assert_eq!(nat_rules.lines().filter(|l| *l == masq).count(), 1, "{nat_rules}");
    assert_eq!(
        nat_rules
            .lines()
            .filter(|l| l.contains(&format!("{tag}:jump")))
            .count(),
        2,
        "{nat_rules}"
    );
    assert_eq!(
        nat.rules().unwrap().len(),
        2 + 1 + 1 + 3,
        "{:?}",
        nat.rules().unwrap()
    );

    // Remove the container's ports, then the network.
    drop(proxy);
    nat.remove_all_for(ip_a).unwrap();
    assert!(!ok(&["iptables", "-t", "nat", "-S"]).contains(&format!("{tag}:ip:")));
    assert!(!ok(&["iptables", "-S"]).contains(&format!("{tag}:ip:")));
    let again = PortProxy::spawn(Ipv4Addr::UNSPECIFIED, 18080, ip_a, 80)
        .await
        .expect("port free again");
    drop(again);

    detach(&ep_a).await.unwrap();
    detach(&ep_b).await.unwrap();
    nat.remove_network(subnet).unwrap();
    Bridge::delete(&br).await.unwrap();
    nat.remove_all().unwrap();

    assert!(!link_exists(&br));
    assert!(!link_exists(&ep_a.host_veth) && !link_exists(&ep_b.host_veth));
    assert!(!ok(&["iptables", "-t", "nat", "-S"]).contains(&tag));
    assert!(!ok(&["iptables", "-t", "nat", "-S"]).contains(&format!("BT{pid}")));
    assert!(!ok(&["iptables", "-S"]).contains(&tag));
    assert!(nat.rules().unwrap().is_empty());
}
