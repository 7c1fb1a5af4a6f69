//! Harness for the integration tests: a real berthd, as root, on a temporary root and socket,
//! driven through `berth`, the stock docker CLI, or raw HTTP. Everything it starts it stops, and
//! everything it creates lives under one temporary directory that is removed afterwards.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Directory holding the built binaries (`berthd`, `berth`): `$BERTH_BIN_DIR`, or the cargo target
/// directory this test binary was built into.
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("BERTH_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo build --workspace --bins` first",
        p.display()
    );
    p
}

/// The repository's top directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// Integration tests need root (namespaces, mounts, chown); they fail loudly rather than skip.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "integration tests must run as root");
}

/// A busybox rootfs tarball made from Debian's busybox-static by the project's own script; built
/// once and kept beside the test binaries (not in /tmp, where every run would leave one).
pub fn busybox_rootfs() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let out = bin_dir().join("berth-test-busybox-rootfs.tar");
        if !out.exists() {
            let tmp = bin_dir().join(format!(".berth-test-busybox-rootfs.{}.tar", std::process::id()));
            let status = Command::new(repo_root().join("scripts/make-busybox-rootfs.sh"))
                .arg(&tmp)
                .status()
                .expect("running make-busybox-rootfs.sh");
            assert!(
                status.success(),
                "make-busybox-rootfs.sh failed (is busybox-static installed?)"
            );
            std::fs::rename(&tmp, &out).expect("keeping the busybox rootfs");
        }
        out
    })
}

/// A running berthd with its own root, exec root and socket.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    /// This daemon's default bridge (`--bridge`): `bt<pid>x<n>`, unique on the host.
    pub bridge: String,
    /// Its gateway address and prefix (`--bip`): `172.29.<n>.1/24`.
    pub bip: String,
}

