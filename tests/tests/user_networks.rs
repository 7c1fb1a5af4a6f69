//! User-defined networks through the stock docker CLI against a real berthd: names and aliases by
//! the embedded DNS server, the default bridge without names, `--internal`, `--ip`, connect and
//! disconnect of a running container, overlapping subnets, prune, networks isolated from each other,
//! and `network rm` leaving no bridge, veth or rule behind.
//!
//! Every network gets an explicit subnet under 10.0.0.0/8 made from the daemon's own number, so
//! tests running side by side never pick the same one.

use berth_tests::{assert_failure, assert_success, stderr, stdout, Daemon};
use std::process::{Command, Output, Stdio};

const HTTPD: &str = "mkdir -p /www && echo hello > /www/index.html && httpd -f -p 80 -h /www";

/// The docker CLI against `d`, killed after 60 s so a hung daemon fails the test.
fn docker(d: &Daemon, args: &[&str]) -> Output {
    Command::new("timeout")
        .args(["-k", "5", "60", "docker"])
        .args(args)
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
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

/// A /24 for network `k` of this daemon: `10.(100+k).<daemon number>.0/24`.
fn subnet(d: &Daemon, k: u8) -> String {
    let n = d.bip.split('.').nth(2).unwrap();
    format!("10.{}.{n}.0/24", 100 + k)
}

fn create_network(d: &Daemon, name: &str, k: u8, extra: &[&str]) -> String {
    let sub = subnet(d, k);
    let mut args = vec!["network", "create", "--subnet", &sub];
    args.extend_from_slice(extra);
    args.push(name);
    docker_ok(d, &args).trim().to_string()
}

fn ip_on(d: &Daemon, container: &str, network: &str) -> String {
    let f = format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}");
    docker_ok(d, &["inspect", "-f", &f, container]).trim().to_string()
}

/// Runs `script` in a throwaway busybox container on `network`.
fn sh_on(d: &Daemon, network: &str, script: &str) -> Output {
    docker(
        d,
        &["run", "--rm", "--network", network, "busybox", "sh", "-c", script],
    )
}

fn iptables_rules() -> String {
    ["nat", "filter", "mangle"]
        .iter()
        .map(|t| {
            let o = Command::new("iptables")
                .args(["-w", "-t", t, "-S"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).into_owned()
        })
        .collect()
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn containers_on_a_user_network_reach_each_other_by_name_and_alias() {
    let d = Daemon::with_busybox();
    create_network(&d, "app", 1, &[]);
    docker_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "app",
            "--network-alias",
            "www",
            "busybox",
            "sh",
            "-c",
            HTTPD,
        ],
    );
    let web_ip = ip_on(&d, "web", "app");
    assert!(web_ip.starts_with("10.101."), "{web_ip}");

    let out = sh_on(
        &d,
        "app",
        "cat /etc/resolv.conf; timeout 5 wget -qO- http://web/; timeout 5 wget -qO- http://www/",
    );
    assert_success(&out, "wget by name and alias");
    let text = stdout(&out);
    assert!(text.contains("nameserver 127.0.0.11"), "{text}");
    assert!(text.ends_with("hello\nhello\n"), "{text}");

    let out = sh_on(&d, "app", "nslookup web 127.0.0.11; nslookup WWW.app 127.0.0.11");
    assert_success(&out, "nslookup");
    assert_eq!(stdout(&out).matches(&web_ip).count(), 2, "{}", stdout(&out));
    // Unknown names are not made up.
    let out = sh_on(&d, "app", "nslookup nosuchcontainer 127.0.0.11");
    assert!(!stdout(&out).contains("10.101."), "{}", stdout(&out));

    // The network lists the running container.
    let out = docker_ok(
        &d,
        &[
            "network",
            "inspect",
            "-f",
            "{{range .Containers}}{{.Name}} {{.IPv4Address}}{{end}}",
            "app",
        ],
    );
    assert_eq!(out.trim(), format!("web {web_ip}/24"));
    docker_ok(&d, &["rm", "-f", "web"]);
    // Gone from DNS with the container.
    let out = sh_on(&d, "app", "nslookup web 127.0.0.11");
    assert!(!stdout(&out).contains(&web_ip), "{}", stdout(&out));
}

