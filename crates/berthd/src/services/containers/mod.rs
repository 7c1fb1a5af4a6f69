//! The container service: creates containers from images, starts each under its own shim, tracks
//! their lifecycle, and finds them again after berthd restarts.
//!
//! Each container has a directory `<root>/containers/<id>` (its record, OCI bundle, overlay
//! upper/work dirs, rootfs mount point, hosts files, log) and, while its shim lives,
//! `<exec-root>/shims/<id>` (the shim's socket and exit file).

mod devices;
mod error;
mod exec;
pub mod files;
mod health;
mod logs;
mod mounts;
mod names;
mod networking;
mod ops;
mod record;
mod sharing;
mod shim;
pub mod spec;
mod volumes;

pub use error::{ContainerError, Result};
pub use exec::{ExecConfig, ExecEntry};
pub use logs::{parse_time as logs_time, stream as stream_logs, LogOptions};
pub use networking::endpoint_settings as networking_settings;
pub use record::{ContainerRecord, Paths};

use super::events::EventBus;
use super::userns::RemappedRoot;
use berth_api::container::{ContainerState, CreateRequest, CreateResponse, WaitResponse, ZERO_TIME};
use berth_api::Filters;
use berth_image::ImageStore;
use serde_json::Value;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::net::UnixStream;
use tokio::sync::{oneshot, watch};

/// What waiters watch: how often the container exited, whether it runs, whether it is gone.
#[derive(Debug, Clone, Default)]
pub struct Life {
    pub exits: u64,
    pub running: bool,
    pub removed: bool,
    pub exit_code: i64,
}

struct PendingAttach {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    reply: oneshot::Sender<std::io::Result<UnixStream>>,
}

pub struct Entry {
    pub id: String,
    pub paths: Paths,
    rec: Mutex<ContainerRecord>,
    life: watch::Sender<Life>,
    pending: Mutex<Vec<PendingAttach>>,
    /// Serialises start, stop and remove of one container.
    op: tokio::sync::Mutex<()>,
}

impl Entry {
    pub fn record(&self) -> ContainerRecord {
        self.rec.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut ContainerRecord)) -> ContainerRecord {
        let mut r = self.rec.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut r);
        r.clone()
    }

    pub fn life(&self) -> watch::Receiver<Life> {
        self.life.subscribe()
    }
}

/// Where a stream of a container's output comes from, for an attach.
pub enum AttachSource {
    Now(UnixStream),
    AtStart(oneshot::Receiver<std::io::Result<UnixStream>>),
}

#[derive(Default)]
struct Table {
    by_id: HashMap<String, Arc<Entry>>,
    names: HashMap<String, String>,
}

#[derive(Clone)]
pub struct ContainerService {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    shims: PathBuf,
    /// Containers' cgroups are `<cgroup_parent>/<id>` in every hierarchy.
    cgroup_parent: String,
    images: Arc<ImageStore>,
    events: Arc<EventBus>,
    network: super::network::NetworkService,
    volumes: super::volumes::VolumeService,
    /// `--userns-remap`: containers not created with `--userns=host` run in its user namespace.
    userns: Option<Arc<RemappedRoot>>,
    table: Mutex<Table>,
    execs: Mutex<HashMap<String, Arc<ExecEntry>>>,
    /// Shims this berthd started (its children, as subreaper), to reap when they end.
    shim_pids: Mutex<std::collections::HashSet<i32>>,
}

/// Fixed nine-digit fractions, so that records sort by creation time as strings.
fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ContainerError::Internal(e.to_string()))?
}

/// The services and stores that containers are made from.
pub struct Collaborators {
    pub images: Arc<ImageStore>,
    pub events: Arc<EventBus>,
    pub network: super::network::NetworkService,
    pub volumes: super::volumes::VolumeService,
    /// `--userns-remap`.
    pub userns: Option<Arc<RemappedRoot>>,
}

