//! The typed Dockerfile syntax tree. Arguments are kept as written (unexpanded, quotes intact
//! where Docker keeps them) so that the builder can expand them with the environment in force at
//! each step; see [`crate::shell`].

use std::time::Duration;

/// A whole parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub directives: Directives,
    /// ARG instructions before the first FROM (each an [`InstructionKind::Arg`]).
    pub global_args: Vec<Instruction>,
    pub stages: Vec<Stage>,
    /// Non-fatal parser warnings (empty continuation lines), in Docker's words.
    pub warnings: Vec<String>,
}

impl Dockerfile {
    /// The escape character in force (`\` unless `# escape=` said otherwise).
    pub fn escape(&self) -> char {
        self.directives.escape
    }

    /// The declarations of the global ARGs, in order.
    pub fn global_arg_decls(&self) -> impl Iterator<Item = &ArgDecl> {
        self.global_args.iter().flat_map(|i| match &i.kind {
            InstructionKind::Arg(decls) => decls.as_slice(),
            _ => &[],
        })
    }

    /// Finds a stage by name (case-insensitive, as stage names are stored lower-case) or index.
    pub fn stage_index(&self, name_or_index: &str) -> Option<usize> {
        let lower = name_or_index.to_ascii_lowercase();
        if let Some(i) = self
            .stages
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
        {
            return Some(i);
        }
        name_or_index
            .parse::<usize>()
            .ok()
            .filter(|i| *i < self.stages.len())
    }
}

/// Parser directives from the top of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// `# syntax=` (recorded, not acted on).
    pub syntax: Option<String>,
    /// `# escape=` (`\` or a backtick).
    pub escape: char,
    /// `# check=` (recorded, ignored).
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            syntax: None,
            escape: '\\',
            check: None,
        }
    }
}

/// One build stage: a FROM line and the instructions after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// The `AS` name, lower-cased as Docker does.
    pub name: Option<String>,
    /// The base image or stage reference as written (may contain `$ARG`s).
    pub base: String,
    /// `--platform` as written.
    pub platform: Option<String>,
    pub instructions: Vec<Instruction>,
    /// 1-based line of the FROM instruction.
    pub line: usize,
    /// The FROM line as written (after joining continuations).
    pub original: String,
}

/// One instruction with its position and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// 1-based line where it ends (after continuations and heredoc bodies).
    pub end_line: usize,
    /// The instruction as written, continuations joined (what `Step N/M : ...` prints).
    pub original: String,
    pub kind: InstructionKind,
}

impl Instruction {
    /// The upper-case keyword, e.g. `RUN`.
    pub fn keyword(&self) -> &'static str {
        self.kind.keyword()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstructionKind {
    Run(Run),
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    /// `ENV` pairs, key and value as written (quotes are removed by expansion).
    Env(Vec<KeyValue>),
    Arg(Vec<ArgDecl>),
    Label(Vec<KeyValue>),
    /// Ports as written, one word each.
    Expose(Vec<String>),
    User(String),
    Workdir(String),
    Volume(Vec<String>),
    Shell(Vec<String>),
    StopSignal(String),
    Healthcheck(Healthcheck),
    Onbuild(Onbuild),
    Copy(Copy),
    Add(Add),
    Maintainer(String),
}

impl InstructionKind {
    pub fn keyword(&self) -> &'static str {
        match self {
            InstructionKind::Run(_) => "RUN",
            InstructionKind::Cmd(_) => "CMD",
            InstructionKind::Entrypoint(_) => "ENTRYPOINT",
            InstructionKind::Env(_) => "ENV",
            InstructionKind::Arg(_) => "ARG",
            InstructionKind::Label(_) => "LABEL",
            InstructionKind::Expose(_) => "EXPOSE",
            InstructionKind::User(_) => "USER",
            InstructionKind::Workdir(_) => "WORKDIR",
            InstructionKind::Volume(_) => "VOLUME",
            InstructionKind::Shell(_) => "SHELL",
            InstructionKind::StopSignal(_) => "STOPSIGNAL",
            InstructionKind::Healthcheck(_) => "HEALTHCHECK",
            InstructionKind::Onbuild(_) => "ONBUILD",
            InstructionKind::Copy(_) => "COPY",
            InstructionKind::Add(_) => "ADD",
            InstructionKind::Maintainer(_) => "MAINTAINER",
        }
    }
}