#[test]
fn on_the_default_bridge_containers_reach_each_other_by_ip_but_not_by_name() {
    let d = Daemon::with_busybox();
    docker_ok(&d, &["run", "-d", "--name", "web", "busybox", "sh", "-c", HTTPD]);
    let ip = ip_on(&d, "web", "bridge");
    let out = docker(
        &d,
        &[
            "run",
            "--rm",
            "busybox",
            "timeout",
            "5",
            "wget",
            "-qO-",
            &format!("http://{ip}/"),
        ],
    );
    assert_success(&out, "wget by IP on the default bridge");
    assert_eq!(stdout(&out), "hello\n");
    let out = docker(
        &d,
        &[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "grep -c 127.0.0.11 /etc/resolv.conf; timeout 5 wget -qO- http://web/",
        ],
    );
    assert_failure(&out, "wget by name on the default bridge");
    assert!(
        stdout(&out).starts_with('0'),
        "no embedded DNS on the default bridge: {}",
        stdout(&out)
    );
}

#[test]
fn an_internal_network_has_no_way_out() {
    let d = Daemon::with_busybox();
    create_network(&d, "sealed", 1, &["--internal"]);
    create_network(&d, "open", 2, &[]);
    // The default bridge's gateway is another address of this host, outside both subnets.
    let outside = d.bip.split('/').next().unwrap().to_string();
    let probe = format!("ip route; ping -c 1 -W 2 {outside} && echo REACHED");
    let out = sh_on(&d, "sealed", &probe);
    let text = stdout(&out);
    assert!(
        !text.contains("default"),
        "no default route on an internal network: {text}"
    );
    assert!(!text.contains("REACHED"), "{text}{}", stderr(&out));
    let out = sh_on(&d, "open", &probe);
    let text = stdout(&out);
    assert!(text.contains("default via 10.102."), "{text}");
    assert!(text.contains("REACHED"), "{text}{}", stderr(&out));
    // Names still resolve inside the internal network.
    docker_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "db",
            "--network",
            "sealed",
            "busybox",
            "sleep",
            "60",
        ],
    );
    let out = sh_on(&d, "sealed", "ping -c 1 -W 2 db && echo PONG");
    assert!(stdout(&out).contains("PONG"), "{}{}", stdout(&out), stderr(&out));
    docker_ok(&d, &["rm", "-f", "db"]);
}

#[test]
fn network_rm_leaves_nothing_behind_and_refuses_while_in_use() {
    let d = Daemon::with_busybox();
    let bridge = format!("bt{}n", std::process::id() % 100000);
    let opt = format!("com.docker.network.bridge.name={bridge}");
    let id = create_network(&d, "temp", 1, &["-o", &opt, "--label", "purpose=test"]);
    assert_eq!(id.len(), 64, "{id}");
    assert!(link_exists(&bridge));
    assert!(iptables_rules().contains(&format!("berth-{bridge}:")));
    docker_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "user",
            "--network",
            "temp",
            "busybox",
            "sleep",
            "60",
        ],
    );
    let out = docker(&d, &["network", "rm", "temp"]);
    assert_failure(&out, "network rm while a container runs on it");
    assert!(stderr(&out).contains("has active endpoints"), "{}", stderr(&out));
    let (status, _) = d.api_json("DELETE", &format!("/v1.44/networks/{}", &id[..12]), b"");
    assert_eq!(status, 409);

    docker_ok(&d, &["rm", "-f", "user"]);
    docker_ok(&d, &["network", "rm", "temp"]);
    assert!(!link_exists(&bridge), "the bridge is gone");
    assert!(
        !iptables_rules().contains(&format!("berth-{bridge}:")),
        "its rules are gone"
    );
    let veths = Command::new("ip")
        .args(["-o", "link", "show", "master", &bridge])
        .output()
        .unwrap();
    assert_eq!(stdout(&veths), "");
    assert!(d.user_bridges().is_empty());
    let out = docker(&d, &["network", "inspect", "temp"]);
    assert_failure(&out, "inspect of a removed network");
    // Predefined networks stay.
    let out = docker(&d, &["network", "rm", "bridge"]);
    assert_failure(&out, "rm of the default bridge");
    assert!(stderr(&out).contains("pre-defined network"), "{}", stderr(&out));
}

