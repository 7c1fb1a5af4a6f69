//! Networking through the stock docker CLI against a real berthd: the default bridge (addresses,
//! routes, /etc/hosts), published ports (from 127.0.0.1, `docker port`, `docker ps`, clashes),
//! container-to-container traffic, `--network none|host`, cleanup of veths and iptables rules, and
//! published ports across a daemon restart.
//!
//! Each daemon has its own bridge and subnet (`Daemon::bridge`, `Daemon::bip`). Traffic goes only to
//! 127.0.0.1 and to the containers these tests make; every command is bounded in time.

use berth_tests::{assert_failure, assert_success, stderr, stdout, Daemon};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `sh -c` script serving `hello\n` on port 80 with busybox httpd.
const HTTPD: &str = "mkdir -p /www && echo hello > /www/index.html && httpd -f -p 80 -h /www";

fn daemon_with_busybox() -> Daemon {
    let d = Daemon::start();
    let help = Command::new(berth_tests::bin("berthd"))
        .arg("--help")
        .output()
        .expect("berthd --help");
    assert!(
        stdout(&help).contains("--bip"),
        "berthd has no --bridge/--bip flags yet: the tests cannot give it its own bridge"
    );
    d.import_busybox();
    d
}

/// The docker CLI against `d`, killed after 60 s so a hung daemon fails the test instead of hanging it.
fn docker(d: &Daemon, args: &[&str]) -> Output {
    Command::new("timeout")
        .args(["-k", "5", "60", "docker"])
        .args(args)
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .env("DOCKER_BUILDKIT", "0")
        .env("DOCKER_CLI_HINTS", "false")
        .stdin(Stdio::null())
        .output()
        .expect("running docker")
}

#[track_caller]
fn docker_ok(d: &Daemon, args: &[&str]) -> String {
    let out = docker(d, args);
    assert_success(&out, &format!("docker {}", args.join(" ")));
    stdout(&out)
}

/// The first three octets of the daemon's subnet, with the trailing dot: `172.29.7.`.
fn subnet_prefix(d: &Daemon) -> String {
    let gw = d.bip.split('/').next().unwrap();
    format!("{}.", gw.rsplit_once('.').unwrap().0)
}

fn gateway(d: &Daemon) -> String {
    d.bip.split('/').next().unwrap().to_string()
}

fn ip_of(d: &Daemon, name: &str) -> String {
    docker_ok(d, &["inspect", "-f", "{{.NetworkSettings.IPAddress}}", name])
        .trim()
        .to_string()
}

fn run_web(d: &Daemon, name: &str, publish: Option<&str>) -> String {
    let mut args = vec!["run", "-d", "--name", name];
    if let Some(p) = publish {
        args.extend(["-p", p]);
    }
    args.extend(["busybox", "sh", "-c", HTTPD]);
    docker_ok(d, &args).trim().to_string()
}

/// One HTTP/1.0 GET of `/`; the body of a 200 answer.
fn http_get_once(addr: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP header end in {raw:?}"))?;
    if !head.starts_with("HTTP/1.") || head.split_whitespace().nth(1) != Some("200") {
        return Err(format!("answer: {head:?}"));
    }
    Ok(body.to_string())
}

/// GETs `http://127.0.0.1:<port>/`, retrying for up to 6 s while the server starts.
fn http_get(port: u16) -> Result<String, String> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        match http_get_once(addr) {
            Ok(body) => return Ok(body),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The ports of the daemon's bridge (`ip -o link show master <bridge>`), one line each.
fn bridge_ports(d: &Daemon) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show", "master", &d.bridge])
        .output()
        .expect("ip link");
    stdout(&out).lines().map(String::from).collect()
}

/// Every iptables rule (nat and filter tables) that mentions the address `ip` as a whole word.
fn rules_with_ip(ip: &str) -> Vec<String> {
    let mut found = Vec::new();
    for table in ["nat", "filter"] {
        let out = Command::new("iptables")
            .args(["-w", "-t", table, "-S"])
            .output()
            .expect("iptables -S");
        for line in stdout(&out).lines() {
            let hit = line.match_indices(ip).any(|(i, _)| {
                let after = line[i + ip.len()..].chars().next();
                let before = line[..i].chars().last();
                !after.is_some_and(|c| c.is_ascii_digit()) && !before.is_some_and(|c| c.is_ascii_digit())
            });
            if hit {
                found.push(format!("{table}: {line}"));
            }
        }
    }
    found
}

