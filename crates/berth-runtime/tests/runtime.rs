//! Runs real containers (as root): namespaces, mounts, cgroups, capabilities, seccomp, exec.
//! Run with `cargo test -p berth-runtime -- --test-threads=1` (the runtime forks: one test at a time).

use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use berth_runtime::{
    default_docker_capabilities, default_docker_device_rules, default_docker_masked_paths,
    default_docker_readonly_paths, default_docker_seccomp, exec_in, launch, CgroupPath, Cgroups,
    ExecErrorKind, ExecOptions, LaunchOptions, RuntimeError, Stdio,
};
use oci_spec::runtime::{LinuxResources, Process, Spec};
use rustix::process::{Pid, WaitOptions};
use serde_json::json;

const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Skips a test that needs root.
macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

/// The busybox rootfs tarball, built once per target dir by the project's script.
fn rootfs_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let tar = Path::new(env!("CARGO_TARGET_TMPDIR")).join("berth-runtime-busybox.tar");
        if !tar.exists() {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/make-busybox-rootfs.sh");
            let partial = tar.with_extension("tar.part");
            let status = Command::new("bash")
                .arg(&script)
                .arg(&partial)
                .status()
                .expect("run make-busybox-rootfs.sh");
            assert!(status.success(), "make-busybox-rootfs.sh failed");
            fs::rename(&partial, &tar).unwrap();
        }
        tar
    })
}

/// A bundle directory with an extracted busybox rootfs.
struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    fn new() -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("berth-runtime-test")
            .tempdir()
            .unwrap();
        let rootfs = dir.path().join("rootfs");
        fs::create_dir(&rootfs).unwrap();
        let status = Command::new("tar")
            .arg("-xf")
            .arg(rootfs_tar())
            .arg("-C")
            .arg(&rootfs)
            .status()
            .unwrap();
        assert!(status.success(), "untar rootfs");
        Bundle { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }
}

/// A config.json like the one Docker makes for `docker run busybox <args>`.
fn docker_spec(args: &[&str]) -> Spec {
    let caps = default_docker_capabilities();
    let value = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": [PATH_ENV, "HOSTNAME=c0ffee"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": true,
            "oomScoreAdj": 0,
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1048576u64, "soft": 1048576u64}]
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "c0ffee",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["ro", "nosuid", "noexec", "nodev"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]}
        ],
        "linux": {
            "resources": {"devices": default_docker_device_rules()},
            "namespaces": [
                {"type": "mount"}, {"type": "network"}, {"type": "uts"},
                {"type": "pid"}, {"type": "ipc"}, {"type": "cgroup"}
            ],
            "seccomp": default_docker_seccomp(),
            "maskedPaths": default_docker_masked_paths(),
            "readonlyPaths": default_docker_readonly_paths()
        }
    });
    serde_json::from_value(value).expect("valid spec")
}

fn resources(value: serde_json::Value) -> LinuxResources {
    let mut value = value;
    value["devices"] = serde_json::to_value(default_docker_device_rules()).unwrap();
    serde_json::from_value(value).unwrap()
}

