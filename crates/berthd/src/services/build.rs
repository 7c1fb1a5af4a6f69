//! `docker build` (the classic builder) and `docker commit`: the daemon's side of berth-build.
//! The builder runs on a blocking thread; its RUN steps are real containers made through the
//! container service (created, attached, started, waited for, removed), as Docker's classic
//! builder does, and its output is sent as Docker's JSON message stream.

use super::containers::{AttachSource, ContainerError, ContainerService};
use super::{blocking, Daemon};
use berth_api::container::{ContainerConfig, CreateRequest, HostConfig};
use berth_api::types::{ErrorDetail, JsonMessage};
use berth_build::builder::{BuildError, BuildOptions, Executor, RunEvent, RunOutcome, RunRequest, WorkDir};
use berth_build::BuildCache;
use berth_image::config::{apply_changes, History};
use berth_image::layer::{store_layer_diff, DiffOptions};
use berth_image::{DerivedLayer, Digest, ImageStore, Reference};
use serde_json::{json, Map, Value};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

pub struct BuildService {
    store: Arc<ImageStore>,
    cache: Arc<BuildCache>,
    /// `<root>/builder`: the cache file and per-build scratch dirs.
    dir: PathBuf,
}

impl BuildService {
    pub fn open(root: &std::path::Path, store: Arc<ImageStore>) -> std::io::Result<BuildService> {
        let dir = root.join("builder");
        let cache = Arc::new(BuildCache::open(&dir)?);
        // Scratch dirs of builds a crash interrupted.
        let _ = std::fs::remove_dir_all(dir.join("tmp"));
        Ok(BuildService { store, cache, dir })
    }

    /// `POST /build/prune`: forgets the cache and deletes the intermediate images it named that
    /// nothing else uses; returns (deleted image IDs, bytes reclaimed).
    pub async fn prune(&self) -> berth_image::Result<(Vec<String>, u64)> {
        let cache = self.cache.clone();
        let store = self.store.clone();
        blocking(move || {
            let images = cache
                .prune()
                .map_err(|e| berth_image::ImageError::Meta(e.to_string()))?;
            let mut deleted = Vec::new();
            let mut reclaimed = 0;
            for id in images {
                let Ok(info) = store.resolve(&id.to_string()) else {
                    continue;
                };
                if !info.refs.is_empty() {
                    continue;
                }
                let size = info.record.size;
                if store.delete(&id.to_string(), false).is_ok() {
                    deleted.push(id.to_string());
                    reclaimed += size;
                }
            }
            Ok((deleted, reclaimed))
        })
        .await
    }
}

/// A decoded `/build` request.
pub struct BuildRequest {
    pub options: BuildOptions,
    pub quiet: bool,
    /// `pull`: fetch base images from their registry even when they are here.
    pub pull: bool,
    /// `X-Registry-Config`: credentials by registry, for pulling base images.
    pub registry_auth: std::collections::HashMap<String, berth_registry::client::Credentials>,
}

fn stream(text: impl Into<String>) -> JsonMessage {
    JsonMessage {
        stream: Some(text.into()),
        ..Default::default()
    }
}

fn error_message(e: &BuildError) -> JsonMessage {
    JsonMessage {
        error: Some(e.message.clone()),
        error_detail: Some(ErrorDetail {
            code: e.code,
            message: e.message.clone(),
        }),
        ..Default::default()
    }
}

