//! The builder: runs a planned Dockerfile step by step the way Docker's classic builder does,
//! making one image per step (each step's ID is what ` ---> <id>` shows and what the cache
//! remembers), RUN steps in real containers through an [`Executor`], COPY/ADD and WORKDIR
//! through an overlay of the current image over a fresh upper directory, diffed into a layer.
//!
//! Reproducible by default: layers are written with `SOURCE_DATE_EPOCH` (the build arg, else
//! 0) clamping every mtime, and the config's `created` and each history entry's `created` are
//! that time; nothing host-specific (hostname, container IDs) goes into a config, so the same
//! Dockerfile and context give the same image ID on any machine.

pub mod copy;
mod metadata;
pub mod rootfs;
mod steps;

use crate::plan::BuildArgs;
use berth_image::{Digest, ImageStore, Reference};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use steps::Builder;

/// What a build is asked to do (the `/build` query, decoded).
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The Dockerfile's path in the context (`Dockerfile` by default).
    pub dockerfile: String,
    pub tags: Vec<Reference>,
    pub build_args: BuildArgs,
    pub target: Option<String>,
    pub no_cache: bool,
    /// `--label`s, set on the final image.
    pub labels: BTreeMap<String, String>,
    /// The network RUN steps get: `none` unless `host` is asked for.
    pub network_mode: String,
    /// Remove intermediate containers of failed steps too (`forcerm`).
    pub force_remove: bool,
    /// Keep intermediate containers of successful steps (`rm=0`).
    pub keep_containers: bool,
}

/// A RUN step's process, for the executor.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The image the container starts from (the step's parent).
    pub image: Digest,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: String,
    pub working_dir: String,
    pub network_mode: String,
}

/// How a RUN container ended; its upper directory holds what it changed.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub container_id: String,
    pub exit_code: i64,
    pub upper: PathBuf,
}

/// What a RUN container reports while it runs.
pub enum RunEvent<'a> {
    Started(&'a str),
    Output(&'a [u8]),
}

/// Runs RUN steps in containers (the daemon's container service).
pub trait Executor: Sync {
    /// Creates and runs the container to completion; `events` gets the container ID as soon as
    /// it exists, then its stdout and stderr as they come.
    fn run(&self, req: &RunRequest, events: &mut dyn FnMut(RunEvent<'_>)) -> Result<RunOutcome, BuildError>;
    /// Removes a container `run` made.
    fn remove(&self, container_id: &str);
    /// Downloads `url` (ADD's URL source) into the new file `dest`.
    fn download(&self, url: &str, dest: &Path) -> Result<(), BuildError>;
}

/// A build failure, with the message Docker gives and, for a failing RUN, its exit code.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct BuildError {
    pub message: String,
    /// The exit code of a RUN that failed (`errorDetail.code`).
    pub code: Option<i64>,
    /// The server's fault rather than the Dockerfile's or the context's.
    pub internal: bool,
}

impl BuildError {
    pub fn user(message: impl Into<String>) -> BuildError {
        BuildError {
            message: message.into(),
            code: None,
            internal: false,
        }
    }
    pub fn internal(message: impl Into<String>) -> BuildError {
        BuildError {
            message: message.into(),
            code: None,
            internal: true,
        }
    }
}

impl From<std::io::Error> for BuildError {
    fn from(e: std::io::Error) -> BuildError {
        BuildError::internal(e.to_string())
    }
}

impl From<berth_image::ImageError> for BuildError {
    fn from(e: berth_image::ImageError) -> BuildError {
        match e.kind() {
            berth_image::ErrorKind::Internal => BuildError::internal(e.to_string()),
            _ => BuildError::user(e.to_string()),
        }
    }
}

impl From<berth_image::layer::DiffError> for BuildError {
    fn from(e: berth_image::layer::DiffError) -> BuildError {
        BuildError::internal(e.to_string())
    }
}

/// The overlay lower dirs (top first) of an image, or none for `None` (scratch).
pub fn image_lowers(store: &ImageStore, image: Option<&Digest>) -> Result<Vec<PathBuf>, BuildError> {
    let Some(id) = image else { return Ok(Vec::new()) };
    let info = store.resolve(&id.to_string())?;
    Ok(info
        .record
        .layers
        .iter()
        .rev()
        .map(|l| store.layers.fs_dir(&l.chain_id))
        .collect())
}

/// RFC 3339 (seconds, `Z`) for a Unix time, as configs carry `created`.
pub fn rfc3339(epoch: i64) -> String {
    chrono::DateTime::from_timestamp(epoch, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A scratch directory for one build, removed (after unmounting anything left) when dropped.
pub struct WorkDir(PathBuf);

impl WorkDir {
    pub fn create(parent: &Path) -> std::io::Result<WorkDir> {
        std::fs::create_dir_all(parent)?;
        let mut b = [0u8; 8];
        let _ = rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty());
        let dir = parent.join(hex::encode(b));
        std::fs::create_dir(&dir)?;
        Ok(WorkDir(dir))
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(path = %self.0.display(), error = %e, "removing build work dir");
        }
    }
}