/// A cgroup for one test, removed (processes and all) on drop.
struct TestCgroup {
    cgroups: Cgroups,
    path: CgroupPath,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestCgroup {
    fn new(res: &LinuxResources) -> TestCgroup {
        let name = format!(
            "berth-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let cgroups = Cgroups::detect();
        let path = cgroups.create(&name, res).expect("create cgroup");
        TestCgroup { cgroups, path }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        self.cgroups.remove(&self.path).expect("remove cgroup");
        for dir in self.path.dirs() {
            assert!(!dir.exists(), "{} left behind", dir.display());
        }
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap()
}

fn dev_null() -> OwnedFd {
    fs::File::open("/dev/null").unwrap().into()
}

#[derive(Debug)]
struct Output {
    code: Option<i32>,
    signal: Option<i32>,
    stdout: String,
    stderr: String,
}

fn wait(pid: i32) -> (Option<i32>, Option<i32>) {
    let (_, status) = rustix::process::waitpid(Pid::from_raw(pid), WaitOptions::empty())
        .unwrap()
        .unwrap();
    (status.exit_status(), status.terminating_signal())
}

fn read_all(fd: OwnedFd) -> String {
    let mut s = String::new();
    fs::File::from(fd).read_to_string(&mut s).unwrap();
    s
}

/// Runs a container to completion, collecting its output.
fn run_in(bundle: &Bundle, spec: &Spec, cgroup: Option<&CgroupPath>) -> Result<Output, RuntimeError> {
    let (out_r, out_w) = pipe();
    let (err_r, err_w) = pipe();
    let launched = launch(LaunchOptions {
        bundle: bundle.path(),
        spec,
        stdio: Some(Stdio {
            stdin: dev_null(),
            stdout: out_w,
            stderr: err_w,
        }),
        console: false,
        cgroup,
    })?;
    let pid = launched.pid();
    launched.start()?;
    let stderr = std::thread::spawn(move || read_all(err_r));
    let stdout = read_all(out_r);
    let stderr = stderr.join().unwrap();
    let (code, signal) = wait(pid);
    Ok(Output {
        code,
        signal,
        stdout,
        stderr,
    })
}

fn run(args: &[&str]) -> Output {
    let bundle = Bundle::new();
    let out = run_in(&bundle, &docker_spec(args), None).expect("container runs");
    assert_no_leftover_mounts(&bundle);
    out
}

fn assert_no_leftover_mounts(bundle: &Bundle) {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let path = bundle.path().to_string_lossy().into_owned();
    assert!(!mountinfo.contains(&path), "host mount table mentions {path}");
}

#[test]
fn echo_hi() {
    require_root!();
    let out = run(&["echo", "hi"]);
    assert_eq!(out.stdout, "hi\n");
    assert_eq!(out.code, Some(0), "{out:?}");
}

#[test]
fn docker_security_defaults() {
    require_root!();
    let out = run(&["cat", "/proc/self/status"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("Seccomp:\t2\n"), "{}", out.stdout);
    assert!(out.stdout.contains("NoNewPrivs:\t1\n"), "{}", out.stdout);
    assert!(
        out.stdout.contains("CapEff:\t00000000a80425fb\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("CapBnd:\t00000000a80425fb\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("CapInh:\t0000000000000000\n"),
        "{}",
        out.stdout
    );
    // The test harness ignores SIGPIPE; the container must not inherit that.
    for line in ["SigIgn:\t0000000000000000\n", "SigBlk:\t0000000000000000\n"] {
        assert!(out.stdout.contains(line), "{}", out.stdout);
    }
}

#[test]
fn seccomp_blocks_mount_and_namespaces() {
    require_root!();
    let out = run(&[
        "sh",
        "-c",
        "unshare -n true; echo unshare=$?; mount -t tmpfs t /mnt; echo mount=$?",
    ]);
    assert!(out.stdout.contains("unshare=1"), "{out:?}");
    assert!(
        out.stdout.contains("mount=255") || out.stdout.contains("mount=1"),
        "{out:?}"
    );
}

#[test]
fn container_is_pid_1_and_host_processes_are_invisible() {
    require_root!();
    let out = run(&[
        "sh",
        "-c",
        "tr '\\0' ' ' < /proc/1/cmdline; echo; ls /proc | grep -c '^[0-9]'",
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let mut lines = out.stdout.lines();
    assert!(lines.next().unwrap().starts_with("sh -c "), "{out:?}");
    let pids: u32 = lines.next().unwrap().trim().parse().unwrap();
    assert!(pids <= 4, "{pids} processes visible: {out:?}");
}

#[test]
fn hostname_and_loopback() {
    require_root!();
    let out = run(&[
        "sh",
        "-c",
        "hostname; cat /sys/class/net/lo/flags; ls /sys/class/net",
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "c0ffee");
    let flags = u32::from_str_radix(lines[1].trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is up");
    assert_eq!(lines[2..], ["lo"], "only lo in a new network namespace");
}

#[test]
fn root_is_the_rootfs() {
    require_root!();
    let bundle = Bundle::new();
    let spec = docker_spec(&["sh", "-c", "ls /; test -e /work && echo HOST; touch /written"]);
    let out = run_in(&bundle, &spec, None).unwrap();
    assert_eq!(out.code, Some(0), "{out:?}");
    let names: Vec<&str> = out.stdout.lines().collect();
    for expected in ["bin", "dev", "etc", "proc", "sys", "tmp"] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    assert!(!names.contains(&"HOST"), "the host's / is visible");
    assert!(
        bundle.rootfs().join("written").exists(),
        "a write to / lands in the rootfs"
    );
    assert_no_leftover_mounts(&bundle);
}

#[test]
fn readonly_root() {
    require_root!();
    let bundle = Bundle::new();
    let mut spec = docker_spec(&[
        "sh",
        "-c",
        "touch /x && echo wrote; touch /tmp/y || true; touch /dev/shm/z && echo shm",
    ]);
    spec.root_mut().as_mut().unwrap().set_readonly(Some(true));
    let out = run_in(&bundle, &spec, None).unwrap();
    assert!(!out.stdout.contains("wrote"), "{out:?}");
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");
    assert!(out.stdout.contains("shm"), "mounts on top stay writable: {out:?}");
    assert!(!bundle.rootfs().join("x").exists());
}

#[test]
fn masked_and_readonly_paths() {
    require_root!();
    // This host's kernel may lack /proc/kcore: check every masked file that exists here.
    let out = run(&[
        "sh",
        "-c",
        "for f in /proc/kcore /proc/interrupts /proc/keys /proc/timer_list; do test -e $f && wc -c < $f; done \
         | sort -u; ls /sys/firmware | wc -l; echo x > /proc/sys/kernel/domainname && echo wrote",
    ]);
    assert!(Path::new("/proc/interrupts").exists());
    let lines: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    assert_eq!(
        lines[..2],
        ["0", "0"],
        "masked files read empty, masked directories are empty: {out:?}"
    );
    assert!(!out.stdout.contains("wrote"), "/proc/sys is read-only: {out:?}");
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");
}

#[test]
fn runs_as_the_spec_user() {
    require_root!();
    let bundle = Bundle::new();
    let mut spec = docker_spec(&[
        "sh",
        "-c",
        "id -u; id -g; id -G; echo $HOME; grep CapEff /proc/self/status",
    ]);
    let user = spec.process_mut().as_mut().unwrap().user_mut();
    user.set_uid(65534);
    user.set_gid(65534);
    let out = run_in(&bundle, &spec, None).unwrap();
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[..4], ["65534", "65534", "65534", "/nonexistent"], "{out:?}");
    assert_eq!(
        lines[4], "CapEff:\t0000000000000000",
        "a non-root user keeps no capabilities"
    );
}

#[test]
fn rlimits_are_clamped_to_the_hard_limit() {
    require_root!();
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .unwrap_or(u64::MAX);
    let out = run(&["sh", "-c", "ulimit -n; ulimit -Hn"]);
    let expected = hard.min(1_048_576).to_string();
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        [expected.as_str(), expected.as_str()],
        "{out:?}"
    );
}

#[test]
fn command_not_found_is_127() {
    require_root!();
    let bundle = Bundle::new();
    let err = run_in(&bundle, &docker_spec(&["nosuch"]), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "exec: \"nosuch\": executable file not found in $PATH"
    );
    assert_eq!(err.exec_kind(), Some(ExecErrorKind::NotFound));
    assert_eq!(err.exit_code(), 127);

    let err = run_in(&bundle, &docker_spec(&["/etc/passwd"]), None).unwrap_err();
    assert_eq!(err.to_string(), "exec: \"/etc/passwd\": permission denied");
    assert_eq!(err.exit_code(), 126);
    assert_no_leftover_mounts(&bundle);
}

#[test]
fn missing_cwd_is_created() {
    require_root!();
    let bundle = Bundle::new();
    let mut spec = docker_spec(&["pwd"]);
    spec.process_mut().as_mut().unwrap().set_cwd("/srv/app".into());
    let out = run_in(&bundle, &spec, None).unwrap();
    assert_eq!(out.stdout, "/srv/app\n", "{out:?}");
}

#[test]
fn devices_and_dev_symlinks() {
    require_root!();
    let out = run(&[
        "sh",
        "-c",
        "ls -l /dev/null /dev/zero /dev/urandom /dev/tty | cut -c1; readlink /dev/ptmx; readlink /dev/fd; \
         head -c 4 /dev/zero | wc -c",
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        ["c", "c", "c", "c", "pts/ptmx", "/proc/self/fd", "4"],
        "{out:?}"
    );
}

#[test]
fn symlinked_mount_destination_stays_in_the_rootfs() {
    require_root!();
    let bundle = Bundle::new();
    let marker = format!("berth-escape-{}", std::process::id());
    std::os::unix::fs::symlink("/etc", bundle.rootfs().join("evil")).unwrap();
    std::os::unix::fs::symlink("../../../../../../tmp", bundle.rootfs().join("evil2")).unwrap();
    let mut spec = docker_spec(&[
        "sh",
        "-c",
        &format!("touch /evil/{marker} /evil2/{marker}; ls /etc /tmp"),
    ]);
    let mut mounts = spec.mounts().clone().unwrap();
    for dest in ["/evil", "/evil2"] {
        mounts.push(
            serde_json::from_value(json!({"destination": dest, "type": "tmpfs", "source": "tmpfs"})).unwrap(),
        );
    }
    spec.set_mounts(Some(mounts));
    let out = run_in(&bundle, &spec, None).unwrap();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        !Path::new("/etc").join(&marker).exists(),
        "escaped to the host's /etc"
    );
    assert!(
        !Path::new("/tmp").join(&marker).exists(),
        "escaped to the host's /tmp"
    );
    assert!(
        out.stdout.contains(&marker),
        "the mount landed inside the rootfs: {out:?}"
    );
}

#[test]
fn bind_mounts_of_files_and_directories() {
    require_root!();
    let bundle = Bundle::new();
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("hostname"), "from-host\n").unwrap();
    fs::create_dir(host.path().join("data")).unwrap();
    fs::write(host.path().join("data/in"), "volume\n").unwrap();
    let mut spec = docker_spec(&[
        "sh",
        "-c",
        "cat /etc/hostname /data/in; echo out > /data/out; echo x > /etc/hostname || echo ro; \
         echo y > /cfg/new || echo ro-dir",
    ]);
    let mut mounts = spec.mounts().clone().unwrap();
    for (src, dest, opts) in [
        ("hostname", "/etc/hostname", json!(["rbind", "rprivate", "ro"])),
        ("data", "/data", json!(["rbind", "rprivate"])),
        ("data", "/cfg", json!(["bind", "ro"])),
    ] {
        let source = host.path().join(src);
        mounts.push(
            serde_json::from_value(
                json!({"destination": dest, "type": "bind", "source": source, "options": opts}),
            )
            .unwrap(),
        );
    }
    spec.set_mounts(Some(mounts));
    let out = run_in(&bundle, &spec, None).unwrap();
    assert_eq!(out.stdout, "from-host\nvolume\nro\nro-dir\n", "{out:?}");
    assert_eq!(fs::read_to_string(host.path().join("data/out")).unwrap(), "out\n");
    assert_eq!(
        fs::read_to_string(host.path().join("hostname")).unwrap(),
        "from-host\n"
    );
    assert_no_leftover_mounts(&bundle);
}

#[test]
fn memory_limit_oom_kills() {
    require_root!();
    let mib32 = 32 * 1024 * 1024;
    let cg = TestCgroup::new(&resources(json!({"memory": {"limit": mib32, "swap": mib32}})));
    let bundle = Bundle::new();
    let spec = docker_spec(&["dd", "if=/dev/zero", "bs=64M", "count=1", "of=/dev/null"]);
    let out = run_in(&bundle, &spec, Some(&cg.path)).unwrap();
    assert_eq!(out.signal, Some(9), "killed by SIGKILL: {out:?}");
    assert!(cg.cgroups.oom_killed(&cg.path));
}

#[test]
fn pids_limit_stops_forks() {
    require_root!();
    let cg = TestCgroup::new(&resources(json!({"pids": {"limit": 10}})));
    let bundle = Bundle::new();
    let spec = docker_spec(&["sh", "-c", "for i in $(seq 30); do sleep 5 & done; echo done"]);
    let out = run_in(&bundle, &spec, Some(&cg.path)).unwrap();
    assert!(out.stderr.contains("fork"), "forks failed: {out:?}");
    assert_eq!(cg.cgroups.stats(&cg.path).pids_limit, Some(10));
}

#[test]
fn cgroup_view_inside_the_container() {
    require_root!();
    let cg = TestCgroup::new(&resources(json!({"memory": {"limit": 64 * 1024 * 1024}})));
    let bundle = Bundle::new();
    let spec = docker_spec(&[
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes || cat /sys/fs/cgroup/memory.max; \
         grep -c ':/$' /proc/self/cgroup; mkdir /sys/fs/cgroup/x && echo wrote",
    ]);
    let out = run_in(&bundle, &spec, Some(&cg.path)).unwrap();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "67108864", "{out:?}");
    let own = fs::read_to_string("/proc/self/cgroup")
        .unwrap()
        .lines()
        .count()
        .to_string();
    assert_eq!(
        lines[1], own,
        "every cgroup is / in the container's cgroup namespace: {out:?}"
    );
    assert!(
        !out.stdout.contains("wrote"),
        "/sys/fs/cgroup is read-only: {out:?}"
    );
}

#[test]
fn exec_in_a_running_container() {
    require_root!();
    let cg = TestCgroup::new(&resources(json!({})));
    let bundle = Bundle::new();
    let spec = docker_spec(&["sleep", "30"]);
    let launched = launch(LaunchOptions {
        bundle: bundle.path(),
        spec: &spec,
        stdio: Some(Stdio {
            stdin: dev_null(),
            stdout: dev_null(),
            stderr: dev_null(),
        }),
        console: false,
        cgroup: Some(&cg.path),
    })
    .unwrap();
    let init = launched.pid();
    launched.start().unwrap();

    let mut process: Process = spec.process().clone().unwrap();
    process.set_args(Some(vec![
        "sh".into(),
        "-c".into(),
        "tr '\\0' ' ' < /proc/1/cmdline; echo; hostname; grep NoNewPrivs /proc/self/status".into(),
    ]));
    let (out_r, out_w) = pipe();
    let (err_r, err_w) = pipe();
    let pid = exec_in(ExecOptions {
        pid: init,
        process: &process,
        stdio: Some(Stdio {
            stdin: dev_null(),
            stdout: out_w,
            stderr: err_w,
        }),
        console: false,
        cgroup: Some(&cg.path),
        seccomp: spec.linux().as_ref().unwrap().seccomp().as_ref(),
    })
    .unwrap()
    .pid;
    let stdout = read_all(out_r);
    let stderr = read_all(err_r);
    assert_eq!(wait(pid).0, Some(0), "{stdout} {stderr}");
    assert_eq!(stdout, "sleep 30 \nc0ffee\nNoNewPrivs:\t1\n", "{stderr}");

    process.set_args(Some(vec!["nosuch".into()]));
    let err = exec_in(ExecOptions {
        pid: init,
        process: &process,
        stdio: Some(Stdio {
            stdin: dev_null(),
            stdout: dev_null(),
            stderr: dev_null(),
        }),
        console: false,
        cgroup: Some(&cg.path),
        seccomp: None,
    })
    .unwrap_err();
    assert_eq!(err.exit_code(), 127, "{err}");

    assert!(cg.cgroups.pids(&cg.path).contains(&init));
    cg.cgroups.freeze(&cg.path).unwrap();
    assert!(cg.cgroups.is_frozen(&cg.path));
    cg.cgroups.thaw(&cg.path).unwrap();
    let stats = cg.cgroups.stats(&cg.path);
    assert!(stats.pids_current >= 1 && stats.memory_usage > 0, "{stats:?}");
    drop(cg); // kills the container
    let (_, signal) = wait(init);
    assert_eq!(signal, Some(9));
}

#[test]
fn console_is_the_controlling_terminal() {
    require_root!();
    let bundle = Bundle::new();
    let spec = docker_spec(&[
        "sh",
        "-c",
        "test -t 0 && echo tty; tty; stty size; test -c /dev/console && echo console",
    ]);
    let mut launched = launch(LaunchOptions {
        bundle: bundle.path(),
        spec: &spec,
        stdio: None,
        console: true,
        cgroup: None,
    })
    .unwrap();
    // The terminal was made in the container's devpts: its master came back to us.
    let master = launched.take_pty_master().expect("a pty master");
    berth_runtime::resize(&master, 30, 100).unwrap();
    let pid = launched.pid();
    launched.start().unwrap();
    assert_eq!(wait(pid).0, Some(0));
    // The output waits in the pty; the slave is closed, so read until EIO.
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = rustix::io::read(&master, &mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let out = String::from_utf8_lossy(&out).replace('\r', "");
    // `/dev/pts/0` of the container's own devpts, as with runc.
    assert_eq!(out, "tty\n/dev/pts/0\n30 100\nconsole\n");
}

/// Shifts the owner and group of everything under `dir` by `by` (a rootfs for a user namespace
/// whose root is host uid `by`, as Docker's `userns-remap` stores its layers).
fn shift_ownership(dir: &Path, by: u32) {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::symlink_metadata(dir).unwrap();
    std::os::unix::fs::lchown(dir, Some(meta.uid() + by), Some(meta.gid() + by)).unwrap();
    if meta.is_dir() {
        for entry in fs::read_dir(dir).unwrap() {
            shift_ownership(&entry.unwrap().path(), by);
        }
    }
}

fn with_user_namespace(mut spec: Spec, host_id: u32) -> Spec {
    let mut value = serde_json::to_value(&spec).unwrap();
    let linux = &mut value["linux"];
    linux["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    let map = json!([{"containerID": 0, "hostID": host_id, "size": 65536}]);
    linux["uidMappings"] = map.clone();
    linux["gidMappings"] = map;
    spec = serde_json::from_value(value).unwrap();
    spec
}

const USERNS_HOST_ID: u32 = 100_000;

/// A bundle whose rootfs belongs to the user namespace's root, traversable by it.
fn userns_bundle() -> Bundle {
    use std::os::unix::fs::PermissionsExt;
    let bundle = Bundle::new();
    shift_ownership(&bundle.rootfs(), USERNS_HOST_ID);
    fs::set_permissions(bundle.path(), fs::Permissions::from_mode(0o711)).unwrap();
    bundle
}

#[test]
fn user_namespace_maps_root_to_an_unprivileged_host_user() {
    require_root!();
    let bundle = userns_bundle();
    let spec = with_user_namespace(
        docker_spec(&[
            "sh",
            "-c",
            "id -u; cat /proc/self/uid_map; echo made > /made; ls -n /made | awk '{print $3}'; \
             grep -c . /proc/mounts >/dev/null && echo $$; hostname; \
             mknod /tmp/null2 c 1 3 2>/dev/null || echo no-mknod; cat /dev/zero | head -c 2 | wc -c",
        ]),
        USERNS_HOST_ID,
    );
    let cgroup = TestCgroup::new(&resources(json!({})));
    let out = run_in(&bundle, &spec, Some(&cgroup.path)).expect("container runs");
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    assert_eq!(lines[0], "0", "root inside: {out:?}");
    let map: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(map, ["0", "100000", "65536"], "{out:?}");
    assert_eq!(lines[2], "0", "the new file is root's inside: {out:?}");
    assert_eq!(lines[3], "1", "pid 1 in its own pid namespace: {out:?}");
    assert_eq!(lines[4], "c0ffee", "{out:?}");
    assert_eq!(
        lines[5], "no-mknod",
        "no device nodes from a user namespace: {out:?}"
    );
    assert_eq!(lines[6], "2", "/dev/zero (bound from the host) reads: {out:?}");
    // On the host the file belongs to the mapped user, not to root.
    use std::os::unix::fs::MetadataExt;
    let made = fs::metadata(bundle.rootfs().join("made")).unwrap();
    assert_eq!((made.uid(), made.gid()), (USERNS_HOST_ID, USERNS_HOST_ID));
    assert_no_leftover_mounts(&bundle);
}

#[test]
fn user_namespace_root_has_no_power_over_the_host() {
    require_root!();
    let bundle = userns_bundle();
    // A host file bound in, owned by host root: container root is not its owner.
    let secret = bundle.path().join("secret");
    fs::write(&secret, "host only\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let mut spec = with_user_namespace(
        docker_spec(&[
            "sh",
            "-c",
            "cat /secret 2>&1; ls -n /secret | awk '{print $3}'; chown 0 /secret 2>/dev/null && echo chowned",
        ]),
        USERNS_HOST_ID,
    );
    let mut mounts = spec.mounts().clone().unwrap();
    mounts.push(
        serde_json::from_value(json!({"destination": "/secret", "type": "bind",
            "source": secret, "options": ["rbind"]}))
        .unwrap(),
    );
    spec.set_mounts(Some(mounts));
    let out = run_in(&bundle, &spec, None).expect("container runs");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].contains("Permission denied"), "{out:?}");
    assert_eq!(lines[1], "65534", "host root is nobody inside: {out:?}");
    assert_eq!(lines.len(), 2, "chown refused: {out:?}");
    assert_eq!(fs::read_to_string(&secret).unwrap(), "host only\n");
}

#[test]
fn exec_joins_the_user_namespace() {
    require_root!();
    let bundle = userns_bundle();
    let spec = with_user_namespace(docker_spec(&["sleep", "30"]), USERNS_HOST_ID);
    let (out_r, out_w) = pipe();
    let launched = launch(LaunchOptions {
        bundle: bundle.path(),
        spec: &spec,
        stdio: Some(Stdio {
            stdin: dev_null(),
            stdout: out_w.try_clone().unwrap(),
            stderr: out_w,
        }),
        console: false,
        cgroup: None,
    })
    .expect("launch");
    let init = launched.pid();
    launched.start().unwrap();
    let status = fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line.split_whitespace().skip(1).all(|u| u == "100000"),
        "{uid_line}"
    );
    let process: Process = serde_json::from_value(json!({
        "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", "id -u; cat /proc/self/uid_map; touch /from-exec"],
        "env": [PATH_ENV],
        "cwd": "/"
    }))
    .unwrap();
    let (exec_r, exec_w) = pipe();
    let execd = exec_in(ExecOptions {
        pid: init,
        process: &process,
        stdio: Some(Stdio {
            stdin: dev_null(),
            stdout: exec_w.try_clone().unwrap(),
            stderr: exec_w,
        }),
        console: false,
        cgroup: None,
        seccomp: None,
    })
    .expect("exec");
    let text = read_all(exec_r);
    assert_eq!(wait(execd.pid), (Some(0), None), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "0", "{text}");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"],
        "{text}"
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        fs::metadata(bundle.rootfs().join("from-exec")).unwrap().uid(),
        USERNS_HOST_ID
    );
    rustix::process::kill_process(Pid::from_raw(init).unwrap(), rustix::process::Signal::KILL).unwrap();
    wait(init);
    drop(out_r);
}

#[test]
fn user_namespace_needs_mappings() {
    require_root!();
    let bundle = Bundle::new();
    let mut spec = docker_spec(&["true"]);
    let mut namespaces = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
    namespaces.push(serde_json::from_value(json!({"type": "user"})).unwrap());
    spec.linux_mut()
        .as_mut()
        .unwrap()
        .set_namespaces(Some(namespaces));
    let err = run_in(&bundle, &spec, None).unwrap_err();
    assert!(matches!(err, RuntimeError::InvalidSpec(_)), "{err}");
    assert!(err.to_string().contains("uidMappings"), "{err}");
}

#[test]
fn priming_the_migration_lock_leaves_the_caller_where_it_was() {
    require_root!();
    let before = fs::read_to_string("/proc/self/cgroup").unwrap();
    Cgroups::detect()
        .prime_migration()
        .expect("the caller's own cgroup is found and written");
    assert_eq!(fs::read_to_string("/proc/self/cgroup").unwrap(), before);
}

#[test]
fn device_rules_hold_on_cgroup_v2_through_an_ebpf_program() {
    require_root!();
    let Some(v2) = Cgroups::detect().v2_mountpoint().map(Path::to_path_buf) else {
        eprintln!("skipped: no cgroup2 mount");
        return;
    };
    // Only the cgroup2 hierarchy, as on a unified host: on a hybrid host the v1 devices
    // controller would otherwise enforce the rules, and the test could not tell who did.
    let cgroups = Cgroups::unified_at(&v2);
    let enabled_before = fs::read_to_string(v2.join("cgroup.subtree_control")).unwrap();
    // /dev/net/tun: opening it needs no capability, so only the device rules can refuse it.
    let probe = [
        "sh",
        "-c",
        "mknod /tmp/tun c 10 200 && echo made; cat /tmp/tun; head -c 3 /dev/zero | wc -c",
    ];
    let run_with = |res: &LinuxResources| {
        let name = format!(
            "berth-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let path = cgroups.create(&name, res).expect("create cgroup");
        let bundle = Bundle::new();
        let out = run_in(&bundle, &docker_spec(&probe), Some(&path)).expect("container runs");
        cgroups.remove(&path).unwrap();
        assert!(!path.v2_dir().unwrap().exists());
        out
    };
    let out = run_with(&resources(json!({})));
    assert_eq!(
        out.stdout, "made\n3\n",
        "mknod allowed, /dev/zero readable: {out:?}"
    );
    assert!(out.stderr.contains("Operation not permitted"), "{out:?}");
    // Without rules nothing is attached, and the same open gets past the device check.
    let out = run_with(&LinuxResources::default());
    assert_eq!(out.stdout, "made\n3\n", "{out:?}");
    assert!(!out.stderr.contains("Operation not permitted"), "{out:?}");
    // No controller was enabled in the hierarchy (on a hybrid host that would take it from v1).
    let enabled = fs::read_to_string(v2.join("cgroup.subtree_control")).unwrap();
    assert_eq!(enabled, enabled_before, "controllers enabled in cgroup2");
}

#[test]
fn user_namespace_joins_a_network_namespace_made_by_the_host() {
    require_root!();
    // As berthd does for bridge networking: the network namespace exists before the container,
    // owned by the host's user namespace, so the container cannot mount a sysfs of its own.
    let name = format!("berth-test-userns-{}", std::process::id());
    let status = Command::new("ip").args(["netns", "add", &name]).status().unwrap();
    assert!(status.success());
    let bundle = userns_bundle();
    let mut value = serde_json::to_value(with_user_namespace(
        docker_spec(&[
            "sh",
            "-c",
            "ls /sys | grep -c '^kernel$'; touch /sys/x 2>/dev/null || echo ro; ip -o link | wc -l",
        ]),
        USERNS_HOST_ID,
    ))
    .unwrap();
    for ns in value["linux"]["namespaces"].as_array_mut().unwrap() {
        if ns["type"] == "network" {
            ns["path"] = json!(format!("/run/netns/{name}"));
        }
    }
    let spec: Spec = serde_json::from_value(value).unwrap();
    let out = run_in(&bundle, &spec, None);
    let _ = Command::new("ip").args(["netns", "delete", &name]).status();
    let out = out.expect("container runs");
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.stdout, "1\nro\n1\n",
        "the host's /sys, read-only; only lo: {out:?}"
    );
    assert_no_leftover_mounts(&bundle);
}
