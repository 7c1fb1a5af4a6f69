//! `userns-remap`: containers whose root is an unprivileged host user (Docker's `dockremap`).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::*;

/// A daemon with `"userns-remap": "default"` (which makes the dockremap user and its ranges
/// when the host has none, as dockerd does) and the busybox image.
fn remapped_daemon() -> Daemon {
    let d = Daemon::start_with_config(r#"{"userns-remap": "default"}"#);
    // The container's root must be able to walk down to its bundle (as under /var/lib).
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    d.import_busybox();
    d
}

/// The first host id of dockremap's range in /etc/subuid.
fn dockremap_start() -> u32 {
    let subuid = std::fs::read_to_string("/etc/subuid").unwrap();
    subuid
        .lines()
        .find_map(|l| l.strip_prefix("dockremap:"))
        .and_then(|rest| rest.split(':').next())
        .expect("a dockremap range in /etc/subuid")
        .parse()
        .unwrap()
}

fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn remapped_containers_run_as_an_unprivileged_host_user() {
    let mut d = remapped_daemon();
    let start = dockremap_start();
    let out = d.docker(&["info", "--format", "{{json .SecurityOptions}}"]);
    assert!(stdout(&out).contains("name=userns"), "{}", stdout(&out));

    // Root inside, the range's first id outside; root may edit its /etc/hosts.
    let out = d.docker(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; echo '10.0.0.9 extra' >> /etc/hosts && echo hosts-ok",
    ]);
    assert_success(&out, "run in a user namespace");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "0", "{text}");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["0", &start.to_string(), "65536"],
        "{text}"
    );
    assert_eq!(lines[2], "hosts-ok", "{text}");

    // A running container: its processes are the remapped user on the host, its own layer keeps
    // the container's ids on disk, and a named volume gets the remapped ids.
    let out = d.docker(&[
        "run",
        "-d",
        "--name",
        "remapped",
        "-v",
        "vol:/data",
        "busybox",
        "sh",
        "-c",
        "echo made > /made; echo v > /data/v; sleep 60",
    ]);
    assert_success(&out, "run -d");
    let (_, c) = d.api_json("GET", "/v1.44/containers/remapped/json", b"");
    let id = c["Id"].as_str().unwrap().to_string();
    let pid = c["State"]["Pid"].as_i64().unwrap();
    assert_eq!(c["HostConfig"]["UsernsMode"], "");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uids.split_whitespace().skip(1).all(|u| u == start.to_string()),
        "{uids}"
    );
    let upper = d.root().join("containers").join(&id).join("upper/made");
    wait_for_file(&upper);
    let meta = std::fs::metadata(&upper).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0), "container ids on disk");
    let data = d.root().join("volumes/vol/_data");
    wait_for_file(&data.join("v"));
    assert_eq!(
        std::fs::metadata(&data).unwrap().uid(),
        start,
        "the volume is the remapped root's"
    );
    assert_eq!(std::fs::metadata(data.join("v")).unwrap().uid(), start);

    // exec joins the user namespace.
    let out = d.docker(&[
        "exec",
        "remapped",
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; stat -c %u /made",
    ]);
    assert_success(&out, "exec");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "0", "{text}");
    assert_eq!(
        lines[1].split_whitespace().nth(1),
        Some(start.to_string().as_str()),
        "{text}"
    );
    assert_eq!(lines[2], "0", "{text}");

    // Another remapped container sees the volume's file as root's; a fresh volume at /etc gets
    // the image's files as root's.
    let out = d.docker(&[
        "run",
        "--rm",
        "-v",
        "vol:/data",
        "busybox",
        "stat",
        "-c",
        "%u",
        "/data/v",
    ]);
    assert_eq!(stdout(&out).trim(), "0", "{}", stderr(&out));
    let out = d.docker(&[
        "run",
        "--rm",
        "-v",
        "etc:/etc",
        "busybox",
        "stat",
        "-c",
        "%u:%g",
        "/etc/passwd",
    ]);
    assert_eq!(stdout(&out).trim(), "0:0", "{}", stderr(&out));

    // commit keeps container ids, so the image runs the same outside a user namespace.
    assert_success(&d.docker(&["commit", "remapped", "remapped-img"]), "commit");
    let out = d.docker(&[
        "run",
        "--rm",
        "--userns=host",
        "remapped-img",
        "sh",
        "-c",
        "stat -c %u:%g /made; cat /proc/self/uid_map",
    ]);
    assert_success(&out, "run --userns=host");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "0:0", "{text}");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["0", "0", "4294967295"],
        "the host's user namespace: {text}"
    );

    // A berthd restart keeps the container running and usable.
    d.kill9();
    d.spawn();
    let out = d.docker(&["exec", "remapped", "cat", "/made"]);
    assert_eq!(stdout(&out), "made\n", "{}", stderr(&out));

    // cp out of a stopped container gives the container's ids.
    assert_success(&d.docker(&["stop", "-t", "0", "remapped"]), "stop");
    let out = d.docker(&["cp", "remapped:/made", "-"]);
    assert_success(&out, "cp out");
    let mut archive = tar::Archive::new(&out.stdout[..]);
    let entry = archive.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(
        (entry.header().uid().unwrap(), entry.header().gid().unwrap()),
        (0, 0)
    );

    assert_success(&d.docker(&["rm", "-f", "remapped"]), "rm");
    assert_eq!(mounts_under(&d.root()), 0, "no mounts left");
}

