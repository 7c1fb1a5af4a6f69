//! pause/unpause, top, update, stats and rename through the stock docker CLI and `berth`, against
//! a real berthd.

use berth_tests::{assert_failure, assert_success, stderr, stdout, Daemon};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run_detached(d: &Daemon, args: &[&str]) -> String {
    let mut all = vec!["run", "-d"];
    all.extend_from_slice(args);
    let out = d.docker(&all);
    assert_success(&out, "docker run -d");
    stdout(&out).trim().to_string()
}

fn inspect(d: &Daemon, name: &str, format: &str) -> String {
    let out = d.docker(&["inspect", "--format", format, name]);
    assert_success(&out, "docker inspect");
    stdout(&out).trim().to_string()
}

/// A file of the container's cgroup in the hierarchy of `controller` (v1), or the unified one.
fn cgroup_file(d: &Daemon, id: &str, controller: &str, v1: &str, v2: &str) -> PathBuf {
    let unified = PathBuf::from("/sys/fs/cgroup/cgroup.controllers").exists();
    if unified {
        PathBuf::from(format!("/sys/fs/cgroup/{}/{id}/{v2}", d.cgroup_parent()))
    } else {
        PathBuf::from(format!(
            "/sys/fs/cgroup/{controller}/{}/{id}/{v1}",
            d.cgroup_parent()
        ))
    }
}

fn read_trim(p: &PathBuf) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
        .trim()
        .to_string()
}

fn log_lines(d: &Daemon, name: &str) -> usize {
    let out = d.docker(&["logs", name]);
    assert_success(&out, "docker logs");
    stdout(&out).lines().count()
}

#[test]
fn pause_freezes_and_unpause_resumes() {
    let d = Daemon::with_busybox();
    let id = run_detached(
        &d,
        &[
            "--name",
            "web",
            "busybox",
            "sh",
            "-c",
            "i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done",
        ],
    );
    wait_until("output", || log_lines(&d, "web") > 2);

    let out = d.docker(&["pause", "web"]);
    assert_success(&out, "docker pause");
    assert_eq!(stdout(&out).trim(), "web");
    let ps = stdout(&d.docker(&["ps", "--format", "{{.Names}} {{.Status}}"]));
    assert!(ps.contains("web Up") && ps.contains("(Paused)"), "{ps}");
    assert_eq!(
        inspect(
            &d,
            "web",
            "{{.State.Status}} {{.State.Paused}} {{.State.Running}}"
        ),
        "paused true true"
    );
    let ps = stdout(&d.docker(&["ps", "--filter", "status=paused", "-q"]));
    assert_eq!(ps.trim(), &id[..12]);
    let frozen = log_lines(&d, "web");
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        log_lines(&d, "web"),
        frozen,
        "a paused container makes no progress"
    );

    // Pausing twice is a conflict, as in Docker.
    let out = d.docker(&["pause", "web"]);
    assert_failure(&out, "second pause");
    assert!(
        stderr(&out).contains(&format!("Container {id} is already paused")),
        "{}",
        stderr(&out)
    );
    let (status, body) = d.api_json("POST", "/containers/web/pause", b"");
    assert_eq!(status, 409, "{body}");

    let out = d.berth(&["unpause", "web"]);
    assert_success(&out, "berth unpause");
    wait_until("progress after unpause", || log_lines(&d, "web") > frozen + 2);
    assert_eq!(
        inspect(&d, "web", "{{.State.Status}} {{.State.Paused}}"),
        "running false"
    );
    let out = d.docker(&["unpause", "web"]);
    assert_failure(&out, "unpause of a running container");
    assert!(
        stderr(&out).contains(&format!("Container {id} is not paused")),
        "{}",
        stderr(&out)
    );

    // A paused container can still be stopped and removed.
    assert_success(&d.berth(&["pause", "web"]), "berth pause");
    let start = Instant::now();
    assert_success(
        &d.docker(&["stop", "-t", "1", "web"]),
        "docker stop of a paused container",
    );
    assert!(start.elapsed() < Duration::from_secs(15));
    assert_eq!(
        inspect(
            &d,
            "web",
            "{{.State.Status}} {{.State.Paused}} {{.State.Running}}"
        ),
        "exited false false"
    );
    let out = d.docker(&["pause", "web"]);
    assert_failure(&out, "pause of a stopped container");
    assert!(
        stderr(&out).contains(&format!("Container {id} is not running")),
        "{}",
        stderr(&out)
    );

    run_detached(&d, &["--name", "other", "busybox", "sleep", "1000"]);
    assert_success(&d.docker(&["pause", "other"]), "pause other");
    assert_success(&d.docker(&["rm", "-f", "other"]), "rm -f of a paused container");
    assert_success(&d.docker(&["rm", "web"]), "rm web");
    wait_until("cgroups removed", || d.cgroups().is_empty());
}

