//! Expanding an instruction's arguments with the environment in force at its step, following
//! which fields Docker's builder expands: ADD, COPY, ENV, EXPOSE, LABEL, STOPSIGNAL, USER,
//! VOLUME, WORKDIR and ARG. RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK, ONBUILD and MAINTAINER are
//! returned unchanged (the shell, or a later build, sees them as written).

use super::ast::*;
use crate::shell::{Env, ExpandError, Lexer};

impl InstructionKind {
    /// A copy with variables expanded and quotes removed, each word on its own (`COPY $SRCS /d`
    /// with `SRCS="a b"` is one source "a b"), except EXPOSE, whose words split after
    /// expansion (`EXPOSE $PORTS` with `PORTS="80 443"` exposes two ports). COPY/ADD heredocs
    /// whose delimiter was not quoted get variables expanded with quotes kept.
    pub fn expand(&self, env: &Env, escape: char) -> Result<InstructionKind, ExpandError> {
        let lex = Lexer::new(escape);
        let word = |w: &str| lex.process_word(w, env);
        let opt = |w: &Option<String>| w.as_deref().map(word).transpose();
        let pairs = |kvs: &[KeyValue]| -> Result<Vec<KeyValue>, ExpandError> {
            kvs.iter()
                .map(|kv| {
                    Ok(KeyValue {
                        key: word(&kv.key)?,
                        value: word(&kv.value)?,
                    })
                })
                .collect()
        };
        let sources = |srcs: &[Source]| -> Result<Vec<Source>, ExpandError> {
            srcs.iter()
                .map(|s| match s {
                    Source::Path(p) => Ok(Source::Path(word(p)?)),
                    Source::Heredoc(h) if h.expand => {
                        let mut raw = Lexer::new('\\');
                        raw.skip_process_quotes = true;
                        Ok(Source::Heredoc(Heredoc {
                            content: raw.process_word(&h.content, env)?,
                            ..h.clone()
                        }))
                    }
                    Source::Heredoc(h) => Ok(Source::Heredoc(h.clone())),
                })
                .collect()
        };
        Ok(match self {
            InstructionKind::Env(kvs) => InstructionKind::Env(pairs(kvs)?),
            InstructionKind::Label(kvs) => InstructionKind::Label(pairs(kvs)?),
            InstructionKind::Arg(decls) => InstructionKind::Arg(
                decls
                    .iter()
                    .map(|d| {
                        Ok(ArgDecl {
                            name: word(&d.name)?,
                            default: opt(&d.default)?,
                        })
                    })
                    .collect::<Result<_, ExpandError>>()?,
            ),
            InstructionKind::Expose(ports) => {
                let mut out = Vec::new();
                for p in ports {
                    out.extend(lex.process_words(p, env)?);
                }
                InstructionKind::Expose(out)
            }
            InstructionKind::User(u) => InstructionKind::User(word(u)?),
            InstructionKind::Workdir(w) => InstructionKind::Workdir(word(w)?),
            InstructionKind::StopSignal(s) => InstructionKind::StopSignal(word(s)?),
            InstructionKind::Volume(vs) => {
                InstructionKind::Volume(vs.iter().map(|v| word(v)).collect::<Result<_, _>>()?)
            }
            InstructionKind::Copy(c) => InstructionKind::Copy(Copy {
                sources: sources(&c.sources)?,
                dest: word(&c.dest)?,
                from: opt(&c.from)?,
                chown: opt(&c.chown)?,
                chmod: opt(&c.chmod)?,
                excludes: c.excludes.iter().map(|e| word(e)).collect::<Result<_, _>>()?,
                ..c.clone()
            }),
            InstructionKind::Add(a) => InstructionKind::Add(Add {
                sources: sources(&a.sources)?,
                dest: word(&a.dest)?,
                chown: opt(&a.chown)?,
                chmod: opt(&a.chmod)?,
                checksum: opt(&a.checksum)?,
                excludes: a.excludes.iter().map(|e| word(e)).collect::<Result<_, _>>()?,
                ..a.clone()
            }),
            other => other.clone(),
        })
    }
}