impl ContainerService {
    /// Loads every container recorded under `root` and reconnects to the shims still running.
    pub async fn open(
        root: &Path,
        exec_root: &Path,
        cgroup_parent: &str,
        uses: Collaborators,
    ) -> Result<ContainerService> {
        let Collaborators {
            images,
            events,
            network,
            volumes,
            userns,
        } = uses;
        let root = root.join("containers");
        let shims = exec_root.join("shims");
        std::fs::create_dir_all(&root)?;
        std::fs::create_dir_all(&shims)?;
        let svc = ContainerService {
            inner: Arc::new(Inner {
                root: root.clone(),
                shims,
                cgroup_parent: cgroup_parent.trim_matches('/').to_string(),
                images,
                events,
                network,
                volumes,
                userns,
                table: Mutex::new(Table::default()),
                execs: Mutex::new(HashMap::new()),
                shim_pids: Mutex::new(Default::default()),
            }),
        };
        for dir in std::fs::read_dir(&root)? {
            let dir = dir?.path();
            let rec: ContainerRecord = match std::fs::read(dir.join(record::RECORD_FILE))
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(r) => r,
                Err(e) => {
                    // A container whose create never finished: nothing to keep.
                    tracing::warn!(dir = %dir.display(), error = %e, "removing unreadable container directory");
                    let _ = unmount(&dir.join("rootfs"));
                    let _ = std::fs::remove_dir_all(&dir);
                    continue;
                }
            };
            svc.reclaim_volumes(&rec);
            let entry = svc.insert(rec);
            svc.recover(entry).await;
        }
        // Docker's rule at daemon start: `always` containers run again, and `unless-stopped` ones
        // unless someone stopped them.
        for entry in svc.all() {
            let rec = entry.record();
            let policy = rec.host_config.restart_policy.name.as_str();
            let wanted = policy == "always" || (policy == "unless-stopped" && !rec.manually_stopped);
            if wanted && !rec.state.running && rec.has_been_started {
                if let Err(e) = svc.start(&rec.id).await {
                    tracing::warn!(id = %rec.short_id(), error = %e, "restart at daemon start failed");
                }
            }
        }
        Ok(svc)
    }

    fn insert(&self, rec: ContainerRecord) -> Arc<Entry> {
        let running = rec.state.running;
        let entry = Arc::new(Entry {
            id: rec.id.clone(),
            paths: Paths::new(&self.inner.root, &self.inner.shims, &rec.id),
            life: watch::Sender::new(Life {
                running,
                exit_code: rec.state.exit_code,
                ..Default::default()
            }),
            pending: Mutex::new(Vec::new()),
            op: tokio::sync::Mutex::new(()),
            rec: Mutex::new(rec.clone()),
        });
        let mut t = self.table();
        t.names.insert(rec.name.clone(), rec.id.clone());
        t.by_id.insert(rec.id.clone(), entry.clone());
        entry
    }

    /// Publishes a container event with Docker's attributes (image, name, labels).
    fn emit(&self, rec: &ContainerRecord, action: &str, extra: &[(&str, String)]) {
        let mut attrs: BTreeMap<String, String> = rec.config.labels.clone().unwrap_or_default();
        attrs.insert("image".into(), rec.image_name.clone());
        attrs.insert("name".into(), rec.name.clone());
        for (k, v) in extra {
            attrs.insert((*k).into(), v.clone());
        }
        self.inner.events.publish("container", action, &rec.id, attrs);
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.inner.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// After a berthd restart: a container recorded as running either still runs under its
    /// shim (watch it again) or exited meanwhile (take the exit status the shim left).
    async fn recover(&self, entry: Arc<Entry>) {
        let rec = entry.record();
        if !rec.state.running {
            return;
        }
        match shim::command(&entry.paths.shim, "STATE").await {
            Ok(line) if line.starts_with("RUNNING") || line.starts_with("CREATED") => {
                tracing::info!(id = %rec.short_id(), "reattached to running container");
                self.restore_networks(&rec).await;
                self.monitor(entry);
            }
            _ => {
                let status = shim::read_exit_file(&entry.paths.shim).unwrap_or(berth_shim::ExitStatus {
                    code: 255,
                    oom_killed: false,
                    finished_at: now(),
                });
                self.on_exit(&entry, status).await;
            }
        }
    }

    pub fn resolve(&self, name: &str) -> Result<Arc<Entry>> {
        let t = self.table();
        let bare = name.strip_prefix('/').unwrap_or(name);
        if let Some(e) = t.by_id.get(bare) {
            return Ok(e.clone());
        }
        if let Some(id) = t.names.get(bare) {
            return Ok(t.by_id[id].clone());
        }
        if !bare.is_empty() && bare.bytes().all(|b| b.is_ascii_hexdigit()) {
            let matches: Vec<&Arc<Entry>> = t.by_id.values().filter(|e| e.id.starts_with(bare)).collect();
            match matches.len() {
                1 => return Ok(matches[0].clone()),
                n if n > 1 => {
                    return Err(ContainerError::Invalid(format!(
                        "multiple IDs found with provided prefix: {bare}"
                    )))
                }
                _ => {}
            }
        }
        Err(ContainerError::NotFound(name.to_string()))
    }

    pub fn all(&self) -> Vec<Arc<Entry>> {
        self.table().by_id.values().cloned().collect()
    }

    /// `POST /containers/create`.
    pub async fn create(&self, name: Option<&str>, mut req: CreateRequest) -> Result<CreateResponse> {
        let image_name = req.config.image.clone();
        if image_name.is_empty() {
            return Err(ContainerError::Invalid("config.Image is required".into()));
        }
        let images = self.inner.images.clone();
        let lookup = image_name.clone();
        let image = blocking(move || images.resolve(&lookup).map_err(ContainerError::from)).await?;
        spec::merge_image_config(&mut req.config, image.config.config.as_ref());
        let (path, args) = spec::command(&req.config).map_err(ContainerError::Invalid)?;
        self.check_networks(&req)?;
        if let Some(p) = req.host_config.restart_policy.name.as_str().into() {
            if !matches!(p, "" | "no" | "always" | "on-failure" | "unless-stopped") {
                return Err(ContainerError::Invalid(format!("invalid restart policy '{p}'")));
            }
        }
        if req.host_config.auto_remove && !matches!(req.host_config.restart_policy.name.as_str(), "" | "no") {
            return Err(ContainerError::Invalid(
                "can't create 'AutoRemove' container with restart policy".into(),
            ));
        }
        self.check_userns(&req.host_config)?;
        sharing::check(
            &req.host_config,
            self.inner.userns.is_some() && req.host_config.userns_mode != "host",
        )?;
        devices::plan(&req.host_config).map_err(ContainerError::Invalid)?;
        if req.host_config.ipc_mode.is_empty() {
            // dockerd's default-ipc-mode.
            req.host_config.ipc_mode = "private".into();
        }
        if req.host_config.uts_mode == "host" && !req.config.hostname.is_empty() {
            return Err(ContainerError::Invalid(
                "conflicting options: hostname and the UTS mode".into(),
            ));
        }
        let mut mount_points = self.plan_mounts(&req)?;
        let id = random_id();
        let name = {
            let mut t = self.table();
            let name = match name.filter(|n| !n.is_empty()) {
                Some(n) => {
                    let n = names::validate(n).map_err(ContainerError::Invalid)?;
                    if let Some(other) = t.names.get(&n) {
                        return Err(ContainerError::Conflict(format!(
                            "Conflict. The container name \"/{n}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                        )));
                    }
                    n
                }
                None => (0..)
                    .map(names::random_name)
                    .find(|n| !t.names.contains_key(n))
                    .expect("a free name"),
            };
            // Reserve the name while the directory is being made.
            t.names.insert(name.clone(), id.clone());
            name
        };
        let lower_dirs: Vec<PathBuf> = image
            .record
            .layers
            .iter()
            .rev()
            .map(|l| self.inner.images.layers.fs_dir(&l.chain_id))
            .collect();
        if let Err(e) = self.claim_volumes(&id, &mut mount_points, &req) {
            self.table().names.remove(&name);
            return Err(e);
        }
        let rec = ContainerRecord {
            id: id.clone(),
            name: name.clone(),
            created: now(),
            image_id: image.record.id.to_string(),
            image_name,
            config: req.config,
            host_config: req.host_config,
            path,
            args,
            state: ContainerState::default(),
            restart_count: 0,
            lower_dirs,
            has_been_started: false,
            manually_stopped: false,
            networks: Vec::new(),
            endpoints_config: networking::endpoints_config(&req.networking_config),
            mount_points,
        };
        let paths = Paths::new(&self.inner.root, &self.inner.shims, &id);
        let made = {
            let (rec, paths) = (rec.clone(), paths.clone());
            let owner = self.remapped(&rec).map(|u| u.root_ids());
            blocking(move || prepare_dir(&rec, &paths, owner)).await
        };
        if let Err(e) = made {
            self.table().names.remove(&name);
            self.release_volumes(&id, &rec.mount_points, true);
            let _ = std::fs::remove_dir_all(&paths.dir);
            return Err(e);
        }
        self.emit(&rec, "create", &[]);
        self.insert(rec);
        Ok(CreateResponse { id, warnings: vec![] })
    }

    /// The user namespace a container runs in: the daemon's remapped root unless it asked for
    /// the host's (`--userns=host`).
    fn remapped(&self, rec: &ContainerRecord) -> Option<Arc<RemappedRoot>> {
        let host = rec.host_config.userns_mode == "host";
        self.inner.userns.clone().filter(|_| !host)
    }

    /// Docker's rules for `--userns` and what a user namespace cannot do.
    fn check_userns(&self, host: &berth_api::container::HostConfig) -> Result<()> {
        if !matches!(host.userns_mode.as_str(), "" | "host") {
            return Err(ContainerError::Invalid(format!(
                "invalid USER mode: {}",
                host.userns_mode
            )));
        }
        if self.inner.userns.is_none() || host.userns_mode == "host" {
            return Ok(());
        }
        if host.privileged {
            return Err(ContainerError::Invalid(
                "privileged mode is incompatible with user namespaces.  You must run the container in the host namespace when running privileged mode".into(),
            ));
        }
        if spec::network_mode(host) == "host" {
            return Err(ContainerError::Invalid(
                "cannot share the host's network namespace when user namespaces are enabled".into(),
            ));
        }
        Ok(())
    }

    fn persist(&self, entry: &Entry, rec: &ContainerRecord) {
        let bytes = serde_json::to_vec(rec).expect("record serialises");
        if let Err(e) = write_record(&entry.paths.record(), rec, &bytes) {
            tracing::error!(id = %entry.id, error = %e, "could not save container state");
        }
    }

    /// `POST /containers/{id}/start`.
    pub async fn start(&self, name: &str) -> Result<()> {
        let entry = self.resolve(name)?;
        let _op = entry.op.lock().await;
        let rec = entry.record();
        if rec.state.running {
            return Err(ContainerError::NotModified);
        }
        if rec.state.status == "removing" {
            return Err(ContainerError::Conflict(format!(
                "container {} is marked for removal and cannot be started",
                rec.id
            )));
        }
        self.prepare_cgroup(&rec.id).await;
        let paths = entry.paths.clone();
        let prepared = {
            let (rec, paths) = (rec.clone(), paths.clone());
            let cgroup = self.cgroup_name(&rec.id);
            let shared = self.shared_namespaces(&rec, &paths);
            let svc = self.clone();
            async move {
                let shared = shared?;
                blocking(move || {
                    let userns = svc.remapped(&rec);
                    mount_rootfs(&rec, &paths, userns.as_deref())?;
                    if let Err(e) = svc.ready_volumes(&rec, &paths.rootfs()) {
                        let _ = unmount(&paths.rootfs());
                        return Err(e);
                    }
                    let mappings = userns.map(|u| u.spec_mappings());
                    let spec =
                        sharing::mount_shm(&rec, &paths, spec::shm_size(&rec.host_config)).and_then(|()| {
                            spec::build(&rec, &paths, &cgroup, &shared, mappings)
                                .map_err(ContainerError::Invalid)
                        });
                    let spec = match spec {
                        Ok(s) => s,
                        Err(e) => {
                            svc.unmount_volumes(&rec);
                            let _ = unmount(&paths.rootfs());
                            return Err(e);
                        }
                    };
                    // Made again at every start, and read by the shim right away: no fsync.
                    berth_image::content::replace_file(
                        &paths.dir.join("config.json"),
                        &serde_json::to_vec_pretty(&spec).expect("spec"),
                        false,
                    )
                    .map_err(ContainerError::from)
                })
                .await
            }
        }
        .await;
        if let Err(e) = prepared {
            self.start_failed(&entry);
            return Err(e);
        }
        if let Err(e) = self.spawn_shim(&rec, &paths).await {
            self.unmount_volumes(&rec);
            let _ = unmount(&paths.rootfs());
            self.start_failed(&entry);
            return Err(e);
        }
        if let Err(e) = self.connect_networks(&entry).await {
            // The process exists but never ran: end it and its shim.
            let _ = shim::command(&paths.shim, "KILL 9").await;
            let _ = shim::command(&paths.shim, "WAIT").await;
            self.unmount_volumes(&rec);
            let _ = unmount(&paths.rootfs());
            let _ = std::fs::remove_dir_all(&paths.shim);
            self.start_failed(&entry);
            return Err(e);
        }
        // Attachers that came before start get their streams before the process runs, so they
        // see all of its output.
        let pending: Vec<PendingAttach> =
            std::mem::take(&mut *entry.pending.lock().unwrap_or_else(|p| p.into_inner()));
        for p in pending {
            let stream = shim::attach(&paths.shim, p.stdin, p.stdout, p.stderr).await;
            let _ = p.reply.send(stream);
        }
        let answer = shim::command(&paths.shim, "START")
            .await
            .map_err(|e| ContainerError::Internal(format!("shim: {e}")))?;
        if let Some(pid) = answer.strip_prefix("OK ") {
            let pid: i64 = pid.trim().parse().unwrap_or(0);
            let rec = entry.update(|r| {
                r.state = ContainerState {
                    status: "running".into(),
                    running: true,
                    pid,
                    started_at: now(),
                    finished_at: ZERO_TIME.into(),
                    ..Default::default()
                };
                r.has_been_started = true;
                r.manually_stopped = false;
            });
            self.persist(&entry, &rec);
            entry.life.send_modify(|l| l.running = true);
            self.emit(&rec, "start", &[]);
            self.watch_health(entry.clone());
            self.monitor(entry.clone());
            Ok(())
        } else {
            let rest = answer.strip_prefix("ERR ").unwrap_or(&answer);
            let (code, message) = rest.split_once(' ').unwrap_or(("128", rest));
            let code: i64 = code.parse().unwrap_or(128);
            let message =
                format!("failed to create task for container: unable to start container process: {message}");
            let mut attached = Vec::new();
            entry.update(|r| attached = std::mem::take(&mut r.networks));
            self.disconnect_networks(&entry.id, &attached).await;
            self.unmount_volumes(&rec);
            let _ = unmount(&paths.rootfs());
            let _ = std::fs::remove_dir_all(&paths.shim);
            let rec = entry.update(|r| {
                r.state.exit_code = code;
                r.state.error = message.clone();
                r.state.status = "created".into();
            });
            self.persist(&entry, &rec);
            entry.life.send_modify(|l| {
                l.exit_code = code;
                l.exits += 1;
            });
            if rec.host_config.auto_remove {
                let svc = self.clone();
                let id = rec.id.clone();
                tokio::spawn(async move {
                    let _ = svc.remove(&id, true, true).await;
                });
            }
            Err(ContainerError::StartFailed { code, message })
        }
    }

    async fn spawn_shim(&self, rec: &ContainerRecord, paths: &Paths) -> Result<()> {
        let _ = std::fs::remove_dir_all(&paths.shim);
        std::fs::create_dir_all(&paths.shim)?;
        let mut cmd = tokio::process::Command::new(shim::shim_binary());
        cmd.arg("run")
            .args(["--id", &rec.id])
            .arg("--bundle")
            .arg(&paths.dir)
            .arg("--state")
            .arg(&paths.shim)
            .arg("--log")
            .arg(paths.log(&rec.id))
            .args(["--ready-fd", "1"]);
        if rec.config.tty {
            cmd.arg("--tty");
        }
        if rec.host_config.auto_remove {
            // Removed when it exits: its exit status need not survive a power cut.
            cmd.arg("--no-sync");
        }
        if rec.config.open_stdin {
            cmd.arg("--stdin");
        }
        if rec.config.stdin_once {
            cmd.arg("--stdin-once");
        }
        let opts = &rec.host_config.log_config.config;
        if let Some(size) = opts.get("max-size") {
            let bytes = parse_size(size)
                .ok_or_else(|| ContainerError::Invalid(format!("invalid max-size: {size}")))?;
            cmd.args(["--log-max-size", &bytes.to_string()]);
        }
        if let Some(n) = opts.get("max-file") {
            let n: u32 = n
                .parse()
                .map_err(|_| ContainerError::Invalid(format!("invalid max-file: {n}")))?;
            cmd.args(["--log-max-files", &n.to_string()]);
        }
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        let mut child = cmd
            .spawn()
            .map_err(|e| ContainerError::Internal(format!("starting berth-shim: {e}")))?;
        let mut out = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        let read = async {
            use tokio::io::AsyncBufReadExt;
            let mut r = tokio::io::BufReader::new(&mut out);
            r.read_line(&mut line).await
        };
        let ready = tokio::time::timeout(std::time::Duration::from_secs(30), read).await;
        let _ = child.wait().await;
        match ready {
            Ok(Ok(_)) if line.starts_with("READY") => {
                let pid = std::fs::read_to_string(paths.shim.join(berth_shim::SHIM_PID_FILE))
                    .ok()
                    .and_then(|p| p.trim().parse().ok());
                if let Some(pid) = pid {
                    self.inner
                        .shim_pids
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(pid);
                }
                Ok(())
            }
            Ok(Ok(_)) => {
                let msg = line
                    .trim()
                    .strip_prefix("ERROR ")
                    .unwrap_or(line.trim())
                    .to_string();
                Err(ContainerError::StartFailed {
                    code: 128,
                    message: format!("failed to create task for container: {msg}"),
                })
            }
            Ok(Err(e)) => Err(ContainerError::Internal(format!("berth-shim: {e}"))),
            Err(_) => Err(ContainerError::Internal(
                "berth-shim did not become ready in 30s".into(),
            )),
        }
    }

    /// Waits for the container's exit through its shim, in the background.
    fn monitor(&self, entry: Arc<Entry>) {
        let svc = self.clone();
        tokio::spawn(async move {
            let status = match shim::command(&entry.paths.shim, "WAIT").await {
                Ok(line) => line.strip_prefix("EXIT ").and_then(berth_shim::ExitStatus::parse),
                Err(_) => None,
            };
            // The shim writes its exit file before answering; if the connection broke, that
            // file is the truth.
            let status = status
                .or_else(|| shim::read_exit_file(&entry.paths.shim))
                .unwrap_or(berth_shim::ExitStatus {
                    code: 255,
                    oom_killed: false,
                    finished_at: now(),
                });
            svc.on_exit(&entry, status).await;
        });
    }

    async fn on_exit(&self, entry: &Arc<Entry>, status: berth_shim::ExitStatus) {
        let attached = entry.record().networks;
        self.disconnect_networks(&entry.id, &attached).await;
        let paths = entry.paths.clone();
        let _ = tokio::task::spawn_blocking(move || unmount(&paths.rootfs())).await;
        self.unmount_volumes(&entry.record());
        let rec = entry.update(|r| {
            r.state.status = "exited".into();
            r.state.running = false;
            r.state.paused = false;
            r.state.pid = 0;
            r.state.exit_code = status.code as i64;
            r.state.oom_killed = status.oom_killed;
            r.state.finished_at = status.finished_at.clone();
            r.networks.clear();
        });
        self.persist(entry, &rec);
        let _ = std::fs::remove_dir_all(&entry.paths.shim);
        entry.life.send_modify(|l| {
            l.running = false;
            l.exits += 1;
            l.exit_code = status.code as i64;
        });
        if status.oom_killed {
            self.emit(&rec, "oom", &[]);
        }
        self.emit(&rec, "die", &[("exitCode", status.code.to_string())]);
        if rec.host_config.auto_remove {
            if let Err(e) = self.remove(&rec.id, true, true).await {
                tracing::warn!(id = %rec.short_id(), error = %e, "auto-remove failed");
            }
        } else if let Some(delay) = restart_delay(&rec) {
            let rec = entry.update(|r| {
                r.state.status = "restarting".into();
                r.state.restarting = true;
            });
            self.persist(entry, &rec);
            let svc = self.clone();
            let entry = entry.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                // A stop or remove in the meantime cancels the restart.
                let rec = entry.record();
                if !rec.state.restarting || rec.manually_stopped || entry.life.borrow().removed {
                    return;
                }
                entry.update(|r| r.restart_count += 1);
                if let Err(e) = svc.start(&rec.id).await {
                    tracing::warn!(id = %rec.short_id(), error = %e, "restart failed");
                    let rec = entry.update(|r| {
                        r.state.restarting = false;
                        r.state.status = "exited".into();
                    });
                    svc.persist(&entry, &rec);
                }
            });
        }
    }

    /// Resolves the container and fixes what "next exit" means now, before the caller answers;
    /// the returned future resolves when the condition is met.
    pub fn wait_for(
        &self,
        name: &str,
        condition: &str,
    ) -> Result<impl std::future::Future<Output = WaitResponse> + Send + 'static> {
        let entry = self.resolve(name)?;
        let mut rx = entry.life();
        let start = rx.borrow().clone();
        let condition = condition.to_string();
        Ok(async move {
            let done = |l: &Life| match condition.as_str() {
                "next-exit" => l.exits > start.exits || l.removed,
                "removed" => l.removed,
                _ => !l.running || l.removed,
            };
            let code = match rx.wait_for(|l| done(l)).await {
                Ok(l) => l.exit_code,
                Err(_) => entry.record().state.exit_code,
            };
            WaitResponse {
                status_code: code,
                error: None,
            }
        })
    }

    /// Streams for `attach`: at once when the container runs, or when it starts.
    pub async fn attach(
        &self,
        name: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<(ContainerRecord, AttachSource)> {
        let entry = self.resolve(name)?;
        let _op = entry.op.lock().await;
        let rec = entry.record();
        self.emit(&rec, "attach", &[]);
        if rec.state.running {
            let s = shim::attach(&entry.paths.shim, stdin, stdout, stderr).await?;
            return Ok((rec, AttachSource::Now(s)));
        }
        if rec.has_been_started
            && !rec.host_config.restart_policy.name.is_empty()
            && rec.host_config.restart_policy.name != "no"
        {
            // A restarting container: fall through and wait for its next start.
        } else if rec.state.status == "exited" {
            return Err(ContainerError::Conflict(
                "You cannot attach to a stopped container, start it first".into(),
            ));
        }
        let (tx, rx) = oneshot::channel();
        entry
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(PendingAttach {
                stdin,
                stdout,
                stderr,
                reply: tx,
            });
        Ok((rec, AttachSource::AtStart(rx)))
    }

    /// `POST /containers/{id}/kill`.
    pub async fn kill(&self, name: &str, signal: Option<&str>) -> Result<()> {
        let entry = self.resolve(name)?;
        let rec = entry.record();
        if !rec.state.running {
            return Err(ContainerError::Conflict(format!(
                "cannot kill container: {}: container {} is not running",
                name, rec.id
            )));
        }
        let sig = parse_signal(signal.unwrap_or("SIGKILL"))
            .ok_or_else(|| ContainerError::Invalid(format!("Invalid signal: {}", signal.unwrap_or(""))))?;
        self.signal(&entry, sig).await?;
        self.emit(&rec, "kill", &[("signal", sig.to_string())]);
        Ok(())
    }

    async fn signal(&self, entry: &Entry, sig: i32) -> Result<()> {
        self.thaw_for_signal(entry).await; // a paused container gets its signal (ops.rs)
        let answer = shim::command(&entry.paths.shim, &format!("KILL {sig}")).await?;
        if answer == "OK" {
            Ok(())
        } else {
            Err(ContainerError::Internal(
                answer.trim_start_matches("ERR ").to_string(),
            ))
        }
    }

    /// `POST /containers/{id}/stop`: the stop signal, then SIGKILL after the timeout.
    pub async fn stop(&self, name: &str, timeout: Option<i64>, signal: Option<&str>) -> Result<()> {
        let entry = self.resolve(name)?;
        let _op = entry.op.lock().await;
        self.stop_entry(&entry, timeout, signal).await
    }

    async fn stop_entry(&self, entry: &Arc<Entry>, timeout: Option<i64>, signal: Option<&str>) -> Result<()> {
        // A stopped container's restart policy rests until it is started again (Docker's rule).
        let rec = entry.update(|r| {
            r.manually_stopped = true;
            if r.state.restarting {
                r.state.restarting = false;
                r.state.status = "exited".into();
            }
        });
        self.persist(entry, &rec);
        if !rec.state.running {
            return Err(ContainerError::NotModified);
        }
        let sig_name = signal
            .map(String::from)
            .or(rec.config.stop_signal.clone())
            .unwrap_or_else(|| "SIGTERM".into());
        let sig = parse_signal(&sig_name)
            .ok_or_else(|| ContainerError::Invalid(format!("Invalid signal: {sig_name}")))?;
        let secs = timeout.or(rec.config.stop_timeout).unwrap_or(10);
        let mut rx = entry.life();
        let _ = self.signal(entry, sig).await;
        let stopped = async { rx.wait_for(|l| !l.running).await.map(|_| ()) };
        let in_time = if secs < 0 {
            stopped.await.is_ok()
        } else {
            tokio::time::timeout(std::time::Duration::from_secs(secs as u64), stopped)
                .await
                .is_ok()
        };
        if !in_time {
            let _ = self.signal(entry, 9).await;
            let mut rx = entry.life();
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(30), rx.wait_for(|l| !l.running)).await;
        }
        self.emit(&entry.record(), "stop", &[]);
        Ok(())
    }

    /// `POST /containers/{id}/restart`.
    pub async fn restart(&self, name: &str, timeout: Option<i64>) -> Result<()> {
        let entry = self.resolve(name)?;
        {
            let _op = entry.op.lock().await;
            match self.stop_entry(&entry, timeout, None).await {
                Ok(()) | Err(ContainerError::NotModified) => {}
                Err(e) => return Err(e),
            }
        }
        self.start(&entry.id).await?;
        self.emit(&entry.record(), "restart", &[]);
        Ok(())
    }

    /// `DELETE /containers/{id}`; `remove_volumes` (`-v`) also removes its anonymous volumes.
    pub async fn remove(&self, name: &str, force: bool, remove_volumes: bool) -> Result<()> {
        let entry = self.resolve(name)?;
        let _op = entry.op.lock().await;
        let rec = entry.record();
        if rec.state.status == "removing" && !force {
            return Err(ContainerError::Conflict(format!(
                "removal of container {} is already in progress",
                rec.id
            )));
        }
        if rec.state.running {
            if !force {
                return Err(ContainerError::Conflict(format!(
                    "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                    rec.name
                )));
            }
            let mut rx = entry.life();
            let _ = self.signal(&entry, 9).await;
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(30), rx.wait_for(|l| !l.running)).await;
        }
        let rec = entry.update(|r| {
            r.state.status = "removing".into();
            r.state.restarting = false;
            r.manually_stopped = true;
        });
        self.persist(&entry, &rec);
        let paths = entry.paths.clone();
        blocking(move || {
            unmount(&paths.rootfs())?;
            sharing::unmount_shm(&paths);
            if is_mounted(&paths.rootfs()) {
                return Err(ContainerError::Internal(format!(
                    "{} is still mounted",
                    paths.rootfs().display()
                )));
            }
            std::fs::remove_dir_all(&paths.dir)?;
            let _ = std::fs::remove_dir_all(&paths.shim);
            Ok(())
        })
        .await?;
        {
            let mut t = self.table();
            t.by_id.remove(&rec.id);
            if t.names.get(&rec.name) == Some(&rec.id) {
                t.names.remove(&rec.name);
            }
        }
        self.release_volumes(&rec.id, &rec.mount_points, remove_volumes);
        entry.life.send_modify(|l| l.removed = true);
        self.inner
            .execs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, e| e.container_id != rec.id);
        self.emit(&rec, "destroy", &[]);
        Ok(())
    }

    /// `GET /containers/json`.
    pub fn list(&self, all: bool, limit: Option<i64>, filters: &Filters) -> Result<Vec<Value>> {
        filters
            .only(&[
                "status", "name", "label", "id", "ancestor", "exited", "before", "since", "health",
                "network", "volume", "is-task", "publish", "expose",
            ])
            .map_err(ContainerError::Invalid)?;
        let mut recs: Vec<ContainerRecord> = self.all().iter().map(|e| e.record()).collect();
        recs.sort_by(|a, b| b.created.cmp(&a.created));
        let created_of = |n: &str| self.resolve(n).map(|e| e.record().created);
        let before = filters.get("before").first().map(|n| created_of(n)).transpose()?;
        let since = filters.get("since").first().map(|n| created_of(n)).transpose()?;
        let statuses = filters.get("status");
        for s in statuses {
            if !matches!(
                s.as_str(),
                "created" | "restarting" | "running" | "removing" | "paused" | "exited" | "dead"
            ) {
                return Err(ContainerError::Invalid(format!("invalid filter 'status={s}'")));
            }
        }
        let show_all =
            all || !statuses.is_empty() || filters.contains("exited") || limit.is_some_and(|l| l > 0);
        let images = self.inner.images.clone();
        let mut out = Vec::new();
        for r in recs {
            let status = if r.state.paused {
                "paused"
            } else {
                r.state.status.as_str()
            };
            let keep = (show_all || r.state.running)
                && (statuses.is_empty() || statuses.iter().any(|s| s == status))
                && filters
                    .get("name")
                    .iter()
                    .all(|n| r.name.contains(n.trim_start_matches('/')))
                && filters.get("id").iter().all(|i| r.id.starts_with(i.as_str()))
                && filters.match_labels("label", &r.config.labels.clone().unwrap_or_default())
                && filters.get("exited").iter().all(|c| {
                    !r.state.running
                        && r.state.status == "exited"
                        && c.parse::<i64>().ok() == Some(r.state.exit_code)
                })
                && filters.get("volume").iter().all(|v| {
                    r.mount_points
                        .iter()
                        .any(|m| &m.name == v || &m.destination == v || &m.source == v)
                })
                && before.as_ref().is_none_or(|b| r.created < *b)
                && since.as_ref().is_none_or(|s| r.created > *s)
                && filters.get("ancestor").iter().all(|a| {
                    a == &r.image_name
                        || images
                            .resolve(a)
                            .is_ok_and(|i| i.record.id.to_string() == r.image_id)
                });
            if keep {
                out.push(r.summary());
            }
        }
        if let Some(n) = limit.filter(|n| *n > 0) {
            out.truncate(n as usize);
        }
        Ok(out)
    }

    /// Fills `SizeRw` (the container's own files) and `SizeRootFs` (with its image) into list
    /// entries, as `ps -s` asks; walks the upper directories, so it is blocking work.
    pub fn add_sizes(&self, list: &mut [Value]) {
        for c in list.iter_mut() {
            let Some(entry) = c["Id"].as_str().and_then(|id| self.resolve(id).ok()) else {
                continue;
            };
            let rw = crate::services::volumes::dir_size(&entry.paths.upper()) as i64;
            let image = self
                .inner
                .images
                .resolve(&entry.record().image_id)
                .map(|i| i.record.size as i64)
                .unwrap_or(0);
            c["SizeRw"] = rw.into();
            c["SizeRootFs"] = (rw + image).into();
        }
    }

    pub fn inspect(&self, name: &str) -> Result<Value> {
        let e = self.resolve(name)?;
        Ok(e.record().inspect(&e.paths))
    }

    /// `POST /containers/prune`: removes stopped containers; returns their IDs.
    pub async fn prune(&self, filters: &Filters) -> Result<Vec<String>> {
        filters
            .only(&["label", "until"])
            .map_err(ContainerError::Invalid)?;
        let mut removed = Vec::new();
        for e in self.all() {
            let r = e.record();
            if r.state.running || !filters.match_labels("label", &r.config.labels.clone().unwrap_or_default())
            {
                continue;
            }
            if self.remove(&r.id, false, false).await.is_ok() {
                removed.push(r.id);
            }
        }
        Ok(removed)
    }

    /// `POST /containers/{id}/resize`.
    pub async fn resize(&self, name: &str, rows: u16, cols: u16) -> Result<()> {
        let entry = self.resolve(name)?;
        if !entry.record().state.running {
            return Err(ContainerError::Conflict(format!(
                "Container {} is not running",
                entry.id
            )));
        }
        shim::command(&entry.paths.shim, &format!("RESIZE {rows} {cols}")).await?;
        Ok(())
    }

    /// A start that failed before the process ran: attachers waiting for it are let go, and a
    /// `--rm` container goes (as Docker does).
    fn start_failed(&self, entry: &Arc<Entry>) {
        self.discard_cgroup(&entry.id);
        entry.pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
        entry.life.send_modify(|l| l.exits += 1);
        if entry.record().host_config.auto_remove {
            let svc = self.clone();
            let id = entry.id.clone();
            tokio::spawn(async move {
                let _ = svc.remove(&id, true, true).await;
            });
        }
    }

    /// Puts a container that is about to run on the bridge (unless its network mode says
    /// otherwise), publishes its ports, and writes its address into its /etc/hosts.
    /// Reaps shims of ours that have ended.
    pub fn reap_shims(&self) {
        let mut pids = self.inner.shim_pids.lock().unwrap_or_else(|p| p.into_inner());
        pids.retain(|&pid| {
            let Some(p) = rustix::process::Pid::from_raw(pid) else {
                return false;
            };
            matches!(
                rustix::process::waitpid(Some(p), rustix::process::WaitOptions::NOHANG),
                Ok(None)
            )
        });
    }

    /// Names in use by the images of existing containers (so `rmi` can refuse).
    pub fn image_users(&self, image_id: &str) -> Vec<ContainerRecord> {
        self.all()
            .iter()
            .map(|e| e.record())
            .filter(|r| r.image_id == image_id)
            .collect()
    }

    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let recs: Vec<ContainerRecord> = self.all().iter().map(|e| e.record()).collect();
        let running = recs.iter().filter(|r| r.state.running && !r.state.paused).count();
        let paused = recs.iter().filter(|r| r.state.paused).count();
        (recs.len(), running, paused, recs.len() - running - paused)
    }

    pub fn logs_path(&self, name: &str) -> Result<(Arc<Entry>, PathBuf)> {
        let e = self.resolve(name)?;
        let p = e.paths.log(&e.id);
        Ok((e, p))
    }
}

