//! Docker's resolv.conf rules.

use std::net::SocketAddr;

use crate::dns::{resolv_conf_for_container, upstreams_for_container};

const HOST: &str = "# from the host\n\
nameserver 127.0.0.53\n\
nameserver 10.0.0.2\n\
nameserver ::1\n\
nameserver 2001:db8::1\n\
search corp.example lab.example\n\
options edns0 trust-ad\n";

/// The non-comment, non-empty lines.
fn lines(content: &str) -> Vec<&str> {
    content
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn default_bridge_drops_local_and_ipv6_nameservers() {
    let conf = resolv_conf_for_container(HOST, &[], &[], &[], false);
    assert_eq!(
        lines(&conf),
        [
            "nameserver 10.0.0.2",
            "search corp.example lab.example",
            "options edns0 trust-ad"
        ]
    );
}

#[test]
fn default_bridge_falls_back_to_google_when_only_local_nameservers() {
    let host = "nameserver 127.0.0.53\nnameserver 127.0.1.1\nnameserver ::1\noptions edns0\n";
    let conf = resolv_conf_for_container(host, &[], &[], &[], false);
    assert_eq!(
        lines(&conf),
        ["nameserver 8.8.8.8", "nameserver 8.8.4.4", "options edns0"]
    );
    // An empty host file too.
    let conf = resolv_conf_for_container("", &[], &[], &[], false);
    assert_eq!(lines(&conf), ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]);
}

#[test]
fn overrides_replace_the_host_settings() {
    let conf = resolv_conf_for_container(
        HOST,
        &strings(&["1.1.1.1", "127.0.0.1"]),
        &strings(&["svc.example"]),
        &strings(&["ndots:2", "timeout:1"]),
        false,
    );
    assert_eq!(
        lines(&conf),
        [
            "nameserver 1.1.1.1",
            "nameserver 127.0.0.1",
            "search svc.example",
            "options ndots:2 timeout:1"
        ]
    );
    // `--dns-search .` means no search list.
    let conf = resolv_conf_for_container(HOST, &[], &strings(&["."]), &[], false);
    assert!(!conf.contains("search"), "{conf}");
}

#[test]
fn embedded_points_at_127_0_0_11_with_ndots_0() {
    let conf = resolv_conf_for_container(HOST, &strings(&["1.1.1.1"]), &[], &[], true);
    assert_eq!(
        lines(&conf),
        [
            "nameserver 127.0.0.11",
            "search corp.example lab.example",
            "options edns0 trust-ad ndots:0"
        ]
    );
    // A user's ndots is kept.
    let conf = resolv_conf_for_container(HOST, &[], &strings(&["x.example"]), &strings(&["ndots:3"]), true);
    assert_eq!(
        lines(&conf),
        ["nameserver 127.0.0.11", "search x.example", "options ndots:3"]
    );
}

#[test]
fn embedded_upstreams_keep_local_servers() {
    let addrs = |list: &[&str]| -> Vec<SocketAddr> { list.iter().map(|s| s.parse().unwrap()).collect() };
    assert_eq!(
        upstreams_for_container(HOST, &[]),
        addrs(&["127.0.0.53:53", "10.0.0.2:53", "[::1]:53", "[2001:db8::1]:53"])
    );
    assert_eq!(
        upstreams_for_container(HOST, &strings(&["9.9.9.9", "not-an-ip"])),
        addrs(&["9.9.9.9:53"])
    );
    assert_eq!(
        upstreams_for_container("search x\n", &[]),
        addrs(&["8.8.8.8:53", "8.8.4.4:53"])
    );
}
