//! IPAM persistence, and the subnet choice against real routes.

mod common;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;

use berth_net::{choose_subnet, host_routes, Ipam, Ipv4Net};
use common::{ok, uniq, NetnsGuard};

#[test]
fn allocate_release_reload_reuse() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ipam/net.json");
    let subnet: Ipv4Net = "172.30.0.0/16".parse().unwrap();

    let mut ipam = Ipam::open(&path, subnet).unwrap();
    assert_eq!(ipam.gateway(), Ipv4Addr::new(172, 30, 0, 1));
    let ips: Vec<Ipv4Addr> = (0..3).map(|_| ipam.allocate().unwrap()).collect();
    assert_eq!(
        ips,
        [
            Ipv4Addr::new(172, 30, 0, 2),
            Ipv4Addr::new(172, 30, 0, 3),
            Ipv4Addr::new(172, 30, 0, 4)
        ]
    );
    assert!(ipam.release(ips[1]).unwrap());
    assert!(!ipam.release(ips[1]).unwrap());
    drop(ipam);

    // A restart: the state comes back from the file.
    let mut ipam = Ipam::open(&path, subnet).unwrap();
    assert_eq!(ipam.allocated().collect::<Vec<_>>(), [ips[0], ips[2]]);
    let reused = ipam.allocate().unwrap();
    assert_eq!(reused, ips[1], "the released address is reused");
    let next = ipam.allocate().unwrap();
    assert_eq!(next, Ipv4Addr::new(172, 30, 0, 5));
    let all: Vec<Ipv4Addr> = ipam.allocated().collect();
    assert_eq!(
        all.iter().collect::<HashSet<_>>().len(),
        all.len(),
        "no duplicates"
    );

    assert!(ipam.allocate_specific(ips[0]).is_err(), "taken");
    assert!(ipam.allocate_specific(ipam.gateway()).is_err(), "gateway");
    assert!(
        ipam.allocate_specific(Ipv4Addr::new(10, 0, 0, 1)).is_err(),
        "outside"
    );
    ipam.allocate_specific(Ipv4Addr::new(172, 30, 9, 9)).unwrap();
    assert!(Ipam::load(&path)
        .unwrap()
        .allocated()
        .any(|ip| ip == Ipv4Addr::new(172, 30, 9, 9)));

    assert!(
        Ipam::open(&path, "172.29.0.0/16".parse().unwrap()).is_err(),
        "another subnet's file"
    );
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    ipam.destroy().unwrap();
    assert!(!path.exists());
}

#[test]
fn small_subnet_exhausts() {
    let dir = tempfile::tempdir().unwrap();
    let mut ipam = Ipam::open(dir.path().join("n.json"), "10.9.9.0/30".parse().unwrap()).unwrap();
    assert_eq!(ipam.allocate().unwrap(), Ipv4Addr::new(10, 9, 9, 2));
    assert!(ipam.allocate().is_err());
}

/// Routes are read with netlink in a namespace of the test's own (the host's routes are left alone):
/// a route to 172.17.0.0/16 there makes the choice skip it.
#[test]
fn choose_subnet_skips_routed_subnet() {
    let ns = NetnsGuard::new(&uniq("r"));
    ok(&[
        "ip", "-n", &ns.0, "link", "add", "d0", "type", "veth", "peer", "name", "d1",
    ]);
    ok(&["ip", "-n", &ns.0, "link", "set", "d0", "up"]);
    ok(&["ip", "-n", &ns.0, "addr", "add", "172.17.0.1/16", "dev", "d0"]);
    ok(&["ip", "-n", &ns.0, "route", "add", "192.168.0.0/20", "dev", "d0"]);
    let file = std::fs::File::open(ns.path()).unwrap();

    let routes = std::thread::spawn(move || {
        rustix::thread::move_into_link_name_space(
            file.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(host_routes()).unwrap()
    })
    .join()
    .unwrap();

    let routed: Ipv4Net = "172.17.0.0/16".parse().unwrap();
    assert!(routes.contains(&routed), "{routes:?}");
    assert_eq!(
        choose_subnet(&routes, &[]),
        Some("172.18.0.0/16".parse().unwrap())
    );
    assert_eq!(
        choose_subnet(&routes, &["172.18.0.0/16".parse().unwrap()]),
        Some("172.19.0.0/16".parse().unwrap())
    );
    // Every /16 taken: the /20s, skipping the routed 192.168.0.0/20.
    let taken: Vec<Ipv4Net> = (17..=31)
        .map(|b| format!("172.{b}.0.0/16").parse().unwrap())
        .collect();
    assert_eq!(
        choose_subnet(&routes, &taken),
        Some("192.168.16.0/20".parse().unwrap())
    );

    // The host's own routes can be read too.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert!(!rt.block_on(host_routes()).unwrap().is_empty());
}
