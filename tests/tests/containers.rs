//! Containers through the stock docker CLI and `berth`, against a real berthd: running, output,
//! exit codes, lifecycle, isolation, limits, and survival across a daemon restart.

use berth_tests::{assert_failure, assert_success, stderr, stdout, Daemon};
use std::time::{Duration, Instant};

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn docker_run_rm_prints_and_leaves_nothing() {
    let d = Daemon::with_busybox();
    let out = d.docker(&["run", "--rm", "busybox", "echo", "hi"]);
    assert_success(&out, "docker run --rm");
    assert_eq!(stdout(&out), "hi\n");
    assert_eq!(
        stdout(&d.docker(&["ps", "-aq"])).trim(),
        "",
        "--rm removed the container"
    );
    let out = d.berth(&["run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2"]);
    assert_success(&out, "berth run --rm");
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(stderr(&out), "err\n");
    assert_eq!(std::fs::read_dir(d.root().join("containers")).unwrap().count(), 0);
}

#[test]
fn exit_codes_are_the_containers() {
    let d = Daemon::with_busybox();
    for cli in ["docker", "berth"] {
        let run = |args: &[&str]| {
            if cli == "docker" {
                d.docker(args)
            } else {
                d.berth(args)
            }
        };
        let out = run(&["run", "--rm", "busybox", "sh", "-c", "exit 3"]);
        assert_eq!(out.status.code(), Some(3), "{cli}: exit 3");
        let out = run(&["run", "--rm", "busybox", "nosuchcommand"]);
        assert_eq!(
            out.status.code(),
            Some(127),
            "{cli}: missing command: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("executable file not found"),
            "{cli}: {}",
            stderr(&out)
        );
        let out = run(&["run", "--rm", "nosuchimage"]);
        assert_failure(&out, "unknown image");
    }
}

#[test]
fn detached_container_lifecycle() {
    let d = Daemon::with_busybox();
    let out = d.docker(&[
        "run",
        "-d",
        "--name",
        "web",
        "busybox",
        "sh",
        "-c",
        "echo started; while true; do sleep 1; done",
    ]);
    assert_success(&out, "run -d");
    let id = stdout(&out).trim().to_string();
    assert_eq!(id.len(), 64, "run -d prints the ID: {id}");
    let out = d.docker(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(stdout(&out).starts_with("web Up"), "{}", stdout(&out));
    wait_until("log line", || stdout(&d.docker(&["logs", "web"])) == "started\n");
    let out = d.berth(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{.State.Running}} {{.Name}}",
        "web",
    ]);
    assert_eq!(stdout(&out).trim(), "running true /web");
    // A second container cannot take the name.
    let out = d.docker(&["run", "-d", "--name", "web", "busybox", "true"]);
    assert_failure(&out, "duplicate name");
    assert!(stderr(&out).contains("is already in use"), "{}", stderr(&out));
    // rm of a running container needs -f.
    let out = d.docker(&["rm", "web"]);
    assert_failure(&out, "rm of a running container");
    let t = Instant::now();
    assert_success(&d.docker(&["stop", "-t", "2", "web"]), "stop");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "stop took {:?}",
        t.elapsed()
    );
    let out = d.berth(&["ps", "-a", "--format", "{{.Names}} {{.State}}"]);
    assert_eq!(stdout(&out).trim(), "web exited");
    let code = stdout(&d.docker(&["inspect", "--format", "{{.State.ExitCode}}", "web"]))
        .trim()
        .to_string();
    assert!(code == "137" || code == "143", "stopped by a signal: {code}");
    assert_success(&d.docker(&["start", "web"]), "start again");
    assert!(stdout(&d.berth(&["ps", "-q"])).trim().len() == 12);
    assert_success(&d.docker(&["rm", "-f", "web"]), "rm -f");
    assert_eq!(stdout(&d.docker(&["ps", "-aq"])).trim(), "");
    assert_eq!(berth_tests::mounts_under(d.dir.path()), 0, "no mounts left");
}

