//! The step loop: stages in plan order, each instruction expanded, looked up in the cache, and
//! otherwise executed and committed as an image.

use super::copy::{self, CopyOptions, CopySource};
use super::metadata::{self, StageFlags};
use super::rootfs::{resolve_in_root, OverlayMount};
use super::{image_lowers, rfc3339, BuildError, BuildOptions, Executor, RunEvent, RunRequest};
use crate::cache::{step_key, BuildCache};
use crate::dockerfile::{Add, Dockerfile, Instruction, InstructionKind, Source};
use crate::plan::{resolve_stage_arg, BaseRef, BuildPlan};
use crate::shell::Env;
use berth_image::config::History;
use berth_image::layer::{store_layer_diff, DiffOptions};
use berth_image::{ContainerConfig, DerivedLayer, Digest, ImageConfig, ImageStore};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

pub struct Builder<'a> {
    pub store: &'a ImageStore,
    pub cache: &'a BuildCache,
    pub executor: &'a dyn Executor,
    /// A private scratch directory for this build (mount points, upper dirs).
    pub work_dir: &'a Path,
}

/// Where a stage is: its image so far (none for an untouched scratch) and its config.
struct Stage {
    image: Option<Digest>,
    config: ImageConfig,
    /// ARG values declared in this stage.
    args: BTreeMap<String, String>,
    flags: StageFlags,
}

impl Stage {
    fn container(&mut self) -> &mut ContainerConfig {
        self.config.config.get_or_insert_with(Default::default)
    }
    fn env_list(&self) -> Vec<String> {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.env.clone())
            .unwrap_or_default()
    }
    /// What `$VAR` sees: the stage's ARGs, overridden by its ENV.
    fn expansion_env(&self) -> Env {
        let mut env = Env::new();
        for (k, v) in &self.args {
            env.set(k, v);
        }
        for e in self.env_list() {
            if let Some((k, v)) = e.split_once('=') {
                env.set(k, v);
            }
        }
        env
    }
    fn working_dir(&self) -> String {
        self.config
            .config
            .as_ref()
            .map(|c| c.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
    }
}

/// One step's result before it is committed.
struct Change {
    layer: Option<DerivedLayer>,
    created_by: String,
}