#[test]
fn top_lists_the_containers_processes() {
    let d = Daemon::with_busybox();
    run_detached(&d, &["--name", "web", "busybox", "sh", "-c", "sleep 1000"]);
    let out = d.docker(&["top", "web"]);
    assert_success(&out, "docker top");
    let text = stdout(&out);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    assert!(header.contains("PID") && header.contains("CMD"), "{text}");
    let rows: Vec<&str> = lines.collect();
    assert!(rows.iter().any(|l| l.contains("sleep 1000")), "{text}");
    assert!(
        !rows.iter().any(|l| l.contains("berthd")),
        "only the container's processes: {text}"
    );

    let out = d.berth(&["top", "web", "-o", "pid,args"]);
    assert_success(&out, "berth top -o");
    let text = stdout(&out);
    assert!(text.starts_with("PID"), "{text}");
    assert!(text.contains("sleep 1000"), "{text}");

    let (status, v) = d.api_json("GET", "/containers/web/top?ps_args=-ef", b"");
    assert_eq!(status, 200, "{v}");
    assert!(v["Titles"].as_array().unwrap().iter().any(|t| t == "PID"), "{v}");
    assert!(!v["Processes"].as_array().unwrap().is_empty(), "{v}");

    assert_success(&d.docker(&["kill", "web"]), "docker kill");
    wait_until("exit", || inspect(&d, "web", "{{.State.Running}}") == "false");
    let out = d.docker(&["top", "web"]);
    assert_failure(&out, "top of a stopped container");
    assert!(stderr(&out).contains("is not running"), "{}", stderr(&out));
}

#[test]
fn update_changes_limits_live() {
    let d = Daemon::with_busybox();
    let id = run_detached(
        &d,
        &["--name", "web", "--cpus", "0.5", "busybox", "sleep", "1000"],
    );

    let quota = cgroup_file(&d, &id, "cpu", "cpu.cfs_quota_us", "cpu.max");
    let first = read_trim(&quota);
    assert!(first.starts_with("50000"), "{first}");
    let out = d.docker(&["update", "--cpus", "1", "web"]);
    assert_success(&out, "docker update --cpus");
    assert_eq!(stdout(&out).trim(), "web");
    assert!(read_trim(&quota).starts_with("100000"), "{}", read_trim(&quota));
    assert_eq!(inspect(&d, "web", "{{.HostConfig.NanoCpus}}"), "1000000000");

    let out = d.docker(&["update", "--memory", "64m", "--memory-swap", "64m", "web"]);
    assert_success(&out, "docker update --memory");
    let limit = cgroup_file(&d, &id, "memory", "memory.limit_in_bytes", "memory.max");
    assert_eq!(read_trim(&limit), (64u64 << 20).to_string());
    assert_eq!(
        inspect(&d, "web", "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}}"),
        format!("{} {}", 64u64 << 20, 64u64 << 20)
    );

    let out = d.berth(&["update", "--pids-limit", "50", "--restart", "on-failure:3", "web"]);
    assert_success(&out, "berth update --pids-limit --restart");
    let pids = cgroup_file(&d, &id, "pids", "pids.max", "pids.max");
    assert_eq!(read_trim(&pids), "50");
    assert_eq!(
        inspect(
            &d,
            "web",
            "{{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}} {{.HostConfig.RestartPolicy.MaximumRetryCount}}"
        ),
        "50 on-failure 3"
    );

    let out = d.docker(&["update", "--memory", "1m", "web"]);
    assert_failure(&out, "memory below the minimum");
    assert!(stderr(&out).contains("Minimum memory limit"), "{}", stderr(&out));

    // A stopped container keeps the new settings for its next start.
    assert_success(&d.docker(&["kill", "web"]), "docker kill");
    wait_until("exit", || inspect(&d, "web", "{{.State.Running}}") == "false");
    assert_success(&d.docker(&["update", "--cpus", "0.25", "web"]), "update stopped");
    assert_success(&d.docker(&["start", "web"]), "docker start");
    assert!(read_trim(&quota).starts_with("25000"), "{}", read_trim(&quota));
    assert_eq!(read_trim(&limit), (64u64 << 20).to_string());
}