#[test]
fn isolation_and_security_defaults() {
    let d = Daemon::with_busybox();
    let run = |cmd: &str| {
        let out = d.berth(&["run", "--rm", "--hostname", "boxy", "busybox", "sh", "-c", cmd]);
        assert_success(&out, cmd);
        stdout(&out)
    };
    assert_eq!(
        run("cat /proc/1/cmdline | tr '\\0' ' '").trim(),
        "sh -c cat /proc/1/cmdline | tr '\\0' ' '"
    );
    let pids = run("ls /proc | grep -c '^[0-9]'");
    assert!(
        pids.trim().parse::<u32>().unwrap() <= 4,
        "host processes are invisible: {pids}"
    );
    assert_eq!(run("hostname").trim(), "boxy");
    // Its mounts are its own: none of the host's paths, the root is its overlay.
    let mounts = run("cat /proc/self/mountinfo");
    let points: Vec<&str> = mounts.lines().filter_map(|l| l.split(' ').nth(4)).collect();
    let root = d.root().display().to_string();
    assert!(
        points
            .iter()
            .all(|p| !p.starts_with("/work") && !p.starts_with(&root) && !p.starts_with("/tmp/berth")),
        "host mount points visible: {points:?}"
    );
    assert!(
        mounts
            .lines()
            .any(|l| l.split(' ').nth(4) == Some("/") && l.contains(" - overlay ")),
        "{mounts}"
    );
    let status = run("cat /proc/self/status");
    assert!(status.contains("Seccomp:\t2"), "{status}");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert!(status.contains("CapEff:\t00000000a80425fb"), "{status}");
    // A write to / stays in the container's own layer.
    let out = d.berth(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo x > /newfile && cat /newfile",
    ]);
    assert_eq!(stdout(&out).trim(), "x");
    let leaked = std::fs::read_dir(d.root().join("layers"))
        .unwrap()
        .any(|l| l.unwrap().path().join("fs/newfile").exists());
    assert!(!leaked, "a container write reached an image layer");
    let out = d.berth(&["run", "--rm", "--read-only", "busybox", "touch", "/x"]);
    assert_failure(&out, "write to a read-only root");
    assert!(stderr(&out).contains("Read-only file system"), "{}", stderr(&out));
    let out = d.berth(&["run", "--rm", "--user", "65534", "busybox", "id", "-u"]);
    assert_eq!(stdout(&out).trim(), "65534");
    let out = d.berth(&["run", "--rm", "--user", "nobody", "busybox", "id", "-un"]);
    assert_eq!(stdout(&out).trim(), "nobody");
    let out = d.berth(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "grep",
        "Seccomp:",
        "/proc/self/status",
    ]);
    assert_eq!(
        stdout(&out).split_whitespace().last(),
        Some("0"),
        "privileged runs unconfined"
    );
    let out = d.berth(&[
        "run",
        "--rm",
        "--cap-drop",
        "ALL",
        "busybox",
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    assert!(stdout(&out).contains("0000000000000000"), "{}", stdout(&out));
    let out = d.berth(&[
        "run",
        "--rm",
        "-e",
        "A=1",
        "-w",
        "/tmp",
        "busybox",
        "sh",
        "-c",
        "echo $A $(pwd) $HOSTNAME",
    ]);
    assert_eq!(
        stdout(&out).split_whitespace().take(2).collect::<Vec<_>>(),
        ["1", "/tmp"]
    );
}

#[test]
fn memory_and_pids_limits() {
    let d = Daemon::with_busybox();
    let out = d.berth(&[
        "run",
        "--name",
        "hog",
        "--memory",
        "32m",
        "--memory-swap",
        "32m",
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=64M",
        "count=1",
    ]);
    assert_eq!(
        out.status.code(),
        Some(137),
        "OOM kill exits 137: {}",
        stderr(&out)
    );
    let out = d.docker(&[
        "inspect",
        "--format",
        "{{.State.OOMKilled}} {{.State.ExitCode}}",
        "hog",
    ]);
    assert_eq!(stdout(&out).trim(), "true 137");
    let out = d.berth(&[
        "run",
        "--rm",
        "--pids-limit",
        "10",
        "busybox",
        "sh",
        "-c",
        "for i in $(seq 30); do sleep 5 & done 2>&1; echo done",
    ]);
    assert!(
        !stdout(&out).contains("done"),
        "the shell died on a failed fork: {}",
        stdout(&out)
    );
    let fork_failures =
        stdout(&out).matches("can't fork").count() + stderr(&out).matches("can't fork").count();
    assert!(
        fork_failures > 0,
        "the pids limit stopped some forks: {} {}",
        stdout(&out),
        stderr(&out)
    );
    let out = d.berth(&[
        "run", "-d", "--name", "cpu", "--cpus", "0.5", "busybox", "sleep", "30",
    ]);
    assert_success(&out, "run --cpus");
    let id = stdout(&out).trim().to_string();
    let parent = d.cgroup_parent();
    let quota = std::fs::read_to_string(format!("/sys/fs/cgroup/cpu/{parent}/{id}/cpu.cfs_quota_us"))
        .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup/{parent}/{id}/cpu.max")))
        .expect("the container's cpu cgroup");
    assert!(
        quota.trim() == "50000" || quota.starts_with("50000 100000"),
        "quota {quota}"
    );
    assert_success(&d.berth(&["rm", "-f", "cpu"]), "rm");
    assert!(d.cgroups().is_empty(), "cgroups removed: {:?}", d.cgroups());
}

#[test]
fn containers_survive_a_daemon_crash() {
    let mut d = Daemon::with_busybox();
    let mut ids = Vec::new();
    for i in 0..3 {
        let name = format!("c{i}");
        let out = d.berth(&[
            "run",
            "-d",
            "--name",
            &name,
            "busybox",
            "sh",
            "-c",
            "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done",
        ]);
        assert_success(&out, "run -d");
        ids.push(stdout(&out).trim().to_string());
    }
    d.kill9();
    std::thread::sleep(Duration::from_millis(500));
    d.spawn();
    let out = d.berth(&["ps", "--format", "{{.Names}} {{.State}}"]);
    let text = stdout(&out);
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    assert_eq!(lines, ["c0 running", "c1 running", "c2 running"], "{text}");
    let before = stdout(&d.berth(&["logs", "c0"])).lines().count();
    wait_until("logs continue", || {
        stdout(&d.berth(&["logs", "c0"])).lines().count() > before + 2
    });
    let out = d.docker(&["exec", "c2", "echo", "exec-after-restart"]);
    assert_eq!(
        stdout(&out).trim(),
        "exec-after-restart",
        "exec after restart: {}",
        stderr(&out)
    );
    assert_success(&d.berth(&["stop", "-t", "1", "c1"]), "stop after restart");
    assert_eq!(
        stdout(&d.berth(&["inspect", "--format", "{{.State.Running}}", "c1"])).trim(),
        "false"
    );
    assert_success(&d.berth(&["rm", "-f", "c0", "c1", "c2"]), "rm -f");
    assert_eq!(berth_tests::mounts_under(d.dir.path()), 0);
}

#[test]
fn many_run_rm_leave_no_leaks() {
    let d = Daemon::with_busybox();
    for i in 0..200 {
        let out = d.berth(&["run", "--rm", "busybox", "true"]);
        assert_success(&out, &format!("run {i}"));
    }
    assert_eq!(berth_tests::mounts_under(d.dir.path()), 0, "mounts left");
    assert_eq!(
        std::fs::read_dir(d.root().join("containers")).unwrap().count(),
        0,
        "container dirs left"
    );
    assert!(d.cgroups().is_empty(), "cgroups left: {:?}", d.cgroups());
    std::thread::sleep(Duration::from_millis(200));
    let ps = std::process::Command::new("ps")
        .args(["-eo", "ppid=,stat=,comm="])
        .output()
        .unwrap();
    let zombies: Vec<String> = stdout(&ps)
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 2 && f[0] == d.pid().to_string() && f[1].starts_with('Z')
        })
        .map(String::from)
        .collect();
    assert!(zombies.is_empty(), "zombies left under berthd: {zombies:?}");
    let shims = std::process::Command::new("pgrep")
        .args(["-f", &format!("berth-shim run.*{}", d.dir.path().display())])
        .output()
        .unwrap();
    assert_eq!(stdout(&shims).trim(), "", "shims left");
}