/// Runs a build with the context tar `body`; the messages come on the returned channel.
pub fn start_build(
    daemon: Arc<Daemon>,
    req: BuildRequest,
    body: impl Read + Send + 'static,
) -> mpsc::Receiver<JsonMessage> {
    let (tx, rx) = mpsc::channel(64);
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        // Not `blocking_send`: RUN output is sent from inside the executor's `block_on`.
        let send = |m: JsonMessage| {
            let _ = futures::executor::block_on(tx.send(m));
        };
        let quiet = req.quiet;
        let pulls = BasePulls {
            always: req.pull,
            auth: req.registry_auth,
        };
        let result = run_build(&daemon, handle, req.options, pulls, body, &mut |text| {
            if !quiet {
                send(stream(text));
            }
        });
        match result {
            Ok((id, tags)) => {
                send(JsonMessage {
                    aux: Some(json!({ "ID": id.to_string() })),
                    ..Default::default()
                });
                if quiet {
                    send(stream(format!("{id}\n")));
                } else {
                    send(stream(format!("Successfully built {}\n", id.short())));
                    for t in tags {
                        send(stream(format!("Successfully tagged {}\n", t.familiar_string())));
                    }
                }
            }
            Err(e) => {
                if e.internal {
                    tracing::error!(error = %e.message, "build failed");
                }
                send(error_message(&e));
            }
        }
    });
    rx
}

/// Which base images a build pulls: those missing here, or all (`pull`), with these credentials.
struct BasePulls {
    always: bool,
    auth: std::collections::HashMap<String, berth_registry::client::Credentials>,
}

/// Pulls the images the planned stages start from or copy from, as dockerd's classic builder
/// does: those not here, or all of them with `pull`. Pull progress goes to the build output.
fn pull_bases(
    daemon: &Arc<Daemon>,
    handle: &tokio::runtime::Handle,
    plan: &berth_build::BuildPlan,
    pulls: &BasePulls,
    out: &mut dyn FnMut(&str),
) -> Result<(), BuildError> {
    use super::distribution as dist;
    let mut names: Vec<&String> = Vec::new();
    for stage in &plan.stages {
        if let berth_build::plan::BaseRef::Image(name) = &stage.base {
            names.push(name);
        }
        names.extend(stage.images.iter());
    }
    names.dedup();
    for name in names {
        if !pulls.always && daemon.build.store.resolve(name).is_ok() {
            continue;
        }
        let failed = |e: dist::DistributionError| BuildError::user(e.message);
        let reference = dist::pull_reference(name, None)
            .map_err(failed)?
            .with_default_tag();
        let creds = pulls
            .auth
            .get(&dist::normalize_server(reference.domain()))
            .cloned();
        handle.block_on(async {
            let prepared = dist::prepare_pull(daemon, reference, creds)
                .await
                .map_err(failed)?;
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let pull = dist::run_pull(daemon, daemon.build.store.clone(), prepared, tx);
            let show = async {
                while let Some(m) = rx.recv().await {
                    // Status lines only: byte counts do not read well as a text stream.
                    if let (Some(status), None) = (&m.status, &m.progress_detail) {
                        match &m.id {
                            Some(id) => out(&format!("{id}: {status}\n")),
                            None => out(&format!("{status}\n")),
                        }
                    }
                }
            };
            let (pulled, ()) = tokio::join!(pull, show);
            pulled.map_err(failed)
        })?;
    }
    Ok(())
}

fn run_build(
    daemon: &Arc<Daemon>,
    handle: tokio::runtime::Handle,
    opts: BuildOptions,
    pulls: BasePulls,
    mut body: impl Read,
    out: &mut dyn FnMut(&str),
) -> Result<(Digest, Vec<Reference>), BuildError> {
    let svc = &daemon.build;
    let work = WorkDir::create(&svc.dir.join("tmp"))?;
    let context = work.path().join("context");
    let unpacked = berth_build::context::unpack_context(&mut body, &context, &opts.dockerfile);
    super::drain_upload(unpacked, &mut body).map_err(|e| BuildError::user(e.to_string()))?;
    let dockerfile_path = berth_build::builder::rootfs::resolve_in_root(&context, &opts.dockerfile, true)?;
    let text = std::fs::read(&dockerfile_path)
        .map_err(|_| BuildError::user(format!("Cannot locate specified Dockerfile: {}", opts.dockerfile)))?;
    let df = berth_build::parse_bytes(&text).map_err(|e| BuildError::user(e.to_string()))?;
    for w in &df.warnings {
        out(&format!("[WARNING]: {w}\n"));
    }
    let plan = berth_build::plan(&df, opts.target.as_deref(), &opts.build_args)
        .map_err(|e| BuildError::user(e.to_string()))?;
    pull_bases(daemon, &handle, &plan, &pulls, out)?;
    let executor = ContainerExecutor {
        daemon: daemon.clone(),
        handle,
    };
    let builder = berth_build::Builder {
        store: &svc.store,
        cache: &svc.cache,
        executor: &executor,
        work_dir: work.path(),
    };
    let id = builder.build(&df, &plan, &context, &opts, out)?;
    Ok((id, opts.tags.clone()))
}

