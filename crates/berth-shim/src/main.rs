//! `berth-shim run --id <id> --bundle <dir> --state <dir> --log <path> [--tty] [--stdin]
//! [--stdin-once] [--no-sync] [--log-max-size <bytes>] [--log-max-files <n>] --ready-fd <fd>`
//!
//! One small process per container; see the protocol in the library (`berth_shim`).

mod io;
mod log;
mod server;
mod time;

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

use server::Config;

const USAGE: &str = "usage: berth-shim run --id <id> --bundle <dir> --state <dir> --log <path> [--tty] \
[--stdin] [--stdin-once] [--no-sync] [--log-max-size <bytes>] [--log-max-files <n>] --ready-fd <fd>";

/// Where `error` writes: `<state>/shim.log`.
static ERROR_LOG: OnceLock<PathBuf> = OnceLock::new();

/// Records an error of the shim itself in `<state>/shim.log` (stderr is /dev/null once detached).
pub fn error(msg: &str) {
    let Some(path) = ERROR_LOG.get() else {
        eprintln!("berth-shim: {msg}");
        return;
    };
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{} {msg}", time::rfc3339(SystemTime::now()));
    }
}

struct Args {
    cfg: Config,
    ready_fd: RawFd,
}

fn parse(mut args: impl Iterator<Item = OsString>) -> Result<Args, String> {
    if args.next().as_deref() != Some("run".as_ref()) {
        return Err("expected the `run` command".into());
    }
    let (mut id, mut bundle, mut state, mut log, mut ready_fd) = (None, None, None, None, None);
    let mut cfg = Config {
        id: String::new(),
        bundle: PathBuf::new(),
        state: PathBuf::new(),
        log: PathBuf::new(),
        tty: false,
        stdin: false,
        stdin_once: false,
        log_max_size: None,
        log_max_files: 1,
        durable: true,
    };
    while let Some(flag) = args.next() {
        let flag = flag.to_str().ok_or("non-UTF-8 flag")?.to_string();
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let num = |v: OsString| -> Result<u64, String> {
            v.to_str()
                .and_then(|s| s.parse().ok())
                .ok_or(format!("{flag}: not a number"))
        };
        match flag.as_str() {
            "--id" => id = Some(value()?.to_string_lossy().into_owned()),
            "--bundle" => bundle = Some(PathBuf::from(value()?)),
            "--state" => state = Some(PathBuf::from(value()?)),
            "--log" => log = Some(PathBuf::from(value()?)),
            "--tty" => cfg.tty = true,
            "--no-sync" => cfg.durable = false,
            "--stdin" => cfg.stdin = true,
            "--stdin-once" => cfg.stdin_once = true,
            "--log-max-size" => cfg.log_max_size = Some(num(value()?)?),
            "--log-max-files" => {
                cfg.log_max_files = u32::try_from(num(value()?)?).map_err(|e| e.to_string())?
            }
            "--ready-fd" => ready_fd = Some(RawFd::try_from(num(value()?)?).map_err(|e| e.to_string())?),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    cfg.id = id.ok_or("--id is required")?;
    let abs = |p: PathBuf, what: &str| -> Result<PathBuf, String> {
        std::path::absolute(&p).map_err(|e| format!("{what} {}: {e}", p.display()))
    };
    cfg.bundle = abs(bundle.ok_or("--bundle is required")?, "--bundle")?;
    cfg.state = abs(state.ok_or("--state is required")?, "--state")?;
    cfg.log = abs(log.ok_or("--log is required")?, "--log")?;
    let ready_fd = ready_fd.ok_or("--ready-fd is required")?;
    Ok(Args { cfg, ready_fd })
}

fn main() {
    let args = match parse(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("berth-shim: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    // A close-on-exec copy above stderr: the ready fd may be 0-2 (which become /dev/null), and
    // the container must not inherit it.
    // SAFETY: only borrowed for this one fcntl(F_DUPFD_CLOEXEC); an fd that is not open fails.
    let raw = unsafe { std::os::fd::BorrowedFd::borrow_raw(args.ready_fd) };
    let ready = match rustix::io::fcntl_dupfd_cloexec(raw, 3) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("berth-shim: --ready-fd {}: {e}", args.ready_fd);
            std::process::exit(2);
        }
    };
    if args.ready_fd > 2 {
        // SAFETY: the original ready fd is not used again (the copy above is); nothing else in
        // this process owns it.
        drop(unsafe { OwnedFd::from_raw_fd(args.ready_fd) });
    }
    if let Err(e) = std::fs::create_dir_all(&args.cfg.state) {
        say(
            &ready,
            &format!("ERROR state dir {}: {e}\n", args.cfg.state.display()),
        );
        std::process::exit(1);
    }
    let _ = ERROR_LOG.set(args.cfg.state.join(berth_shim::SHIM_LOG_FILE));

    // SAFETY: fork(2) in a process that is still single-threaded.
    match unsafe { libc::fork() } {
        -1 => {
            let e = std::io::Error::last_os_error();
            say(&ready, &format!("ERROR fork: {e}\n"));
            std::process::exit(1);
        }
        0 => {}
        // The parent: berthd reaps it at once; the shim lives on in the child.
        _ => std::process::exit(0),
    }
    close_inherited(ready.as_raw_fd());
    if let Err(e) = detach() {
        error(&format!("detach: {e}"));
        say(&ready, &format!("ERROR detach: {e}\n"));
        std::process::exit(1);
    }
    let shim = match server::Shim::new(args.cfg) {
        Ok(s) => s,
        Err(e) => {
            error(&e);
            say(&ready, &format!("ERROR {}\n", e.replace('\n', " ")));
            std::process::exit(1);
        }
    };
    say(&ready, &format!("READY {}\n", shim.pid()));
    drop(ready);
    // Start-up code is done with: give its pages back (see `trim_code_pages`).
    io::trim_code_pages();
    shim.run();
    std::process::exit(0);
}

fn say(fd: &OwnedFd, msg: &str) {
    let _ = rustix::io::write(fd, msg.as_bytes());
}

/// New session, no controlling terminal, subreaper, cwd `/`, stdio on /dev/null.
fn detach() -> std::io::Result<()> {
    rustix::process::setsid()?;
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
    std::env::set_current_dir(Path::new("/"))?;
    let null = io::dev_null(true)?;
    for fd in [0, 1, 2] {
        // SAFETY: dup2 onto the standard descriptors, which this process owns.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Closes every fd above stderr except `keep`: whatever berthd leaked to us must not live on in
/// the shim (and in the container) for the container's lifetime.
fn close_inherited(keep: RawFd) {
    let fds: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(d) => d
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => return,
    };
    for fd in fds.into_iter().filter(|&fd| fd > 2 && fd != keep) {
        // SAFETY: close(2) on an inherited descriptor that nothing in this process owns (the
        // directory handle used above is already closed; closing it again is a harmless EBADF).
        unsafe {
            libc::close(fd);
        }
    }
}