#[test]
fn exec_logs_follow_and_interactive_ttys() {
    let d = Daemon::with_busybox();
    let out = d.docker(&[
        "run", "-d", "--name", "web", "busybox", "httpd", "-f", "-v", "-p", "8080",
    ]);
    assert_success(&out, "run -d httpd");
    let out = d.docker(&["exec", "web", "ps"]);
    assert_success(&out, "docker exec ps");
    assert!(
        stdout(&out).lines().any(|l| l.contains("httpd -f")),
        "{}",
        stdout(&out)
    );
    let out = d.docker(&["exec", "web", "sh", "-c", "exit 5"]);
    assert_eq!(out.status.code(), Some(5), "exec exit code");
    let out = d.berth(&[
        "exec",
        "-u",
        "nobody",
        "-e",
        "X=y",
        "-w",
        "/tmp",
        "web",
        "sh",
        "-c",
        "echo $(id -u) $X $(pwd)",
    ]);
    assert_eq!(stdout(&out).trim(), "65534 y /tmp");
    // Scripted interactive sessions under a real pty (script(1)), as a person would type.
    let typed = |cmd: &str, input: &str| {
        let out = std::process::Command::new("script")
            .args(["-qec", cmd, "/dev/null"])
            .env("DOCKER_HOST", d.host())
            .env("BERTH_HOST", d.host())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(input.as_bytes())?;
                c.wait_with_output()
            })
            .expect("script");
        String::from_utf8_lossy(&out.stdout).replace('\r', "")
    };
    let text = typed("docker exec -it web sh", "echo typed-$((40+2)); exit\n");
    assert!(text.contains("typed-42"), "exec -it: {text}");
    let text = typed("docker run -it --rm busybox sh", "echo hi-$((2+2)); exit\n");
    assert!(text.contains("hi-4"), "run -it: {text}");
    let text = typed(
        &format!("{} run -it --rm busybox sh", berth_tests::bin("berth").display()),
        "tty; exit\n",
    );
    // The container's terminal is the first pty of its own devpts, as with Docker.
    assert!(text.contains("/dev/pts/0"), "berth run -it has a tty: {text}");
    let text = typed("docker exec -it web sh", "tty; ls /dev/pts; exit\n");
    assert!(text.contains("/dev/pts/"), "exec -it has its own pty: {text}");
    // logs -f follows until the container stops.
    let out = d.berth(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do echo line$i; sleep 0.3; done",
    ]);
    assert_success(&out, "run ticker");
    let out = d.docker(&["logs", "-f", "ticker"]);
    assert_eq!(stdout(&out), "line1\nline2\nline3\n");
    let out = d.berth(&["logs", "--tail", "1", "-t", "ticker"]);
    let last = stdout(&out);
    assert!(
        last.ends_with(" line3\n") && last.starts_with("20"),
        "tail with timestamps: {last}"
    );
    assert_success(&d.docker(&["rm", "-f", "web", "ticker"]), "rm");
}