impl Builder<'_> {
    /// Builds `df` with the context in `context`; `out` receives the classic builder's stream
    /// text. Returns the final image's ID (tags are applied here too).
    pub fn build(
        &self,
        df: &Dockerfile,
        plan: &BuildPlan,
        context: &Path,
        opts: &BuildOptions,
        out: &mut dyn FnMut(&str),
    ) -> Result<Digest, BuildError> {
        let epoch = opts
            .build_args
            .get("SOURCE_DATE_EPOCH")
            .and_then(|v| v.as_deref())
            .map(|v| {
                v.trim()
                    .parse::<i64>()
                    .map_err(|_| BuildError::user(format!("invalid SOURCE_DATE_EPOCH {v:?}")))
            })
            .transpose()?
            .unwrap_or(0);
        let extra_steps = usize::from(!opts.labels.is_empty());
        let total = plan.step_count(df) + extra_steps;
        let mut n = 0;
        let mut step = |out: &mut dyn FnMut(&str), text: &str| {
            n += 1;
            out(&format!("Step {n}/{total} : {text}\n"));
        };
        for arg in &df.global_args {
            step(out, &arg.original);
        }
        let mut results: HashMap<usize, (Option<Digest>, ImageConfig)> = HashMap::new();
        let mut last: Option<Stage> = None;
        for planned in &plan.stages {
            let decl = &df.stages[planned.index];
            step(out, &decl.original);
            let mut stage = match &planned.base {
                BaseRef::Scratch => Stage {
                    image: None,
                    config: ImageConfig {
                        architecture: berth_image::manifest::host_architecture().into(),
                        os: "linux".into(),
                        config: Some(ContainerConfig::default()),
                        ..Default::default()
                    },
                    args: BTreeMap::new(),
                    flags: StageFlags::default(),
                },
                BaseRef::Stage(j) => {
                    let (image, config) = results
                        .get(j)
                        .cloned()
                        .ok_or_else(|| BuildError::internal(format!("stage {j} was not built")))?;
                    Stage {
                        image,
                        config,
                        args: BTreeMap::new(),
                        flags: StageFlags::default(),
                    }
                }
                BaseRef::Image(name) => {
                    let info = self.store.resolve(name).map_err(|_| {
                        BuildError::user(format!(
                            "pull access denied for {name}, repository does not exist or may require 'docker login'"
                        ))
                    })?;
                    Stage {
                        image: Some(info.record.id.clone()),
                        config: info.config,
                        args: BTreeMap::new(),
                        flags: StageFlags::default(),
                    }
                }
            };
            out(&format!(
                " ---> {}\n",
                stage
                    .image
                    .as_ref()
                    .map(|d| d.short().to_string())
                    .unwrap_or_default()
            ));
            // The config of an image made here starts without the base's history of builds.
            let triggers = stage
                .config
                .config
                .as_mut()
                .and_then(|c| c.on_build.take())
                .unwrap_or_default();
            if !triggers.is_empty() {
                out(&format!(
                    "# Executing {} build trigger{}\n",
                    triggers.len(),
                    if triggers.len() == 1 { "" } else { "s" }
                ));
                for trigger in &triggers {
                    let parsed = crate::parse(&format!("FROM scratch\n{trigger}\n"))
                        .map_err(|e| BuildError::user(format!("invalid ONBUILD trigger {trigger:?}: {e}")))?;
                    for instruction in &parsed.stages[0].instructions {
                        self.step(
                            df,
                            plan,
                            &mut stage,
                            instruction,
                            context,
                            opts,
                            epoch,
                            &results,
                            out,
                        )?;
                    }
                }
            }
            for instruction in &decl.instructions {
                step(out, &instruction.original);
                self.step(
                    df,
                    plan,
                    &mut stage,
                    instruction,
                    context,
                    opts,
                    epoch,
                    &results,
                    out,
                )?;
            }
            results.insert(planned.index, (stage.image.clone(), stage.config.clone()));
            last = Some(stage);
        }
        let mut stage = last.ok_or_else(|| BuildError::user("no build stage in current context"))?;
        if !opts.labels.is_empty() {
            let text = opts
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(" ");
            step(out, &format!("LABEL {text}"));
            let labels = stage.container().labels.get_or_insert_with(Default::default);
            for (k, v) in &opts.labels {
                labels.insert(k.clone(), v.clone());
            }
            self.commit(
                &mut stage,
                Change {
                    layer: None,
                    created_by: format!("/bin/sh -c #(nop)  LABEL {text}"),
                },
                epoch,
                out,
            )?;
        }
        let image = match stage.image {
            Some(id) => id,
            // `FROM scratch` alone: an image with no layers, as Docker makes.
            None => {
                self.commit(
                    &mut stage,
                    Change {
                        layer: None,
                        created_by: String::new(),
                    },
                    epoch,
                    out,
                )?;
                stage.image.clone().expect("committed")
            }
        };
        if let Some(w) = plan.unused_build_args_warning() {
            out(&format!("{w}\n"));
        }
        for tag in &opts.tags {
            self.store.tag(&image, tag)?;
        }
        Ok(image)
    }

    #[allow(clippy::too_many_arguments)]
    fn step(
        &self,
        df: &Dockerfile,
        plan: &BuildPlan,
        stage: &mut Stage,
        instruction: &Instruction,
        context: &Path,
        opts: &BuildOptions,
        epoch: i64,
        results: &HashMap<usize, (Option<Digest>, ImageConfig)>,
        out: &mut dyn FnMut(&str),
    ) -> Result<(), BuildError> {
        let escape = df.escape();
        let line_err = |e: &dyn std::fmt::Display| {
            BuildError::user(format!(
                "dockerfile parse error on line {}: {e}",
                instruction.line
            ))
        };
        let kind = instruction
            .kind
            .expand(&stage.expansion_env(), escape)
            .map_err(|e| line_err(&e))?;
        // Everything a step's result depends on besides the parent image: the instruction as
        // expanded, and the build args in force (RUN sees them in its environment).
        let args_text: Vec<String> = stage.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let key_text = format!("{kind:?}\0{}", args_text.join("\0"));

        if let InstructionKind::Arg(decls) = &kind {
            for d in decls {
                let value = resolve_stage_arg(
                    d,
                    &opts.build_args,
                    &plan.meta_args,
                    &stage.expansion_env(),
                    escape,
                )
                .map_err(|e| line_err(&e))?;
                if let Some(v) = value {
                    stage.args.insert(d.name.clone(), v);
                }
            }
        }

        if let InstructionKind::Run(run) = &kind {
            // The classic builder's RUN takes no flags (dockerd fails on the first one).
            let flag = [
                (!run.mounts.is_empty(), "mount"),
                (run.network.is_some(), "network"),
                (run.security.is_some(), "security"),
            ]
            .into_iter()
            .find_map(|(used, name)| used.then_some(name));
            if let Some(flag) = flag {
                return Err(BuildError::user(format!(
                    "the --{flag} option requires BuildKit. Refer to https://docs.docker.com/go/buildkit/ to learn how to build images with BuildKit enabled"
                )));
            }
        }
        let transfer = self.transfer_of(&kind)?;
        let content = match &transfer {
            Some(t) => Some(self.with_source_root(t.from, df, context, results, |root, what| {
                copy::content_digest(&t.sources_in(root, what, false)?)
            })?),
            None => None,
        };
        let inline_digest = heredoc_digest(&kind);
        let content = content.map(|c| format!("{c}{inline_digest}"));

        let key = step_key(stage.image.as_ref(), &key_text, content.as_deref());
        if !opts.no_cache {
            if let Some(hit) = self.cache.get(&key) {
                if let Ok(info) = self.store.resolve(&hit.to_string()) {
                    self.apply_stage_effects(stage, &kind);
                    stage.image = Some(hit.clone());
                    stage.config = info.config;
                    out(" ---> Using cache\n");
                    out(&format!(" ---> {}\n", hit.short()));
                    return Ok(());
                }
            }
        }

        let nop = |text: &str| format!("/bin/sh -c #(nop)  {text}");
        let change = match &kind {
            InstructionKind::Run(run) => {
                let cmd = metadata::argv(
                    stage.config.config.as_ref().unwrap_or(&Default::default()),
                    &run.command,
                );
                self.run_step(stage, cmd, opts, epoch, out)?
            }
            InstructionKind::Copy(_) | InstructionKind::Add(_) => {
                let t = transfer.as_ref().expect("COPY and ADD have a transfer");
                let layer = self.with_source_root(t.from, df, context, results, |root, what| {
                    let found = t.sources_in(root, what, true)?;
                    self.copy_step(stage, &found, t.dest, t.chown, t.chmod, t.unpack, epoch)
                })?;
                Change {
                    layer,
                    created_by: format!(
                        "/bin/sh -c #(nop) {} {} in {} ",
                        t.word,
                        content.as_deref().unwrap_or(""),
                        t.dest
                    ),
                }
            }
            InstructionKind::Workdir(dir) => {
                let current = stage.working_dir();
                let new = if dir.starts_with('/') {
                    dir.clone()
                } else {
                    format!("{}/{}", current.trim_end_matches('/'), dir)
                };
                let new = normalize(&new);
                stage.container().working_dir = new.clone();
                let layer = self.in_overlay(stage, epoch, |root| {
                    let resolved = resolve_in_root(root, &new, true)?;
                    if !resolved.exists() {
                        std::fs::create_dir_all(&resolved)?;
                    }
                    Ok(())
                })?;
                Change {
                    layer,
                    created_by: format!("/bin/sh -c #(nop) WORKDIR {new}"),
                }
            }
            InstructionKind::Arg(decls) => Change {
                layer: None,
                created_by: nop(&format!(
                    "ARG {}",
                    decls
                        .iter()
                        .map(|d| match &d.default {
                            Some(v) => format!("{}={v}", d.name),
                            None => d.name.clone(),
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                )),
            },
            InstructionKind::Maintainer(m) => {
                stage.config.author = Some(m.clone());
                Change {
                    layer: None,
                    created_by: nop(&format!("MAINTAINER {m}")),
                }
            }
            other => {
                let applied = {
                    let mut flags = std::mem::take(&mut stage.flags);
                    let applied = metadata::apply(stage.container(), &mut flags, other);
                    stage.flags = flags;
                    applied
                };
                if !applied {
                    return Err(BuildError::internal(format!(
                        "unhandled instruction {}",
                        other.keyword()
                    )));
                }
                Change {
                    layer: None,
                    created_by: nop(&history_text(instruction, other)),
                }
            }
        };
        self.commit(stage, change, epoch, out)?;
        if let Some(id) = &stage.image {
            if let Err(e) = self.cache.put(key, id.clone()) {
                tracing::warn!(error = %e, "saving the build cache");
            }
        }
        Ok(())
    }

    /// Stage bookkeeping a step has even when its image comes from the cache.
    fn apply_stage_effects(&self, stage: &mut Stage, kind: &InstructionKind) {
        if let InstructionKind::Cmd(_) = kind {
            stage.flags.cmd_set = true;
        }
    }

    fn commit(
        &self,
        stage: &mut Stage,
        change: Change,
        epoch: i64,
        out: &mut dyn FnMut(&str),
    ) -> Result<(), BuildError> {
        let created = rfc3339(epoch);
        stage.config.created = Some(created.clone());
        stage.config.history.push(History {
            created: Some(created),
            created_by: Some(change.created_by),
            empty_layer: change.layer.is_none(),
            ..Default::default()
        });
        let layers: Vec<DerivedLayer> = change.layer.into_iter().collect();
        let id = self
            .store
            .derive(stage.image.as_ref(), &layers, stage.config.clone(), &[])?;
        stage.config = self.store.resolve(&id.to_string())?.config;
        out(&format!(" ---> {}\n", id.short()));
        stage.image = Some(id);
        Ok(())
    }

    fn run_step(
        &self,
        stage: &mut Stage,
        cmd: Vec<String>,
        opts: &BuildOptions,
        epoch: i64,
        out: &mut dyn FnMut(&str),
    ) -> Result<Change, BuildError> {
        // A RUN on an empty scratch stage needs an image to start from.
        if stage.image.is_none() {
            self.commit(
                stage,
                Change {
                    layer: None,
                    created_by: String::new(),
                },
                epoch,
                &mut |_| {},
            )?;
        }
        let mut env = stage.env_list();
        for (k, v) in &stage.args {
            if !env.iter().any(|e| e.split('=').next() == Some(k.as_str())) {
                env.push(format!("{k}={v}"));
            }
        }
        let c = stage.config.config.clone().unwrap_or_default();
        let req = RunRequest {
            image: stage.image.clone().expect("set above"),
            cmd: cmd.clone(),
            env,
            user: c.user.clone(),
            working_dir: c.working_dir.clone(),
            network_mode: if opts.network_mode == "host" {
                "host".into()
            } else {
                "none".into()
            },
        };
        let mut container = None;
        let result = self.executor.run(&req, &mut |event| match event {
            RunEvent::Started(id) => {
                out(&format!(" ---> Running in {}\n", &id[..id.len().min(12)]));
                container = Some(id.to_string());
            }
            RunEvent::Output(bytes) => out(&String::from_utf8_lossy(bytes)),
        });
        let outcome = match result {
            Ok(o) => o,
            Err(e) => {
                if let Some(id) = &container {
                    self.executor.remove(id);
                }
                return Err(e);
            }
        };
        let short = &outcome.container_id[..outcome.container_id.len().min(12)];
        if outcome.exit_code != 0 {
            if opts.force_remove {
                self.executor.remove(&outcome.container_id);
            }
            return Err(BuildError {
                message: format!(
                    "The command '{}' returned a non-zero code: {}",
                    cmd.join(" "),
                    outcome.exit_code
                ),
                code: Some(outcome.exit_code),
                internal: false,
            });
        }
        let diff = store_layer_diff(
            &self.store.content,
            &outcome.upper,
            &DiffOptions {
                source_date_epoch: Some(epoch),
                ..Default::default()
            },
        );
        if !opts.keep_containers {
            out(&format!("Removing intermediate container {short}\n"));
            self.executor.remove(&outcome.container_id);
        }
        let diff = diff?;
        let args: Vec<String> = stage.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let created_by = if args.is_empty() {
            cmd.join(" ")
        } else {
            format!("|{} {} {}", args.len(), args.join(" "), cmd.join(" "))
        };
        Ok(Change {
            layer: (diff.diff.files > 0).then(|| DerivedLayer::from(&diff)),
            created_by,
        })
    }

    /// Runs `f` on the stage's image mounted writable over a fresh upper dir; returns the layer
    /// of what it changed (none when nothing changed).
    fn in_overlay(
        &self,
        stage: &Stage,
        epoch: i64,
        f: impl FnOnce(&Path) -> Result<(), BuildError>,
    ) -> Result<Option<DerivedLayer>, BuildError> {
        let dir = super::WorkDir::create(&self.work_dir.join("steps"))?;
        let upper = dir.path().join("upper");
        let lowers = image_lowers(self.store, stage.image.as_ref())?;
        {
            let mount = OverlayMount::mount(
                &lowers,
                Some((&upper, &dir.path().join("work"))),
                &dir.path().join("empty"),
                &dir.path().join("merged"),
            )?;
            f(mount.path())?;
        }
        let diff = store_layer_diff(
            &self.store.content,
            &upper,
            &DiffOptions {
                source_date_epoch: Some(epoch),
                ..Default::default()
            },
        )?;
        Ok((diff.diff.files > 0).then(|| DerivedLayer::from(&diff)))
    }

    /// What a COPY or ADD moves; ADD's URL sources are downloaded here (before the cache lookup:
    /// their content is in the key, as in the classic builder).
    fn transfer_of<'k>(&self, kind: &'k InstructionKind) -> Result<Option<Transfer<'k>>, BuildError> {
        Ok(match kind {
            InstructionKind::Copy(c) => Some(Transfer {
                word: "COPY",
                from: c.from.as_deref(),
                paths: path_sources(&c.sources),
                sources: &c.sources,
                downloads: None,
                dest: &c.dest,
                chown: c.chown.as_deref(),
                chmod: c.chmod.as_deref(),
                unpack: false,
            }),
            InstructionKind::Add(a) => Some(Transfer {
                word: "ADD",
                from: None,
                paths: local_sources(&a.sources),
                sources: &a.sources,
                downloads: Some(self.download_sources(a)?),
                dest: &a.dest,
                chown: a.chown.as_deref(),
                chmod: a.chmod.as_deref(),
                unpack: true,
            }),
            _ => None,
        })
    }

    /// Downloads ADD's URL sources (checking `--checksum`) into the build's scratch directory.
    fn download_sources(&self, a: &Add) -> Result<Downloads, BuildError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut downloads = Downloads {
            dir: self.work_dir.join(format!("add-{n}")),
            sources: Vec::new(),
        };
        let urls: Vec<String> = path_sources(&a.sources)
            .into_iter()
            .filter(|p| is_url(p))
            .collect();
        if let Some(sum) = &a.checksum {
            if urls.len() != 1 || a.sources.len() != 1 {
                return Err(BuildError::user(
                    "checksum can't be specified for multiple sources or non-HTTP(S) sources",
                ));
            }
            if !sum.starts_with("sha256:") || sum.len() != 71 {
                return Err(BuildError::user(format!("invalid checksum digest format: {sum}")));
            }
        }
        for (i, url) in urls.iter().enumerate() {
            if url.starts_with("git@") || url.ends_with(".git") {
                return Err(BuildError::user(format!(
                    "ADD from a git repository is not supported by the classic builder: {url}"
                )));
            }
            let name = url_file_name(url)?;
            std::fs::create_dir_all(&downloads.dir)?;
            let full = downloads.dir.join(i.to_string());
            self.executor.download(url, &full)?;
            if let Some(want) = &a.checksum {
                let mut h = Sha256::new();
                std::io::copy(&mut std::fs::File::open(&full)?, &mut h)?;
                let got = format!("sha256:{}", hex::encode(h.finalize()));
                if &got != want {
                    return Err(BuildError::user(format!("digest mismatch {want}: {got}")));
                }
            }
            downloads.sources.push(CopySource::Downloaded { name, full });
        }
        Ok(downloads)
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_step(
        &self,
        stage: &Stage,
        sources: &[CopySource],
        dest: &str,
        chown: Option<&str>,
        chmod: Option<&str>,
        unpack: bool,
        epoch: i64,
    ) -> Result<Option<DerivedLayer>, BuildError> {
        let dest = if dest.starts_with('/') {
            dest.to_string()
        } else {
            let mut d = format!("{}/{}", stage.working_dir().trim_end_matches('/'), dest);
            if dest == "." || dest.ends_with('/') {
                d = format!("{}/", d.trim_end_matches('.').trim_end_matches('/'));
            }
            d
        };
        let chmod = chmod
            .map(|m| {
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| BuildError::user(format!("invalid chmod parameter: {m}")))
            })
            .transpose()?;
        self.in_overlay(stage, epoch, |root| {
            let chown = chown.map(|c| parse_chown(root, c)).transpose()?;
            copy::copy_into(
                root,
                sources,
                &dest,
                &CopyOptions {
                    chown,
                    chmod,
                    unpack_archives: unpack,
                },
            )
        })
    }

    /// Runs `f` with the root COPY reads from: the context, or the image of a stage or a named
    /// image (`--from`), mounted read-only.
    fn with_source_root<T>(
        &self,
        from: Option<&str>,
        df: &Dockerfile,
        context: &Path,
        results: &HashMap<usize, (Option<Digest>, ImageConfig)>,
        f: impl FnOnce(&Path, &str) -> Result<T, BuildError>,
    ) -> Result<T, BuildError> {
        let Some(from) = from else {
            return f(context, "build context or excluded by .dockerignore");
        };
        let image = match df.stage_index(from).and_then(|i| results.get(&i)) {
            Some((image, _)) => image.clone(),
            None => Some(
                self.store
                    .resolve(from)
                    .map_err(|_| {
                        BuildError::user(format!("invalid from flag value {from}: No such image: {from}"))
                    })?
                    .record
                    .id,
            ),
        };
        let lowers = image_lowers(self.store, image.as_ref())?;
        let dir = super::WorkDir::create(&self.work_dir.join("sources"))?;
        let mount = OverlayMount::mount(&lowers, None, &dir.path().join("empty"), &dir.path().join("root"))?;
        let result = f(mount.path(), &format!("stage or image {from}"));
        drop(mount);
        result
    }
}

