//! End-to-end tests of the `berth-shim` binary with a busybox container. They need root.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use berth_shim::{
    read_frame, read_line, send_command, ExitStatus, STREAM_STDERR, STREAM_STDOUT, STREAM_SYSTEM,
};

const TIMEOUT: Duration = Duration::from_secs(20);

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The busybox rootfs tarball, built once (kept in cargo's target tmp dir between runs).
fn rootfs_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let tar = Path::new(env!("CARGO_TARGET_TMPDIR")).join("berth-shim-busybox.tar");
        if !tar.exists() {
            let tmp = tar.with_extension(format!("tmp{}", std::process::id()));
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/make-busybox-rootfs.sh");
            let st = Command::new("bash").arg(&script).arg(&tmp).status().unwrap();
            assert!(st.success(), "make-busybox-rootfs.sh failed");
            fs::rename(&tmp, &tar).unwrap();
        }
        tar
    })
}

#[derive(Default, Clone)]
struct Opts {
    tty: bool,
    stdin: bool,
    stdin_once: bool,
    /// `--ready-fd 1` with the pipe as the shim's stdout.
    ready_on_stdout: bool,
    extra: Vec<String>,
}

/// One shim with its container; cleans up (processes, cgroups, files) when dropped.
struct TestShim {
    dir: tempfile::TempDir,
    state: PathBuf,
    log: PathBuf,
    cgroup: String,
    container_pid: i32,
    shim_pid: i32,
}

/// Live test shims; the shared parent cgroup is removed when the last one is gone (never while
/// another test may be creating a cgroup under it).
static LIVE: Mutex<usize> = Mutex::new(0);

fn unique() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("t{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

fn spec(rootfs: &Path, args: &[&str], tty: bool, cgroup: &str) -> serde_json::Value {
    let caps = serde_json::json!([
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE"
    ]);
    serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": tty,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": rootfs, "readonly": false},
        "hostname": "shimtest",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "ipc"}, {"type": "network"}],
            "cgroupsPath": cgroup,
            "resources": {"pids": {"limit": 100}}
        }
    })
}

impl TestShim {
    /// Starts a shim for `args`; returns it once it reported READY.
    fn new(args: &[&str], opts: Opts) -> TestShim {
        *LIVE.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle");
        let rootfs = bundle.join("rootfs");
        fs::create_dir_all(&rootfs).unwrap();
        let st = Command::new("tar")
            .arg("-xf")
            .arg(rootfs_tar())
            .arg("-C")
            .arg(&rootfs)
            .status()
            .unwrap();
        assert!(st.success());
        let id = unique();
        let cgroup = format!("berth-shim-test/{id}");
        let spec = spec(&rootfs, args, opts.tty, &cgroup);
        fs::write(
            bundle.join("config.json"),
            serde_json::to_vec_pretty(&spec).unwrap(),
        )
        .unwrap();
        let state = dir.path().join("state");
        let log = dir.path().join("ctr-json.log");

        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let wfd = w.as_raw_fd();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth-shim"));
        cmd.arg("run")
            .arg("--id")
            .arg(&id)
            .arg("--bundle")
            .arg(&bundle)
            .arg("--state")
            .arg(&state);
        let ready_fd = if opts.ready_on_stdout { "1" } else { "3" };
        cmd.arg("--log").arg(&log).arg("--ready-fd").arg(ready_fd);
        if opts.tty {
            cmd.arg("--tty");
        }
        if opts.stdin {
            cmd.arg("--stdin");
        }
        if opts.stdin_once {
            cmd.arg("--stdin-once");
        }
        cmd.args(&opts.extra);
        let target = if opts.ready_on_stdout { 1 } else { 3 };
        // SAFETY: only async-signal-safe syscalls (fcntl, dup2) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let rc = if wfd == target {
                    libc::fcntl(target, libc::F_SETFD, 0)
                } else {
                    libc::dup2(wfd, target)
                };
                if rc < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let status = cmd.status().unwrap();
        assert!(status.success(), "berth-shim run exited with {status}");
        drop(w);
        let ready = berth_shim::read_ready(&mut fs::File::from(r)).expect("ready line");
        let shim_pid = fs::read_to_string(state.join("shim.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let mut t = TestShim {
            dir,
            state,
            log,
            cgroup,
            container_pid: 0,
            shim_pid: shim_pid.unwrap_or(0),
        };
        t.container_pid = ready.unwrap_or_else(|e| {
            panic!(
                "shim said {e:?}; shim.log: {:?}",
                fs::read_to_string(t.state.join("shim.log"))
            )
        });
        assert!(t.shim_pid > 0);
        assert!(t.container_pid > 0);
        t
    }

