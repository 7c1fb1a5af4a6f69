//! `.dockerignore` files and Docker's path matching rules, ported from moby/patternmatcher
//! (`ignorefile.ReadAll`, `New`, `MatchesOrParentMatches`, `MatchesExact`).
//!
//! Rules: `*` matches within one path element, `?` one character, `[...]` a class, `**` any
//! number of directories; a `!` pattern re-includes what earlier patterns excluded; the last
//! matching pattern wins; a path is excluded when it or one of its parent directories matches.

/// A pattern list that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreError {
    #[error("illegal exclusion pattern: \"!\"")]
    LoneExclamation,
    #[error("syntax error in pattern")]
    BadPattern { pattern: String },
}

/// Reads `.dockerignore` text into patterns: comments (`#` in the first column) and blank lines
/// are dropped, whitespace trimmed, each pattern cleaned like Go's `filepath.Clean`, and a
/// leading `/` removed (`!` exceptions keep their `!`).
pub fn read_ignore_file(text: &str) -> Vec<String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut patterns = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let mut pattern = line.trim();
        if pattern.is_empty() {
            continue;
        }
        let invert = pattern.starts_with('!');
        if invert {
            pattern = pattern[1..].trim();
        }
        let mut cleaned = String::new();
        if !pattern.is_empty() {
            cleaned = clean_path(pattern);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
        }
        patterns.push(if invert { format!("!{cleaned}") } else { cleaned });
    }
    patterns
}

/// Keeps the build's own files in the context even when `.dockerignore` excludes them (the
/// docker CLI's `TrimBuildFilesFromExcludes`): the daemon must receive them and drops them from
/// the context itself. Appends `!.dockerignore` and `!<dockerfile>` exceptions as needed.
pub fn keep_build_files(
    mut patterns: Vec<String>,
    dockerfile: &str,
    dockerfile_from_stdin: bool,
) -> Vec<String> {
    let excluded = |patterns: &[String], path: &str| {
        DockerIgnore::new(patterns).is_ok_and(|m| m.matches(&clean_path(path)))
    };
    if excluded(&patterns, ".dockerignore") {
        patterns.push("!.dockerignore".into());
    }
    if !dockerfile_from_stdin && excluded(&patterns, dockerfile) {
        patterns.push(format!("!{dockerfile}"));
    }
    patterns
}

/// Go's `path.Clean`: collapses `//`, `.` and `..` elements; "" becomes ".".
pub fn clean_path(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            p => out.push(p),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MatchType {
    Exact,
    Prefix,
    Suffix,
    Regexp,
}

#[derive(Debug, Clone)]
struct Pattern {
    cleaned: String,
    exclusion: bool,
    dirs: Vec<String>,
    match_type: MatchType,
    regex: Option<regex::Regex>,
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        match self.match_type {
            MatchType::Exact => path == self.cleaned,
            MatchType::Prefix => path.starts_with(&self.cleaned[..self.cleaned.len() - 2]),
            MatchType::Suffix => {
                let suffix = &self.cleaned[2..];
                path.ends_with(suffix) || suffix.strip_prefix('/').is_some_and(|s| path == s)
            }
            MatchType::Regexp => self.regex.as_ref().is_some_and(|r| r.is_match(path)),
        }
    }
}

/// A compiled `.dockerignore` pattern list.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
    exclusions: bool,
}

impl DockerIgnore {
    /// Parses `.dockerignore` text.
    pub fn parse(text: &str) -> Result<Self, IgnoreError> {
        Self::new(read_ignore_file(text))
    }

    /// Compiles patterns (patternmatcher's `New`): trimmed, empty ones skipped, cleaned.
    pub fn new<I, S>(patterns: I) -> Result<Self, IgnoreError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = DockerIgnore::default();
        for p in patterns {
            let p = p.as_ref().trim();
            if p.is_empty() {
                continue;
            }
            let mut p = clean_path(p);
            let mut exclusion = false;
            if let Some(rest) = p.strip_prefix('!') {
                if rest.is_empty() {
                    return Err(IgnoreError::LoneExclamation);
                }
                exclusion = true;
                out.exclusions = true;
                p = rest.to_string();
            }
            if !glob_syntax_ok(&p) {
                return Err(IgnoreError::BadPattern { pattern: p });
            }
            let (match_type, regex_src) = compile(&p);
            let regex = match regex_src {
                Some(src) => Some(
                    regex::Regex::new(&src).map_err(|_| IgnoreError::BadPattern { pattern: p.clone() })?,
                ),
                None => None,
            };
            let dirs = p.split('/').map(str::to_string).collect();
            out.patterns.push(Pattern {
                cleaned: p,
                exclusion,
                dirs,
                match_type,
                regex,
            });
        }
        Ok(out)
    }

    /// Whether any pattern is a `!` exception.
    pub fn has_exclusions(&self) -> bool {
        self.exclusions
    }

    /// The patterns as compiled, `!` prefixed for exceptions.
    pub fn patterns(&self) -> Vec<String> {
        self.patterns
            .iter()
            .map(|p| {
                if p.exclusion {
                    format!("!{}", p.cleaned)
                } else {
                    p.cleaned.clone()
                }
            })
            .collect()
    }

    /// Whether `path` (slash-separated, relative to the context) is excluded: it or one of its
    /// parent directories matches, and no later exception re-includes it. "." is never excluded.
    pub fn matches(&self, path: &str) -> bool {
        if path.is_empty() || path == "." {
            return false;
        }
        let parent = parent_dir(path).unwrap_or_default();
        let parent_dirs: Vec<&str> = if parent.is_empty() {
            vec![]
        } else {
            parent.split('/').collect()
        };
        let mut matched = false;
        for pattern in &self.patterns {
            // Only an inclusion can change an unmatched path, only an exception a matched one.
            if pattern.exclusion != matched {
                continue;
            }
            let mut hit = pattern.matches(path);
            if !hit {
                hit = (1..=parent_dirs.len()).any(|i| pattern.matches(&parent_dirs[..i].join("/")));
            }
            if hit {
                matched = !pattern.exclusion;
            }
        }
        matched
    }

    /// Whether `path` itself matches, without looking at parent directories.
    pub fn matches_exact(&self, path: &str) -> bool {
        let mut matched = false;
        for pattern in &self.patterns {
            if pattern.exclusion != matched {
                continue;
            }
            if pattern.matches(path) {
                matched = !pattern.exclusion;
            }
        }
        matched
    }

    /// For the context walker: whether an excluded directory `dir` must still be walked because
    /// an exception could re-include something inside it. False when there are no exceptions.
    pub fn may_include_under(&self, dir: &str) -> bool {
        if !self.exclusions {
            return false;
        }
        let parts: Vec<&str> = dir.split('/').filter(|s| !s.is_empty() && *s != ".").collect();
        self.patterns
            .iter()
            .filter(|p| p.exclusion)
            .any(|p| exception_may_reach(&p.dirs, &parts))
    }
}