fn random_id() -> String {
    let mut b = [0u8; 32];
    let _ = rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty());
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Makes the container's directory: overlay dirs, mount point, hostname, hosts, resolv.conf, and
/// the record itself (last, so a directory without a record is an unfinished create).
/// `owner`: the remapped root of a container in a user namespace, given its files (as dockerd
/// does) so that it may edit them as root could.
fn prepare_dir(rec: &ContainerRecord, paths: &Paths, owner: Option<(u32, u32)>) -> Result<()> {
    for d in [paths.upper(), paths.work(), paths.rootfs()] {
        std::fs::create_dir_all(d)?;
    }
    let hostname = if rec.config.hostname.is_empty() {
        rec.short_id().to_string()
    } else {
        rec.config.hostname.clone()
    };
    std::fs::write(paths.hostname(), format!("{hostname}\n"))?;
    let mut hosts = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::\tip6-localnet\nff00::\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for h in rec.host_config.extra_hosts.iter().flatten() {
        if let Some((name, ip)) = h.split_once(':') {
            hosts.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    std::fs::write(paths.hosts(), hosts)?;
    std::fs::write(paths.resolv_conf(), resolv_conf(&rec.host_config))?;
    if let Some((uid, gid)) = owner {
        for file in [paths.hostname(), paths.hosts(), paths.resolv_conf()] {
            std::os::unix::fs::chown(file, Some(uid), Some(gid))?;
        }
    }
    let bytes = serde_json::to_vec(rec).expect("record serialises");
    write_record(&paths.record(), rec, &bytes)?;
    Ok(())
}

/// Writes a container's record atomically (temporary file, rename). An `--rm` container's is not
/// fsynced: it is deleted when the container exits, and a record torn by a crash of the machine
/// is dropped at the next start like any unfinished one.
fn write_record(path: &Path, rec: &ContainerRecord, bytes: &[u8]) -> std::io::Result<()> {
    berth_image::content::replace_file(path, bytes, !rec.host_config.auto_remove)
        .map_err(std::io::Error::other)
}

/// The host's resolv.conf without loopback nameservers (unreachable from a container), with
/// `--dns`/`--dns-search`/`--dns-option` applied.
fn resolv_conf(host: &berth_api::container::HostConfig) -> String {
    let hostconf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut servers: Vec<String> = hostconf
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.starts_with("127.") && s != "::1")
        .collect();
    let mut search: Vec<String> = hostconf
        .lines()
        .filter_map(|l| l.strip_prefix("search"))
        .flat_map(|s| s.split_whitespace().map(String::from))
        .collect();
    let mut options: Vec<String> = hostconf
        .lines()
        .filter_map(|l| l.strip_prefix("options"))
        .flat_map(|s| s.split_whitespace().map(String::from))
        .collect();
    if let Some(d) = host.dns.as_ref().filter(|d| !d.is_empty()) {
        servers = d.clone();
    }
    if servers.is_empty() {
        servers = vec!["8.8.8.8".into(), "8.8.4.4".into()];
    }
    if let Some(s) = host.dns_search.as_ref().filter(|d| !d.is_empty()) {
        search = s.clone();
    }
    if let Some(o) = host.dns_options.as_ref().filter(|d| !d.is_empty()) {
        options = o.clone();
    }
    let mut out = String::new();
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

/// Mounts the container's overlay root (image layers below, its own upper dir on top); for a
/// container in a user namespace, over idmapped mounts of them.
fn mount_rootfs(rec: &ContainerRecord, paths: &Paths, userns: Option<&RemappedRoot>) -> Result<()> {
    let target = paths.rootfs();
    if is_mounted(&target) {
        return Ok(());
    }
    let mut lowers: Vec<String> = rec.lower_dirs.iter().map(|p| p.display().to_string()).collect();
    if lowers.is_empty() {
        let empty = paths.dir.join("empty");
        std::fs::create_dir_all(&empty)?;
        lowers.push(empty.display().to_string());
    }
    for l in &rec.lower_dirs {
        if !l.is_dir() {
            return Err(ContainerError::Internal(format!(
                "image layer {} is missing",
                l.display()
            )));
        }
    }
    // No redirects or metacopy: an upper dir must hold whole files and plain whiteouts, so that
    // `commit` can turn it into a layer.
    let mut options = String::from("redirect_dir=off,metacopy=off,index=off");
    // A --rm container's writes are thrown away with it: no need for the sync that unmounting an
    // overlay otherwise waits for (tens of ms under load).
    if rec.host_config.auto_remove {
        options.push_str(",volatile");
    }
    if let Some(userns) = userns {
        let lowers: Vec<PathBuf> = lowers.iter().map(PathBuf::from).collect();
        return userns
            .mount_overlay(&lowers, &paths.dir, "upper", "work", &options, &target)
            .map_err(|e| {
                ContainerError::Internal(format!(
                    "mounting the container's root filesystem (idmapped): {e}"
                ))
            });
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={},{options}",
        lowers.join(":"),
        paths.upper().display(),
        paths.work().display()
    );
    let data =
        std::ffi::CString::new(data).map_err(|_| ContainerError::Internal("NUL in a layer path".into()))?;
    rustix::mount::mount(
        "overlay",
        &target,
        "overlay",
        rustix::mount::MountFlags::empty(),
        Some(data.as_c_str()),
    )
    .map_err(|e| ContainerError::Internal(format!("mounting the container's root filesystem: {e}")))
}

fn unmount(path: &Path) -> Result<()> {
    while is_mounted(path) {
        rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH)
            .map_err(|e| ContainerError::Internal(format!("unmounting {}: {e}", path.display())))?;
    }
    Ok(())
}

fn is_mounted(path: &Path) -> bool {
    let Some(p) = path.to_str() else { return false };
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| m.lines().any(|l| l.split(' ').nth(4) == Some(p)))
        .unwrap_or(false)
}

