//! Build-arg semantics and stage planning: which stages a target needs, in which order, with
//! each stage's base resolved against the global ARGs.
//!
//! Rules (as Docker/BuildKit apply them): ARGs before the first FROM are global and visible only
//! in FROM lines (and as defaults for an ARG of the same name redeclared without a value inside a
//! stage); `--build-arg` overrides defaults; proxy args are predefined; the automatic platform
//! args (`TARGETPLATFORM`, `BUILDARCH`, ...) are visible in FROM lines and inside a stage once
//! declared with `ARG`. Stages that the target does not need are skipped.

use std::collections::{BTreeMap, BTreeSet};

use crate::dockerfile::{ArgDecl, Dockerfile, InstructionKind};
use crate::shell::{Env, ExpandError, Lexer};

/// `--build-arg` values; `None` means "given without a value" (the ARG default is kept).
pub type BuildArgs = BTreeMap<String, Option<String>>;

/// Args that exist without being declared and never trigger the "not consumed" warning.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Whether `name` is a predefined proxy arg.
pub fn is_builtin_arg(name: &str) -> bool {
    PROXY_ARGS.contains(&name)
}

/// An OS/architecture pair in Go's names (`linux/amd64`, `linux/arm/v7`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this process runs on.
    pub fn host() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: variant.map(str::to_string),
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Option<Platform> {
        let mut parts = s.split('/');
        let os = parts.next().filter(|p| !p.is_empty())?.to_ascii_lowercase();
        let architecture = parts.next().filter(|p| !p.is_empty())?.to_ascii_lowercase();
        let variant = parts
            .next()
            .filter(|p| !p.is_empty())
            .map(str::to_ascii_lowercase);
        if parts.next().is_some() {
            return None;
        }
        Some(Platform {
            os,
            architecture,
            variant,
        })
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Names of the automatic platform args.
pub const PLATFORM_ARGS: &[&str] = &[
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
];

/// The automatic platform args for a build on `build` producing `target`.
pub fn platform_args(build: &Platform, target: &Platform) -> Env {
    let mut env = Env::new();
    for (prefix, p) in [("BUILD", build), ("TARGET", target)] {
        env.set(&format!("{prefix}PLATFORM"), &p.to_string());
        env.set(&format!("{prefix}OS"), &p.os);
        env.set(&format!("{prefix}ARCH"), &p.architecture);
        env.set(&format!("{prefix}VARIANT"), p.variant.as_deref().unwrap_or(""));
    }
    env
}

/// The value an `ARG` declaration inside a stage takes: a `--build-arg` wins; otherwise the
/// default expanded with `stage_env`; with no default, the global (meta) value of the same name
/// (global ARGs and automatic platform args). `None` leaves the arg unset.
pub fn resolve_stage_arg(
    decl: &ArgDecl,
    build_args: &BuildArgs,
    meta: &Env,
    stage_env: &Env,
    escape: char,
) -> Result<Option<String>, ExpandError> {
    if let Some(Some(v)) = build_args.get(&decl.name) {
        return Ok(Some(v.clone()));
    }
    match &decl.default {
        Some(default) => Lexer::new(escape).process_word(default, stage_env).map(Some),
        None => Ok(meta.get(&decl.name).map(str::to_string)),
    }
}

/// Why a plan could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("target stage {0:?} could not be found")]
    TargetNotFound(String),
    #[error("no build stage in current context")]
    NoStages,
    #[error("circular dependency detected on stage: {0}")]
    Cycle(String),
    #[error("stage {stage} refers to {reference:?}, a stage defined after it")]
    LaterStage { stage: String, reference: String },
    #[error("invalid from flag value {0}: index out of bounds")]
    IndexOutOfBounds(String),
    #[error("base name ({0}) should not be blank")]
    BlankBase(String),
    #[error("dockerfile parse error on line {line}: {source}")]
    Expand { line: usize, source: ExpandError },
}

/// Where a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseRef {
    /// `FROM scratch`.
    Scratch,
    /// An image reference (expanded).
    Image(String),
    /// An earlier stage, by index.
    Stage(usize),
}

/// One stage the build needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStage {
    /// Index in `Dockerfile::stages`.
    pub index: usize,
    pub name: Option<String>,
    pub base: BaseRef,
    /// `--platform` after expansion.
    pub platform: Option<String>,
    /// Earlier stages this one uses (base, `COPY --from`, `RUN --mount=from=`).
    pub depends_on: Vec<usize>,
    /// Images named by `COPY --from` or `RUN --mount=from=` that are not stages.
    pub images: Vec<String>,
}

/// The stages to build, dependencies first and the target last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildPlan {
    pub stages: Vec<PlannedStage>,
    /// Index of the target stage in `Dockerfile::stages`.
    pub target: usize,
    /// Global ARG values and automatic platform args, as FROM lines see them.
    pub meta_args: Env,
    /// Build args given but declared by no ARG the build uses, sorted.
    pub unused_build_args: Vec<String>,
}

impl BuildPlan {
    /// The `M` of the classic builder's `Step N/M`: global ARGs, plus each planned stage's FROM
    /// and instructions.
    pub fn step_count(&self, df: &Dockerfile) -> usize {
        df.global_args.len()
            + self
                .stages
                .iter()
                .map(|s| 1 + df.stages[s.index].instructions.len())
                .sum::<usize>()
    }

    /// Docker's warning for build args nobody consumed, if any.
    pub fn unused_build_args_warning(&self) -> Option<String> {
        if self.unused_build_args.is_empty() {
            return None;
        }
        Some(format!(
            "[Warning] One or more build-args [{}] were not consumed",
            self.unused_build_args.join(" ")
        ))
    }
}

