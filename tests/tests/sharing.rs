//! `--pid`, `--ipc` and `--uts`: the host's or another container's namespaces.

use std::time::{Duration, Instant};

use berth_tests::*;

fn host_ns(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .display()
        .to_string()
}

/// The host pid of a running container's init.
fn init_pid(d: &Daemon, name: &str) -> i64 {
    let (_, c) = d.api_json("GET", &format!("/v1.44/containers/{name}/json"), b"");
    c["State"]["Pid"].as_i64().unwrap()
}

fn wait_for_exec(d: &Daemon, name: &str, cmd: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut args = vec!["exec", name];
    args.extend_from_slice(cmd);
    while !d.docker(&args).status.success() {
        assert!(Instant::now() < deadline, "{cmd:?} never succeeded in {name}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn host_pid_and_uts_namespaces() {
    let d = Daemon::with_busybox();
    let out = d.docker(&[
        "run",
        "--rm",
        "--pid",
        "host",
        "--uts",
        "host",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "readlink /proc/self/ns/pid; readlink /proc/self/ns/uts; hostname; cat /proc/1/comm",
    ]);
    assert_success(&out, "run --pid host --uts host");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], host_ns("pid"), "{text}");
    assert_eq!(lines[1], host_ns("uts"), "{text}");
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(lines[2], hostname.trim(), "{text}");
    assert_eq!(
        lines[3],
        std::fs::read_to_string("/proc/1/comm").unwrap().trim(),
        "the host's pid 1"
    );
    // Without them: its own.
    let out = d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "readlink",
        "/proc/self/ns/pid",
    ]);
    assert_ne!(stdout(&out).trim(), host_ns("pid"));
    // A hostname with the host's uts namespace is refused, as by dockerd.
    let out = d.docker(&[
        "run",
        "--rm",
        "--uts",
        "host",
        "--hostname",
        "x",
        "busybox",
        "true",
    ]);
    assert_failure(&out, "--uts host --hostname");
    assert!(
        stderr(&out).contains("conflicting options: hostname and the UTS mode"),
        "{}",
        stderr(&out)
    );
    // Bad modes: Docker's messages, over the API.
    for (field, mode, message) in [
        ("PidMode", "bogus", "invalid PID mode: bogus"),
        ("IpcMode", "container:", "invalid IPC mode: container:"),
        ("UTSMode", "private", "invalid UTS mode: private"),
    ] {
        let body = format!(r#"{{"Image": "busybox", "HostConfig": {{"{field}": "{mode}"}}}}"#);
        let (status, answer) = d.api("POST", "/v1.44/containers/create", body.as_bytes());
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(&answer));
        assert!(
            String::from_utf8_lossy(&answer).contains(message),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
}

#[test]
fn joining_another_containers_pid_and_ipc_namespaces() {
    let d = Daemon::with_busybox();
    let out = d.berth(&[
        "run",
        "-d",
        "--name",
        "donor",
        "--ipc",
        "shareable",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo shared > /dev/shm/f; exec sleep 60",
    ]);
    assert_success(&out, "run the donor");
    wait_for_exec(&d, "donor", &["test", "-e", "/dev/shm/f"]);
    let pid = init_pid(&d, "donor");
    let donor_ns = |kind: &str| {
        std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
            .unwrap()
            .display()
            .to_string()
    };

    let out = d.docker(&[
        "run",
        "--rm",
        "--pid",
        "container:donor",
        "--ipc",
        "container:donor",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "readlink /proc/self/ns/pid; readlink /proc/self/ns/ipc; cat /dev/shm/f; ps -o comm | grep -c sleep",
    ]);
    assert_success(&out, "run joining the donor");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], donor_ns("pid"), "{text}");
    assert_eq!(lines[1], donor_ns("ipc"), "{text}");
    assert_eq!(lines[2], "shared", "the donor's /dev/shm: {text}");
    assert_eq!(lines[3], "1", "the donor's sleep is visible: {text}");

    let (_, c) = d.api_json("GET", "/v1.44/containers/donor/json", b"");
    assert_eq!(c["HostConfig"]["IpcMode"], "shareable");

    // A private donor cannot be joined for IPC; a stopped one for anything.
    assert_success(
        &d.docker(&[
            "run",
            "-d",
            "--name",
            "private",
            "--network",
            "none",
            "busybox",
            "sleep",
            "60",
        ]),
        "run",
    );
    let (_, c) = d.api_json("GET", "/v1.44/containers/private/json", b"");
    assert_eq!(c["HostConfig"]["IpcMode"], "private", "dockerd's default");
    let out = d.docker(&["run", "--rm", "--ipc", "container:private", "busybox", "true"]);
    assert_failure(&out, "joining a private IPC namespace");
    assert!(stderr(&out).contains("non-shareable IPC"), "{}", stderr(&out));
    assert_success(&d.docker(&["rm", "-f", "private"]), "rm");

    // --ipc none: no /dev/shm; --ipc host: the host's namespace and /dev/shm.
    let out = d.docker(&[
        "run",
        "--rm",
        "--ipc",
        "none",
        "busybox",
        "sh",
        "-c",
        "grep -c ' /dev/shm ' /proc/mounts",
    ]);
    assert_eq!(stdout(&out).trim(), "0", "{}", stderr(&out));
    let out = d.docker(&[
        "run",
        "--rm",
        "--ipc",
        "host",
        "busybox",
        "readlink",
        "/proc/self/ns/ipc",
    ]);
    assert_eq!(stdout(&out).trim(), host_ns("ipc"), "{}", stderr(&out));

    assert_success(&d.docker(&["stop", "-t", "0", "donor"]), "stop");
    let out = d.docker(&["run", "--rm", "--pid", "container:donor", "busybox", "true"]);
    assert_failure(&out, "joining a stopped container");
    assert!(
        stderr(&out).contains("cannot join PID of a non running container"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        mounts_under(&d.root()),
        0,
        "the donor's /dev/shm is unmounted when it stops"
    );
    // berthd makes a container's cgroup at the start of its start; a start that fails before
    // the shim takes it over removes it again (the donor's went with its shim).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.cgroups().is_empty() {
        assert!(
            Instant::now() < deadline,
            "cgroups left after a failed start: {:?}",
            d.cgroups()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_success(&d.docker(&["rm", "donor"]), "rm");
}
