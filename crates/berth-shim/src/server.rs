//! The shim's event loop: one thread, poll(2) over the listening socket, the container's output
//! (pipes or a pty master), the container's stdin, exec sessions, clients, and the SIGCHLD
//! self-pipe. See the protocol in the library (`berth_shim`).

use std::fs;
use std::io::{self as stdio, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use berth_shim::{frame_header, ExecRequest, ExitStatus, STREAM_STDERR, STREAM_STDOUT, STREAM_SYSTEM};
use oci_spec::runtime::Spec;
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::process::WaitOptions;

use berth_runtime as rt;

use crate::io;
use crate::log::JsonLog;
use crate::time::rfc3339;

/// Output queued for a client beyond this pauses the process(es) feeding it: their pipes are not
/// read until the client catches up, so the process blocks on a full pipe.
const HIGH_WATER: usize = 256 << 10;
/// An attached client that stays above [`HIGH_WATER`] this long is dropped: a slow reader must not
/// stall the container forever. (An exec session's client may stall its own process.)
const STALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Hard limit of a client's queue (reached only by the final drain of exiting processes).
const CLIENT_BUF_MAX: usize = 4 << 20;
/// Stdin bytes held for a process that is not reading; clients are not read beyond this.
const STDIN_BUF_MAX: usize = 64 << 10;
/// Longest command line (an `EXEC` carries a JSON process).
const COMMAND_MAX: usize = 1 << 20;
const MAX_CLIENTS: usize = 1024;
/// After a process exits, how long to wait for its output pipes to reach EOF (an orphan outside
/// the container's pid namespace may hold them open).
const DRAIN_GRACE: Duration = Duration::from_millis(250);
/// After the exit is recorded, how long clients get to read what is queued for them.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Reads per output source and wake-up, so one noisy source cannot starve the rest.
const READS_PER_WAKEUP: usize = 16;
/// Reads of a source when its process is gone: what is buffered, up to 2 MiB.
const DRAIN_READS: usize = 64;
const READ_BUF: usize = 32 * 1024;

pub struct Config {
    pub id: String,
    pub bundle: PathBuf,
    pub state: PathBuf,
    pub log: PathBuf,
    pub tty: bool,
    pub stdin: bool,
    pub stdin_once: bool,
    pub log_max_size: Option<u64>,
    pub log_max_files: u32,
    /// fsync the exit file (not for a container that is removed when it exits).
    pub durable: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Owner {
    Container,
    Exec(u32),
}

/// A process's output: a pipe read end or a pty master.
struct Source {
    fd: Option<OwnedFd>,
    stream: u8,
    owner: Owner,
}

/// A process's stdin: bytes from clients wait in `buf` until the process reads them.
#[derive(Default)]
struct Sink {
    fd: Option<OwnedFd>,
    buf: Vec<u8>,
    close_when_empty: bool,
}

impl Sink {
    fn wants_data(&self) -> bool {
        self.fd.is_some() && !self.close_when_empty && self.buf.len() < STDIN_BUF_MAX
    }

    fn push(&mut self, data: &[u8]) {
        if self.fd.is_some() && !self.close_when_empty {
            self.buf.extend_from_slice(data);
            self.flush();
        }
    }

    fn close(&mut self) {
        self.close_when_empty = true;
        self.flush();
    }

    fn flush(&mut self) {
        let Some(fd) = &self.fd else {
            self.buf = Vec::new();
            return;
        };
        let mut done = 0;
        while done < self.buf.len() {
            match io::write(fd.as_fd(), &self.buf[done..]) {
                Ok(n) => done += n,
                Err(e) if io::would_block(&e) => break,
                Err(_) => {
                    // The process closed its stdin (EPIPE): nothing more will be read.
                    self.fd = None;
                    self.buf = Vec::new();
                    return;
                }
            }
        }
        self.buf.drain(..done);
        if self.buf.is_empty() {
            if self.buf.capacity() > 4096 {
                self.buf = Vec::new();
            }
            if self.close_when_empty {
                self.fd = None;
            }
        }
    }
}

struct Exec {
    id: u32,
    pid: i32,
    client: Option<usize>,
    stdin: Sink,
    pty: Option<OwnedFd>,
    exit: Option<(i32, Instant)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Reading the command line.
    Pending,
    Attach {
        stdout: bool,
        stderr: bool,
        stdin: bool,
    },
    Waiter,
    Exec {
        id: u32,
        stdin: bool,
    },
    /// Answered; closed once the answer is sent.
    Done,
}

struct Client {
    sock: UnixStream,
    role: Role,
    line: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    /// Close once `out` is sent.
    closing: bool,
    /// The client shut down its write side.
    eof: bool,
    /// Since when more than [`HIGH_WATER`] bytes wait for it.
    stalled_since: Option<Instant>,
}

impl Client {
    fn queued(&self) -> usize {
        self.out.len() - self.out_pos
    }
}

enum Phase {
    Running,
    /// The container has exited; its output is drained until EOF or this deadline.
    Draining(Instant),
    /// The exit is recorded; clients are being flushed until the deadline.
    Closing(Instant),
}

#[derive(Clone, Copy)]
enum Tag {
    Signal,
    Listener,
    Source(usize),
    Stdin,
    ExecStdin(usize),
    Client(usize),
}

pub struct Shim {
    cfg: Config,
    sig: OwnedFd,
    listener: Option<UnixListener>,
    cgroups: rt::Cgroups,
    cgroup: Option<rt::CgroupPath>,
    launched: Option<rt::Launched>,
    /// The init died before `START` because its command cannot be executed: the answer `START`
    /// will get (exit code, message). The container counts as created until then.
    start_failure: Option<(i32, String)>,
    pid: i32,
    /// Set when the container has exited (or could not start).
    exit: Option<ExitStatus>,
    /// The exit file is written and waiters answered.
    finalized: bool,
    phase: Phase,
    sources: Vec<Source>,
    stdin: Sink,
    pty: Option<OwnedFd>,
    log: JsonLog,
    log_failed: bool,
    clients: Vec<Option<Client>>,
    execs: Vec<Exec>,
    next_exec: u32,
    rbuf: Vec<u8>,
    /// Give back the code pages of a rarely used path (START, EXEC) once it has run.
    trim: bool,
}

impl Shim {
    /// Creates the cgroup and the container process (waiting for `START`) and binds the socket.
    /// Returns the shim ready to [`Shim::run`].
    pub fn new(cfg: Config) -> Result<Shim, String> {
        let sig = io::install_signal_handlers().map_err(|e| format!("signal handlers: {e}"))?;
        let spec = read_spec(&cfg.bundle)?;
        let log = JsonLog::open(&cfg.log, cfg.log_max_size, cfg.log_max_files)
            .map_err(|e| format!("log {}: {e}", cfg.log.display()))?;

        let cgroups = rt::Cgroups::detect();
        let cgroup = match spec.linux().as_ref().and_then(|l| l.cgroups_path().as_ref()) {
            Some(path) => {
                let res = spec
                    .linux()
                    .as_ref()
                    .and_then(|l| l.resources().clone())
                    .unwrap_or_default();
                let name = path.to_string_lossy();
                Some(
                    cgroups
                        .create(&name, &res)
                        .map_err(|e| format!("cgroup {name}: {e}"))?,
                )
            }
            None => None,
        };

        let mut sources = Vec::new();
        let mut stdin = Sink::default();
        let mut pty = None;
        // With a TTY the container's init makes the terminal in its own devpts (/dev/pts/0) and
        // hands back the master once launched.
        let setup = (|| -> Result<Option<rt::Stdio>, String> {
            if cfg.tty {
                return Ok(None);
            }
            let (stdio, srcs, sink) = pipes(cfg.stdin).map_err(|e| format!("pipes: {e}"))?;
            sources.extend(srcs.into_iter().map(|(fd, stream)| Source {
                fd: Some(fd),
                stream,
                owner: Owner::Container,
            }));
            stdin.fd = sink;
            Ok(Some(stdio))
        })();
        let stdio = match setup {
            Ok(s) => s,
            Err(e) => {
                remove_cgroup(&cgroups, cgroup.as_ref());
                return Err(e);
            }
        };

        let launched = rt::launch(rt::LaunchOptions {
            bundle: &cfg.bundle,
            spec: &spec,
            stdio,
            console: cfg.tty,
            cgroup: cgroup.as_ref(),
        });
        drop(spec);
        let mut launched = match launched {
            Ok(l) => l,
            Err(e) => {
                remove_cgroup(&cgroups, cgroup.as_ref());
                return Err(format!("create container: {e}"));
            }
        };
        if cfg.tty {
            let terminal = (|| -> Result<(), String> {
                let master = launched
                    .take_pty_master()
                    .ok_or("the container init made no terminal")?;
                io::set_nonblocking(master.as_fd()).map_err(|e| e.to_string())?;
                let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| format!("dup: {e}"));
                sources.push(Source {
                    fd: Some(dup(&master)?),
                    stream: STREAM_STDOUT,
                    owner: Owner::Container,
                });
                if cfg.stdin {
                    stdin.fd = Some(dup(&master)?);
                }
                pty = Some(master);
                Ok(())
            })();
            if let Err(e) = terminal {
                // Dropping a launched init that never started kills and reaps it.
                drop(launched);
                remove_cgroup(&cgroups, cgroup.as_ref());
                return Err(format!("pty: {e}"));
            }
        }
        let pid = launched.pid();

        let bind = (|| -> stdio::Result<UnixListener> {
            write_file(
                &cfg.state.join(berth_shim::PID_FILE),
                format!("{pid}\n").as_bytes(),
            )?;
            let me = rustix::process::getpid().as_raw_nonzero().get();
            write_file(
                &cfg.state.join(berth_shim::SHIM_PID_FILE),
                format!("{me}\n").as_bytes(),
            )?;
            let sock = cfg.state.join(berth_shim::SOCKET_NAME);
            let _ = fs::remove_file(&sock);
            let (addr, _dir) = berth_shim::socket_path(&cfg.state)?;
            let l = UnixListener::bind(&addr)?;
            fs::set_permissions(&sock, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
            l.set_nonblocking(true)?;
            Ok(l)
        })();
        let listener = match bind {
            Ok(l) => l,
            Err(e) => {
                // Dropping a launched init that never started kills and reaps it.
                drop(launched);
                remove_cgroup(&cgroups, cgroup.as_ref());
                return Err(format!("socket: {e}"));
            }
        };

        Ok(Shim {
            cfg,
            sig,
            listener: Some(listener),
            cgroups,
            cgroup,
            launched: Some(launched),
            start_failure: None,
            pid,
            exit: None,
            finalized: false,
            phase: Phase::Running,
            sources,
            stdin,
            pty,
            log,
            log_failed: false,
            clients: Vec::new(),
            execs: Vec::new(),
            next_exec: 1,
            rbuf: vec![0; READ_BUF],
            trim: false,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Runs until the container has exited and its clients are served.
    pub fn run(mut self) {
        let mut tags: Vec<Tag> = Vec::new();
        let mut revents: Vec<PollFlags> = Vec::new();
        loop {
            if std::mem::take(&mut self.trim) {
                io::trim_code_pages();
            }
            if !self.poll_once(&mut tags, &mut revents) {
                break;
            }
            for (i, &tag) in tags.iter().enumerate() {
                let ev = revents[i];
                if !ev.is_empty() {
                    self.handle(tag, ev);
                }
            }
            self.sources.retain(|s| s.fd.is_some());
            self.step();
            if let Phase::Closing(deadline) = self.phase {
                // Wait for queued output, and for commands still on their way (answered from the exit).
                let busy = self
                    .clients
                    .iter()
                    .flatten()
                    .any(|c| c.out_pos < c.out.len() || c.role == Role::Pending);
                if !busy || Instant::now() >= deadline {
                    break;
                }
            }
        }
        // Everything is recorded; what is left is closed by exit.
        self.clients.clear();
    }

    /// Polls once; fills `tags` and `revents`. Returns false on a fatal poll error.
    fn poll_once(&mut self, tags: &mut Vec<Tag>, revents: &mut Vec<PollFlags>) -> bool {
        tags.clear();
        revents.clear();
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(8 + self.sources.len() + self.clients.len());
        fn add<'a>(
            fds: &mut Vec<PollFd<'a>>,
            tags: &mut Vec<Tag>,
            fd: BorrowedFd<'a>,
            tag: Tag,
            ev: PollFlags,
        ) {
            fds.push(PollFd::from_borrowed_fd(fd, ev));
            tags.push(tag);
        }
        add(&mut fds, tags, self.sig.as_fd(), Tag::Signal, PollFlags::IN);
        if let Some(l) = &self.listener {
            add(&mut fds, tags, l.as_fd(), Tag::Listener, PollFlags::IN);
        }
        let (container_paused, mut exec_paused) = (self.paused(Owner::Container), Vec::new());
        for e in &self.execs {
            if self.paused(Owner::Exec(e.id)) {
                exec_paused.push(e.id);
            }
        }
        for (i, s) in self.sources.iter().enumerate() {
            let paused = match s.owner {
                Owner::Container => container_paused,
                Owner::Exec(id) => exec_paused.contains(&id),
            };
            if let (Some(fd), false) = (&s.fd, paused) {
                add(&mut fds, tags, fd.as_fd(), Tag::Source(i), PollFlags::IN);
            }
        }
        if let Some(fd) = &self.stdin.fd {
            if !self.stdin.buf.is_empty() {
                add(&mut fds, tags, fd.as_fd(), Tag::Stdin, PollFlags::OUT);
            }
        }
        for (i, e) in self.execs.iter().enumerate() {
            if let Some(fd) = &e.stdin.fd {
                if !e.stdin.buf.is_empty() {
                    add(&mut fds, tags, fd.as_fd(), Tag::ExecStdin(i), PollFlags::OUT);
                }
            }
        }
        for (i, c) in self.clients.iter().enumerate() {
            let Some(c) = c else { continue };
            let mut ev = PollFlags::empty();
            if !c.eof && self.client_wants_read(c) {
                ev |= PollFlags::IN;
            }
            if c.out_pos < c.out.len() {
                ev |= PollFlags::OUT;
            }
            add(&mut fds, tags, c.sock.as_fd(), Tag::Client(i), ev);
        }
        let timeout = self.next_deadline().map(|d| {
            let left = d.saturating_duration_since(Instant::now()) + Duration::from_millis(1);
            Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            }
        });
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => {
                crate::error(&format!("poll: {e}"));
                return false;
            }
        }
        revents.extend(fds.iter().map(|f| f.revents()));
        true
    }

    fn client_wants_read(&self, c: &Client) -> bool {
        match c.role {
            Role::Attach { stdin: true, .. } if self.stdin.fd.is_some() => self.stdin.wants_data(),
            Role::Exec { id, stdin: true } => self
                .execs
                .iter()
                .find(|e| e.id == id)
                .is_none_or(|e| e.stdin.wants_data()),
            _ => true,
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let phase = match self.phase {
            Phase::Running => None,
            Phase::Draining(d) | Phase::Closing(d) => Some(d),
        };
        let exec = self.execs.iter().filter_map(|e| e.exit.map(|(_, d)| d));
        let stalled = self.clients.iter().flatten().filter_map(|c| match c.role {
            Role::Attach { .. } => c.stalled_since.map(|t| t + STALL_TIMEOUT),
            _ => None,
        });
        phase.into_iter().chain(exec).chain(stalled).min()
    }

    fn handle(&mut self, tag: Tag, ev: PollFlags) {
        match tag {
            Tag::Signal => {
                io::drain_signal_pipe(self.sig.as_fd());
                self.reap();
            }
            Tag::Listener => self.accept(),
            Tag::Source(i) => self.read_source(i, false),
            Tag::Stdin => self.stdin.flush(),
            Tag::ExecStdin(i) => self.execs[i].stdin.flush(),
            Tag::Client(id) => {
                if ev.intersects(PollFlags::OUT) {
                    self.flush_client(id);
                }
                if ev.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
                    self.read_client(id);
                }
                if ev.intersects(PollFlags::HUP | PollFlags::ERR) {
                    self.drop_client(id);
                }
            }
        }
    }

    /// Moves the state machine on: exec sessions that are done, the container's exit.
    fn step(&mut self) {
        let now = Instant::now();
        for id in 0..self.clients.len() {
            let stalled = self.clients[id].as_ref().is_some_and(|c| {
                matches!(c.role, Role::Attach { .. })
                    && c.stalled_since.is_some_and(|t| now >= t + STALL_TIMEOUT)
            });
            if stalled {
                crate::error("dropping an attached client that stopped reading the container's output");
                self.drop_client(id);
            }
        }
        let mut i = 0;
        while i < self.execs.len() {
            let e = &self.execs[i];
            let done = match e.exit {
                Some((_, deadline)) => {
                    now >= deadline || !self.sources.iter().any(|s| s.owner == Owner::Exec(e.id))
                }
                None => false,
            };
            if done {
                self.finish_exec(i);
            } else {
                i += 1;
            }
        }
        if let Phase::Draining(deadline) = self.phase {
            let open = self.sources.iter().any(|s| s.owner == Owner::Container);
            if !open || now >= deadline {
                self.finalize();
            }
        }
    }

    fn reap(&mut self) {
        if self.launched.is_some() && !self.init_died_before_start() {
            // Before START the init is our only child, and the runtime may have to reap it.
            return;
        }
        loop {
            let (pid, status) = match rustix::process::wait(WaitOptions::NOHANG) {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(Errno::INTR) => continue,
                Err(_) => return,
            };
            let pid = pid.as_raw_nonzero().get();
            let code = match (status.exit_status(), status.terminating_signal()) {
                (Some(c), _) => c,
                (None, Some(sig)) => 128 + sig,
                _ => continue,
            };
            if pid == self.pid {
                if self.exit.is_none() {
                    self.set_exited(code);
                }
            } else if let Some(e) = self.execs.iter_mut().find(|e| e.pid == pid && e.exit.is_none()) {
                e.exit = Some((code, Instant::now() + DRAIN_GRACE));
            }
            // Anything else is an orphan we adopted as subreaper: reaped, nothing to record.
        }
    }

    /// Called on SIGCHLD while the init waits for `START`: whether it has died. The runtime's init
    /// looks its command up before waiting, and exits at once (with its message in the runtime's
    /// channel) when that fails; a signal can kill it too. The runtime collects and reaps it.
    fn init_died_before_start(&mut self) -> bool {
        use rustix::process::{WaitId, WaitIdOptions};
        let Some(pid) = rustix::process::Pid::from_raw(self.pid) else {
            return false;
        };
        let opts = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
        if !matches!(rustix::process::waitid(WaitId::Pid(pid), opts), Ok(Some(_))) {
            return false;
        }
        let Some(launched) = self.launched.take() else {
            return false;
        };
        match launched.start() {
            // Not executable: the runtime has reaped it; START will be told.
            Err(e) if e.exec_kind().is_some() => {
                self.start_failure = Some((e.exit_code(), one_line(&e.to_string())));
                false
            }
            Err(e) => {
                // Reaped by the runtime too, but nothing to wait for: the container is done.
                crate::error(&format!("container init died before start: {e}"));
                self.set_exited(e.exit_code());
                false
            }
            // Killed without a word: still a zombie, for the caller's wait loop.
            Ok(()) => true,
        }
    }

    fn set_exited(&mut self, code: i32) {
        let oom = self.cgroup.as_ref().is_some_and(|cg| self.cgroups.oom_killed(cg));
        self.exit = Some(ExitStatus {
            code,
            oom_killed: oom,
            finished_at: rfc3339(SystemTime::now()),
        });
        self.launched = None;
        if matches!(self.phase, Phase::Running) {
            self.phase = Phase::Draining(Instant::now() + DRAIN_GRACE);
        }
    }

    /// The container's output is drained: record the exit and let everyone know.
    fn finalize(&mut self) {
        if self.finalized {
            return;
        }
        self.finalized = true;
        // What is readable now is the last of it.
        for i in 0..self.sources.len() {
            if self.sources[i].owner == Owner::Container {
                self.read_source(i, true);
                self.sources[i].fd = None;
            }
        }
        self.sources.retain(|s| s.fd.is_some());
        if let Err(e) = self.log.flush() {
            self.log_error(&e);
        }
        self.stdin = Sink::default();
        self.pty = None;
        let status = self.exit.clone().unwrap_or_else(|| ExitStatus {
            code: 255,
            oom_killed: false,
            finished_at: rfc3339(SystemTime::now()),
        });
        let line = status.to_line();
        if let Err(e) = write_exit_file(&self.cfg.state, &line, self.cfg.durable) {
            crate::error(&format!("write exit file: {e}"));
        }
        // Exec sessions that ended with the container get their EXIT frame; any that outlived it
        // (no pid namespace) are cut off.
        while let Some(i) = self.execs.iter().position(|e| e.exit.is_some()) {
            self.finish_exec(i);
        }
        self.execs.clear();
        self.sources.clear();
        // Before the answer: once berthd hears of the exit it may start the container again,
        // and the new init must not land in a cgroup that this shim is about to empty and remove.
        remove_cgroup(&self.cgroups, self.cgroup.take().as_ref());
        let reply = format!("EXIT {line}\n");
        for id in 0..self.clients.len() {
            let Some(c) = &mut self.clients[id] else { continue };
            match c.role {
                Role::Waiter => {
                    c.out.extend_from_slice(reply.as_bytes());
                    c.closing = true;
                }
                Role::Attach { .. } | Role::Exec { .. } => c.closing = true,
                Role::Pending | Role::Done => {}
            }
            self.flush_client(id);
        }
        let _ = fs::remove_file(self.cfg.state.join(berth_shim::SOCKET_NAME));
        // Connections already queued are still served (from the exit status) while closing.
        self.accept();
        self.listener = None;
        self.phase = Phase::Closing(Instant::now() + CLOSE_GRACE);
    }

    fn finish_exec(&mut self, i: usize) {
        // Take what is left in its pipes now (while the session still routes it to its client).
        let owner = Owner::Exec(self.execs[i].id);
        for j in 0..self.sources.len() {
            if self.sources[j].owner == owner {
                self.read_source(j, true);
                self.sources[j].fd = None;
            }
        }
        self.sources.retain(|s| s.fd.is_some());
        let e = self.execs.remove(i);
        if let Some(id) = e.client {
            let code = e.exit.map_or(255, |(c, _)| c);
            let msg = format!("EXIT {code}");
            if let Some(c) = self.clients.get_mut(id).and_then(|c| c.as_mut()) {
                c.out.extend_from_slice(&frame_header(STREAM_SYSTEM, msg.len()));
                c.out.extend_from_slice(msg.as_bytes());
                c.closing = true;
            }
            self.flush_client(id);
        }
    }

    fn accept(&mut self) {
        let Some(l) = &self.listener else { return };
        loop {
            match l.accept() {
                Ok((sock, _)) => {
                    if sock.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let client = Client {
                        sock,
                        role: Role::Pending,
                        line: Vec::new(),
                        out: Vec::new(),
                        out_pos: 0,
                        closing: false,
                        eof: false,
                        stalled_since: None,
                    };
                    if let Some(slot) = self.clients.iter_mut().find(|c| c.is_none()) {
                        *slot = Some(client);
                    } else if self.clients.len() < MAX_CLIENTS {
                        self.clients.push(Some(client));
                    }
                    // Over the limit the connection is just closed.
                }
                Err(e) if e.kind() == stdio::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Reads what source `i` has: a few reads on a wake-up, or (`drain`) until it is empty, at EOF,
    /// or [`DRAIN_READS`] reads (an orphan may write forever).
    fn read_source(&mut self, i: usize, drain: bool) {
        let mut buf = std::mem::take(&mut self.rbuf);
        for _ in 0..if drain { DRAIN_READS } else { READS_PER_WAKEUP } {
            let s = &self.sources[i];
            let Some(fd) = &s.fd else { break };
            match io::read(fd.as_fd(), &mut buf) {
                Ok(0) => {
                    self.sources[i].fd = None;
                    break;
                }
                Ok(n) => {
                    let (stream, owner) = (s.stream, s.owner);
                    self.output(owner, stream, &buf[..n]);
                    // Short read: likely empty now; poll tells us when there is more.
                    if !drain && (n < buf.len() || self.paused(owner)) {
                        break;
                    }
                }
                Err(e) if io::would_block(&e) => break,
                Err(_) => {
                    // EIO from a pty master once the other side is gone; any other error alike.
                    self.sources[i].fd = None;
                    break;
                }
            }
        }
        self.rbuf = buf;
    }

    fn output(&mut self, owner: Owner, stream: u8, data: &[u8]) {
        let hdr = frame_header(stream, data.len());
        match owner {
            Owner::Container => {
                if let Err(e) = self.log.write(stream, data) {
                    self.log_error(&e);
                }
                for id in 0..self.clients.len() {
                    let Some(c) = &mut self.clients[id] else { continue };
                    let wants = match c.role {
                        Role::Attach { stdout, stderr, .. } => {
                            (stream == STREAM_STDOUT && stdout) || (stream == STREAM_STDERR && stderr)
                        }
                        _ => false,
                    };
                    if wants && !c.closing {
                        c.out.extend_from_slice(&hdr);
                        c.out.extend_from_slice(data);
                        self.flush_client(id);
                    }
                }
            }
            Owner::Exec(eid) => {
                let Some(id) = self.execs.iter().find(|e| e.id == eid).and_then(|e| e.client) else {
                    return;
                };
                if let Some(c) = self.clients.get_mut(id).and_then(|c| c.as_mut()) {
                    c.out.extend_from_slice(&hdr);
                    c.out.extend_from_slice(data);
                }
                self.flush_client(id);
            }
        }
    }

    fn log_error(&mut self, e: &stdio::Error) {
        if !self.log_failed {
            self.log_failed = true;
            crate::error(&format!("writing {}: {e}", self.cfg.log.display()));
        }
    }

    /// Sends what is queued for client `id`; drops it when it is too far behind, gone, or done.
    fn flush_client(&mut self, id: usize) {
        let Some(c) = self.clients.get_mut(id).and_then(|c| c.as_mut()) else {
            return;
        };
        while c.out_pos < c.out.len() {
            match io::send(c.sock.as_fd(), &c.out[c.out_pos..]) {
                Ok(n) => c.out_pos += n,
                Err(e) if io::would_block(&e) => break,
                Err(_) => {
                    self.drop_client(id);
                    return;
                }
            }
        }
        if c.queued() >= HIGH_WATER {
            c.stalled_since.get_or_insert_with(Instant::now);
        } else {
            c.stalled_since = None;
        }
        if c.out_pos == c.out.len() {
            c.out.clear();
            c.out_pos = 0;
            if c.out.capacity() > 64 * 1024 {
                c.out = Vec::new();
            }
            if c.closing {
                self.drop_client(id);
            }
        } else if c.queued() > CLIENT_BUF_MAX {
            crate::error("dropping a client that is not reading its output");
            self.drop_client(id);
        } else if c.out_pos > 64 * 1024 && c.out_pos * 2 > c.out.len() {
            c.out.drain(..c.out_pos);
            c.out_pos = 0;
        }
    }

    /// Whether the output of `owner` waits for a slow client (see [`HIGH_WATER`]).
    fn paused(&self, owner: Owner) -> bool {
        match owner {
            Owner::Container => self
                .clients
                .iter()
                .flatten()
                .any(|c| matches!(c.role, Role::Attach { .. }) && !c.closing && c.queued() >= HIGH_WATER),
            Owner::Exec(eid) => self
                .execs
                .iter()
                .find(|e| e.id == eid)
                .and_then(|e| e.client)
                .and_then(|id| self.clients.get(id)?.as_ref())
                .is_some_and(|c| c.queued() >= HIGH_WATER),
        }
    }

    fn drop_client(&mut self, id: usize) {
        let Some(c) = self.clients.get_mut(id).and_then(|c| c.take()) else {
            return;
        };
        match c.role {
            Role::Attach { stdin: true, .. } if self.cfg.stdin_once && !c.eof => self.stdin.close(),
            Role::Exec { id: eid, .. } => {
                if let Some(e) = self.execs.iter_mut().find(|e| e.id == eid) {
                    e.client = None;
                    e.stdin.close();
                }
            }
            _ => {}
        }
        let _ = c.sock.shutdown(std::net::Shutdown::Both);
    }

    fn read_client(&mut self, id: usize) {
        let mut buf = [0u8; 8192];
        loop {
            let Some(c) = self.clients.get_mut(id).and_then(|c| c.as_mut()) else {
                return;
            };
            if c.eof {
                return;
            }
            let n = match stdio::Read::read(&mut c.sock, &mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == stdio::ErrorKind::Interrupted => continue,
                Err(e) if io::would_block(&e) => return,
                Err(_) => {
                    self.drop_client(id);
                    return;
                }
            };
            if n == 0 {
                c.eof = true;
                match c.role {
                    Role::Pending => self.drop_client(id),
                    Role::Attach { stdin: true, .. } if self.cfg.stdin_once => self.stdin.close(),
                    Role::Exec { id: eid, stdin: true } => {
                        if let Some(e) = self.execs.iter_mut().find(|e| e.id == eid) {
                            e.stdin.close();
                        }
                    }
                    _ => {}
                }
                return;
            }
            if c.role == Role::Pending {
                let data = &buf[..n];
                match data.iter().position(|&b| b == b'\n') {
                    Some(nl) => {
                        let mut line = std::mem::take(&mut c.line);
                        line.extend_from_slice(&data[..nl]);
                        let rest = data[nl + 1..].to_vec();
                        self.command(id, &line);
                        if !rest.is_empty() {
                            self.client_input(id, &rest);
                        }
                    }
                    None => {
                        c.line.extend_from_slice(data);
                        if c.line.len() > COMMAND_MAX {
                            self.drop_client(id);
                            return;
                        }
                    }
                }
            } else {
                let data = buf[..n].to_vec();
                self.client_input(id, &data);
                // Stop reading when the process is not keeping up.
                let Some(c) = self.clients.get(id).and_then(|c| c.as_ref()) else {
                    return;
                };
                if !self.client_wants_read(c) {
                    return;
                }
            }
        }
    }

    /// Bytes a client sent after its command: stdin for its process, or ignored.
    fn client_input(&mut self, id: usize, data: &[u8]) {
        let Some(c) = self.clients.get(id).and_then(|c| c.as_ref()) else {
            return;
        };
        match c.role {
            Role::Attach { stdin: true, .. } => self.stdin.push(data),
            Role::Exec { id: eid, stdin: true } => {
                if let Some(e) = self.execs.iter_mut().find(|e| e.id == eid) {
                    e.stdin.push(data);
                }
            }
            _ => {}
        }
    }

    fn reply(&mut self, id: usize, role: Role, msg: &str) {
        if let Some(c) = self.clients.get_mut(id).and_then(|c| c.as_mut()) {
            c.role = role;
            c.out.extend_from_slice(msg.as_bytes());
            c.out.push(b'\n');
            if role == Role::Done {
                c.closing = true;
            }
        }
        self.flush_client(id);
    }

    fn command(&mut self, id: usize, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r');
        let (cmd, arg) = line.split_once(' ').unwrap_or((line, ""));
        let nums: Vec<i64> = arg.split_whitespace().map_while(|a| a.parse().ok()).collect();
        // START and EXEC run code (the runtime, serde) that the event loop does not need later.
        self.trim |= cmd == "START" || cmd == "EXEC";
        match cmd {
            "ATTACH" if nums.len() == 3 => {
                let stdin = nums[0] == 1 && self.cfg.stdin;
                let role = Role::Attach {
                    stdin,
                    stdout: nums[1] == 1,
                    stderr: nums[2] == 1,
                };
                self.reply(id, role, "OK");
                if self.exit.is_some() {
                    if let Some(c) = self.clients.get_mut(id).and_then(|c| c.as_mut()) {
                        c.closing = true;
                    }
                    self.flush_client(id);
                }
            }
            "START" => {
                let msg = match self.launched.take() {
                    Some(l) => match l.start() {
                        Ok(()) => format!("OK {}", self.pid),
                        Err(e) => {
                            // The init has exited and the runtime has reaped it.
                            let code = e.exit_code();
                            if self.exit.is_none() {
                                self.set_exited(code);
                            }
                            format!("ERR {code} {}", one_line(&e.to_string()))
                        }
                    },
                    None if self.start_failure.is_some() => {
                        let (code, msg) = self.start_failure.take().unwrap_or_default();
                        self.set_exited(code);
                        format!("ERR {code} {msg}")
                    }
                    None if self.exit.is_some() => "ERR 1 container has exited".into(),
                    None => "ERR 1 container already started".into(),
                };
                self.reply(id, Role::Done, &msg);
            }
            "WAIT" => {
                if self.finalized {
                    let line = self.exit.as_ref().map(|e| e.to_line()).unwrap_or_default();
                    self.reply(id, Role::Done, &format!("EXIT {line}"));
                } else if let Some(c) = self.clients.get_mut(id).and_then(|c| c.as_mut()) {
                    c.role = Role::Waiter;
                }
            }
            "KILL" if nums.len() == 1 => {
                let msg = if self.exit.is_some() {
                    "ERR container is not running".to_string()
                } else if self.start_failure.take().is_some() {
                    // The init is gone already (and reaped: its pid must not be signalled).
                    self.set_exited(128 + nums[0] as i32);
                    "OK".into()
                } else {
                    // SAFETY: kill(2) with a pid we own (the container init is not yet reaped,
                    // so the pid cannot have been reused) and a caller-chosen signal number.
                    let rc = unsafe { libc::kill(self.pid, nums[0] as libc::c_int) };
                    if rc == 0 {
                        "OK".into()
                    } else {
                        format!("ERR {}", stdio::Error::last_os_error())
                    }
                };
                self.reply(id, Role::Done, &msg);
            }
            "RESIZE" if nums.len() == 2 || nums.len() == 3 => {
                let (rows, cols) = (nums[0].clamp(0, 65535) as u16, nums[1].clamp(0, 65535) as u16);
                let pty = match nums.get(2) {
                    Some(&p) => self
                        .execs
                        .iter()
                        .find(|e| i64::from(e.pid) == p)
                        .and_then(|e| e.pty.as_ref()),
                    None => self.pty.as_ref(),
                };
                let msg = match pty {
                    Some(fd) => match rt::resize(fd.as_fd(), rows, cols) {
                        Ok(()) => "OK".into(),
                        Err(e) => format!("ERR {}", one_line(&e.to_string())),
                    },
                    None => "ERR no tty".into(),
                };
                self.reply(id, Role::Done, &msg);
            }
            "STATE" => {
                let msg = match &self.exit {
                    Some(e) if self.finalized => format!("EXITED {}", e.to_line()),
                    _ if self.launched.is_some() || self.start_failure.is_some() => {
                        format!("CREATED {}", self.pid)
                    }
                    _ => format!("RUNNING {}", self.pid),
                };
                self.reply(id, Role::Done, &msg);
            }
            "EXEC" => match self.exec(arg) {
                Ok((eid, pid, stdin)) => {
                    if let Some(e) = self.execs.iter_mut().find(|e| e.id == eid) {
                        e.client = Some(id);
                    }
                    self.reply(id, Role::Exec { id: eid, stdin }, &format!("OK {pid}"));
                }
                Err((code, msg)) => self.reply(id, Role::Done, &format!("ERR {code} {}", one_line(&msg))),
            },
            _ => self.reply(id, Role::Done, "ERR unknown command"),
        }
    }

    /// Starts an exec session; returns (session id, pid, stdin wanted) or (exit code, message).
    fn exec(&mut self, json: &str) -> Result<(u32, i32, bool), (i32, String)> {
        if self.exit.is_some() || self.launched.is_some() || self.start_failure.is_some() {
            return Err((1, "container is not running".into()));
        }
        let req: ExecRequest =
            serde_json::from_str(json).map_err(|e| (1, format!("bad exec request: {e}")))?;
        let console = req.process.terminal().unwrap_or(false);
        let id = self.next_exec;
        self.next_exec += 1;
        let err = |e: stdio::Error| (1, e.to_string());
        let mut sink = Sink::default();
        let mut pty = None;
        let mut srcs = Vec::new();
        // With a terminal, the process makes it in the container's devpts (see `exec_in`).
        let stdio = if console {
            None
        } else {
            let (stdio, s, k) = pipes(req.stdin).map_err(err)?;
            srcs = s;
            sink.fd = k;
            Some(stdio)
        };
        // The container's seccomp profile applies to exec'd processes too; it is read again here
        // rather than kept in memory for the container's lifetime.
        let spec = read_spec(&self.cfg.bundle).map_err(|e| (1, e))?;
        let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
        let execd = rt::exec_in(rt::ExecOptions {
            pid: self.pid,
            process: &req.process,
            stdio,
            console,
            cgroup: self.cgroup.as_ref(),
            seccomp,
        })
        .map_err(|e| (e.exit_code(), e.to_string()))?;
        let pid = execd.pid;
        if let Some(master) = execd.pty_master {
            io::set_nonblocking(master.as_fd()).map_err(err)?;
            srcs.push((master.try_clone().map_err(err)?, STREAM_STDOUT));
            if req.stdin {
                sink.fd = Some(master.try_clone().map_err(err)?);
            }
            pty = Some(master);
        }
        self.sources.extend(srcs.into_iter().map(|(fd, stream)| Source {
            fd: Some(fd),
            stream,
            owner: Owner::Exec(id),
        }));
        self.execs.push(Exec {
            id,
            pid,
            client: None,
            stdin: sink,
            pty,
            exit: None,
        });
        Ok((id, pid, req.stdin))
    }
}

/// Pipes for a process without a tty: its stdio, our read ends (non-blocking) with their streams,
/// and our stdin write end (non-blocking) when `stdin`; otherwise its stdin is /dev/null.
#[allow(clippy::type_complexity)]
fn pipes(stdin: bool) -> stdio::Result<(rt::Stdio, Vec<(OwnedFd, u8)>, Option<OwnedFd>)> {
    let (out_r, out_w) = io::pipe()?;
    let (err_r, err_w) = io::pipe()?;
    io::set_nonblocking(out_r.as_fd())?;
    io::set_nonblocking(err_r.as_fd())?;
    let (child_in, sink) = if stdin {
        let (r, w) = io::pipe()?;
        io::set_nonblocking(w.as_fd())?;
        (r, Some(w))
    } else {
        (io::dev_null(false)?, None)
    };
    let stdio = rt::Stdio {
        stdin: child_in,
        stdout: out_w,
        stderr: err_w,
    };
    Ok((stdio, vec![(out_r, STREAM_STDOUT), (err_r, STREAM_STDERR)], sink))
}

fn read_spec(bundle: &std::path::Path) -> Result<Spec, String> {
    let path = bundle.join("config.json");
    let raw = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&raw).map_err(|e| format!("{}: {e}", path.display()))
}

fn remove_cgroup(cgroups: &rt::Cgroups, cgroup: Option<&rt::CgroupPath>) {
    if let Some(cg) = cgroup {
        if let Err(e) = cgroups.remove(cg) {
            crate::error(&format!("removing the cgroup: {e}"));
        }
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

fn write_file(path: &std::path::Path, data: &[u8]) -> stdio::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)?;
    f.write_all(data)
}

/// Writes `<state>/exit` atomically: a temporary file, fsync, rename, fsync of the directory
/// (without the fsyncs unless `durable`).
fn write_exit_file(state: &std::path::Path, line: &str, durable: bool) -> stdio::Result<()> {
    let tmp = state.join(".exit.tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)?;
    f.write_all(line.as_bytes())?;
    f.write_all(b"\n")?;
    if durable {
        f.sync_all()?;
    }
    drop(f);
    fs::rename(&tmp, state.join(berth_shim::EXIT_FILE))?;
    if durable {
        if let Ok(d) = fs::File::open(state) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