/// Whether an exception with path elements `pattern_dirs` can match `dir` or something below it.
fn exception_may_reach(pattern_dirs: &[String], dir: &[&str]) -> bool {
    for (i, part) in dir.iter().enumerate() {
        let Some(component) = pattern_dirs.get(i) else {
            // The exception names an ancestor of `dir`.
            return true;
        };
        if component.contains("**") {
            return true;
        }
        let (ty, src) = compile(component);
        let hit = match (ty, src) {
            (_, Some(src)) => regex::Regex::new(&src).is_ok_and(|r| r.is_match(part)),
            _ => component == part,
        };
        if !hit {
            return false;
        }
    }
    true
}

/// Go's `filepath.Dir` for a relative slash path, or `None` when it is ".".
fn parent_dir(path: &str) -> Option<String> {
    let idx = path.rfind('/')?;
    let parent = clean_path(&path[..idx]);
    if parent == "." {
        None
    } else {
        Some(parent)
    }
}

/// Checks the pattern syntax as Go's `filepath.Match` does (classes closed and non-empty, no
/// `-` or `]` where a class character is expected, no trailing `\`).
fn glob_syntax_ok(pattern: &str) -> bool {
    let chars: Vec<char> = pattern.chars().collect();
    let esc = |i: usize| -> Option<usize> {
        let mut i = i;
        let c = *chars.get(i)?;
        if c == '-' || c == ']' {
            return None;
        }
        if c == '\\' {
            i += 1;
            chars.get(i)?;
        }
        i += 1;
        // The class must be closed after this character.
        chars.get(i)?;
        Some(i)
    };
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '[' => {
                i += 1;
                if chars.get(i) == Some(&'^') {
                    i += 1;
                }
                let mut ranges = 0;
                loop {
                    if chars.get(i) == Some(&']') && ranges > 0 {
                        i += 1;
                        break;
                    }
                    let Some(next) = esc(i) else { return false };
                    i = next;
                    if chars[i] == '-' {
                        let Some(next) = esc(i + 1) else { return false };
                        i = next;
                    }
                    ranges += 1;
                }
            }
            '\\' => {
                if i + 1 >= chars.len() {
                    return false;
                }
                i += 2;
            }
            _ => i += 1,
        }
    }
    true
}

/// Classifies a pattern and builds its regex as patternmatcher's `compile` does. Literal
/// characters are escaped for the regex crate so they keep their glob meaning.
fn compile(pattern: &str) -> (MatchType, Option<String>) {
    let chars: Vec<char> = pattern.chars().collect();
    let mut re = String::from("^");
    let mut ty = MatchType::Exact;
    let mut i = 0;
    let mut iteration = 0;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= chars.len() {
                    if ty == MatchType::Exact {
                        ty = MatchType::Prefix;
                    } else {
                        re.push_str(".*");
                        ty = MatchType::Regexp;
                    }
                } else {
                    re.push_str("(.*/)?");
                    ty = MatchType::Regexp;
                }
                if iteration == 0 {
                    ty = MatchType::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                ty = MatchType::Regexp;
            }
            '?' => {
                re.push_str("[^/]");
                ty = MatchType::Regexp;
            }
            '\\' => {
                match chars.get(i) {
                    Some(c) => {
                        re.push_str(&regex::escape(&c.to_string()));
                        i += 1;
                    }
                    None => re.push_str("\\\\"),
                }
                ty = MatchType::Regexp;
            }
            '[' => {
                ty = MatchType::Regexp;
                re.push('[');
                if chars.get(i) == Some(&'^') {
                    re.push('^');
                    i += 1;
                }
                let mut first = true;
                while i < chars.len() {
                    let c = chars[i];
                    i += 1;
                    match c {
                        ']' if !first => {
                            re.push(']');
                            break;
                        }
                        '\\' if i < chars.len() => {
                            re.push_str(&regex::escape(&chars[i].to_string()));
                            i += 1;
                        }
                        '-' if !first => re.push('-'),
                        c => re.push_str(&regex::escape(&c.to_string())),
                    }
                    first = false;
                }
            }
            ']' => {
                re.push_str("\\]");
                ty = MatchType::Regexp;
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
        iteration += 1;
    }
    if ty == MatchType::Regexp {
        re.push('$');
        (ty, Some(re))
    } else {
        (ty, None)
    }
}

#[cfg(test)]
#[path = "dockerignore_tests.rs"]
mod tests;
