//! The line layer of the parser (BuildKit's `parser.Parse`): parser directives, comments, line
//! continuations with the escape character, and heredoc bodies. It yields one [`RawNode`] per
//! instruction; the instruction layer types them.

use std::sync::LazyLock;

use super::ast::{Directives, Heredoc};
use super::error::DockerfileError;
use super::words::{extract_builder_flags, parse_json_array, JsonArray};
use crate::shell::{Env, Lexer};

/// One instruction's text before typing.
#[derive(Debug, Clone)]
pub(crate) struct RawNode {
    /// The keyword as written (case kept, for error messages).
    pub keyword: String,
    /// `--flag[=value]` words before the arguments.
    pub flags: Vec<String>,
    /// The arguments after the flags, trimmed.
    pub args: String,
    /// The whole instruction, continuations joined, trimmed.
    pub original: String,
    pub start_line: usize,
    pub end_line: usize,
    /// Heredoc bodies as read (not yet chomped).
    pub heredocs: Vec<Heredoc>,
}

pub(crate) struct Lines {
    pub directives: Directives,
    pub nodes: Vec<RawNode>,
    pub warnings: Vec<String>,
}

static DIRECTIVE_RE: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(
        r"^#[\t\n\x0B\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\x0B\f\r ]*=[\t\n\x0B\f\r ]*(.+?)[\t\n\x0B\f\r ]*$",
    )
    .expect("static regex")
});

struct DirectiveState {
    directives: Directives,
    done: bool,
    seen: Vec<String>,
}

impl DirectiveState {
    /// Looks for `# key=value` while still at the top of the file.
    fn possible_directive(&mut self, line: &str) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        let Some(caps) = DIRECTIVE_RE.captures(line) else {
            self.done = true;
            return Ok(());
        };
        let key = caps[1].to_ascii_lowercase();
        let value = caps[2].to_string();
        if !matches!(key.as_str(), "escape" | "syntax" | "check") {
            self.done = true;
            return Ok(());
        }
        if self.seen.contains(&key) {
            return Err(format!("only one {key} parser directive can be used"));
        }
        self.seen.push(key.clone());
        match key.as_str() {
            "escape" => {
                if value != "`" && value != "\\" {
                    return Err(format!("invalid escape token '{value}' does not match ` or \\"));
                }
                self.directives.escape = value.chars().next().unwrap_or('\\');
            }
            "syntax" => self.directives.syntax = Some(value),
            _ => self.directives.check = Some(value),
        }
        Ok(())
    }
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(raw: &str) -> bool {
    trim_newline(raw).trim_start().starts_with('#')
}

/// Strips a trailing escape character (plus spaces and tabs after it) that continues the line,
/// unless the escape character is itself escaped.
fn trim_continuation(line: &str, escape: char) -> (String, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    if let Some(before) = body.strip_suffix(escape) {
        if before.is_empty() || !before.ends_with(escape) {
            return (before.to_string(), false);
        }
    }
    (line.to_string(), true)
}

/// Scans the text into raw instruction nodes.
pub(crate) fn scan(input: &str) -> Result<Lines, DockerfileError> {
    let input = input.strip_prefix('\u{feff}').unwrap_or(input);
    let lines: Vec<&str> = input.split_inclusive('\n').collect();
    let mut state = DirectiveState {
        directives: Directives::default(),
        done: false,
        seen: vec![],
    };
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    let mut idx = 0;
    let mut current_line = 0usize;

    let process_line = |state: &mut DirectiveState, raw: &str, strip_left: bool, line_no: usize| {
        let mut token = trim_newline(raw);
        if strip_left {
            token = token.trim_start();
        }
        state
            .possible_directive(token)
            .map_err(|m| DockerfileError::syntax(line_no, m))?;
        Ok::<String, DockerfileError>(if token.starts_with('#') {
            String::new()
        } else {
            token.to_string()
        })
    };

    while idx < lines.len() {
        let raw = lines[idx];
        idx += 1;
        let processed = process_line(&mut state, raw, true, current_line + 1)?;
        current_line += 1;
        let start_line = current_line;
        let escape = state.directives.escape;
        let (mut line, mut end_of_line) = trim_continuation(&processed, escape);
        if end_of_line && line.is_empty() {
            continue;
        }
        let mut has_empty_continuation = false;
        while !end_of_line && idx < lines.len() {
            let raw = lines[idx];
            idx += 1;
            let processed = process_line(&mut state, raw, false, current_line + 1)?;
            current_line += 1;
            if is_comment(raw) {
                continue;
            }
            if processed.trim_start().is_empty() {
                has_empty_continuation = true;
                continue;
            }
            let (cont, eol) = trim_continuation(&processed, escape);
            end_of_line = eol;
            line.push_str(&cont);
        }
        if has_empty_continuation {
            warnings.push(format!(
                "[WARNING]: Empty continuation line found in:\n    {line}"
            ));
        }

        let mut node = new_node(&line, start_line, current_line)?;
        if line.contains("<<") && can_contain_heredoc(&node) {
            for mut heredoc in
                heredocs_from_line(&line).map_err(|m| DockerfileError::syntax(start_line, m))?
            {
                let mut terminated = false;
                while idx < lines.len() {
                    let raw = lines[idx];
                    idx += 1;
                    current_line += 1;
                    let mut candidate = trim_newline(raw);
                    if heredoc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == heredoc.name {
                        terminated = true;
                        break;
                    }
                    heredoc.content.push_str(raw);
                }
                if !terminated {
                    return Err(DockerfileError::syntax(start_line, "unterminated heredoc"));
                }
                node.heredocs.push(heredoc);
            }
        }
        node.end_line = current_line;
        nodes.push(node);
    }

    if nodes.is_empty() {
        return Err(DockerfileError::syntax(
            current_line.max(1),
            "file with no instructions",
        ));
    }
    if !warnings.is_empty() {
        warnings.push("[WARNING]: Empty continuation lines will become errors in a future release.".into());
    }
    Ok(Lines {
        directives: state.directives,
        nodes,
        warnings,
    })
}