fn path_sources(sources: &[Source]) -> Vec<String> {
    sources
        .iter()
        .filter_map(|s| match s {
            Source::Path(p) => Some(p.clone()),
            Source::Heredoc(_) => None,
        })
        .collect()
}

fn inline_sources(sources: &[Source]) -> Vec<CopySource> {
    sources
        .iter()
        .filter_map(|s| match s {
            Source::Heredoc(h) => Some(CopySource::Inline {
                name: h.name.clone(),
                content: h.content.clone(),
            }),
            Source::Path(_) => None,
        })
        .collect()
}

fn heredoc_digest(kind: &InstructionKind) -> String {
    let sources = match kind {
        InstructionKind::Copy(c) => &c.sources,
        InstructionKind::Add(a) => &a.sources,
        _ => return String::new(),
    };
    match copy::content_digest(&inline_sources(sources)) {
        Ok(d) if sources.iter().any(|s| matches!(s, Source::Heredoc(_))) => d,
        _ => String::new(),
    }
}

/// ADD's sources that are paths in the context (not URLs).
fn local_sources(sources: &[Source]) -> Vec<String> {
    path_sources(sources).into_iter().filter(|p| !is_url(p)).collect()
}

/// What a COPY or ADD step moves and where.
struct Transfer<'k> {
    word: &'static str,
    /// `--from`: a stage or image instead of the context.
    from: Option<&'k str>,
    /// Paths (and globs) in the source root.
    paths: Vec<String>,
    /// All the instruction's sources (for its heredocs).
    sources: &'k [Source],
    /// ADD's downloaded URLs, removed when the step ends.
    downloads: Option<Downloads>,
    dest: &'k str,
    chown: Option<&'k str>,
    chmod: Option<&'k str>,
    /// ADD: unpack local tar archives.
    unpack: bool,
}

