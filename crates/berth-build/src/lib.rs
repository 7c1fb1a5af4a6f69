//! berth-build: the Dockerfile parser, variable expansion, build-stage planning and
//! `.dockerignore` rules (the builder's front end), the build context, the build cache, and the
//! builder itself (see [`builder`]).

pub mod builder;
pub mod cache;
pub mod context;
pub mod dockerfile;
pub mod dockerignore;
pub mod plan;
pub mod shell;

pub use builder::{BuildError, BuildOptions, Builder, Executor, RunEvent, RunOutcome, RunRequest};
pub use cache::BuildCache;
pub use dockerfile::{parse, parse_bytes, Dockerfile, DockerfileError};
pub use dockerignore::DockerIgnore;
pub use plan::{plan, BuildPlan, PlanError};
pub use shell::{expand, expand_words, Env, ExpandError};