/// A bridge name and a `--bip` for a new daemon: unique in this process, and on a /24 no interface of
/// the host has an address in (other test processes' daemons).
fn new_bridge() -> (String, String) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let pid = std::process::id();
    let addrs = Command::new("ip")
        .args(["-o", "-4", "addr"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    loop {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let n = (pid.wrapping_mul(7).wrapping_add(k)) % 250 + 1;
        if k >= 250 || !addrs.contains(&format!(" 172.29.{n}.")) {
            return (format!("bt{}x{k}", pid % 10_000_000), format!("172.29.{n}.1/24"));
        }
    }
}

/// Whether this berthd has the network flags (`--bridge`, `--bip`).
fn berthd_has_bridge_flags() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        Command::new(bin("berthd"))
            .arg("--help")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--bip"))
    })
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with_config("{}")
    }

    /// A daemon with the busybox image loaded.
    pub fn with_busybox() -> Daemon {
        let d = Daemon::start();
        d.import_busybox();
        d
    }

    /// A daemon whose `daemon.json` is `config`.
    pub fn start_with_config(config: &str) -> Daemon {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("berth-it-")
            .tempdir()
            .expect("temp dir");
        std::fs::write(dir.path().join("daemon.json"), config).expect("daemon.json");
        let (bridge, bip) = new_bridge();
        let mut d = Daemon {
            dir,
            child: None,
            bridge,
            bip,
        };
        d.spawn();
        d
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("berth.sock")
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// Starts berthd and waits until it answers `/_ping`.
    pub fn spawn(&mut self) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("berthd.log"))
            .expect("log file");
        let child = Command::new(bin("berthd"))
            .arg("--root")
            .arg(self.root())
            .arg("--exec-root")
            .arg(self.dir.path().join("run"))
            .arg("--host")
            .arg(self.host())
            .arg("--config-file")
            .arg(self.dir.path().join("daemon.json"))
            .arg("--log-level")
            .arg("debug")
            .arg("--cgroup-parent")
            .arg(self.cgroup_parent())
            .args(if berthd_has_bridge_flags() {
                vec!["--bridge", &self.bridge, "--bip", &self.bip]
            } else {
                vec![]
            })
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting berthd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, _)) = self.try_api("GET", "/_ping", &[]) {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("berthd exited with {status}; log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "berthd did not answer in time; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// This daemon's own parent cgroup, so tests running side by side can count their cgroups.
    pub fn cgroup_parent(&self) -> String {
        format!(
            "berth-test-{}",
            self.dir.path().file_name().unwrap().to_string_lossy()
        )
    }

    /// Cgroup directories of this daemon's containers that exist now, in any hierarchy.
    pub fn cgroups(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for h in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let parent = h.path().join(self.cgroup_parent());
            for c in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
                if c.path().is_dir() {
                    out.push(c.path());
                }
            }
        }
        out
    }

    /// The tag on this daemon's iptables comments (`berth-<bridge>`).
    pub fn net_tag(&self) -> String {
        format!("berth-{}", self.bridge)
    }

    /// Bridges of the user-defined networks this daemon made (from its records).
    pub fn user_bridges(&self) -> Vec<String> {
        std::fs::read_dir(self.root().join("network/networks"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .filter_map(|v| v["bridge"].as_str().map(String::from))
            .collect()
    }

    /// Deletes this daemon's bridges (default and user-defined), their tagged iptables rules and
    /// nat chains (`B-<bridge>`).
    fn remove_network(&self) {
        for bridge in std::iter::once(self.bridge.clone()).chain(self.user_bridges()) {
            remove_bridge(&bridge);
        }
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("berthd.log")).unwrap_or_default()
    }

    /// SIGTERM, then wait; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        // SAFETY: kill(2) on our own child's pid; it has not been reaped yet, so the pid is ours.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().expect("waiting for berthd")
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("daemon running");
        child.kill().expect("kill -9 berthd");
        child.wait().expect("reaping berthd");
    }

    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn();
    }

    /// Runs the `berth` CLI against this daemon.
    pub fn berth(&self, args: &[&str]) -> Output {
        self.berth_with_stdin(args, None)
    }

    pub fn berth_with_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        run(
            Command::new(bin("berth"))
                .args(args)
                .env("BERTH_HOST", self.host())
                .env_remove("DOCKER_HOST"),
            stdin,
        )
    }

    /// Runs the stock docker CLI (client only) against this daemon.
    pub fn docker(&self, args: &[&str]) -> Output {
        run(
            Command::new("docker")
                .args(args)
                .env("DOCKER_HOST", self.host())
                .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
                .env("DOCKER_BUILDKIT", "0")
                .env("DOCKER_CLI_HINTS", "false"),
            None,
        )
    }

    /// One raw HTTP/1.1 request; returns status and body. Panics when the daemon is unreachable.
    pub fn api(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        self.try_api(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// `api`, with the body parsed as JSON.
    pub fn api_json(&self, method: &str, path: &str, body: &[u8]) -> (u16, serde_json::Value) {
        let (status, bytes) = self.api(method, path, body);
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("{method} {path}: not JSON: {}", String::from_utf8_lossy(&bytes)));
        (status, v)
    }

    pub fn try_api(&self, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        self.try_api_slow_tail(method, path, body, 0)
    }

    /// A raw request whose last `tail` bytes of body are sent after a pause, as a client that
    /// makes its upload on the fly does. Fails when the daemon answered and closed the
    /// connection before the whole body was sent (the client then sees "broken pipe").
    pub fn try_api_slow_tail(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        tail: usize,
    ) -> std::io::Result<(u16, Vec<u8>)> {
        let mut s = UnixStream::connect(self.socket())?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: berth\r\nConnection: close\r\nContent-Length: {}\r\nContent-Type: application/x-tar\r\n\r\n",
            body.len()
        )?;
        let (head, rest) = body.split_at(body.len() - tail);
        s.write_all(head)?;
        if tail > 0 {
            std::thread::sleep(Duration::from_millis(300));
            s.write_all(rest)?;
        }
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        parse_response(&raw)
    }

    /// Loads a busybox image (from the project's rootfs script) as `busybox:latest` through
    /// `berth import`, as a user would.
    pub fn import_busybox(&self) -> String {
        let tar = busybox_rootfs().to_str().unwrap().to_string();
        let out = self.berth(&["import", "--change", "CMD [\"sh\"]", &tar, "busybox:latest"]);
        assert_success(&out, "berth import busybox");
        stdout(&out).trim().to_string()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            let status = self.stop();
            if !status.success() && !std::thread::panicking() {
                eprintln!("berthd exited with {status}; log:\n{}", self.log());
            }
        }
        // Containers a failed test left running: kill their shims' processes, then the cgroups.
        for cg in self.cgroups() {
            for pid in std::fs::read_to_string(cg.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
            {
                if let Ok(pid) = pid.trim().parse::<i32>() {
                    // SAFETY: kill(2) with a pid read from the container's own cgroup.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
        self.remove_network();
        for cg in self.cgroups() {
            let _ = std::fs::remove_dir(&cg);
        }
        for h in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(h.path().join(self.cgroup_parent()));
        }
        for line in std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
        {
            if let Some(mp) = line
                .split(' ')
                .nth(4)
                .filter(|m| m.starts_with(self.dir.path().to_str().unwrap()))
            {
                let c = std::ffi::CString::new(mp).unwrap();
                // SAFETY: umount2(2) on a mount point under this test's own directory.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

/// Deletes a bridge, the iptables rules tagged `berth-<bridge>:` and the chain `B-<bridge>`.
fn remove_bridge(bridge: &str) {
    let quiet = |args: &[&str]| {
        let _ = Command::new(args[0])
            .args(&args[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    };
    quiet(&["ip", "link", "del", bridge]);
    // Comments are `<tag>:...`: the colon keeps `berth-bt1x1` from matching `berth-bt1x10`.
    let tag = format!("berth-{bridge}:");
    for table in ["nat", "filter", "mangle"] {
        let rules = Command::new("iptables")
            .args(["-w", "-t", table, "-S"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for rule in rules.lines().filter(|l| l.starts_with("-A ") && l.contains(&tag)) {
            let del = format!("iptables -w -t {table} -D {}", &rule[3..]);
            quiet(&["sh", "-c", &del]);
        }
    }
    let chain = format!("B-{}", bridge);
    quiet(&["iptables", "-w", "-t", "nat", "-F", &chain]);
    quiet(&["iptables", "-w", "-t", "nat", "-X", &chain]);
}

fn run(cmd: &mut Command, stdin: Option<&[u8]>) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    // A hung daemon must fail the test, not hang the whole run: kill the command after 2 minutes.
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watched = done.clone();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if watched.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !watched.load(std::sync::atomic::Ordering::SeqCst) {
            // SAFETY: kill(2) on the pid of a child this harness started and has not reaped.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    });
    let out = child.wait_with_output().expect("waiting for command");
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    out
}

/// Parses an HTTP/1.1 response (chunked or not) into status and body.
fn parse_response(raw: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let mut body = raw[end + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let line_end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| bad("bad chunk"))?;
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..line_end]).trim(), 16)
                .map_err(|_| bad("bad chunk size"))?;
            rest = &rest[line_end + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body = out;
    }
    Ok((status, body))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
pub fn assert_success(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

#[track_caller]
pub fn assert_failure(o: &Output, what: &str) {
    assert!(
        !o.status.success(),
        "{what} unexpectedly succeeded:\nstdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
}

/// Builds a tar archive in memory from (path, content) regular files.
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// A docker-archive (Docker 25+ layout) holding one image whose single layer is `layer_tar`.
/// Returns the archive bytes and the image ID.
pub fn docker_archive(layer_tar: &[u8], tag: &str) -> (Vec<u8>, String) {
    let diff_id = sha256_hex(layer_tar);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "test"}]
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_hex = sha256_hex(&config);
    let manifest = serde_json::json!([{
        "Config": format!("blobs/sha256/{config_hex}"),
        "RepoTags": [tag],
        "Layers": [format!("blobs/sha256/{diff_id}")]
    }]);
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let archive = tar_of(&[
        (&format!("blobs/sha256/{diff_id}"), layer_tar),
        (&format!("blobs/sha256/{config_hex}"), &config),
        ("manifest.json", &manifest),
    ]);
    (archive, format!("sha256:{config_hex}"))
}

/// Lines of berthd's mounts (for leak checks).
pub fn mounts_under(dir: &Path) -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(dir.to_str().unwrap()))
        .count()
}