#[test]
fn default_bridge_gives_an_address_route_and_hosts_line() {
    let d = daemon_with_busybox();
    let prefix = subnet_prefix(&d);
    let gw = gateway(&d);
    // The bridge exists once the daemon is up, with the gateway address (as docker0 does).
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show", "dev", &d.bridge])
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains(&format!("inet {}", d.bip)),
        "bridge {} with {}: {}{}",
        d.bridge,
        d.bip,
        stdout(&out),
        stderr(&out)
    );
    docker_ok(&d, &["run", "-d", "--name", "ca", "busybox", "sleep", "300"]);
    docker_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "cb",
            "--network",
            "bridge",
            "busybox",
            "sleep",
            "300",
        ],
    );
    let (ip_a, ip_b) = (ip_of(&d, "ca"), ip_of(&d, "cb"));
    for ip in [&ip_a, &ip_b] {
        assert!(
            ip.starts_with(&prefix) && *ip != gw,
            "address {ip:?} in {} (not the gateway)",
            d.bip
        );
    }
    assert_ne!(ip_a, ip_b, "two containers, two addresses");
    for (name, ip) in [("ca", &ip_a), ("cb", &ip_b)] {
        let addr = docker_ok(&d, &["exec", name, "ip", "-4", "-o", "addr", "show", "eth0"]);
        assert!(addr.contains(&format!("inet {ip}/24")), "{name} eth0: {addr}");
        let route = docker_ok(&d, &["exec", name, "ip", "route"]);
        assert!(
            route.contains(&format!("default via {gw} dev eth0")),
            "{name} routes: {route}"
        );
        let hostname = docker_ok(&d, &["exec", name, "hostname"]).trim().to_string();
        let hosts = docker_ok(&d, &["exec", name, "cat", "/etc/hosts"]);
        assert!(
            hosts.lines().any(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.first() == Some(&ip.as_str()) && w[1..].contains(&hostname.as_str())
            }),
            "{name}: /etc/hosts has `{ip} {hostname}`:\n{hosts}"
        );
    }
    let nets = docker_ok(
        &d,
        &[
            "inspect",
            "-f",
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
            "ca",
        ],
    );
    assert_eq!(nets.trim(), "bridge", "ca is on the network `bridge`");
    docker_ok(&d, &["rm", "-f", "ca", "cb"]);
}

#[test]
fn published_port_serves_http_from_localhost() {
    let d = daemon_with_busybox();
    run_web(&d, "web", Some("18080:80"));
    let body = http_get(18080).unwrap_or_else(|e| {
        panic!(
            "GET http://127.0.0.1:18080/: {e}\nps: {}\nlog tail:\n{}",
            stdout(&docker(&d, &["ps", "-a"])),
            tail(&d.log(), 30)
        )
    });
    assert_eq!(body, "hello\n");
    // To the bridge's own address (a local address of the host): the OUTPUT DNAT rule or the proxy.
    let gw: SocketAddr = format!("{}:18080", gateway(&d)).parse().unwrap();
    assert_eq!(http_get_once(gw).as_deref(), Ok("hello\n"), "GET {gw}");
    let out = docker(&d, &["port", "web"]);
    if !out.status.success() && stderr(&out).contains("not implemented") {
        // `docker port` is not served yet: skip only this assertion.
        eprintln!("skipping `docker port`: {}", stderr(&out));
    } else {
        assert_success(&out, "docker port web");
        assert!(
            stdout(&out).lines().any(|l| l == "80/tcp -> 0.0.0.0:18080"),
            "docker port web: {:?}",
            stdout(&out)
        );
    }
    let ports = docker_ok(&d, &["ps", "--format", "{{.Ports}}"]);
    assert!(
        ports.contains("0.0.0.0:18080->80/tcp"),
        "docker ps Ports: {ports:?}"
    );
    docker_ok(&d, &["rm", "-f", "web"]);
}

#[test]
fn same_host_port_twice_is_refused() {
    let d = daemon_with_busybox();
    run_web(&d, "first", Some("18081:80"));
    let out = docker(
        &d,
        &[
            "run", "-d", "--name", "second", "-p", "18081:80", "busybox", "sleep", "300",
        ],
    );
    assert_failure(&out, "a second publication of 18081");
    assert!(
        stderr(&out).contains("port is already allocated"),
        "Docker's message: {}",
        stderr(&out)
    );
    let running = docker_ok(&d, &["ps", "--format", "{{.Names}}"]);
    assert_eq!(running.trim(), "first", "only the first container runs");
    assert_eq!(
        http_get(18081).as_deref(),
        Ok("hello\n"),
        "the first still serves"
    );
    // Once the first is gone, the port is free again.
    docker_ok(&d, &["rm", "-f", "first"]);
    run_web(&d, "third", Some("18081:80"));
    assert_eq!(http_get(18081).as_deref(), Ok("hello\n"), "the third serves");
    docker_ok(&d, &["rm", "-f", "second", "third"]);
}