/// RUN steps as containers of the container service.
struct ContainerExecutor {
    daemon: Arc<Daemon>,
    handle: tokio::runtime::Handle,
}

fn run_error(e: ContainerError) -> BuildError {
    match e {
        ContainerError::StartFailed { code, message } => BuildError {
            message,
            code: Some(code),
            internal: false,
        },
        ContainerError::Invalid(m) | ContainerError::Conflict(m) => BuildError::user(m),
        e => BuildError::internal(e.to_string()),
    }
}

impl Executor for ContainerExecutor {
    fn run(&self, req: &RunRequest, events: &mut dyn FnMut(RunEvent<'_>)) -> Result<RunOutcome, BuildError> {
        let containers: &ContainerService = &self.daemon.containers;
        self.handle.block_on(async {
            let create = CreateRequest {
                config: ContainerConfig {
                    image: req.image.to_string(),
                    cmd: Some(req.cmd.clone()),
                    entrypoint: Some(vec![]),
                    env: Some(req.env.clone()),
                    user: req.user.clone(),
                    working_dir: req.working_dir.clone(),
                    attach_stdout: true,
                    attach_stderr: true,
                    ..Default::default()
                },
                host_config: HostConfig {
                    network_mode: req.network_mode.clone(),
                    ..Default::default()
                },
                networking_config: None,
            };
            let id = containers.create(None, create).await.map_err(run_error)?.id;
            events(RunEvent::Started(&id));
            let (_, source) = containers
                .attach(&id, false, true, true)
                .await
                .map_err(run_error)?;
            containers.start(&id).await.map_err(run_error)?;
            let mut stream = match source {
                AttachSource::Now(s) => s,
                AttachSource::AtStart(rx) => rx
                    .await
                    .map_err(|_| BuildError::internal("the RUN container's output was not attached"))??,
            };
            // Frames: [stream, 0, 0, 0, len (u32 BE)] then len bytes.
            let mut header = [0u8; 8];
            let mut buf = Vec::new();
            while stream.read_exact(&mut header).await.is_ok() {
                let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
                buf.resize(len, 0);
                if stream.read_exact(&mut buf).await.is_err() {
                    break;
                }
                if matches!(header[0], 1 | 2) {
                    events(RunEvent::Output(&buf));
                }
            }
            let exit = containers
                .wait_for(&id, "not-running")
                .map_err(run_error)?
                .await
                .status_code;
            let upper = containers.resolve(&id).map_err(run_error)?.paths.upper();
            Ok(RunOutcome {
                container_id: id,
                exit_code: exit,
                upper,
            })
        })
    }

    fn download(&self, url: &str, dest: &Path) -> Result<(), BuildError> {
        let fail = |e: &dyn std::fmt::Display| BuildError::user(format!("failed to GET {url}: {e}"));
        self.handle.block_on(async {
            let client = reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(30))
                .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| fail(&e))?;
            let resp = client.get(url).send().await.map_err(|e| fail(&e))?;
            if !resp.status().is_success() {
                return Err(BuildError::user(format!(
                    "failed to GET {url} with status {}",
                    resp.status()
                )));
            }
            let mut file = std::fs::File::create(dest).map_err(|e| fail(&e))?;
            let mut body = resp.bytes_stream();
            while let Some(chunk) = futures::StreamExt::next(&mut body).await {
                let chunk = chunk.map_err(|e| fail(&e))?;
                std::io::Write::write_all(&mut file, &chunk).map_err(|e| fail(&e))?;
            }
            Ok(())
        })
    }

    fn remove(&self, container_id: &str) {
        if let Err(e) = self
            .handle
            .block_on(self.daemon.containers.remove(container_id, true, true))
        {
            tracing::warn!(container = container_id, error = %e, "removing a build container");
        }
    }
}