/// Splits `line` into keyword, flags and arguments (BuildKit's `splitCommand`).
pub(crate) fn new_node(line: &str, start_line: usize, end_line: usize) -> Result<RawNode, DockerfileError> {
    let trimmed = line.trim();
    let (keyword, rest) = match trimmed.find(['\t', '\x0B', '\x0C', '\r', ' ']) {
        Some(i) => (
            &trimmed[..i],
            trimmed[i..].trim_start_matches(['\t', '\x0B', '\x0C', '\r', ' ']),
        ),
        None => (trimmed, ""),
    };
    let (args, flags) = if rest.is_empty() {
        (String::new(), vec![])
    } else {
        extract_builder_flags(rest)
    };
    Ok(RawNode {
        keyword: keyword.to_string(),
        flags,
        args: args.trim().to_string(),
        original: trimmed.to_string(),
        start_line,
        end_line,
        heredocs: vec![],
    })
}

/// RUN, COPY and ADD in shell form may carry heredocs, also as an ONBUILD trigger.
fn can_contain_heredoc(node: &RawNode) -> bool {
    let mut keyword = node.keyword.to_ascii_lowercase();
    let mut args = node.args.clone();
    if keyword == "onbuild" {
        if let Ok(child) = new_node(&node.args, node.start_line, node.end_line) {
            keyword = child.keyword.to_ascii_lowercase();
            args = child.args;
        }
    }
    if !matches!(keyword.as_str(), "run" | "copy" | "add") {
        return false;
    }
    !matches!(parse_json_array(&args), JsonArray::Strings(_))
}

static HEREDOC_RE: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"^([0-9]*)<<(-?)[\t\n\x0B\f\r ]*([^<]*)$").expect("static regex"));

/// Recognises a heredoc marker word such as `<<EOF`, `<<-EOF`, `<<"EOF"` or `2<<EOF`.
pub(crate) fn parse_heredoc_word(word: &str) -> Result<Option<Heredoc>, String> {
    let Some(caps) = HEREDOC_RE.captures(word) else {
        return Ok(None);
    };
    let rest = &caps[3];
    if rest.is_empty() {
        return Ok(None);
    }
    let fd = caps[1].parse::<u32>().unwrap_or(0);
    let chomp = &caps[2] == "-";
    let env = Env::new();
    let mut lex = Lexer::new('\\');
    lex.skip_unset_env = true;
    let words = lex.process_words(rest, &env).map_err(|e| e.to_string())?;
    if words.len() != 1 {
        return Ok(None);
    }
    lex.raw_quotes = true;
    let raw_words = lex.process_words(rest, &env).map_err(|e| e.to_string())?;
    if raw_words.len() != 1 {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    }
    let quotes = |s: &str| s.chars().filter(|c| *c == '\'' || *c == '"').count();
    let expand = quotes(&words[0]) == quotes(&raw_words[0]);
    Ok(Some(Heredoc {
        name: words[0].clone(),
        fd,
        expand,
        chomp,
        content: String::new(),
    }))
}

pub(crate) fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let mut lex = Lexer::new('\\');
    lex.raw_quotes = true;
    lex.raw_escapes = true;
    lex.skip_unset_env = true;
    // A line that does not lex (an open quote) simply has no heredocs, as in BuildKit.
    let words = lex.process_words(line, &Env::new()).unwrap_or_default();
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = parse_heredoc_word(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// Removes leading tabs from every line (`<<-`).
pub(crate) fn chomp_heredoc(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}