#[test]
fn bad_network_input_is_refused() {
    let d = Daemon::with_busybox();
    create_network(&d, "first", 1, &[]);
    // An overlapping subnet: 409 with Docker's message, and no bridge made.
    let sub = subnet(&d, 1).replace(".0/24", ".128/25");
    let out = docker(&d, &["network", "create", "--subnet", &sub, "second"]);
    assert_failure(&out, "an overlapping subnet");
    assert!(
        stderr(&out).contains("Pool overlaps with other one on this address space"),
        "{}",
        stderr(&out)
    );
    let body = format!(r#"{{"Name": "second", "IPAM": {{"Config": [{{"Subnet": "{sub}"}}]}}}}"#);
    let (status, _) = d.api_json("POST", "/v1.44/networks/create", body.as_bytes());
    assert_eq!(status, 409);
    // A name in use.
    let sub3 = subnet(&d, 3);
    let out = docker(&d, &["network", "create", "--subnet", &sub3, "first"]);
    assert!(
        stderr(&out).contains("network with name first already exists"),
        "{}",
        stderr(&out)
    );
    // Garbage.
    let out = docker(&d, &["network", "create", "--subnet", "10.1.2.3/99", "third"]);
    assert_failure(&out, "a bad subnet");
    let (status, _) = d.api_json("POST", "/v1.44/networks/create", br#"{"Name": "host"}"#);
    assert_eq!(status, 403);
    assert_eq!(d.user_bridges().len(), 1, "only the first network exists");
    // A container on a network that does not exist (raw API: the CLI pulls on any 404).
    let (status, v) = d.api_json(
        "POST",
        "/v1.44/containers/create",
        br#"{"Image": "busybox", "HostConfig": {"NetworkMode": "nosuchnet"}}"#,
    );
    assert_eq!(status, 404);
    assert_eq!(v["message"], "network nosuchnet not found");
}

#[test]
fn connect_and_disconnect_a_running_container() {
    let d = Daemon::with_busybox();
    create_network(&d, "back", 1, &[]);
    docker_ok(&d, &["run", "-d", "--name", "svc", "busybox", "sh", "-c", HTTPD]);
    docker_ok(&d, &["network", "connect", "--alias", "api", "back", "svc"]);
    let nets = docker_ok(
        &d,
        &[
            "inspect",
            "-f",
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
            "svc",
        ],
    );
    assert_eq!(nets.trim(), "back bridge");
    let back_ip = ip_on(&d, "svc", "back");
    let out = sh_on(
        &d,
        "back",
        "timeout 5 wget -qO- http://api/ && timeout 5 wget -qO- http://svc/",
    );
    assert_success(&out, "reach the connected container by alias and name");
    assert_eq!(stdout(&out), "hello\nhello\n");
    let out = docker_ok(&d, &["exec", "svc", "ip", "-o", "-4", "addr", "show", "eth1"]);
    assert!(out.contains(&back_ip), "{out}");

    docker_ok(&d, &["network", "disconnect", "back", "svc"]);
    let nets = docker_ok(
        &d,
        &[
            "inspect",
            "-f",
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
            "svc",
        ],
    );
    assert_eq!(nets.trim(), "bridge");
    let out = sh_on(&d, "back", "nslookup api 127.0.0.11");
    assert!(!stdout(&out).contains(&back_ip), "{}", stdout(&out));
    let out = docker(&d, &["network", "disconnect", "back", "svc"]);
    assert_failure(&out, "disconnect twice");
}

#[test]
fn a_fixed_address_with_ip_and_dns_after_a_daemon_restart() {
    let mut d = Daemon::with_busybox();
    create_network(&d, "fixed", 1, &[]);
    let want = subnet(&d, 1).replace(".0/24", ".77");
    docker_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "pinned",
            "--network",
            "fixed",
            "--ip",
            &want,
            "busybox",
            "sh",
            "-c",
            HTTPD,
        ],
    );
    assert_eq!(ip_on(&d, "pinned", "fixed"), want);
    // The same address twice is refused.
    let out = docker(
        &d,
        &[
            "run",
            "--rm",
            "--network",
            "fixed",
            "--ip",
            &want,
            "busybox",
            "true",
        ],
    );
    assert_failure(&out, "an address in use");
    // --ip needs a network with a user-given subnet.
    let out = docker(&d, &["run", "--rm", "--ip", "172.29.250.9", "busybox", "true"]);
    assert_failure(&out, "--ip on the default bridge");

    d.restart();
    let out = sh_on(&d, "fixed", "timeout 5 wget -qO- http://pinned/");
    assert_success(&out, "name after restart");
    assert_eq!(stdout(&out), "hello\n");
    docker_ok(&d, &["rm", "-f", "pinned"]);
    let out = docker_ok(&d, &["network", "prune", "-f"]);
    assert!(out.contains("fixed"), "{out}");
    assert!(d.user_bridges().is_empty());
    let ls = docker_ok(&d, &["network", "ls", "--format", "{{.Name}}"]);
    let mut names: Vec<&str> = ls.lines().collect();
    names.sort();
    assert_eq!(names, ["bridge", "host", "none"]);
}