impl Transfer<'_> {
    /// The sources found in `root`, then the downloaded ones, then (`with_inline`) heredocs.
    fn sources_in(&self, root: &Path, what: &str, with_inline: bool) -> Result<Vec<CopySource>, BuildError> {
        let mut found = copy::find_sources(root, &self.paths, what)?;
        if let Some(d) = &self.downloads {
            found.extend(d.sources.iter().cloned());
        }
        if with_inline {
            found.extend(inline_sources(self.sources));
        }
        Ok(found)
    }
}

/// Files an ADD step downloaded; removed with the step.
struct Downloads {
    dir: PathBuf,
    sources: Vec<CopySource>,
}

impl Drop for Downloads {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The file name a URL's path ends in (the classic builder's rule), or an error.
fn url_file_name(url: &str) -> Result<String, BuildError> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let after_host = path.splitn(4, '/').nth(3).unwrap_or("");
    match after_host.rsplit('/').next() {
        Some(name) if !name.is_empty() && name != "." && name != ".." => Ok(name.to_string()),
        _ => Err(BuildError::user(format!(
            "cannot determine filename from url: {url}"
        ))),
    }
}

fn is_url(p: &str) -> bool {
    p.starts_with("http://") || p.starts_with("https://") || p.starts_with("git@")
}