    fn connect(&self) -> UnixStream {
        let s = berth_shim::connect(&self.state).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s
    }

    /// Opens a connection and sends `line`; returns it with the first reply line.
    fn open(&self, line: &str) -> (UnixStream, String) {
        let mut s = self.connect();
        send_command(&mut s, line).unwrap();
        let reply = read_line(&mut s).unwrap();
        (s, reply)
    }

    fn command(&self, line: &str) -> String {
        self.open(line).1
    }

    fn start(&self) {
        let reply = self.command("START");
        assert_eq!(reply, format!("OK {}", self.container_pid));
    }

    /// A connection that asked `WAIT` (send it before the container can exit).
    fn waiter(&self) -> UnixStream {
        let mut s = self.connect();
        send_command(&mut s, "WAIT").unwrap();
        s
    }

    fn exit_file(&self) -> Option<ExitStatus> {
        berth_shim::read_exit_file(&self.state).unwrap()
    }

    /// Waits until the shim process is gone and checks what it left behind.
    fn assert_shim_gone(&self) {
        let deadline = Instant::now() + TIMEOUT;
        while alive(self.shim_pid) {
            assert!(Instant::now() < deadline, "shim {} still running", self.shim_pid);
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!self.state.join("shim.sock").exists(), "shim.sock left behind");
        assert!(self.exit_file().is_some(), "no exit file");
        assert!(!self.state.join(".exit.tmp").exists());
        self.assert_cgroup_gone("left");
    }

    fn assert_cgroup_gone(&self, when: &str) {
        for root in cgroup_roots() {
            assert!(
                !root.join(&self.cgroup).exists(),
                "cgroup {} {when} in {}",
                self.cgroup,
                root.display()
            );
        }
    }
}

fn wait_reply(s: &mut UnixStream) -> ExitStatus {
    let line = read_line(s).unwrap();
    let rest = line
        .strip_prefix("EXIT ")
        .unwrap_or_else(|| panic!("WAIT said {line:?}"));
    ExitStatus::parse(rest).unwrap()
}

/// Reads frames until EOF: (stdout, stderr, system messages).
fn read_all(s: &mut UnixStream) -> (Vec<u8>, Vec<u8>, Vec<String>) {
    let (mut out, mut err, mut sys) = (Vec::new(), Vec::new(), Vec::new());
    while let Some((stream, data)) = read_frame(s).unwrap() {
        match stream {
            STREAM_STDOUT => out.extend_from_slice(&data),
            STREAM_STDERR => err.extend_from_slice(&data),
            STREAM_SYSTEM => sys.push(String::from_utf8(data).unwrap()),
            other => panic!("unexpected stream {other}"),
        }
    }
    (out, err, sys)
}

fn alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie (state Z) has exited.
        Ok(s) => s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn cgroup_roots() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(d) = fs::read_dir("/sys/fs/cgroup") {
        for e in d.flatten() {
            v.push(e.path());
        }
    }
    v.push(PathBuf::from("/sys/fs/cgroup"));
    v
}