#[test]
fn user_namespaces_refuse_what_they_cannot_do() {
    let d = remapped_daemon();
    let out = d.docker(&["run", "--rm", "--privileged", "busybox", "true"]);
    assert_failure(&out, "--privileged in a user namespace");
    assert!(
        stderr(&out).contains(
            "privileged mode is incompatible with user namespaces.  You must run the container in the host namespace when running privileged mode"
        ),
        "{}",
        stderr(&out)
    );
    let out = d.docker(&["run", "--rm", "--network", "host", "busybox", "true"]);
    assert_failure(&out, "--network host in a user namespace");
    assert!(
        stderr(&out).contains("cannot share the host's network namespace when user namespaces are enabled"),
        "{}",
        stderr(&out)
    );
    let out = d.docker(&["run", "--rm", "--pid", "host", "busybox", "true"]);
    assert_failure(&out, "--pid host in a user namespace");
    assert!(
        stderr(&out).contains("cannot share the host PID namespace when user namespaces are enabled"),
        "{}",
        stderr(&out)
    );
    // Out of the user namespace, both are allowed.
    let out = d.docker(&[
        "run",
        "--rm",
        "--privileged",
        "--userns=host",
        "busybox",
        "id",
        "-u",
    ]);
    assert_eq!(stdout(&out), "0\n", "{}", stderr(&out));
    let out = d.berth(&[
        "run",
        "--rm",
        "--userns",
        "host",
        "--network",
        "host",
        "busybox",
        "cat",
        "/proc/self/uid_map",
    ]);
    assert_eq!(
        stdout(&out).split_whitespace().collect::<Vec<_>>(),
        ["0", "0", "4294967295"],
        "berth run --userns host: {}",
        stderr(&out)
    );
    let (status, body) = d.api(
        "POST",
        "/v1.44/containers/create",
        br#"{"Image": "busybox", "HostConfig": {"UsernsMode": "private"}}"#,
    );
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("invalid USER mode: private"));
}

#[test]
fn an_unknown_remap_user_stops_the_daemon_with_a_clear_error() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("daemon.json"), "{}").unwrap();
    let out = Command::new(bin("berthd"))
        .arg("--root")
        .arg(dir.path().join("root"))
        .arg("--exec-root")
        .arg(dir.path().join("run"))
        .arg("--host")
        .arg(format!("unix://{}", dir.path().join("s.sock").display()))
        .arg("--config-file")
        .arg(dir.path().join("daemon.json"))
        .args(["--userns-remap", "no-such-user-berth"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no user \"no-such-user-berth\" in /etc/passwd"),
        "{err}"
    );
}