/// `/a/./b/../c/` -> `/a/c`.
fn normalize(p: &str) -> String {
    format!("/{}", copy::clean_rel(p))
}

/// The history text of a metadata instruction, as the classic builder records it.
fn history_text(instruction: &Instruction, kind: &InstructionKind) -> String {
    match kind {
        InstructionKind::Cmd(line) | InstructionKind::Entrypoint(line) => {
            let argv = match line {
                crate::dockerfile::CommandLine::Exec(v) => v.clone(),
                crate::dockerfile::CommandLine::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
            };
            format!(
                "{} {}",
                kind.keyword(),
                serde_json::to_string(&argv).unwrap_or_default()
            )
        }
        _ => instruction.original.trim().to_string(),
    }
}

/// `--chown=user[:group]`, names looked up in the image's `/etc/passwd` and `/etc/group`.
fn parse_chown(root: &Path, spec: &str) -> Result<(u32, u32), BuildError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lookup = |file: &str, name: &str| -> Result<u32, BuildError> {
        if let Ok(n) = name.parse::<u32>() {
            return Ok(n);
        }
        let path: PathBuf = resolve_in_root(root, file, true)?;
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[0] == name)
                    .then(|| f[2].parse::<u32>().ok())
                    .flatten()
            })
            .next()
            .ok_or_else(|| BuildError::user(format!("unable to find user or group {name} in {file}")))
    };
    let uid = lookup("/etc/passwd", user)?;
    let gid = match group {
        Some(g) => lookup("/etc/group", g)?,
        None => uid,
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod url_tests {
    use super::url_file_name;

    #[test]
    fn the_file_name_is_the_last_path_segment() {
        assert_eq!(url_file_name("http://h:1/a/b/c.tar.gz").unwrap(), "c.tar.gz");
        assert_eq!(url_file_name("https://h/file.txt?x=1#frag").unwrap(), "file.txt");
        for bad in ["http://h", "http://h/", "http://h/dir/", "https://h/a/.."] {
            assert!(url_file_name(bad).is_err(), "{bad}");
        }
    }
}