/// Shell form (run through the SHELL) or exec form (a JSON array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    Shell(String),
    Exec(Vec<String>),
}

impl CommandLine {
    pub fn is_exec(&self) -> bool {
        matches!(self, CommandLine::Exec(_))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub command: CommandLine,
    pub mounts: Vec<MountSpec>,
    /// `--network=` (default, none, host).
    pub network: Option<String>,
    /// `--security=` (sandbox, insecure).
    pub security: Option<String>,
    /// Heredoc bodies named in the command line, in order.
    pub heredocs: Vec<Heredoc>,
}

/// A `RUN --mount=` value, split into its comma-separated `key[=value]` fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub raw: String,
    pub fields: Vec<(String, Option<String>)>,
}

impl MountSpec {
    pub fn parse(raw: &str) -> MountSpec {
        let fields = split_csv(raw)
            .into_iter()
            .filter(|f| !f.is_empty())
            .map(|f| match f.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.to_string())),
                None => (f.trim().to_ascii_lowercase(), None),
            })
            .collect();
        MountSpec {
            raw: raw.to_string(),
            fields,
        }
    }

    /// The value of the last `key=` field.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }

    /// `type=` (defaults to `bind` as in BuildKit).
    pub fn mount_type(&self) -> &str {
        self.get("type").unwrap_or("bind")
    }

    /// `from=`: a stage name or index, or an image.
    pub fn from(&self) -> Option<&str> {
        self.get("from")
    }
}

/// Splits a CSV record as Go's encoding/csv does for one line (double quotes group commas).
fn split_csv(s: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if in_quotes && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => fields.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

/// A heredoc body attached to RUN, COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word, quotes removed (`EOF`).
    pub name: String,
    /// The file descriptor written before `<<` (`2<<EOF`), 0 when none.
    pub fd: u32,
    /// False when the delimiter was quoted: the body is taken literally.
    pub expand: bool,
    /// `<<-`: leading tabs were stripped from every body line (already applied to `content`).
    pub chomp: bool,
    /// The body, line endings kept, without the terminator line.
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// One `ARG` declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    Check(HealthCheckConfig),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckConfig {
    /// `CMD` exec form or `CMD-SHELL` shell form.
    pub test: CommandLine,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
    pub retries: Option<u32>,
}

impl HealthCheckConfig {
    /// The image config `Test` array: `["CMD", ...]` or `["CMD-SHELL", "..."]`.
    pub fn test_array(&self) -> Vec<String> {
        match &self.test {
            CommandLine::Exec(args) => std::iter::once("CMD".to_string())
                .chain(args.iter().cloned())
                .collect(),
            CommandLine::Shell(s) => vec!["CMD-SHELL".to_string(), s.clone()],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onbuild {
    /// The trigger as stored in the image config (`ONBUILD ` removed, heredocs appended).
    pub expression: String,
    /// The trigger parsed as an instruction; `None` when it does not parse (Docker only checks
    /// it when a child image is built).
    pub instruction: Option<Box<Instruction>>,
}

/// A COPY or ADD source: a context path (or URL for ADD) or an inline heredoc file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Path(String),
    Heredoc(Heredoc),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub sources: Vec<Source>,
    pub dest: String,
    /// `--from=` stage name, stage index or image.
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub excludes: Vec<String>,
    /// The sources and destination were written as a JSON array.
    pub json: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Add {
    pub sources: Vec<Source>,
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub checksum: Option<String>,
    pub keep_git_dir: bool,
    pub link: bool,
    pub excludes: Vec<String>,
    pub json: bool,
}
