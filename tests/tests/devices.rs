//! `--device` and `--device-cgroup-rule`.

use berth_tests::*;

#[test]
fn host_devices_and_cgroup_rules() {
    let d = Daemon::with_busybox();
    // /dev/net/tun: opening it needs no capability, so only the device rules decide.
    let probe = "ls -l /dev/net/tun | cut -c1; cat /dev/net/tun";
    let out = d.docker(&[
        "run",
        "--rm",
        "--device",
        "/dev/net/tun",
        "busybox",
        "sh",
        "-c",
        probe,
    ]);
    assert_eq!(stdout(&out), "c\n", "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
    // Without it, a node made in the container cannot be opened (Docker's default rules).
    let made = "mknod /tmp/tun c 10 200 && cat /tmp/tun";
    let out = d.docker(&["run", "--rm", "busybox", "sh", "-c", made]);
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
    // A rule lets it through.
    let out = d.docker(&[
        "run",
        "--rm",
        "--device-cgroup-rule",
        "c 10:200 rwm",
        "busybox",
        "sh",
        "-c",
        made,
    ]);
    assert!(
        !stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );

    // Another path inside, and read-only permissions: open for reading passes, for writing not.
    let out = d.berth(&[
        "run",
        "--rm",
        "--device",
        "/dev/net/tun:/dev/mytun:r",
        "busybox",
        "sh",
        "-c",
        "cat /dev/mytun 2>&1 | grep -c 'not permitted'; echo x > /dev/mytun",
    ]);
    assert_eq!(stdout(&out).trim(), "0", "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "writing is not allowed: {}",
        stderr(&out)
    );

    // Bad input: dockerd's messages, and no container is left behind.
    let out = d.docker(&["run", "--rm", "--device", "/dev/berth-nope", "busybox", "true"]);
    assert_failure(&out, "a missing device");
    assert!(
        stderr(&out).contains(
            "error gathering device information while adding custom device \"/dev/berth-nope\": no such file or directory"
        ),
        "{}",
        stderr(&out)
    );
    let out = d.docker(&[
        "run",
        "--rm",
        "--device-cgroup-rule",
        "c 10 rw",
        "busybox",
        "true",
    ]);
    assert_failure(&out, "a bad rule");
    let out = d.docker(&["ps", "-aq"]);
    assert_eq!(stdout(&out), "", "nothing created");
}

#[test]
fn privileged_containers_get_the_hosts_devices() {
    let d = Daemon::with_busybox();
    let present: Vec<&str> = ["/dev/net/tun", "/dev/fuse", "/dev/loop-control", "/dev/kmsg"]
        .into_iter()
        .filter(|p| std::path::Path::new(p).exists())
        .collect();
    assert!(!present.is_empty(), "the host has none of the probed devices");
    let script: String = present
        .iter()
        .map(|p| format!("test -c {p} && echo {p}; "))
        .collect();
    let out = d.docker(&["run", "--rm", "--privileged", "busybox", "sh", "-c", &script]);
    assert_eq!(
        stdout(&out).lines().collect::<Vec<_>>(),
        present,
        "{}",
        stderr(&out)
    );
    // Its own terminal and /dev/ptmx, not the host's.
    let out = d.docker(&["run", "--rm", "--privileged", "busybox", "readlink", "/dev/ptmx"]);
    assert_eq!(stdout(&out).trim(), "pts/ptmx", "{}", stderr(&out));
    let out = d.docker(&["run", "--rm", "busybox", "sh", "-c", &script]);
    assert_eq!(stdout(&out), "", "not without --privileged: {}", stderr(&out));
}
