//! Instruction flags (`--from=x`, `--link`), parsed as BuildKit's `BFlags` does, and the
//! "did you mean" suggestions Docker adds to unknown names.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagType {
    Bool,
    String,
    /// May repeat (`--mount`, `--exclude`).
    Strings,
}

#[derive(Debug, Default)]
pub(crate) struct ParsedFlags {
    strings: BTreeMap<&'static str, Vec<String>>,
    bools: BTreeMap<&'static str, bool>,
}

impl ParsedFlags {
    pub fn string(&self, name: &str) -> Option<String> {
        self.strings.get(name).and_then(|v| v.last().cloned())
    }

    pub fn strings(&self, name: &str) -> Vec<String> {
        self.strings.get(name).cloned().unwrap_or_default()
    }

    pub fn bool(&self, name: &str) -> bool {
        self.bools.get(name).copied().unwrap_or(false)
    }
}

/// Parses `args` (each `--name[=value]`) against the flags an instruction accepts.
pub(crate) fn parse_flags(args: &[String], defs: &[(&'static str, FlagType)]) -> Result<ParsedFlags, String> {
    let mut parsed = ParsedFlags::default();
    let mut used: Vec<&'static str> = Vec::new();
    for arg in args {
        if arg == "--" {
            return Ok(parsed);
        }
        if !arg.starts_with("--") {
            return Err(format!("arg should start with -- : {arg}"));
        }
        let (flag_name, value) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (arg.as_str(), None),
        };
        let name = &flag_name[2..];
        let Some(&(def_name, ty)) = defs.iter().find(|(n, _)| *n == name) else {
            let names: Vec<&str> = defs.iter().map(|(n, _)| *n).collect();
            return Err(with_suggestion(
                format!("unknown flag: {flag_name}"),
                name,
                &names,
                true,
            ));
        };
        if used.contains(&def_name) && ty != FlagType::Strings {
            return Err(format!("duplicate flag specified: {flag_name}"));
        }
        used.push(def_name);
        match ty {
            FlagType::Bool => {
                let v = match value {
                    Some("") => return Err(format!("missing a value on flag: {flag_name}")),
                    None => true,
                    Some(v) if v.eq_ignore_ascii_case("true") => true,
                    Some(v) if v.eq_ignore_ascii_case("false") => false,
                    Some(v) => return Err(format!("expecting boolean value for flag {flag_name}, not: {v}")),
                };
                parsed.bools.insert(def_name, v);
            }
            FlagType::String | FlagType::Strings => {
                let Some(v) = value else {
                    return Err(format!("missing a value on flag: {flag_name}"));
                };
                parsed.strings.entry(def_name).or_default().push(v.to_string());
            }
        }
    }
    Ok(parsed)
}

/// Appends ` (did you mean X?)` when an option is within two edits of `value`, as BuildKit's
/// `suggest.WrapError` does.
pub(crate) fn with_suggestion(
    message: String,
    value: &str,
    options: &[&str],
    case_sensitive: bool,
) -> String {
    let val = if case_sensitive {
        value.to_string()
    } else {
        value.to_lowercase()
    };
    let mut best: Option<String> = None;
    let mut min_dist = 3;
    for opt in options {
        let opt = if case_sensitive {
            opt.to_string()
        } else {
            opt.to_lowercase()
        };
        if val == opt {
            return message;
        }
        let dist = levenshtein(&val, &opt);
        if dist < min_dist {
            min_dist = dist;
            best = Some(if case_sensitive {
                opt
            } else {
                match_case(&opt, value)
            });
        }
    }
    match best {
        Some(m) => format!("{message} (did you mean {m}?)"),
        None => message,
    }
}

fn match_case(val: &str, orig: &str) -> String {
    if orig == orig.to_lowercase() {
        val.to_lowercase()
    } else if orig == orig.to_uppercase() {
        val.to_uppercase()
    } else {
        val.to_string()
    }
}

fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levenshtein_distances() {
        assert_eq!(levenshtein("foo", "from"), 2);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("copy", "copy"), 0);
    }

    #[test]
    fn flag_errors() {
        let defs = [
            ("from", FlagType::String),
            ("link", FlagType::Bool),
            ("exclude", FlagType::Strings),
        ];
        let p = |a: &[&str]| parse_flags(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>(), &defs);
        assert_eq!(
            p(&["--frm=x"]).unwrap_err(),
            "unknown flag: --frm (did you mean from?)"
        );
        assert_eq!(p(&["--zzzzzz=x"]).unwrap_err(), "unknown flag: --zzzzzz");
        assert_eq!(p(&["--from"]).unwrap_err(), "missing a value on flag: --from");
        assert_eq!(p(&["--link="]).unwrap_err(), "missing a value on flag: --link");
        assert_eq!(
            p(&["--link=yes"]).unwrap_err(),
            "expecting boolean value for flag --link, not: yes"
        );
        assert_eq!(
            p(&["--from=a", "--from=b"]).unwrap_err(),
            "duplicate flag specified: --from"
        );
        assert_eq!(p(&["--", "--anything"]).unwrap().string("from"), None);
        assert_eq!(p(&["x"]).unwrap_err(), "arg should start with -- : x");
        let ok = p(&["--exclude=a", "--exclude=b", "--link=FALSE", "--from=x"]).unwrap();
        assert_eq!(ok.strings("exclude"), vec!["a", "b"]);
        assert!(!ok.bool("link"));
        assert_eq!(ok.string("from").as_deref(), Some("x"));
        assert!(p(&["--link"]).unwrap().bool("link"));
    }
}
