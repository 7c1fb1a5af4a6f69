//! Veth endpoints between a test bridge and namespaces the test makes (root only).

mod common;

use berth_net::{attach, detach, Bridge, EndpointConfig, Ipv4Net, Netns};
use common::{link_exists, uniq, LinkGuard, NetnsGuard};

#[tokio::test]
async fn attach_two_namespaces_and_ping() {
    let subnet: Ipv4Net = "10.201.2.0/24".parse().unwrap();
    let br = uniq("br");
    let _br_guard = LinkGuard(br.clone());
    let ns_a = NetnsGuard::new(&uniq("a"));
    let ns_b = NetnsGuard::new(&uniq("b"));
    Bridge::ensure(&br, subnet.gateway(), subnet).await.unwrap();

    let ip_a = subnet.nth(2).unwrap();
    let ip_b = subnet.nth(3).unwrap();
    let cfg_a = EndpointConfig::new(ip_a, subnet.prefix(), Some(subnet.gateway()));
    let mut cfg_b = EndpointConfig::new(ip_b, subnet.prefix(), Some(subnet.gateway()));
    cfg_b.mac = Some([0x02, 0x42, 0, 0, 0, 0x33]);
    let ep_a = attach(&Netns::Path(ns_a.path()), &br, &cfg_a).await.unwrap();
    let _veth_a = LinkGuard(ep_a.host_veth.clone());
    let ep_b = attach(&Netns::Path(ns_b.path()), &br, &cfg_b).await.unwrap();
    let _veth_b = LinkGuard(ep_b.host_veth.clone());

    // The host side is a port of the bridge and up.
    assert!(ep_a.host_veth.starts_with("veth") && ep_a.host_veth.len() <= 15);
    let host = String::from_utf8(common::run(&["ip", "link", "show", &ep_a.host_veth]).stdout).unwrap();
    assert!(
        host.contains(&format!("master {br}")) && host.contains(",UP"),
        "{host}"
    );

    // Inside A: eth0 with the address, MAC and a default route; lo up.
    let addr = String::from_utf8(ns_a.exec(&["ip", "addr", "show", "eth0"]).stdout).unwrap();
    assert!(addr.contains("inet 10.201.2.2/24"), "{addr}");
    assert!(addr.contains("link/ether 02:42:0a:c9:02:02"), "{addr}");
    assert_eq!(ep_a.mac_string(), "02:42:0a:c9:02:02");
    let routes = String::from_utf8(ns_a.exec(&["ip", "route"]).stdout).unwrap();
    assert!(routes.contains("default via 10.201.2.1 dev eth0"), "{routes}");
    let lo = String::from_utf8(ns_a.exec(&["ip", "link", "show", "lo"]).stdout).unwrap();
    assert!(lo.contains(",UP"), "{lo}");
    let addr_b = String::from_utf8(ns_b.exec(&["ip", "addr", "show", "eth0"]).stdout).unwrap();
    assert!(addr_b.contains("link/ether 02:42:00:00:00:33"), "{addr_b}");

    // A reaches B across the bridge, and the gateway.
    let ping = ns_a.exec(&["busybox", "ping", "-c1", "-W2", &ip_b.to_string()]);
    assert!(
        ping.status.success(),
        "ping B: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    let ping = ns_b.exec(&["busybox", "ping", "-c1", "-W2", &subnet.gateway().to_string()]);
    assert!(
        ping.status.success(),
        "ping gateway: {}",
        String::from_utf8_lossy(&ping.stdout)
    );

    // Detach removes the veth on both sides.
    detach(&ep_a).await.unwrap();
    assert!(!link_exists(&ep_a.host_veth));
    assert!(!ns_a.exec(&["ip", "link", "show", "eth0"]).status.success());
    detach(&ep_a).await.unwrap();
    detach(&ep_b).await.unwrap();
    assert!(Bridge::delete(&br).await.unwrap());
}

#[tokio::test]
async fn attach_failure_leaves_nothing() {
    let subnet: Ipv4Net = "10.201.4.0/24".parse().unwrap();
    let br = uniq("fbr");
    let _br_guard = LinkGuard(br.clone());
    let ns = NetnsGuard::new(&uniq("c"));
    let cfg = EndpointConfig::new(subnet.nth(2).unwrap(), 24, Some(subnet.gateway()));
    assert!(
        attach(&Netns::Path(ns.path()), &uniq("nobr"), &cfg)
            .await
            .is_err(),
        "no such bridge"
    );
    assert!(
        attach(&Netns::Pid(u32::MAX), "lo", &cfg).await.is_err(),
        "no such process"
    );

    // A failure inside the namespace (its `lo` exists: the rename fails) after the veth pair was made:
    // the pair is removed again, so the namespace holds only `lo` and the bridge has no port.
    Bridge::ensure(&br, subnet.gateway(), subnet).await.unwrap();
    let mut clash = cfg.clone();
    clash.ifname = "lo".to_string();
    assert!(attach(&Netns::Path(ns.path()), &br, &clash).await.is_err());
    let links = String::from_utf8(ns.exec(&["ip", "-o", "link", "show"]).stdout).unwrap();
    assert_eq!(links.lines().count(), 1, "{links}");
    let ports = String::from_utf8(common::run(&["ip", "-o", "link", "show", "master", &br]).stdout).unwrap();
    assert!(ports.trim().is_empty(), "{ports}");
}