#[test]
fn network_container_mode_shares_the_other_containers_network() {
    let d = Daemon::with_busybox();
    docker_ok(&d, &["run", "-d", "--name", "base", "busybox", "sh", "-c", HTTPD]);
    let ip = ip_on(&d, "base", "bridge");
    let out = docker(
        &d,
        &[
            "run",
            "--rm",
            "--network",
            "container:base",
            "busybox",
            "sh",
            "-c",
            "timeout 5 wget -qO- http://127.0.0.1/; ip -o -4 addr show eth0",
        ],
    );
    assert_success(&out, "run in base's network namespace");
    let text = stdout(&out);
    assert!(text.starts_with("hello\n"), "{text}");
    assert!(text.contains(&format!("inet {ip}/")), "{text}");
    let (status, v) = d.api_json(
        "POST",
        "/v1.44/containers/create",
        br#"{"Image": "busybox", "HostConfig": {"NetworkMode": "container:nosuch"}}"#,
    );
    assert_eq!(status, 404, "{v}");
    docker_ok(&d, &["stop", "-t", "0", "base"]);
    let out = docker(
        &d,
        &["run", "--rm", "--network", "container:base", "busybox", "true"],
    );
    assert_failure(&out, "joining a stopped container's network");
    assert!(stderr(&out).contains("non running container"), "{}", stderr(&out));
}

#[test]
fn mac_address_is_the_one_asked_for() {
    let d = Daemon::with_busybox();
    create_network(&d, "macnet", 1, &[]);
    for network in ["bridge", "macnet"] {
        let out = docker(
            &d,
            &[
                "run",
                "--rm",
                "--network",
                network,
                "--mac-address",
                "02:42:0a:0b:0c:0d",
                "busybox",
                "cat",
                "/sys/class/net/eth0/address",
            ],
        );
        assert_success(&out, "run --mac-address");
        assert_eq!(stdout(&out), "02:42:0a:0b:0c:0d\n", "on {network}");
    }
    let out = d.berth(&[
        "run",
        "-d",
        "--name",
        "mac",
        "--mac-address",
        "02:42:0a:0b:0c:0e",
        "busybox",
        "sleep",
        "60",
    ]);
    assert_success(&out, "berth run --mac-address");
    let f = "{{.NetworkSettings.MacAddress}}";
    assert_eq!(
        docker_ok(&d, &["inspect", "-f", f, "mac"]).trim(),
        "02:42:0a:0b:0c:0e"
    );
    let (status, v) = d.api_json(
        "POST",
        "/v1.44/containers/create",
        br#"{"Image": "busybox", "MacAddress": "02:42:zz:00:00:01"}"#,
    );
    assert_eq!(status, 400, "{v}");
    docker_ok(&d, &["rm", "-f", "mac"]);
}

#[test]
fn networks_are_isolated_from_each_other_but_published_ports_are_not() {
    let mut d = Daemon::with_busybox();
    let front = create_network(&d, "front", 1, &[]);
    create_network(&d, "back", 2, &[]);
    docker_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "db",
            "--network",
            "back",
            "-p",
            "80",
            "busybox",
            "sh",
            "-c",
            HTTPD,
        ],
    );
    let db = ip_on(&d, "db", "back");
    let port = docker_ok(&d, &["port", "db", "80/tcp"]);
    let port = port
        .lines()
        .next()
        .and_then(|l| l.rsplit(':').next())
        .unwrap()
        .trim()
        .to_string();
    // `; echo`: sh stays pid 1, so the TERM from `timeout` reaches a wget stuck in connect.
    let by_ip = format!("timeout 5 wget -qO- http://{db}/; echo rc=$?");
    let front_gateway = subnet(&d, 1).replace(".0/24", ".1");
    let by_port = format!("timeout 5 wget -qO- http://{front_gateway}:{port}/; echo rc=$?");

    let isolated = |d: &Daemon| {
        let out = sh_on(d, "back", &by_ip);
        assert_success(&out, "wget by IP on the same network");
        assert_eq!(stdout(&out), "hello\nrc=0\n");
        for other in ["front", "bridge"] {
            let out = sh_on(d, other, &by_ip);
            assert_success(&out, &format!("sh on the {other} network"));
            let got = stdout(&out);
            assert!(
                got.starts_with("rc=") && got != "rc=0\n",
                "wget by IP from the {other} network into back must fail: {got:?}"
            );
        }
        let out = sh_on(d, "front", &by_port);
        assert_success(&out, "wget of the published port from the front network");
        assert_eq!(stdout(&out), "hello\nrc=0\n");
    };
    isolated(&d);
    d.restart();
    isolated(&d);

    docker_ok(&d, &["network", "rm", "front"]);
    let gone = format!("br-{}", &front[..12]);
    let rules = iptables_rules();
    assert!(
        !rules.lines().any(|l| l.contains(&gone)),
        "no rule names the removed network's bridge:\n{rules}"
    );
    docker_ok(&d, &["rm", "-f", "db"]);
}