impl Drop for TestShim {
    fn drop(&mut self) {
        for pid in [self.container_pid, self.shim_pid] {
            if alive(pid) {
                // SAFETY: kill(2) on processes this test started.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while (alive(self.container_pid) || alive(self.shim_pid)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        *live -= 1;
        for root in cgroup_roots() {
            let _ = fs::remove_dir(root.join(&self.cgroup));
            if *live == 0 {
                let _ = fs::remove_dir(root.join("berth-shim-test"));
            }
        }
        let _ = &self.dir;
    }
}

macro_rules! need_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

#[test]
fn echo_to_both_streams_logs_and_exits() {
    need_root!();
    let t = TestShim::new(&["sh", "-c", "echo hi; echo err >&2"], Opts::default());
    assert_eq!(t.command("STATE"), format!("CREATED {}", t.container_pid));
    let (mut attach, ok) = t.open("ATTACH 0 1 1");
    assert_eq!(ok, "OK");
    let mut wait = t.waiter();
    t.start();
    let (out, err, sys) = read_all(&mut attach);
    assert_eq!(String::from_utf8_lossy(&out), "hi\n");
    assert_eq!(String::from_utf8_lossy(&err), "err\n");
    assert!(sys.is_empty());
    let status = wait_reply(&mut wait);
    assert_eq!(status.code, 0);
    assert!(!status.oom_killed);
    t.assert_shim_gone();
    assert_eq!(t.exit_file().unwrap(), status);

    let log = fs::read_to_string(&t.log).unwrap();
    let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{log}");
    let find = |stream: &str| lines.iter().find(|l| l["stream"] == stream).unwrap();
    assert_eq!(find("stdout")["log"], "hi\n");
    assert_eq!(find("stderr")["log"], "err\n");
    let time = find("stdout")["time"].as_str().unwrap();
    assert!(time.len() == 30 && time.ends_with('Z'), "{time}");
}

#[test]
fn the_cgroup_is_gone_when_wait_answers() {
    need_root!();
    for _ in 0..5 {
        let t = TestShim::new(&["true"], Opts::default());
        let mut wait = t.waiter();
        t.start();
        assert_eq!(wait_reply(&mut wait).code, 0);
        // berthd may start the container again as soon as it hears of the exit.
        t.assert_cgroup_gone("still there when WAIT answered");
        t.assert_shim_gone();
    }
}

#[test]
fn exit_code() {
    need_root!();
    // Also: the ready pipe given as the shim's stdout.
    let opts = Opts {
        ready_on_stdout: true,
        ..Default::default()
    };
    let t = TestShim::new(&["sh", "-c", "exit 3"], opts);
    let mut wait = t.waiter();
    t.start();
    assert_eq!(wait_reply(&mut wait).code, 3);
    t.assert_shim_gone();
    assert_eq!(t.exit_file().unwrap().code, 3);
}

#[test]
fn kill_gives_128_plus_signal() {
    need_root!();
    let t = TestShim::new(&["sleep", "100"], Opts::default());
    let mut wait = t.waiter();
    t.start();
    assert_eq!(t.command("STATE"), format!("RUNNING {}", t.container_pid));
    assert_eq!(t.command("KILL 9"), "OK");
    let status = wait_reply(&mut wait);
    assert_eq!(status.code, 137);
    t.assert_shim_gone();
}

#[test]
fn stdin_once() {
    need_root!();
    let opts = Opts {
        stdin: true,
        stdin_once: true,
        ..Default::default()
    };
    let t = TestShim::new(&["cat"], opts);
    let (mut attach, ok) = t.open("ATTACH 1 1 1");
    assert_eq!(ok, "OK");
    let mut wait = t.waiter();
    t.start();
    attach.write_all(b"abc").unwrap();
    attach.shutdown(std::net::Shutdown::Write).unwrap();
    let (out, err, _) = read_all(&mut attach);
    assert_eq!(String::from_utf8_lossy(&out), "abc");
    assert!(err.is_empty());
    assert_eq!(wait_reply(&mut wait).code, 0);
    t.assert_shim_gone();
}

#[test]
fn stdin_sent_with_the_command() {
    need_root!();
    let opts = Opts {
        stdin: true,
        stdin_once: true,
        ..Default::default()
    };
    let t = TestShim::new(&["sh", "-c", "wc -c"], opts);
    let mut attach = t.connect();
    // Command and data in one write, then EOF: the shim must not lose the bytes after the newline.
    attach.write_all(b"ATTACH 1 1 0\n12345").unwrap();
    attach.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_line(&mut attach).unwrap(), "OK");
    let mut wait = t.waiter();
    t.start();
    let (out, _, _) = read_all(&mut attach);
    assert_eq!(String::from_utf8_lossy(&out).trim(), "5");
    assert_eq!(wait_reply(&mut wait).code, 0);
    t.assert_shim_gone();
}

#[test]
fn command_not_found() {
    need_root!();
    let t = TestShim::new(&["/no/such/command"], Opts::default());
    let mut wait = t.waiter();
    // The runtime finds out early, but the container stays created until START.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(t.command("STATE"), format!("CREATED {}", t.container_pid));
    let reply = t.command("START");
    assert!(reply.starts_with("ERR 127 "), "{reply}");
    assert_eq!(wait_reply(&mut wait).code, 127);
    t.assert_shim_gone();
    assert_eq!(t.exit_file().unwrap().code, 127);
}

#[test]
fn exec_in_running_container() {
    need_root!();
    let t = TestShim::new(&["sleep", "30"], Opts::default());
    let mut wait = t.waiter();
    t.start();
    let req = serde_json::json!({
        "process": {
            "args": ["sh", "-c", "echo inner; echo inner-err >&2; exit 4"],
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "user": {"uid": 0, "gid": 0}
        },
        "stdin": false
    });
    let (mut exec, ok) = t.open(&format!("EXEC {req}"));
    assert!(ok.starts_with("OK "), "{ok}");
    let (out, err, sys) = read_all(&mut exec);
    assert_eq!(String::from_utf8_lossy(&out), "inner\n");
    assert_eq!(String::from_utf8_lossy(&err), "inner-err\n");
    assert_eq!(sys, vec!["EXIT 4".to_string()]);

    // An exec with stdin, and one that cannot run.
    let req = serde_json::json!({
        "process": {"args": ["cat"], "env": ["PATH=/bin"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
        "stdin": true
    });
    let (mut exec, ok) = t.open(&format!("EXEC {req}"));
    assert!(ok.starts_with("OK "), "{ok}");
    exec.write_all(b"via exec").unwrap();
    exec.shutdown(std::net::Shutdown::Write).unwrap();
    let (out, _, sys) = read_all(&mut exec);
    assert_eq!(String::from_utf8_lossy(&out), "via exec");
    assert_eq!(sys, vec!["EXIT 0".to_string()]);
    let req = serde_json::json!({
        "process": {"args": ["nonexistent"], "env": ["PATH=/bin"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
        "stdin": false
    });
    let reply = t.command(&format!("EXEC {req}"));
    assert!(reply.starts_with("ERR 127 "), "{reply}");

    // The container's log does not get exec output.
    assert_eq!(t.command("KILL 9"), "OK");
    assert_eq!(wait_reply(&mut wait).code, 137);
    t.assert_shim_gone();
    assert_eq!(fs::read_to_string(&t.log).unwrap(), "");
}

#[test]
fn tty_output_is_stdout() {
    need_root!();
    let opts = Opts {
        tty: true,
        ..Default::default()
    };
    let script = "sleep 1; stty size; echo hi; echo err >&2; test -t 0 && echo tty";
    let t = TestShim::new(&["sh", "-c", script], opts);
    let (mut attach, _) = t.open("ATTACH 0 1 1");
    let mut wait = t.waiter();
    t.start();
    assert_eq!(t.command("RESIZE 40 100"), "OK");
    let (out, err, _) = read_all(&mut attach);
    assert_eq!(String::from_utf8_lossy(&out), "40 100\r\nhi\r\nerr\r\ntty\r\n");
    assert!(err.is_empty());
    assert_eq!(wait_reply(&mut wait).code, 0);
    t.assert_shim_gone();
    let log = fs::read_to_string(&t.log).unwrap();
    let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4, "{log}");
    assert!(lines.iter().all(|l| l["stream"] == "stdout"));
    assert_eq!(lines[1]["log"], "hi\r\n");
}

#[test]
fn state_wait_after_exit_and_late_clients() {
    need_root!();
    let t = TestShim::new(&["true"], Opts::default());
    assert_eq!(t.command("BOGUS"), "ERR unknown command");
    assert_eq!(t.command("RESIZE 10 10"), "ERR no tty");
    t.start();
    // Racing with the shim's exit: either it answers, or it is gone (and the exit file answers).
    if let Ok(mut s) = berth_shim::connect(&t.state) {
        if send_command(&mut s, "START").is_ok() {
            if let Ok(reply) = read_line(&mut s) {
                assert!(reply.starts_with("ERR "), "{reply}");
            }
        }
    }
    t.assert_shim_gone();
    assert_eq!(t.exit_file().unwrap().code, 0);
    assert!(berth_shim::connect(&t.state).is_err());
}

#[test]
fn log_rotation_and_big_output() {
    need_root!();
    let opts = Opts {
        extra: vec![
            "--log-max-size".into(),
            "4096".into(),
            "--log-max-files".into(),
            "3".into(),
        ],
        ..Default::default()
    };
    // 2000 lines of ~50 bytes: about 100 KB of output.
    let t = TestShim::new(&["sh", "-c", "i=0; while [ $i -lt 2000 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done"], opts);
    let (mut attach, _) = t.open("ATTACH 0 1 1");
    let mut wait = t.waiter();
    t.start();
    let (out, _, _) = read_all(&mut attach);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 2000);
    assert!(text.ends_with("line-1999-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"));
    assert_eq!(wait_reply(&mut wait).code, 0);
    t.assert_shim_gone();
    let log = fs::read_to_string(&t.log).unwrap();
    assert!(log.len() <= 4096 + 200, "{}", log.len());
    assert!(log.trim_end().ends_with('}'));
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["log"], "line-1999-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n");
    let name = |n: u32| PathBuf::from(format!("{}.{n}", t.log.display()));
    assert!(name(1).exists() && name(2).exists() && !name(3).exists());
}

#[test]
fn slow_client_does_not_block_the_container() {
    need_root!();
    // About 4 MiB of output. One attached client reads it all; another never reads: it holds the
    // container back for a while, then it is dropped and the container finishes.
    let script = "head -c 4194304 /dev/zero | tr '\\0' x; echo; echo done";
    let t = TestShim::new(&["sh", "-c", script], Opts::default());
    let (mut lazy, _) = t.open("ATTACH 0 1 1");
    let (mut eager, _) = t.open("ATTACH 0 1 0");
    let mut wait = t.waiter();
    let started = Instant::now();
    t.start();
    let reader = std::thread::spawn(move || read_all(&mut eager).0);
    assert_eq!(wait_reply(&mut wait).code, 0);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "{took:?}");
    t.assert_shim_gone();
    let out = reader.join().unwrap();
    assert_eq!(out.len(), 4194304 + 6);
    assert!(out.ends_with(b"x\ndone\n"));
    // The lazy client was dropped: it got at most the queue limits plus socket buffers.
    let mut got = Vec::new();
    let _ = lazy.read_to_end(&mut got);
    assert!(got.len() < 3 << 20, "{}", got.len());
    let log = fs::read_to_string(&t.log).unwrap();
    assert!(log.contains("\"log\":\"done\\n\""));
}

#[test]
fn kill_before_start() {
    need_root!();
    let t = TestShim::new(&["sleep", "100"], Opts::default());
    let mut wait = t.waiter();
    assert_eq!(t.command("KILL 9"), "OK");
    assert_eq!(wait_reply(&mut wait).code, 137);
    t.assert_shim_gone();
}

#[test]
fn bad_bundle_reports_error() {
    need_root!();
    let dir = tempfile::tempdir().unwrap();
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let wfd = w.as_raw_fd();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth-shim"));
    cmd.args(["run", "--id", "bad", "--bundle"])
        .arg(dir.path().join("nope"));
    cmd.arg("--state")
        .arg(dir.path().join("state"))
        .arg("--log")
        .arg(dir.path().join("log"));
    cmd.args(["--ready-fd", "3"]);
    // SAFETY: only async-signal-safe syscalls (fcntl, dup2) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let rc = if wfd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(wfd, 3)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    assert!(cmd.status().unwrap().success());
    drop(w);
    let line = read_line(&mut fs::File::from(r)).unwrap();
    assert!(
        line.starts_with("ERROR ") && line.contains("config.json"),
        "{line}"
    );
    // Usage errors are reported on stderr with exit code 2.
    let out = Command::new(env!("CARGO_BIN_EXE_berth-shim"))
        .args(["run", "--id"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn exec_big_output_and_tty() {
    need_root!();
    let t = TestShim::new(&["sleep", "30"], Opts::default());
    let mut wait = t.waiter();
    t.start();
    let exec = |args: &[&str], tty: bool| {
        let req = serde_json::json!({
            "process": {"terminal": tty, "args": args, "env": ["PATH=/bin"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "stdin": false
        });
        let (mut s, ok) = t.open(&format!("EXEC {req}"));
        assert!(ok.starts_with("OK "), "{ok}");
        read_all(&mut s)
    };
    // All of a large output arrives before the EXIT frame.
    let (out, _, sys) = exec(&["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' y"], false);
    assert_eq!(out.len(), 3_000_000);
    assert!(out.iter().all(|&b| b == b'y'));
    assert_eq!(sys, vec!["EXIT 0".to_string()]);
    // With a terminal: one stream, CRLF line ends.
    let (out, err, sys) = exec(&["sh", "-c", "test -t 1 && echo tty; echo e >&2"], true);
    assert_eq!(String::from_utf8_lossy(&out), "tty\r\ne\r\n");
    assert!(err.is_empty());
    assert_eq!(sys, vec!["EXIT 0".to_string()]);
    assert_eq!(t.command("KILL 9"), "OK");
    assert_eq!(wait_reply(&mut wait).code, 137);
    t.assert_shim_gone();
}
