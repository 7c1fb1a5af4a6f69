//! Helpers for the root-only tests: unique names, commands, and guards that clean up in Drop (on panic
//! too).
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// A name unique to this test process: `bt<pid><suffix>` (keep it under 16 characters).
pub fn uniq(suffix: &str) -> String {
    format!("bt{}{suffix}", std::process::id())
}

pub fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("run {args:?}: {e}"))
}

/// Runs a command that must succeed; returns its stdout.
pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn link_exists(name: &str) -> bool {
    run(&["ip", "link", "show", name]).status.success()
}

/// Deletes a link on drop.
pub struct LinkGuard(pub String);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        let _ = run(&["ip", "link", "del", &self.0]);
    }
}

/// A network namespace made with `ip netns add`; on drop, its processes are killed and it is deleted.
pub struct NetnsGuard(pub String);

impl NetnsGuard {
    pub fn new(name: &str) -> Self {
        let _ = run(&["ip", "netns", "del", name]);
        ok(&["ip", "netns", "add", name]);
        NetnsGuard(name.to_string())
    }

    pub fn path(&self) -> std::path::PathBuf {
        format!("/run/netns/{}", self.0).into()
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.0];
        full.extend(args);
        run(&full)
    }

    pub fn spawn(&self, args: &[&str]) -> ChildGuard {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {args:?}: {e}"));
        ChildGuard(child)
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let pids = run(&["ip", "netns", "pids", &self.0]);
        for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
            if let Some(pid) = pid.parse().ok().and_then(rustix::process::Pid::from_raw) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        let _ = run(&["ip", "netns", "del", &self.0]);
    }
}

/// Kills a child process on drop.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Removes every rule of a test's `Nat` on drop.
pub struct NatGuard(pub berth_net::Nat);

impl Drop for NatGuard {
    fn drop(&mut self) {
        if let Err(e) = self.0.remove_all() {
            eprintln!("cleanup of iptables rules failed: {e}");
        }
    }
}

/// Waits until something accepts TCP connections at `addr` (at most `timeout`).
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) {
    let start = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(start.elapsed() < timeout, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