#[test]
fn containers_reach_each_other_by_ip_not_by_name() {
    let d = daemon_with_busybox();
    run_web(&d, "cb", None);
    docker_ok(&d, &["run", "-d", "--name", "ca", "busybox", "sleep", "300"]);
    let ip_b = ip_of(&d, "cb");
    let out = docker(&d, &["exec", "ca", "ping", "-c1", "-W1", &ip_b]);
    assert_success(&out, &format!("ping from ca to cb ({ip_b})"));
    let url = format!("http://{ip_b}/");
    let mut last = None;
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        let out = docker(&d, &["exec", "ca", "timeout", "5", "wget", "-q", "-O-", &url]);
        if out.status.success() {
            last = None;
            assert_eq!(stdout(&out), "hello\n");
            break;
        }
        last = Some(format!("{}: {}", out.status, stderr(&out)));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(last.is_none(), "wget {url} from ca: {}", last.unwrap_or_default());
    // By name: no /etc/hosts line and no DNS for other containers on the default bridge. The host's
    // nameserver is outside (no traffic there): point the resolver at the container's own loopback,
    // unless the engine gave the container an embedded DNS (which Docker does not on this network).
    let hosts = docker_ok(&d, &["exec", "ca", "cat", "/etc/hosts"]);
    assert!(
        !hosts.split_whitespace().any(|w| w == "cb"),
        "cb is not in ca's /etc/hosts:\n{hosts}"
    );
    let script = "grep -q '^nameserver 127.0.0.11' /etc/resolv.conf || \
                  echo 'nameserver 127.0.0.1' > /etc/resolv.conf; \
                  timeout 5 wget -q -O- http://cb/";
    let out = docker(&d, &["exec", "ca", "sh", "-c", script]);
    assert_failure(&out, "wget http://cb/ by name on the default bridge");
    docker_ok(&d, &["rm", "-f", "ca", "cb"]);
}

#[test]
fn network_none_has_only_loopback() {
    let d = daemon_with_busybox();
    let out = docker_ok(
        &d,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "ls",
            "/sys/class/net",
        ],
    );
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["lo"]);
    let out = docker_ok(
        &d,
        &["run", "--rm", "--network", "none", "busybox", "ip", "-o", "link"],
    );
    assert_eq!(out.lines().count(), 1, "only lo: {out}");
    assert!(out.contains(": lo:"), "{out}");
    docker_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "nn",
            "--network",
            "none",
            "busybox",
            "sleep",
            "300",
        ],
    );
    assert_eq!(ip_of(&d, "nn"), "", "no address on --network none");
    assert!(bridge_ports(&d).is_empty(), "no veth: {:?}", bridge_ports(&d));
    docker_ok(&d, &["rm", "-f", "nn"]);
}

#[test]
fn network_host_sees_the_hosts_interfaces() {
    let d = daemon_with_busybox();
    let host: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(host.contains(&d.bridge), "the host has {}: {host:?}", d.bridge);
    let out = docker_ok(
        &d,
        &[
            "run",
            "--rm",
            "--network",
            "host",
            "busybox",
            "ls",
            "/sys/class/net",
        ],
    );
    let seen: Vec<&str> = out.split_whitespace().collect();
    // Other tests' veths (and their peers, `vp*` until moved into a container) and bridges come
    // and go; this daemon's bridge, lo and the physical interfaces stay.
    let others = |n: &str| {
        ["veth", "vp", "br-"].iter().any(|p| n.starts_with(p)) || (n.starts_with("bt") && n != d.bridge)
    };
    for name in host.iter().filter(|n| !others(n)) {
        assert!(
            seen.contains(&name.as_str()),
            "{name} visible with --network host: {seen:?}"
        );
    }
}

#[test]
fn removing_containers_leaves_no_veth_or_rules() {
    let d = daemon_with_busybox();
    run_web(&d, "pub", Some("18083:80"));
    docker_ok(&d, &["run", "-d", "--name", "plain", "busybox", "sleep", "300"]);
    let ips = [ip_of(&d, "pub"), ip_of(&d, "plain")];
    assert_eq!(bridge_ports(&d).len(), 2, "two veths: {:?}", bridge_ports(&d));
    assert!(
        !rules_with_ip(&ips[0]).is_empty(),
        "the published port has rules for {}",
        ips[0]
    );
    assert_eq!(http_get(18083).as_deref(), Ok("hello\n"));
    docker_ok(&d, &["rm", "-f", "pub", "plain"]);
    assert_eq!(
        bridge_ports(&d),
        Vec::<String>::new(),
        "veths left on {}",
        d.bridge
    );
    for ip in &ips {
        assert_eq!(
            rules_with_ip(ip),
            Vec::<String>::new(),
            "iptables rules left for {ip}"
        );
    }
    let refused = TcpStream::connect_timeout(&([127, 0, 0, 1], 18083).into(), Duration::from_secs(2));
    assert!(refused.is_err(), "port 18083 is closed after rm -f");
}

