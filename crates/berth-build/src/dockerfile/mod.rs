//! The Dockerfile parser: a hand-written port of BuildKit's parser (heredocs, the escape
//! directive, `RUN --mount` and the other flags) producing a typed [`Dockerfile`].

mod ast;
mod duration;
mod error;
mod expand;
mod flags;
mod instructions;
mod lines;
mod words;

pub use ast::*;
pub use error::DockerfileError;

use instructions::{line_parse, parse_instruction, Parsed};

/// Parses Dockerfile text.
pub fn parse(text: &str) -> Result<Dockerfile, DockerfileError> {
    let scanned = lines::scan(text)?;
    let escape = scanned.directives.escape;
    // Docker shapes every line before typing any instruction, so an error of the first kind
    // anywhere in the file wins over an error of the second kind.
    let mut shaped = Vec::with_capacity(scanned.nodes.len());
    for node in &scanned.nodes {
        let args = line_parse(node, escape).map_err(|m| DockerfileError::syntax(node.start_line, m))?;
        shaped.push(args);
    }

    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for (node, args) in scanned.nodes.iter().zip(&shaped) {
        let parsed =
            parse_instruction(node, args).map_err(|m| DockerfileError::instruction(node.start_line, m))?;
        match parsed {
            Parsed::From(stage) => {
                if let Some(name) = &stage.name {
                    if stages.iter().any(|s| s.name.as_ref() == Some(name)) {
                        let message = format!("duplicate stage name {}", words::go_quote(name));
                        return Err(DockerfileError::syntax(node.start_line, message));
                    }
                }
                stages.push(stage)
            }
            Parsed::Instruction(instruction) => match stages.last_mut() {
                Some(stage) => stage.instructions.push(instruction),
                None if matches!(instruction.kind, InstructionKind::Arg(_)) => global_args.push(instruction),
                None => {
                    return Err(DockerfileError::syntax(
                        node.start_line,
                        "no build stage in current context",
                    ))
                }
            },
        }
    }
    Ok(Dockerfile {
        directives: scanned.directives,
        global_args,
        stages,
        warnings: scanned.warnings,
    })
}

/// Parses Dockerfile bytes (invalid UTF-8 is replaced, as Go's string handling tolerates it).
pub fn parse_bytes(bytes: &[u8]) -> Result<Dockerfile, DockerfileError> {
    parse(&String::from_utf8_lossy(bytes))
}

#[cfg(test)]
mod tests;