#[test]
fn stats_report_usage() {
    let d = Daemon::with_busybox();
    let id = run_detached(
        &d,
        &[
            "--name",
            "web",
            "--memory",
            "32m",
            "busybox",
            "sh",
            "-c",
            "sleep 1000 & sleep 1000",
        ],
    );
    let out = d.docker(&["stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "web"]);
    assert_success(&out, "docker stats --no-stream");
    let text = stdout(&out);
    let (name, pids) = text.trim().split_once(' ').unwrap_or(("", ""));
    assert_eq!(name, "web", "{text}");
    let pids: u64 = pids.parse().unwrap_or(0);
    assert!((2..=10).contains(&pids), "{text}");

    let out = d.docker(&["stats", "--no-stream"]);
    assert_success(&out, "docker stats table");
    let text = stdout(&out);
    assert!(text.starts_with("CONTAINER ID"), "{text}");
    assert!(text.contains(&id[..12]) && text.contains("/ 32MiB"), "{text}");

    let out = d.berth(&["stats", "--no-stream", "web"]);
    assert_success(&out, "berth stats --no-stream");
    let text = stdout(&out);
    let header = text.lines().next().unwrap_or("");
    for col in [
        "CONTAINER ID",
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "NET I/O",
        "BLOCK I/O",
        "PIDS",
    ] {
        assert!(header.contains(col), "{text}");
    }
    assert!(text.contains("/ 32MiB"), "{text}");

    let (status, v) = d.api_json("GET", "/containers/web/stats?stream=false&one-shot=true", b"");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["name"], "/web");
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["memory_stats"]["limit"], 32u64 << 20);
    assert!(v["memory_stats"]["usage"].as_u64().unwrap() > 0, "{v}");
    assert!(v["cpu_stats"]["system_cpu_usage"].as_u64().unwrap() > 0, "{v}");
    assert!(v["cpu_stats"]["online_cpus"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["pids_stats"]["current"].as_u64().unwrap() >= 2, "{v}");
    // The container's own interfaces (its veth, `eth0`), not the host's; no `lo`.
    let nets = v["networks"]
        .as_object()
        .unwrap_or_else(|| panic!("no networks: {v}"));
    assert_eq!(nets.keys().collect::<Vec<_>>(), ["eth0"], "{v}");
    assert!(nets["eth0"]["rx_bytes"].is_u64(), "{v}");

    // Streaming: one object a second until the container stops.
    let id2 = run_detached(&d, &["--name", "short", "busybox", "sleep", "3"]);
    let (status, body) = d.api("GET", "/containers/short/stats", b"");
    assert_eq!(status, 200);
    let objects: Vec<serde_json::Value> = String::from_utf8_lossy(&body)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(objects.len() >= 2, "{objects:?}");
    assert_eq!(objects[1]["id"], id2.as_str());
    assert_eq!(objects[1]["precpu_stats"], objects[0]["cpu_stats"]);

    // A stopped container: zeros.
    let (status, v) = d.api_json("GET", "/containers/short/stats?stream=false", b"");
    assert_eq!(status, 200);
    assert_eq!(v["cpu_stats"]["cpu_usage"]["total_usage"], 0);
    assert_eq!(v["read"], "0001-01-01T00:00:00Z");
}

#[test]
fn rename_changes_the_name() {
    let d = Daemon::with_busybox();
    let id = run_detached(&d, &["--name", "web", "busybox", "sleep", "1000"]);
    run_detached(&d, &["--name", "other", "busybox", "sleep", "1000"]);

    assert_success(&d.docker(&["rename", "web", "web2"]), "docker rename");
    assert_eq!(inspect(&d, "web2", "{{.Id}} {{.Name}}"), format!("{id} /web2"));
    assert_failure(&d.docker(&["inspect", "web"]), "old name is gone");
    let names = stdout(&d.docker(&["ps", "--format", "{{.Names}}"]));
    assert!(names.lines().any(|n| n == "web2"), "{names}");

    let out = d.docker(&["rename", "web2", "other"]);
    assert_failure(&out, "rename to a used name");
    assert!(
        stderr(&out).contains("The container name \"/other\" is already in use by container"),
        "{}",
        stderr(&out)
    );
    let (status, v) = d.api_json("POST", "/containers/web2/rename?name=other", b"");
    assert_eq!(status, 409, "{v}");
    let (status, _) = d.api_json("POST", "/containers/web2/rename?name=bad%2Fname", b"");
    assert_eq!(status, 400);

    // The old name is free again, and the new one survives a daemon restart.
    assert_success(&d.berth(&["rename", "web2", "web3"]), "berth rename");
    assert_success(&d.docker(&["pause", "web3"]), "pause");
    assert_success(&d.docker(&["unpause", "web3"]), "unpause");
    assert_success(&d.docker(&["update", "--cpu-shares", "512", "web3"]), "update");
    let until = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1)
    .to_string();
    let out = d.docker(&[
        "events",
        "--since",
        "0",
        "--until",
        &until,
        "--filter",
        &format!("container={id}"),
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.oldName}}",
    ]);
    let events: Vec<String> = stdout(&out)
        .lines()
        .filter(|l| !l.starts_with("create") && !l.starts_with("start"))
        .map(|l| l.trim_end_matches(" <no value>").trim().to_string())
        .collect();
    assert_eq!(
        events,
        [
            "rename web2 /web",
            "rename web3 /web2",
            "pause web3",
            "unpause web3",
            "update web3"
        ],
        "{}",
        stdout(&out)
    );
    run_detached(&d, &["--name", "web", "busybox", "true"]);
    let mut d = d;
    d.restart();
    assert_eq!(inspect(&d, "web3", "{{.Id}}"), id);
}