/// A tar of one file with the given mode and owner.
fn owned_file_tar(name: &str, data: &[u8], mode: u32, (uid, gid): (u64, u64)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_cksum();
    b.append_data(&mut h, name, data).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn cp_into_and_out_of_a_running_remapped_container_uses_its_ids() {
    let d = remapped_daemon();
    let out = d.docker(&[
        "run",
        "-d",
        "--name",
        "cpu",
        "busybox",
        "sh",
        "-c",
        "adduser -D -u 1234 app; touch /ready; sleep 60",
    ]);
    assert_success(&out, "run -d");
    let ready = Instant::now() + Duration::from_secs(10);
    while !d
        .docker(&["exec", "cpu", "test", "-e", "/ready"])
        .status
        .success()
    {
        assert!(Instant::now() < ready, "the container never got ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    // In: a file owned by 1234 in the tar is 1234's inside, and the remapped 1234 outside.
    let tar = owned_file_tar("owned", b"abc", 0o640, (1234, 1234));
    let (status, body) = d.api("PUT", "/v1.44/containers/cpu/archive?path=/tmp", &tar);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let out = d.docker(&["exec", "cpu", "stat", "-c", "%u:%g %a", "/tmp/owned"]);
    assert_eq!(stdout(&out).trim(), "1234:1234 640", "{}", stderr(&out));
    // docker cp as the stock CLI does it (root's files become root's).
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("plain"), "p").unwrap();
    let out = d.docker(&["cp", src.path().join("plain").to_str().unwrap(), "cpu:/plain"]);
    assert_success(&out, "docker cp in");
    let out = d.docker(&["exec", "cpu", "stat", "-c", "%u", "/plain"]);
    assert_eq!(stdout(&out).trim(), "0", "{}", stderr(&out));
    // Out, while it runs: the container's ids again.
    let out = d.docker(&["cp", "cpu:/tmp/owned", "-"]);
    assert_success(&out, "cp out");
    let mut archive = tar::Archive::new(&out.stdout[..]);
    let entry = archive.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(
        (entry.header().uid().unwrap(), entry.header().gid().unwrap()),
        (1234, 1234)
    );
    // A tar owner outside the container's range is refused, nothing written.
    let tar = owned_file_tar("unmapped", b"x", 0o644, (70_000, 0));
    let (status, body) = d.api("PUT", "/v1.44/containers/cpu/archive?path=/tmp", &tar);
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(
        String::from_utf8_lossy(&body).contains("not mapped"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(!d
        .docker(&["exec", "cpu", "test", "-e", "/tmp/unmapped"])
        .status
        .success());
    assert_success(&d.docker(&["rm", "-f", "cpu"]), "rm");
}

#[test]
fn builds_run_their_steps_remapped_and_keep_the_containers_ids() {
    let d = remapped_daemon();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nRUN cat /proc/self/uid_map > /uidmap && echo data > /owned && chown 1000:1000 /owned\n",
    )
    .unwrap();
    let out = d.berth(&[
        "build",
        "-q",
        "-t",
        "remapped-build",
        ctx.path().to_str().unwrap(),
    ]);
    assert_success(&out, "build");
    let out = d.docker(&[
        "run",
        "--rm",
        "--userns=host",
        "remapped-build",
        "sh",
        "-c",
        "cat /uidmap; stat -c %u:%g /owned",
    ]);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().nth(1),
        Some(dockremap_start().to_string().as_str()),
        "the RUN step ran remapped: {text}"
    );
    assert_eq!(lines[1], "1000:1000", "the layer has the container's ids: {text}");
}