/// Plans a build for the host platform.
pub fn plan(df: &Dockerfile, target: Option<&str>, build_args: &BuildArgs) -> Result<BuildPlan, PlanError> {
    let host = Platform::host();
    plan_for_platforms(df, target, build_args, &host, &host)
}

/// Plans a build on `build_platform` producing `target_platform`.
pub fn plan_for_platforms(
    df: &Dockerfile,
    target: Option<&str>,
    build_args: &BuildArgs,
    build_platform: &Platform,
    target_platform: &Platform,
) -> Result<BuildPlan, PlanError> {
    if df.stages.is_empty() {
        return Err(PlanError::NoStages);
    }
    let lexer = Lexer::new(df.escape());
    let mut meta = platform_args(build_platform, target_platform);
    for instruction in &df.global_args {
        let InstructionKind::Arg(decls) = &instruction.kind else {
            continue;
        };
        for decl in decls {
            let value = match (build_args.get(&decl.name), &decl.default) {
                (Some(Some(v)), _) => Some(v.clone()),
                (_, Some(default)) => {
                    Some(
                        lexer
                            .process_word(default, &meta)
                            .map_err(|source| PlanError::Expand {
                                line: instruction.line,
                                source,
                            })?,
                    )
                }
                _ => None,
            };
            match value {
                Some(v) => meta.set(&decl.name, &v),
                None => meta.remove(&decl.name),
            }
        }
    }

    let target_index = match target {
        Some(t) => {
            let lower = t.to_ascii_lowercase();
            df.stages
                .iter()
                .position(|s| s.name.as_deref() == Some(lower.as_str()))
                .ok_or_else(|| PlanError::TargetNotFound(t.to_string()))?
        }
        None => df.stages.len() - 1,
    };

    let stage_label = |i: usize| df.stages[i].name.clone().unwrap_or_else(|| i.to_string());
    // A reference resolves to a stage by name (any stage, to report misuse) or by index.
    let find_stage = |reference: &str| -> Option<usize> {
        let lower = reference.to_ascii_lowercase();
        df.stages
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
    };

    let mut planned: Vec<PlannedStage> = Vec::with_capacity(df.stages.len());
    for (i, stage) in df.stages.iter().enumerate() {
        let expand = |word: &str| {
            lexer
                .process_word(word, &meta)
                .map_err(|source| PlanError::Expand {
                    line: stage.line,
                    source,
                })
        };
        let base_name = expand(&stage.base)?;
        if base_name.is_empty() {
            return Err(PlanError::BlankBase(stage.base.clone()));
        }
        let platform = stage.platform.as_deref().map(expand).transpose()?;
        let mut depends_on = BTreeSet::new();
        let base = if base_name.eq_ignore_ascii_case("scratch") {
            BaseRef::Scratch
        } else {
            match find_stage(&base_name) {
                Some(j) if j == i => return Err(PlanError::Cycle(stage_label(i))),
                Some(j) if j > i => {
                    return Err(PlanError::LaterStage {
                        stage: stage_label(i),
                        reference: base_name,
                    })
                }
                Some(j) => {
                    depends_on.insert(j);
                    BaseRef::Stage(j)
                }
                None => BaseRef::Image(base_name),
            }
        };

        let mut images = BTreeSet::new();
        for instruction in &stage.instructions {
            let mut references: Vec<String> = Vec::new();
            match &instruction.kind {
                InstructionKind::Copy(c) => references.extend(c.from.clone()),
                InstructionKind::Run(r) => {
                    references.extend(r.mounts.iter().filter_map(|m| m.from().map(str::to_string)))
                }
                _ => {}
            }
            for reference in references {
                let reference =
                    lexer
                        .process_word(&reference, &meta)
                        .map_err(|source| PlanError::Expand {
                            line: instruction.line,
                            source,
                        })?;
                let by_name = find_stage(&reference);
                let by_index = reference.parse::<usize>().ok();
                if by_name.is_none() && by_index.is_some_and(|j| j >= df.stages.len()) {
                    return Err(PlanError::IndexOutOfBounds(reference));
                }
                match by_name.or(by_index) {
                    Some(j) if j == i => return Err(PlanError::Cycle(stage_label(i))),
                    Some(j) if j > i => {
                        return Err(PlanError::LaterStage {
                            stage: stage_label(i),
                            reference,
                        })
                    }
                    Some(j) => {
                        depends_on.insert(j);
                    }
                    None => {
                        images.insert(reference);
                    }
                }
            }
        }
        planned.push(PlannedStage {
            index: i,
            name: stage.name.clone(),
            base,
            platform,
            depends_on: depends_on.into_iter().collect(),
            images: images.into_iter().collect(),
        });
    }

    // Every dependency points to an earlier stage, so index order is a dependency order.
    let mut needed = BTreeSet::new();
    let mut stack = vec![target_index];
    while let Some(i) = stack.pop() {
        if needed.insert(i) {
            stack.extend(planned[i].depends_on.iter().copied());
        }
    }

    let mut declared: BTreeSet<&str> = df.global_arg_decls().map(|d| d.name.as_str()).collect();
    for &i in &needed {
        for instruction in &df.stages[i].instructions {
            if let InstructionKind::Arg(decls) = &instruction.kind {
                declared.extend(decls.iter().map(|d| d.name.as_str()));
            }
        }
    }
    let unused_build_args = build_args
        .keys()
        .filter(|k| !declared.contains(k.as_str()) && !is_builtin_arg(k))
        .cloned()
        .collect();

    let stages = planned
        .into_iter()
        .filter(|p| needed.contains(&p.index))
        .collect();
    Ok(BuildPlan {
        stages,
        target: target_index,
        meta_args: meta,
        unused_build_args,
    })
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
