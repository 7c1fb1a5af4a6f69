//! `docker run --init`: berth-init runs as pid 1, starts the command as its child, forwards signals,
//! reaps orphans and passes the command's exit status through.

use berth_tests::{assert_success, stderr, stdout, Daemon};
use std::time::{Duration, Instant};

#[test]
fn init_is_pid_1_and_the_command_its_child() {
    let d = Daemon::with_busybox();
    let out = d.berth(&["run", "--rm", "--init", "busybox", "ps", "-o", "pid,comm"]);
    assert_success(&out, "berth run --init ps");
    let text = stdout(&out);
    let rows: Vec<(u32, String)> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.parse().ok()?, f.next()?.to_string()))
        })
        .collect();
    assert!(
        rows.iter()
            .any(|(pid, comm)| *pid == 1 && (comm == "docker-init" || comm == "berth-init")),
        "pid 1 is not the init:\n{text}"
    );
    assert!(
        rows.iter().any(|(pid, comm)| *pid != 1 && comm == "ps"),
        "the command is not another pid:\n{text}"
    );
    // The stock docker CLI's --init, read back from the container's log.
    let out = d.docker(&[
        "run",
        "--init",
        "--name",
        "c1",
        "busybox",
        "cat",
        "/proc/1/cmdline",
    ]);
    assert_success(&out, "docker run --init");
    let logs = stdout(&d.docker(&["logs", "c1"]));
    assert!(logs.starts_with("/sbin/docker-init\0--\0cat\0"), "{logs:?}");
    let out = d.docker(&["inspect", "-f", "{{.HostConfig.Init}}", "c1"]);
    assert_eq!(stdout(&out).trim(), "true", "{}", stderr(&out));
    // Without --init the command is pid 1 itself.
    let out = d.berth(&["run", "--rm", "busybox", "cat", "/proc/1/comm"]);
    assert_eq!(stdout(&out).trim(), "cat");
}

/// `ps` in the running container `name`: its (stat, comm) rows.
fn processes(d: &Daemon, name: &str) -> Vec<(String, String)> {
    let out = d.berth(&["exec", name, "ps", "-o", "stat,comm"]);
    assert_success(&out, "berth exec ps");
    stdout(&out)
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_string(), f.next()?.to_string()))
        })
        .collect()
}

#[test]
fn orphans_are_reaped() {
    let d = Daemon::with_busybox();
    // The subshell exits at once, orphaning its `sleep 0.2`, which is reparented to pid 1; the
    // shell then becomes `sleep 30`, which reaps nothing.
    let script = "(sleep 0.2 &); exec sleep 30";
    for init in [false, true] {
        let name = if init { "with-init" } else { "without-init" };
        let mut args = vec!["run", "-d", "--name", name];
        if init {
            args.push("--init");
        }
        args.extend(["busybox", "sh", "-c", script]);
        assert_success(&d.berth(&args), "berth run -d");
        std::thread::sleep(Duration::from_millis(1000));
        let ps = processes(&d, name);
        let zombies = ps.iter().filter(|(stat, _)| stat.starts_with('Z')).count();
        if init {
            assert_eq!(zombies, 0, "--init left a zombie: {ps:?}");
            assert!(ps.iter().any(|(_, comm)| comm == "docker-init"), "{ps:?}");
        } else {
            // The control: with `sleep` as pid 1 the orphan stays a zombie.
            assert_eq!(zombies, 1, "expected a zombie without --init: {ps:?}");
        }
        assert_success(&d.berth(&["rm", "-f", name]), "berth rm -f");
    }
}

#[test]
fn stop_forwards_sigterm_to_the_command() {
    let d = Daemon::with_busybox();
    let out = d.docker(&[
        "run", "-d", "--name", "sleeper", "--init", "busybox", "sleep", "100",
    ]);
    assert_success(&out, "docker run -d --init");
    let started = Instant::now();
    let out = d.docker(&["stop", "-t", "5", "sleeper"]);
    assert_success(&out, "docker stop");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "stop took {took:?}: SIGTERM was not forwarded"
    );
    let out = d.docker(&["inspect", "-f", "{{.State.ExitCode}}", "sleeper"]);
    assert_success(&out, "docker inspect");
    assert_eq!(stdout(&out).trim(), "143", "killed by SIGTERM: 128 + 15");
    assert_success(&d.docker(&["rm", "sleeper"]), "docker rm");
}

#[test]
fn exit_codes_pass_through() {
    let d = Daemon::with_busybox();
    let out = d.docker(&["run", "--rm", "--init", "busybox", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let out = d.berth(&["run", "--rm", "--init", "busybox", "sh", "-c", "kill -KILL $$"]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    let out = d.docker(&["run", "--rm", "--init", "busybox", "nosuchcommand"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    let out = d.berth(&["run", "--rm", "--init", "busybox", "nosuchcommand"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("berth-init: exec nosuchcommand failed: No such file or directory"),
        "{}",
        stderr(&out)
    );
    let out = d.docker(&["run", "--rm", "--init", "busybox", "/etc/passwd"]);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
}