/// `SIGTERM`, `TERM`, `15` -> 15.
pub fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (n > 0 && n < 65).then_some(n);
    }
    let name = s.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    let n = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "CHLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => return None,
    };
    Some(n)
}

/// `10m`, `1g`, `512k`, `100` -> bytes (binary units, as Docker's log options).
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.trim_end_matches('b');
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n: f64 = num.trim().parse().ok()?;
    (n > 0.0).then_some((n * mult as f64) as u64)
}

/// When a container that just exited should start again under its restart policy, after how
/// long: Docker's backoff doubles from 100 ms up to a minute, and resets after 10 s of running.
fn restart_delay(rec: &ContainerRecord) -> Option<std::time::Duration> {
    let policy = &rec.host_config.restart_policy;
    let again = match policy.name.as_str() {
        "always" | "unless-stopped" => true,
        "on-failure" => {
            rec.state.exit_code != 0
                && (policy.maximum_retry_count <= 0 || rec.restart_count < policy.maximum_retry_count)
        }
        _ => false,
    };
    if !again || rec.manually_stopped {
        return None;
    }
    let ran = match (
        chrono::DateTime::parse_from_rfc3339(&rec.state.started_at),
        chrono::DateTime::parse_from_rfc3339(&rec.state.finished_at),
    ) {
        (Ok(a), Ok(b)) => (b - a).num_seconds(),
        _ => 0,
    };
    let steps = if ran >= 10 {
        0
    } else {
        rec.restart_count.clamp(0, 10) as u32
    };
    Some(std::time::Duration::from_millis(100u64 << steps).min(std::time::Duration::from_secs(60)))
}