/// A decoded `POST /commit`.
pub struct CommitRequest {
    pub container: String,
    pub repo: Option<String>,
    pub tag: Option<String>,
    pub comment: String,
    pub author: String,
    pub pause: bool,
    pub changes: Vec<String>,
    /// Container config fields that override the container's (the request body).
    pub config: Option<Value>,
}

/// The image config fields a container's config gives a committed image.
const IMAGE_CONFIG_FIELDS: &[&str] = &[
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
    "OnBuild",
    "Shell",
    "Healthcheck",
    "ArgsEscaped",
];

fn image_config_of(container: &Value, overrides: Option<&Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for source in [Some(container), overrides].into_iter().flatten() {
        for field in IMAGE_CONFIG_FIELDS {
            match source.get(*field) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) if s.is_empty() => {}
                Some(v) => {
                    out.insert(field.to_string(), v.clone());
                }
            }
        }
    }
    out
}

/// `POST /commit`: the container's changes as a new layer over its image.
pub async fn commit(daemon: &Arc<Daemon>, req: CommitRequest) -> Result<Digest, CommitError> {
    let containers = &daemon.containers;
    let entry = containers.resolve(&req.container)?;
    let rec = entry.record();
    let reference = match &req.repo {
        Some(repo) if !repo.is_empty() => {
            let name = match req.tag.as_deref().filter(|t| !t.is_empty()) {
                Some(t) => format!("{repo}:{t}"),
                None => repo.clone(),
            };
            Some(Reference::parse_normalized(&name).map_err(|e| CommitError::Invalid(e.to_string()))?)
        }
        _ => None,
    };
    let paused_here = req.pause && rec.state.running && !rec.state.paused;
    if paused_here {
        containers.pause(&rec.id).await?;
    }
    let store = daemon.build.store.clone();
    let upper = entry.paths.upper();
    let container_config =
        serde_json::to_value(&rec.config).map_err(|e| CommitError::Internal(e.to_string()))?;
    let fields = image_config_of(&container_config, req.config.as_ref());
    let parent: Digest = rec
        .image_id
        .parse()
        .map_err(|_| CommitError::Internal(format!("container image ID {:?}", rec.image_id)))?;
    let created_by = std::iter::once(rec.path.clone())
        .chain(rec.args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let (changes, comment, author) = (req.changes, req.comment, req.author);
    let result = blocking(move || {
        let diff = store_layer_diff(&store.content, &upper, &DiffOptions::default())
            .map_err(|e| berth_image::ImageError::Meta(e.to_string()))?;
        let mut config = store.resolve(&parent.to_string())?.config;
        let mut runtime: berth_image::ContainerConfig = serde_json::from_value(Value::Object(fields))?;
        apply_changes(&mut runtime, &changes)?;
        let now = berth_image::time::now_rfc3339_nano();
        config.created = Some(now.clone());
        config.config = Some(runtime);
        if !author.is_empty() {
            config.author = Some(author.clone());
        }
        let layer = (diff.diff.files > 0).then(|| DerivedLayer::from(&diff));
        config.history.push(History {
            created: Some(now),
            created_by: Some(created_by),
            author: Some(author).filter(|a| !a.is_empty()),
            comment: Some(comment).filter(|c| !c.is_empty()),
            empty_layer: layer.is_none(),
        });
        let tags: Vec<Reference> = reference.into_iter().collect();
        store.derive(
            Some(&parent),
            &layer.into_iter().collect::<Vec<_>>(),
            config,
            &tags,
        )
    })
    .await;
    if paused_here {
        if let Err(e) = containers.unpause(&rec.id).await {
            tracing::warn!(container = %rec.id, error = %e, "unpausing after commit");
        }
    }
    Ok(result?)
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error(transparent)]
    Image(#[from] berth_image::ImageError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Internal(String),
}
