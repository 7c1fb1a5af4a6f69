//! berth-build: the Dockerfile parser, variable expansion, build-stage planning and
//! `.dockerignore` rules (the builder's front end), and later the builder itself.

pub mod dockerfile;
pub mod dockerignore;
pub mod plan;
pub mod shell;

pub use dockerfile::{parse, parse_bytes, Dockerfile, DockerfileError};
pub use dockerignore::DockerIgnore;
pub use plan::{plan, BuildPlan, PlanError};
pub use shell::{expand, expand_words, Env, ExpandError};