#[test]
fn stopped_container_releases_its_port_and_veth() {
    // Docker frees a container's endpoint when it stops, not only when it is removed.
    let d = daemon_with_busybox();
    run_web(&d, "web", Some("18084:80"));
    assert_eq!(http_get(18084).as_deref(), Ok("hello\n"));
    let ip = ip_of(&d, "web");
    docker_ok(&d, &["stop", "-t", "1", "web"]);
    assert_eq!(bridge_ports(&d), Vec::<String>::new(), "veth left after stop");
    assert_eq!(rules_with_ip(&ip), Vec::<String>::new(), "rules left after stop");
    let refused = TcpStream::connect_timeout(&([127, 0, 0, 1], 18084).into(), Duration::from_secs(2));
    assert!(refused.is_err(), "port 18084 is closed after stop");
    // And start publishes it again.
    docker_ok(&d, &["start", "web"]);
    assert_eq!(
        http_get(18084).as_deref(),
        Ok("hello\n"),
        "served again after start"
    );
    docker_ok(&d, &["rm", "-f", "web"]);
}

#[test]
fn published_port_survives_daemon_restart() {
    let mut d = daemon_with_busybox();
    run_web(&d, "web", Some("18082:80"));
    assert_eq!(http_get(18082).as_deref(), Ok("hello\n"));
    let ip = ip_of(&d, "web");
    d.kill9();
    d.spawn();
    let body = http_get(18082).unwrap_or_else(|e| {
        panic!(
            "GET :18082 after kill -9 and restart of berthd: {e}\nlog tail:\n{}",
            tail(&d.log(), 30)
        )
    });
    assert_eq!(body, "hello\n");
    assert_eq!(ip_of(&d, "web"), ip, "same address after the restart");
    let ports = docker_ok(&d, &["ps", "--format", "{{.Ports}}"]);
    assert!(
        ports.contains("0.0.0.0:18082->80/tcp"),
        "docker ps Ports: {ports:?}"
    );
    // The restarted daemon remembers which addresses are taken.
    docker_ok(&d, &["run", "-d", "--name", "other", "busybox", "sleep", "300"]);
    assert_ne!(ip_of(&d, "other"), ip, "a new container gets another address");
    // And a clean restart too.
    d.restart();
    assert_eq!(http_get(18082).as_deref(), Ok("hello\n"), "after a clean restart");
    docker_ok(&d, &["rm", "-f", "web", "other"]);
    wait_until("veths gone", 5, || bridge_ports(&d).is_empty());
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The berth CLI's own `-p`, `-P` and `port`, as docker's.
#[test]
fn berth_cli_publishes_ports_and_reports_them() {
    let d = daemon_with_busybox();
    let out = d.berth(&[
        "run",
        "-d",
        "--name",
        "pub",
        "-p",
        "127.0.0.1::80",
        "busybox",
        "sh",
        "-c",
        HTTPD,
    ]);
    assert_success(&out, "berth run -p 127.0.0.1::80");
    let out = d.berth(&["port", "pub", "80"]);
    assert_success(&out, "berth port pub 80");
    let addr = stdout(&out).trim().to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(http_get(port).unwrap(), "hello\n");

    let out = d.berth(&[
        "run", "-d", "--name", "all", "--expose", "80", "-P", "busybox", "sh", "-c", HTTPD,
    ]);
    assert_success(&out, "berth run -P");
    let out = d.berth(&["port", "all"]);
    let line = stdout(&out).trim().to_string();
    assert!(line.starts_with("80/tcp -> 0.0.0.0:"), "{line}");
    let port: u16 = line.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(http_get(port).unwrap(), "hello\n");
    let out = d.berth(&["port", "all", "81"]);
    assert_failure(&out, "port of an unpublished port");
    assert!(
        stderr(&out).contains("No public port '81/tcp' published for all"),
        "{}",
        stderr(&out)
    );
    let out = d.berth(&["run", "--rm", "-p", "1:2:3:4", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    for c in ["pub", "all"] {
        assert_success(&d.berth(&["rm", "-f", c]), "rm -f");
    }
}