/// exec, attach and restart show in `docker events` as Docker names them.
#[test]
fn exec_attach_and_restart_events() {
    let d = Daemon::start();
    d.import_busybox();
    assert_success(
        &d.docker(&["run", "--name", "fg", "busybox", "true"]),
        "run (attached)",
    );
    assert_success(
        &d.docker(&["run", "-d", "--name", "ev", "busybox", "sleep", "60"]),
        "run -d",
    );
    let out = d.docker(&["exec", "ev", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert_success(&d.docker(&["restart", "-t", "0", "ev"]), "restart");
    let until = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1)
    .to_string();
    let out = d.docker(&[
        "events",
        "--since",
        "0",
        "--until",
        &until,
        "--filter",
        "type=container",
        "--format",
        "{{.Action}}|{{.Actor.Attributes.name}}|{{.Actor.Attributes.exitCode}}",
    ]);
    let text = stdout(&out);
    for line in [
        "attach|fg|<no value>",
        "exec_create: sh -c exit 3|ev|<no value>",
        "exec_start: sh -c exit 3|ev|<no value>",
        "exec_die|ev|3",
        "restart|ev|<no value>",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "event {line:?} missing from:\n{text}"
        );
    }
    assert_success(&d.docker(&["rm", "-f", "ev", "fg"]), "rm");
}

/// `ps -s`: the container's own bytes and, with its image, the virtual size.
#[test]
fn ps_size_counts_the_containers_own_files() {
    let d = Daemon::start();
    d.import_busybox();
    let out = d.docker(&[
        "run",
        "--name",
        "writer",
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/blob",
        "bs=1024",
        "count=100",
    ]);
    assert_success(&out, "write 100 KiB into the root");
    let (status, list) = d.api_json("GET", "/v1.44/containers/json?all=1&size=1", b"");
    assert_eq!(status, 200);
    let c = &list[0];
    let rw = c["SizeRw"].as_i64().unwrap();
    assert!((102400..102400 + 65536).contains(&rw), "{c}");
    assert!(
        c["SizeRootFs"].as_i64().unwrap() > rw + 500_000,
        "the image counts too: {c}"
    );
    let out = d.docker(&["ps", "-as", "--format", "{{.Size}}"]);
    assert!(stdout(&out).contains("kB (virtual "), "{}", stdout(&out));
    let (_, plain) = d.api_json("GET", "/v1.44/containers/json?all=1", b"");
    assert!(plain[0].get("SizeRw").is_none(), "sizes only when asked for");
}

#[test]
fn attach_with_logs_replays_the_output_so_far() {
    let d = Daemon::with_busybox();
    run_detached(
        &d,
        &[
            "--name",
            "talker",
            "busybox",
            "sh",
            "-c",
            "echo before; echo oops >&2; sleep 30",
        ],
    );
    wait_until("the output", || {
        log_lines(&d, "talker") >= 1 && stderr(&d.docker(&["logs", "talker"])).contains("oops")
    });
    // logs=1&stream=0: the log so far, multiplexed (stdout frame then stderr frame), then the end.
    let (status, body) = d.api(
        "POST",
        "/containers/talker/attach?logs=1&stream=0&stdout=1&stderr=1",
        b"",
    );
    assert_eq!(status, 200);
    let mut want = vec![1u8, 0, 0, 0, 0, 0, 0, 7];
    want.extend_from_slice(b"before\n");
    want.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 5]);
    want.extend_from_slice(b"oops\n");
    assert_eq!(body, want);
    // Only stdout asked for.
    let (_, body) = d.api("POST", "/containers/talker/attach?logs=1&stream=0&stdout=1", b"");
    assert_eq!(&body[8..], b"before\n");
    assert_success(&d.docker(&["rm", "-f", "talker"]), "rm");
}