#[test]
fn restart_policies_and_events() {
    let d = Daemon::with_busybox();
    let events = std::process::Command::new("docker")
        .args([
            "events",
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
            "--filter",
            "type=container",
        ])
        .env("DOCKER_HOST", d.host())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_success(
        &d.docker(&[
            "run",
            "-d",
            "--name",
            "crashy",
            "--restart",
            "always",
            "busybox",
            "sh",
            "-c",
            "sleep 0.2; exit 1",
        ]),
        "run always",
    );
    assert_success(
        &d.docker(&[
            "run",
            "-d",
            "--name",
            "twice",
            "--restart",
            "on-failure:2",
            "busybox",
            "sh",
            "-c",
            "exit 2",
        ]),
        "run on-failure",
    );
    wait_until("restarts", || {
        stdout(&d.docker(&["inspect", "-f", "{{.RestartCount}}", "crashy"]))
            .trim()
            .parse::<u32>()
            .unwrap_or(0)
            >= 2
    });
    wait_until("on-failure gives up", || {
        stdout(&d.docker(&["inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "twice"])).trim()
            == "2 exited"
    });
    assert_success(&d.docker(&["stop", "crashy"]), "stop");
    std::thread::sleep(Duration::from_millis(800));
    let out = d.docker(&["inspect", "-f", "{{.State.Status}}", "crashy"]);
    assert_eq!(stdout(&out).trim(), "exited", "a stopped container stays stopped");
    assert_success(&d.docker(&["rm", "crashy", "twice"]), "rm");
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on the docker events child we spawned.
    unsafe { libc::kill(events.id() as i32, libc::SIGTERM) };
    let out = events.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "container create crashy",
        "container start crashy",
        "container die crashy",
        "container stop crashy",
        "container destroy twice",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "event {line:?} missing from:\n{text}"
        );
    }
    // Past events replay with --since, and filters apply.
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
        "event=destroy",
        "--format",
        "{{.Actor.Attributes.name}}",
    ]);
    let mut names: Vec<String> = stdout(&out).lines().map(String::from).collect();
    names.sort();
    assert_eq!(names, ["crashy", "twice"]);
}

#[test]
fn healthchecks_report_status_and_events() {
    let d = Daemon::with_busybox();
    let out = d.docker(&[
        "run",
        "-d",
        "--name",
        "h1",
        "--health-cmd",
        "test -f /tmp/ok",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "60",
    ]);
    assert_success(&out, "run with a healthcheck");
    let health = |d: &Daemon| {
        stdout(&d.docker(&["inspect", "-f", "{{.State.Health.Status}}", "h1"]))
            .trim()
            .to_string()
    };
    wait_until("unhealthy", || health(&d) == "unhealthy");
    assert!(stdout(&d.docker(&["ps", "--format", "{{.Status}}"])).contains("(unhealthy)"));
    assert_success(&d.docker(&["exec", "h1", "touch", "/tmp/ok"]), "make it healthy");
    wait_until("healthy", || health(&d) == "healthy");
    let out = d.docker(&[
        "inspect",
        "-f",
        "{{.State.Health.FailingStreak}} {{(index .State.Health.Log 0).ExitCode}}",
        "h1",
    ]);
    assert!(stdout(&out).starts_with("0 "), "{}", stdout(&out));
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
        "--format",
        "{{.Action}}",
        "--filter",
        "container=h1",
    ]);
    let text = stdout(&out);
    assert!(
        text.contains("health_status: unhealthy") && text.contains("health_status: healthy"),
        "{text}"
    );
    assert_success(&d.docker(&["rm", "-f", "h1"]), "rm");
}
