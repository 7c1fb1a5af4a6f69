//! The instruction layer: turns raw nodes into typed instructions (BuildKit's
//! `line_parsers.go` for argument shapes and `instructions/parse.go` for checks and messages).

use std::time::Duration;

use super::ast::*;
use super::duration::parse_go_duration;
use super::flags::{parse_flags, with_suggestion, FlagType, ParsedFlags};
use super::lines::{chomp_heredoc, new_node, parse_heredoc_word, RawNode};
use super::words::{
    go_quote, parse_json_array, parse_words, split_whitespace, JsonArray, ERR_NOT_STRING_ARRAY,
};

pub(crate) const INSTRUCTION_NAMES: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// An instruction's arguments as the line parsers shape them.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeArgs {
    pub args: Vec<String>,
    pub json: bool,
    /// ONBUILD's trigger.
    pub sub: Option<Box<(RawNode, NodeArgs)>>,
}

/// Shapes the arguments of one node; errors here are file-level (no "parse error on line" prefix
/// in Docker).
pub(crate) fn line_parse(node: &RawNode, escape: char) -> Result<NodeArgs, String> {
    let rest = node.args.as_str();
    let keyword = node.keyword.to_ascii_lowercase();
    let words = |v: Vec<String>| NodeArgs {
        args: v,
        json: false,
        sub: None,
    };
    match keyword.as_str() {
        "add" | "copy" | "volume" => match parse_json_array(rest) {
            JsonArray::Strings(v) => Ok(NodeArgs {
                args: v,
                json: true,
                sub: None,
            }),
            JsonArray::NotStrings => Err(ERR_NOT_STRING_ARRAY.into()),
            JsonArray::NotJson => Ok(words(split_whitespace(rest))),
        },
        "cmd" | "entrypoint" | "run" | "shell" => maybe_json(rest),
        "arg" => Ok(words(parse_words(rest, escape))),
        "env" | "label" => parse_name_val(rest, &keyword.to_ascii_uppercase(), escape).map(words),
        "expose" | "from" => Ok(words(split_whitespace(rest))),
        "healthcheck" => {
            let Some(first_len) = rest
                .find(char::is_whitespace)
                .or(Some(rest.len()))
                .filter(|l| *l > 0)
            else {
                return Ok(NodeArgs::default());
            };
            let typ = &rest[..first_len];
            let mut cmd = maybe_json(rest[first_len..].trim_start())?;
            cmd.args.insert(0, typ.to_string());
            Ok(cmd)
        }
        "maintainer" | "stopsignal" | "user" | "workdir" => Ok(words(if rest.is_empty() {
            vec![]
        } else {
            vec![rest.to_string()]
        })),
        "onbuild" => {
            if rest.is_empty() {
                return Ok(NodeArgs::default());
            }
            let mut child =
                new_node(rest, node.start_line, node.end_line).map_err(|e| e.message().to_string())?;
            child.heredocs = node.heredocs.clone();
            let child_args = line_parse(&child, escape)?;
            let mut args = vec![child.keyword.clone()];
            args.extend(child_args.args.iter().cloned());
            Ok(NodeArgs {
                args,
                json: child_args.json,
                sub: Some(Box::new((child, child_args))),
            })
        }
        _ => Ok(NodeArgs::default()),
    }
}

fn maybe_json(rest: &str) -> Result<NodeArgs, String> {
    if rest.is_empty() {
        return Ok(NodeArgs::default());
    }
    match parse_json_array(rest) {
        JsonArray::Strings(v) => Ok(NodeArgs {
            args: v,
            json: true,
            sub: None,
        }),
        JsonArray::NotStrings => Err(ERR_NOT_STRING_ARRAY.into()),
        JsonArray::NotJson => Ok(NodeArgs {
            args: vec![rest.to_string()],
            json: false,
            sub: None,
        }),
    }
}

/// `KEY=value ...` or the legacy `KEY value` (ENV, LABEL); flattened to key, value, key, value.
fn parse_name_val(rest: &str, key: &str, escape: char) -> Result<Vec<String>, String> {
    let words = parse_words(rest, escape);
    if words.is_empty() {
        return Ok(vec![]);
    }
    if !words[0].contains('=') {
        let mut parts = rest.splitn(2, ['\t', '\x0B', '\x0C', '\r', ' ']);
        let name = parts.next().unwrap_or_default();
        let value = parts
            .next()
            .map(|v| v.trim_start_matches(['\t', '\x0B', '\x0C', '\r', ' ']));
        return match value {
            Some(v) => Ok(vec![name.to_string(), v.to_string()]),
            None => Err(format!("{key} must have two arguments")),
        };
    }
    let mut out = Vec::new();
    for word in words {
        let Some((k, v)) = word.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {}. Must be of the form: name=value",
                go_quote(&word)
            ));
        };
        out.push(k.to_string());
        out.push(v.to_string());
    }
    Ok(out)
}

/// What one instruction turned into.
pub(crate) enum Parsed {
    From(Stage),
    Instruction(Instruction),
}

fn at_least_one(cmd: &str) -> String {
    format!("{cmd} requires at least one argument")
}

fn exactly_one(cmd: &str) -> String {
    format!("{cmd} requires exactly one argument")
}

fn flags(node: &RawNode, defs: &[(&'static str, FlagType)]) -> Result<ParsedFlags, String> {
    parse_flags(&node.flags, defs)
}

/// Types one node. Errors carry the message only; the caller adds the line.
pub(crate) fn parse_instruction(node: &RawNode, a: &NodeArgs) -> Result<Parsed, String> {
    let args = &a.args;
    let keyword = node.keyword.to_ascii_lowercase();
    let instr = |kind: InstructionKind| {
        Ok(Parsed::Instruction(Instruction {
            line: node.start_line,
            end_line: node.end_line,
            original: node.original.clone(),
            kind,
        }))
    };
    match keyword.as_str() {
        "from" => {
            let name = match args.len() {
                3 if args[1].eq_ignore_ascii_case("as") => {
                    let name = args[2].to_ascii_lowercase();
                    if !valid_stage_name(&name) {
                        return Err(format!(
                            "invalid name for build stage: {}, name can't start with a number or contain symbols",
                            go_quote(&args[2])
                        ));
                    }
                    Some(name)
                }
                1 => None,
                _ => return Err("FROM requires either one or three arguments".into()),
            };
            let f = flags(node, &[("platform", FlagType::String)])?;
            Ok(Parsed::From(Stage {
                name,
                base: args[0].clone(),
                platform: f.string("platform").filter(|p| !p.is_empty()),
                instructions: vec![],
                line: node.start_line,
                original: node.original.clone(),
            }))
        }
        "env" | "label" => {
            let upper = keyword.to_ascii_uppercase();
            flags(node, &[])?;
            if args.is_empty() {
                return Err(at_least_one(&upper));
            }
            if args.chunks(2).any(|pair| pair.len() != 2) {
                return Err(format!("Bad input to {upper}, too many arguments"));
            }
            let mut pairs = Vec::new();
            for kv in args.chunks(2) {
                if kv[0].is_empty() {
                    return Err(format!("{upper} names can not be blank"));
                }
                pairs.push(KeyValue {
                    key: kv[0].clone(),
                    value: kv[1].clone(),
                });
            }
            instr(if keyword == "env" {
                InstructionKind::Env(pairs)
            } else {
                InstructionKind::Label(pairs)
            })
        }
        "maintainer" => {
            if args.len() != 1 {
                return Err(exactly_one("MAINTAINER"));
            }
            flags(node, &[])?;
            instr(InstructionKind::Maintainer(args[0].clone()))
        }
        "add" => {
            if args.len() < 2 {
                return Err(no_destination("ADD"));
            }
            let f = flags(
                node,
                &[
                    ("chown", FlagType::String),
                    ("chmod", FlagType::String),
                    ("link", FlagType::Bool),
                    ("keep-git-dir", FlagType::Bool),
                    ("checksum", FlagType::String),
                    ("exclude", FlagType::Strings),
                ],
            )?;
            let (sources, dest) = sources_and_dest(node, args, "ADD")?;
            instr(InstructionKind::Add(Add {
                sources,
                dest,
                chown: f.string("chown").filter(|s| !s.is_empty()),
                chmod: f.string("chmod").filter(|s| !s.is_empty()),
                checksum: f.string("checksum").filter(|s| !s.is_empty()),
                keep_git_dir: f.bool("keep-git-dir"),
                link: f.bool("link"),
                excludes: f.strings("exclude"),
                json: a.json,
            }))
        }
        "copy" => {
            if args.len() < 2 {
                return Err(no_destination("COPY"));
            }
            let f = flags(
                node,
                &[
                    ("chown", FlagType::String),
                    ("from", FlagType::String),
                    ("chmod", FlagType::String),
                    ("link", FlagType::Bool),
                    ("parents", FlagType::Bool),
                    ("exclude", FlagType::Strings),
                ],
            )?;
            let (sources, dest) = sources_and_dest(node, args, "COPY")?;
            instr(InstructionKind::Copy(Copy {
                sources,
                dest,
                from: f.string("from").filter(|s| !s.is_empty()),
                chown: f.string("chown").filter(|s| !s.is_empty()),
                chmod: f.string("chmod").filter(|s| !s.is_empty()),
                link: f.bool("link"),
                parents: f.bool("parents"),
                excludes: f.strings("exclude"),
                json: a.json,
            }))
        }
        "onbuild" => {
            if args.is_empty() {
                return Err(at_least_one("ONBUILD"));
            }
            flags(node, &[])?;
            let trigger = args[0].trim().to_ascii_uppercase();
            match trigger.as_str() {
                "ONBUILD" => return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into()),
                "MAINTAINER" | "FROM" => {
                    return Err(format!("{trigger} isn't allowed as an ONBUILD trigger"))
                }
                _ => {}
            }
            let mut expression = strip_onbuild(&node.original).to_string();
            for h in &node.heredocs {
                expression.push('\n');
                expression.push_str(&h.content);
                expression.push_str(&h.name);
            }
            // Docker checks the trigger only when a child image is built; a trigger that does
            // not parse is kept as text.
            let instruction = a
                .sub
                .as_ref()
                .and_then(|sub| match parse_instruction(&sub.0, &sub.1) {
                    Ok(Parsed::Instruction(mut i)) => {
                        i.original = strip_onbuild(&node.original).to_string();
                        Some(Box::new(i))
                    }
                    _ => None,
                });
            instr(InstructionKind::Onbuild(Onbuild {
                expression,
                instruction,
            }))
        }
        "workdir" => {
            if args.len() != 1 {
                return Err(exactly_one("WORKDIR"));
            }
            flags(node, &[])?;
            instr(InstructionKind::Workdir(args[0].clone()))
        }
        "run" => {
            let f = flags(
                node,
                &[
                    ("mount", FlagType::Strings),
                    ("network", FlagType::String),
                    ("security", FlagType::String),
                ],
            )?;
            let heredocs = if a.json {
                vec![]
            } else {
                node.heredocs.iter().map(chomped).collect()
            };
            instr(InstructionKind::Run(Run {
                command: command_line(args, a.json),
                mounts: f.strings("mount").iter().map(|m| MountSpec::parse(m)).collect(),
                network: f.string("network"),
                security: f.string("security"),
                heredocs,
            }))
        }
        "cmd" => {
            flags(node, &[])?;
            instr(InstructionKind::Cmd(command_line(args, a.json)))
        }
        "entrypoint" => {
            flags(node, &[])?;
            instr(InstructionKind::Entrypoint(command_line(args, a.json)))
        }
        "healthcheck" => {
            if args.is_empty() {
                return Err(at_least_one("HEALTHCHECK"));
            }
            let typ = args[0].to_ascii_uppercase();
            let rest = &args[1..];
            if typ == "NONE" {
                if !rest.is_empty() {
                    return Err("HEALTHCHECK NONE takes no arguments".into());
                }
                return instr(InstructionKind::Healthcheck(Healthcheck::None));
            }
            let f = flags(
                node,
                &[
                    ("interval", FlagType::String),
                    ("timeout", FlagType::String),
                    ("start-period", FlagType::String),
                    ("start-interval", FlagType::String),
                    ("retries", FlagType::String),
                ],
            )?;
            if typ != "CMD" {
                return Err(format!(
                    "Unknown type {} in HEALTHCHECK (try CMD)",
                    go_quote(&typ)
                ));
            }
            if rest.is_empty() {
                return Err("Missing command after HEALTHCHECK CMD".into());
            }
            let retries = match f.string("retries").filter(|r| !r.is_empty()) {
                None => None,
                Some(r) => {
                    let n: i64 = r
                        .parse()
                        .ok()
                        .filter(|n: &i64| i32::try_from(*n).is_ok())
                        .ok_or_else(|| {
                            format!("strconv.ParseInt: parsing {}: invalid syntax", go_quote(&r))
                        })?;
                    if n < 1 {
                        return Err(format!("--retries must be at least 1 (not {n})"));
                    }
                    Some(n as u32)
                }
            };
            instr(InstructionKind::Healthcheck(Healthcheck::Check(
                HealthCheckConfig {
                    test: command_line(rest, a.json),
                    interval: interval(&f, "interval")?,
                    timeout: interval(&f, "timeout")?,
                    start_period: interval(&f, "start-period")?,
                    start_interval: interval(&f, "start-interval")?,
                    retries,
                },
            )))
        }
        "expose" => {
            if args.is_empty() {
                return Err(at_least_one("EXPOSE"));
            }
            flags(node, &[])?;
            instr(InstructionKind::Expose(args.clone()))
        }
        "user" => {
            if args.len() != 1 {
                return Err(exactly_one("USER"));
            }
            flags(node, &[])?;
            instr(InstructionKind::User(args[0].clone()))
        }
        "volume" => {
            if args.is_empty() {
                return Err(at_least_one("VOLUME"));
            }
            flags(node, &[])?;
            let mut volumes = Vec::new();
            for v in args {
                let v = v.trim();
                if v.is_empty() {
                    return Err("VOLUME specified can not be an empty string".into());
                }
                volumes.push(v.to_string());
            }
            instr(InstructionKind::Volume(volumes))
        }
        "stopsignal" => {
            if args.len() != 1 {
                return Err(exactly_one("STOPSIGNAL"));
            }
            flags(node, &[])?;
            instr(InstructionKind::StopSignal(args[0].clone()))
        }
        "arg" => {
            if args.is_empty() {
                return Err(at_least_one("ARG"));
            }
            flags(node, &[])?;
            let mut decls = Vec::new();
            for arg in args {
                match arg.split_once('=') {
                    Some(("", _)) => return Err("ARG names can not be blank".into()),
                    Some((k, v)) => decls.push(ArgDecl {
                        name: k.to_string(),
                        default: Some(v.to_string()),
                    }),
                    None => decls.push(ArgDecl {
                        name: arg.clone(),
                        default: None,
                    }),
                }
            }
            instr(InstructionKind::Arg(decls))
        }
        "shell" => {
            flags(node, &[])?;
            if args.is_empty() {
                return Err(at_least_one("SHELL"));
            }
            if !a.json {
                return Err("SHELL requires the arguments to be in JSON form".into());
            }
            instr(InstructionKind::Shell(args.clone()))
        }
        _ => Err(with_suggestion(
            format!("unknown instruction: {}", node.keyword),
            &node.keyword,
            INSTRUCTION_NAMES,
            false,
        )),
    }
}

/// The body with `<<-` leading tabs removed, as BuildKit hands it to RUN.
fn chomped(h: &Heredoc) -> Heredoc {
    let mut h = h.clone();
    if h.chomp {
        h.content = chomp_heredoc(&h.content);
    }
    h
}

fn strip_onbuild(original: &str) -> &str {
    let t = original.trim_start();
    match t.get(..7) {
        Some(head) if head.eq_ignore_ascii_case("onbuild") => t[7..].trim_start(),
        _ => t,
    }
}

fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn no_destination(cmd: &str) -> String {
    format!("{cmd} requires at least two arguments, but only one was provided. Destination could not be determined")
}

fn command_line(args: &[String], json: bool) -> CommandLine {
    if json {
        CommandLine::Exec(args.to_vec())
    } else {
        CommandLine::Shell(args.join(" "))
    }
}

fn interval(f: &ParsedFlags, name: &str) -> Result<Option<Duration>, String> {
    let Some(value) = f.string(name).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let nanos = parse_go_duration(&value)?;
    if nanos < 1_000_000 {
        return Err(format!("Interval {} cannot be less than 1ms", go_quote(name)));
    }
    Ok(Some(Duration::from_nanos(
        u64::try_from(nanos).unwrap_or(u64::MAX),
    )))
}

fn sources_and_dest(node: &RawNode, args: &[String], cmd: &str) -> Result<(Vec<Source>, String), String> {
    let (dest, srcs) = args.split_last().ok_or_else(|| no_destination(cmd))?;
    if parse_heredoc_word(dest)?.is_some() {
        return Err(format!("{cmd} cannot accept a heredoc as a destination"));
    }
    let mut sources = Vec::new();
    for src in srcs {
        match parse_heredoc_word(src)? {
            Some(mut h) => {
                if let Some(body) = node.heredocs.iter().find(|b| b.name == h.name) {
                    h.content = body.content.clone();
                }
                if h.chomp {
                    h.content = chomp_heredoc(&h.content);
                }
                sources.push(Source::Heredoc(h));
            }
            None => sources.push(Source::Path(src.clone())),
        }
    }
    Ok((sources, dest.clone()))
}
