//! docker-compatible `--format` handling and table output.
//!
//! Mirrors the docker CLI (`cli/command/formatter` and `templates`):
//! * `--format` is a Go text/template (rendered with `gtmpl`), extended with docker's
//!   template functions `json`, `join`, `split`, `title`, `lower`, `upper`, `pad`,
//!   `truncate` (plus gtmpl's built-ins `index`, `len`, `printf`, `println`, `eq`, ...).
//! * `table ...` formats print a header row (the same template executed against a
//!   field-name → header-text map) and align columns with a port of Go's
//!   `text/tabwriter` (minwidth 10, padding 3, padchar ' ').
//! * `json` prints one JSON object per line.
//!
//! Rows are `serde_json::Value` objects, e.g.
//! `{"ID":"0123456789ab","Repository":"busybox","Tag":"latest",...}`.
//!
//! Values printed by an action are formatted like Go's `fmt` `%v` (`[a b]`, `map[k:v]`,
//! `<nil>`, `1e+06`); gtmpl on its own would print Rust debug output for lists and maps,
//! so each printing action `{{X}}` is compiled as `{{X | __berth_print}}`.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};

use anyhow::{anyhow, Result};
use gtmpl::{Context, Func, FuncError, Template, Value};
use gtmpl_value::Number;
use serde_json::Value as Json;

/// Prefix selecting table output (`--format "table {{.ID}}\t{{.Name}}"`).
pub const TABLE_FORMAT_KEY: &str = "table";
/// `--format json`: one JSON object per line.
pub const JSON_FORMAT_KEY: &str = "json";

/// How a list of rows is printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Header + aligned rows; `row` is the per-row template (tabs separate columns,
    /// `\t`/`\n` escapes already replaced, the `table` prefix removed).
    Table { row: String },
    /// The template rendered once per row, each followed by a newline; no header.
    Raw(String),
    /// One compact JSON object per row (`{{json .}}`).
    Json,
}

/// docker's `preFormat`: trim spaces and turn the typed two-character sequences
/// `\t` and `\n` into a tab and a newline.
fn preprocess(format: &str) -> String {
    format.trim_matches(' ').replace("\\t", "\t").replace("\\n", "\n")
}

/// Interprets a `--format` value like docker does.
///
/// * `None`, `""` or exactly `"table"` → the command's default table (`default_table` may
///   be given with or without its `table` prefix);
/// * `"json"` → [`Mode::Json`];
/// * anything starting with `table` → [`Mode::Table`] with the rest as row template;
/// * anything else → [`Mode::Raw`].
pub fn parse_format(user: Option<&str>, default_table: &str) -> Mode {
    let user = user.unwrap_or("");
    if user.is_empty() || user == TABLE_FORMAT_KEY {
        let row = default_table
            .strip_prefix(TABLE_FORMAT_KEY)
            .unwrap_or(default_table);
        return Mode::Table { row: preprocess(row) };
    }
    if user == JSON_FORMAT_KEY {
        return Mode::Json;
    }
    if let Some(rest) = user.strip_prefix(TABLE_FORMAT_KEY) {
        return Mode::Table {
            row: preprocess(rest),
        };
    }
    Mode::Raw(preprocess(user))
}

/// Renders `rows` according to `mode`. Every row (and the table header) ends with a
/// newline; an empty `rows` still prints the header in table mode.
///
/// `headers` maps field names used in templates (e.g. `"ID"`) to header text
/// (e.g. `"IMAGE ID"`); fields without an entry get their name upper-cased.
pub fn render(mode: &Mode, rows: &[Json], headers: &[(&str, &str)]) -> Result<String> {
    match mode {
        Mode::Json => {
            let mut out = String::new();
            for row in rows {
                out.push_str(&serde_json::to_string(row)?);
                out.push('\n');
            }
            Ok(out)
        }
        Mode::Raw(template) => {
            let compiled = Compiled::new(template, basic_funcs())?;
            let mut out = String::new();
            for row in rows {
                out.push_str(&compiled.execute(row)?);
                out.push('\n');
            }
            Ok(out)
        }
        Mode::Table { row } => {
            let compiled = Compiled::new(row, basic_funcs())?;
            let mut body = String::new();
            for r in rows {
                body.push_str(&compiled.execute(r)?);
                body.push('\n');
            }
            let mut tw = TabWriter::docker();
            tw.write_str(&render_header(row, headers));
            tw.write_str("\n");
            tw.write_str(&body);
            Ok(tw.finish())
        }
    }
}

/// Renders a single value with a raw template (for `inspect --format`). No newline is
/// appended and `\t`/`\n` escapes are *not* replaced (docker inspect does neither).
pub fn render_one(template: &str, value: &Json) -> Result<String> {
    Compiled::new(template, basic_funcs())?.execute(value)
}

/// Checks that `template` parses (with docker's functions), e.g. to fail early.
#[cfg(test)]
fn validate(template: &str) -> Result<()> {
    Compiled::new(template, basic_funcs()).map(|_| ())
}

/// The table header: the row template executed against a map of field name → header
/// text with docker's `HeaderFunctions` (which leave the header text untouched).
/// Like docker, execution errors are ignored and whatever was produced is kept.
fn render_header(row_template: &str, headers: &[(&str, &str)]) -> String {
    let mut ctx: HashMap<String, Value> = HashMap::new();
    for name in field_names(row_template) {
        let upper = name.to_uppercase();
        ctx.insert(name, Value::String(upper));
    }
    for (name, text) in headers {
        ctx.insert((*name).to_string(), Value::String((*text).to_string()));
    }
    let Ok(compiled) = Compiled::new(row_template, header_funcs()) else {
        return String::new();
    };
    compiled.execute_partial(&Value::Map(ctx))
}

/// Identifiers following a `.` in a template (`{{.Repository}}` → `Repository`).
fn field_names(template: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, c) in template.char_indices() {
        if c != '.' {
            continue;
        }
        let rest = &template[i + 1..];
        let len = rest
            .char_indices()
            .find(|&(_, ch)| !(ch.is_alphanumeric() || ch == '_'))
            .map_or(rest.len(), |(n, _)| n);
        let ident = &rest[..len];
        if ident
            .chars()
            .next()
            .is_some_and(|ch| ch.is_alphabetic() || ch == '_')
        {
            names.insert(ident.to_string());
        }
    }
    names
}

/// A parsed template plus how to execute it.
struct Compiled {
    template: Template,
    /// The whole template is `{{json .}}`: print the row's JSON directly (keeps key order).
    json_dot: bool,
    /// The template calls `json`: make the original row available to it.
    uses_json: bool,
}

impl Compiled {
    fn new(text: &str, funcs: &[(&str, Func)]) -> Result<Self> {
        let parse = |source: &str| -> Result<Template> {
            let mut template = Template::default();
            template.add_funcs(funcs);
            template.add_func(PRINT_FN, fn_go_print);
            let parsed = catch_unwind(AssertUnwindSafe(|| {
                template.parse(source).map_err(|e| e.to_string())
            }))
            .map_err(|_| anyhow!("template parsing error: invalid template {text:?}"))?;
            parsed.map_err(|e| anyhow!("template parsing error: {e}"))?;
            Ok(template)
        };
        let rewritten =
            rewrite_actions(text).map_err(|msg| anyhow!("template parsing error: template: :1: {msg}"))?;
        // The rewrite must never turn a template gtmpl accepts into one it rejects.
        let template = match rewritten.map(|r| parse(&r)) {
            Some(Ok(template)) => template,
            _ => parse(text)?,
        };
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        Ok(Compiled {
            template,
            json_dot: compact == "{{json.}}",
            uses_json: text.contains("json"),
        })
    }

    fn execute(&self, value: &Json) -> Result<String> {
        if self.json_dot {
            return Ok(serde_json::to_string(value)?);
        }
        let _root = self.uses_json.then(|| JsonRoot::set(value));
        let ctx = Context::from(to_gtmpl(value));
        let mut out: Vec<u8> = Vec::new();
        let res = catch_unwind(AssertUnwindSafe(|| {
            self.template.execute(&mut out, &ctx).map_err(|e| e.to_string())
        }))
        .map_err(|_| anyhow!("template parsing error: template execution failed"))?;
        res.map_err(|e| anyhow!("template parsing error: {e}"))?;
        String::from_utf8(out).map_err(|e| anyhow!("template output is not UTF-8: {e}"))
    }

    /// Executes against a gtmpl value, keeping partial output on errors.
    fn execute_partial(&self, value: &Value) -> String {
        let ctx = Context::from(value.clone());
        let mut out: Vec<u8> = Vec::new();
        let _ = catch_unwind(AssertUnwindSafe(|| self.template.execute(&mut out, &ctx).is_ok()));
        String::from_utf8_lossy(&out).into_owned()
    }
}

// ---------------------------------------------------------------------------
// Go-style printing of action results

/// Function appended to every printing action, formatting its result like Go's `%v`.
const PRINT_FN: &str = "__berth_print";

const KEYWORDS: &[&str] = &[
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue", "nil",
];

/// Rewrites each printing action `{{X}}` to `{{X | __berth_print}}` (control actions,
/// comments and variable declarations are left alone). Returns `Ok(None)` when the
/// template cannot be scanned (gtmpl will then report the error), and `Err` for
/// non-ASCII characters in action code, which would crash gtmpl's lexer.
fn rewrite_actions(text: &str) -> Result<Option<String>, String> {
    let mut out = String::with_capacity(text.len() + 32);
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = action_end(after)? else {
            return Ok(None);
        };
        out.push_str("{{");
        out.push_str(&rewrite_action(&after[..close]));
        out.push_str("}}");
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(Some(out))
}

/// Byte offset of the `}}` closing the action whose text starts at `s`.
fn action_end(s: &str) -> Result<Option<usize>, String> {
    let body_start = if left_trim(s) { 1 } else { 0 };
    let body = s[body_start..].trim_start();
    if let Some(comment) = body.strip_prefix("/*") {
        let offset = s.len() - comment.len();
        return Ok(comment.find("*/").and_then(|end| {
            let after = offset + end + 2;
            s[after..].find("}}").map(|i| after + i)
        }));
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            q @ (b'"' | b'\'') => {
                i += 1;
                loop {
                    match bytes.get(i) {
                        None | Some(b'\n') => return Ok(None),
                        Some(b'\\') => i += 2,
                        Some(&c) if c == q => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            b'`' => match s[i + 1..].find('`') {
                Some(j) => i += j + 2,
                None => return Ok(None),
            },
            b'}' if bytes.get(i + 1) == Some(&b'}') => return Ok(Some(i)),
            c if c >= 0x80 => {
                let ch = s[i..].chars().next().unwrap_or(char::REPLACEMENT_CHARACTER);
                return Err(format!("unexpected character {ch:?} in action"));
            }
            _ => i += 1,
        }
    }
    Ok(None)
}

/// `{{- ` trim marker at the start of an action's text.
fn left_trim(s: &str) -> bool {
    s.strip_prefix('-')
        .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_whitespace()))
}

fn rewrite_action(inner: &str) -> String {
    let (lead, body) = if left_trim(inner) {
        inner.split_at(1)
    } else {
        ("", inner)
    };
    // ` -}}` trim marker at the end.
    let (body, trail) = match body.strip_suffix('-') {
        Some(b) if b.ends_with(|c: char| c.is_ascii_whitespace()) => (b, " -"),
        _ => (body, ""),
    };
    let code = body.trim();
    if code.is_empty() || code.starts_with("/*") || is_control(code) || is_declaration(code) {
        return inner.to_string();
    }
    format!("{lead}{} | {PRINT_FN}{trail}", body.trim_end())
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_control(code: &str) -> bool {
    let word_len = code.find(|c: char| !is_ident_char(c)).unwrap_or(code.len());
    KEYWORDS.contains(&&code[..word_len])
}

/// `$x := ...`, `$x = ...`, `$i, $e := ...`
fn is_declaration(code: &str) -> bool {
    let Some(var) = code.strip_prefix('$') else {
        return false;
    };
    let rest = var.trim_start_matches(is_ident_char).trim_start();
    rest.starts_with(":=") || rest.starts_with('=') || rest.starts_with(',')
}

/// Formats a value like Go's `fmt.Sprint` (`%v`) does for the equivalent Go value.
pub fn go_sprint(v: &Value) -> String {
    let mut out = String::new();
    write_go(&mut out, v);
    out
}

fn write_go(out: &mut String, v: &Value) {
    match v {
        Value::NoValue => out.push_str("<no value>"),
        Value::Nil => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::String(s) => out.push_str(s),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => out.push_str(&u.to_string()),
            (_, Some(i), _) => out.push_str(&i.to_string()),
            (_, _, Some(f)) => out.push_str(&crate::units::go_fmt_float(f)),
            _ => out.push_str(&n.to_string()),
        },
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_go(out, item);
            }
            out.push(']');
        }
        Value::Map(m) | Value::Object(m) => {
            out.push_str("map[");
            let sorted: BTreeMap<&String, &Value> = m.iter().collect();
            for (i, (k, item)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                write_go(out, item);
            }
            out.push(']');
        }
        Value::Function(_) => out.push_str("<func>"),
    }
}

fn fn_go_print(args: &[Value]) -> Result<Value, FuncError> {
    check_args(PRINT_FN, args, 1)?;
    Ok(Value::String(go_sprint(&args[0])))
}

// ---------------------------------------------------------------------------
// serde_json <-> gtmpl values

/// Converts JSON to a gtmpl value: objects become maps (missing keys print
/// `<no value>`), `null` becomes nil.
pub fn to_gtmpl(value: &Json) -> Value {
    match value {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => to_gtmpl_number(n),
        Json::String(s) => Value::String(s.clone()),
        Json::Array(a) => Value::Array(a.iter().map(to_gtmpl).collect()),
        Json::Object(o) => Value::Map(o.iter().map(|(k, v)| (k.clone(), to_gtmpl(v))).collect()),
    }
}

fn to_gtmpl_number(n: &serde_json::Number) -> Value {
    if let Some(u) = n.as_u64() {
        Value::Number(Number::from(u))
    } else if let Some(i) = n.as_i64() {
        Value::Number(Number::from(i))
    } else {
        let f = n.as_f64().unwrap_or(0.0);
        // gtmpl stores integral floats as integers, and would also truncate negative
        // fractions (its check is `fract() < EPSILON`) or saturate huge values: keep
        // those as their Go `%v` text instead.
        let integral = f.fract() == 0.0 && f.abs() < 9.0e18;
        if integral || (f > 0.0 && f.fract() >= f64::EPSILON) {
            Value::Number(Number::from(f))
        } else {
            Value::String(crate::units::go_fmt_float(f))
        }
    }
}

/// Converts a gtmpl value back to JSON. Map keys come out sorted (as Go's
/// `encoding/json` does for maps); missing values and functions become `null`.
pub fn from_gtmpl(value: &Value) -> Json {
    match value {
        Value::NoValue | Value::Nil | Value::Function(_) => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::String(s) => Json::String(s.clone()),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Json::from(u)
            } else if let Some(i) = n.as_i64() {
                Json::from(i)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Json::Null, Json::Number)
            }
        }
        Value::Array(a) => Json::Array(a.iter().map(from_gtmpl).collect()),
        Value::Object(m) | Value::Map(m) => {
            let sorted: BTreeMap<&String, &Value> = m.iter().collect();
            Json::Object(
                sorted
                    .into_iter()
                    .map(|(k, v)| (k.clone(), from_gtmpl(v)))
                    .collect(),
            )
        }
    }
}

/// Whether `j` converts to `v` (structural equality without converting).
fn same_value(j: &Json, v: &Value) -> bool {
    match (j, v) {
        (Json::Null, Value::Nil) => true,
        (Json::Bool(a), Value::Bool(b)) => a == b,
        (Json::Number(a), b) => to_gtmpl_number(a) == *b,
        (Json::String(a), Value::String(b)) => a == b,
        (Json::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_value(x, y))
        }
        (Json::Object(a), Value::Map(b) | Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, x)| b.get(k).is_some_and(|y| same_value(x, y)))
        }
        _ => false,
    }
}

/// Finds the subtree of `root` that `target` was converted from, so `json` can print
/// it with its original key order.
fn find_original<'a>(root: &'a Json, target: &Value) -> Option<&'a Json> {
    if same_value(root, target) {
        return Some(root);
    }
    match root {
        Json::Array(a) => a.iter().find_map(|x| find_original(x, target)),
        Json::Object(o) => o.values().find_map(|x| find_original(x, target)),
        _ => None,
    }
}

thread_local! {
    /// The row being rendered, for `json` (template functions are plain fn pointers).
    static JSON_ROOT: RefCell<Option<Json>> = const { RefCell::new(None) };
}

/// Sets [`JSON_ROOT`] for the lifetime of the guard.
struct JsonRoot;

impl JsonRoot {
    fn set(value: &Json) -> Self {
        JSON_ROOT.with(|r| *r.borrow_mut() = Some(value.clone()));
        JsonRoot
    }
}

impl Drop for JsonRoot {
    fn drop(&mut self) {
        JSON_ROOT.with(|r| *r.borrow_mut() = None);
    }
}

// ---------------------------------------------------------------------------
// Template functions (docker's `templates.basicFunctions` / `HeaderFunctions`)

fn basic_funcs() -> &'static [(&'static str, Func)] {
    &[
        ("json", fn_json as Func),
        ("split", fn_split as Func),
        ("join", fn_join as Func),
        ("title", fn_title as Func),
        ("lower", fn_lower as Func),
        ("upper", fn_upper as Func),
        ("pad", fn_pad as Func),
        ("truncate", fn_truncate as Func),
    ]
}

/// docker's `HeaderFunctions`: keep the header text intact (`pad` is not overridden).
fn header_funcs() -> &'static [(&'static str, Func)] {
    &[
        ("json", header_identity as Func),
        ("split", header_identity as Func),
        ("join", header_identity as Func),
        ("title", header_identity as Func),
        ("lower", header_identity as Func),
        ("upper", header_identity as Func),
        ("pad", fn_pad as Func),
        ("truncate", header_identity as Func),
    ]
}

fn check_args(name: &str, args: &[Value], n: usize) -> Result<(), FuncError> {
    if args.len() == n {
        Ok(())
    } else {
        Err(FuncError::ExactlyXArgs(name.to_string(), n))
    }
}

/// String view of a template value (missing/nil → empty).
fn as_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::NoValue | Value::Nil => String::new(),
        other => other.to_string(),
    }
}

fn as_int(name: &str, v: &Value) -> Result<i64, FuncError> {
    let n = match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|u| u.min(i64::MAX as u64) as i64))
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    n.ok_or_else(|| FuncError::Generic(format!("{name}: expected an integer, got {v}")))
}

fn header_identity(args: &[Value]) -> Result<Value, FuncError> {
    Ok(args.first().cloned().unwrap_or(Value::NoValue))
}

fn fn_json(args: &[Value]) -> Result<Value, FuncError> {
    check_args("json", args, 1)?;
    let v = &args[0];
    let original = if matches!(v, Value::Map(_) | Value::Object(_) | Value::Array(_)) {
        JSON_ROOT.with(|r| {
            r.borrow()
                .as_ref()
                .and_then(|root| find_original(root, v))
                .map(serde_json::to_string)
        })
    } else {
        None
    };
    let s = match original {
        Some(s) => s,
        None => serde_json::to_string(&from_gtmpl(v)),
    }
    .map_err(|e| FuncError::Generic(format!("json: {e}")))?;
    Ok(Value::String(s))
}

fn fn_split(args: &[Value]) -> Result<Value, FuncError> {
    check_args("split", args, 2)?;
    let s = as_string(&args[0]);
    let sep = as_string(&args[1]);
    let parts: Vec<Value> = if sep.is_empty() {
        // Go's strings.Split with an empty separator splits into characters.
        s.chars().map(|c| Value::String(c.to_string())).collect()
    } else {
        s.split(sep.as_str())
            .map(|p| Value::String(p.to_string()))
            .collect()
    };
    Ok(Value::Array(parts))
}

fn fn_join(args: &[Value]) -> Result<Value, FuncError> {
    check_args("join", args, 2)?;
    let sep = as_string(&args[1]);
    let joined = match &args[0] {
        Value::Array(items) => items.iter().map(as_string).collect::<Vec<_>>().join(&sep),
        other => as_string(other),
    };
    Ok(Value::String(joined))
}

/// Go's (deprecated) `strings.Title`: upper-case the first letter of each word.
fn fn_title(args: &[Value]) -> Result<Value, FuncError> {
    check_args("title", args, 1)?;
    let is_separator = |c: char| {
        if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else if c.is_alphanumeric() {
            false
        } else {
            c.is_whitespace()
        }
    };
    let mut prev = ' ';
    let mut out = String::new();
    for c in as_string(&args[0]).chars() {
        if is_separator(prev) {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev = c;
    }
    Ok(Value::String(out))
}

fn fn_lower(args: &[Value]) -> Result<Value, FuncError> {
    check_args("lower", args, 1)?;
    Ok(Value::String(as_string(&args[0]).to_lowercase()))
}

fn fn_upper(args: &[Value]) -> Result<Value, FuncError> {
    check_args("upper", args, 1)?;
    Ok(Value::String(as_string(&args[0]).to_uppercase()))
}

/// `pad s before after`: surround a non-empty string with spaces.
fn fn_pad(args: &[Value]) -> Result<Value, FuncError> {
    check_args("pad", args, 3)?;
    let s = as_string(&args[0]);
    let before = as_int("pad", &args[1])?;
    let after = as_int("pad", &args[2])?;
    if before < 0 || after < 0 {
        return Err(FuncError::Generic("pad: negative count".into()));
    }
    if s.is_empty() {
        return Ok(Value::String(s));
    }
    Ok(Value::String(format!(
        "{}{s}{}",
        " ".repeat(before as usize),
        " ".repeat(after as usize)
    )))
}

/// `truncate s n`: the first `n` characters of `s`.
fn fn_truncate(args: &[Value]) -> Result<Value, FuncError> {
    check_args("truncate", args, 2)?;
    let s = as_string(&args[0]);
    let n = as_int("truncate", &args[1])?;
    if n < 0 {
        return Err(FuncError::Generic("truncate: negative length".into()));
    }
    Ok(Value::String(s.chars().take(n as usize).collect()))
}

// ---------------------------------------------------------------------------
// Tab writer

/// A port of docker's fork of Go's `text/tabwriter` (elastic tabstops), left-aligned,
/// no flags. Text is buffered with [`TabWriter::write_str`] and aligned by
/// [`TabWriter::finish`].
///
/// Cells are terminated by `\t` (or `\v`); lines by `\n` (or `\f`, which also ends all
/// columns). Tab-terminated cells of consecutive lines form a column whose width is
/// `max(minwidth, widest cell + padding)`; the last cell of a line is not part of a
/// column and is never padded. Widths are display widths (East Asian wide = 2), like
/// docker's `runewidth`.
#[derive(Debug, Clone)]
pub struct TabWriter {
    minwidth: usize,
    padding: usize,
    padchar: char,
    buf: String,
}

struct Cell {
    text: String,
    width: usize,
}

impl Default for TabWriter {
    fn default() -> Self {
        TabWriter::docker()
    }
}

impl TabWriter {
    pub fn new(minwidth: usize, padding: usize, padchar: char) -> Self {
        TabWriter {
            minwidth,
            padding,
            padchar,
            buf: String::new(),
        }
    }

    /// The docker CLI's settings: `tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)`.
    pub fn docker() -> Self {
        TabWriter::new(10, 3, ' ')
    }

    pub fn write_str(&mut self, s: &str) {
        self.buf.push_str(s);
    }

    /// Aligns everything written so far.
    pub fn finish(self) -> String {
        // Split into lines of cells; `flush_after[i]` marks a '\f' ending line i.
        let mut lines: Vec<Vec<Cell>> = Vec::new();
        let mut flush_after: Vec<bool> = Vec::new();
        let mut line: Vec<Cell> = Vec::new();
        let mut cell = String::new();
        let make = |text: String| Cell {
            width: display_width(&text),
            text,
        };
        for c in self.buf.chars() {
            match c {
                '\t' | '\x0b' => line.push(make(std::mem::take(&mut cell))),
                '\n' | '\x0c' => {
                    line.push(make(std::mem::take(&mut cell)));
                    lines.push(std::mem::take(&mut line));
                    flush_after.push(c == '\x0c');
                }
                _ => cell.push(c),
            }
        }
        // The unterminated last line only has a final cell if it has text.
        if !cell.is_empty() {
            line.push(make(cell));
        }
        lines.push(line);
        flush_after.push(false);

        let mut out = String::new();
        let mut widths = Vec::new();
        let mut start = 0;
        for (i, &flush) in flush_after.iter().enumerate() {
            if flush || i + 1 == lines.len() {
                self.format(&lines, &mut out, &mut widths, start, i + 1);
                start = i + 1;
            }
        }
        out
    }

    fn format(
        &self,
        lines: &[Vec<Cell>],
        out: &mut String,
        widths: &mut Vec<usize>,
        mut line0: usize,
        line1: usize,
    ) {
        let column = widths.len();
        let mut this = line0;
        while this < line1 {
            if column + 1 >= lines[this].len() {
                this += 1;
                continue;
            }
            // A cell exists in this column: print the lines before the block, then
            // find the block's extent and width.
            self.write_lines(lines, out, widths, line0, this);
            line0 = this;
            let mut width = self.minwidth;
            while this < line1 && column + 1 < lines[this].len() {
                width = width.max(lines[this][column].width + self.padding);
                this += 1;
            }
            widths.push(width);
            self.format(lines, out, widths, line0, this);
            widths.pop();
            line0 = this;
        }
        self.write_lines(lines, out, widths, line0, line1);
    }

    fn write_lines(
        &self,
        lines: &[Vec<Cell>],
        out: &mut String,
        widths: &[usize],
        line0: usize,
        line1: usize,
    ) {
        for (i, line) in lines.iter().enumerate().take(line1).skip(line0) {
            for (j, cell) in line.iter().enumerate() {
                out.push_str(&cell.text);
                if let Some(&w) = widths.get(j) {
                    for _ in cell.width..w {
                        out.push(self.padchar);
                    }
                }
            }
            if i + 1 < lines.len() {
                out.push('\n');
            }
        }
    }
}

impl std::fmt::Write for TabWriter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        TabWriter::write_str(self, s);
        Ok(())
    }
}

/// Terminal column width of `s`: East Asian wide/fullwidth characters and most emoji
/// count 2, combining marks and control characters 0, everything else 1.
pub fn display_width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

fn char_width(c: char) -> usize {
    let cp = c as u32;
    if cp < 0x20 || (0x7f..0xa0).contains(&cp) {
        return 0;
    }
    if cp < 0x300 {
        return 1;
    }
    const ZERO: &[(u32, u32)] = &[
        (0x0300, 0x036F),
        (0x0483, 0x0489),
        (0x0591, 0x05BD),
        (0x0610, 0x061A),
        (0x064B, 0x065F),
        (0x200B, 0x200F),
        (0x20D0, 0x20FF),
        (0xFE00, 0xFE0F),
        (0xFE20, 0xFE2F),
    ];
    const WIDE: &[(u32, u32)] = &[
        (0x1100, 0x115F),
        (0x231A, 0x231B),
        (0x2329, 0x232A),
        (0x23E9, 0x23EC),
        (0x23F0, 0x23F0),
        (0x23F3, 0x23F3),
        (0x25FD, 0x25FE),
        (0x2614, 0x2615),
        (0x2648, 0x2653),
        (0x267F, 0x267F),
        (0x2693, 0x2693),
        (0x26A1, 0x26A1),
        (0x26AA, 0x26AB),
        (0x26BD, 0x26BE),
        (0x26C4, 0x26C5),
        (0x26CE, 0x26CE),
        (0x26D4, 0x26D4),
        (0x26EA, 0x26EA),
        (0x26F2, 0x26F3),
        (0x26F5, 0x26F5),
        (0x26FA, 0x26FA),
        (0x26FD, 0x26FD),
        (0x2705, 0x2705),
        (0x270A, 0x270B),
        (0x2728, 0x2728),
        (0x274C, 0x274C),
        (0x274E, 0x274E),
        (0x2753, 0x2755),
        (0x2757, 0x2757),
        (0x2795, 0x2797),
        (0x27B0, 0x27B0),
        (0x27BF, 0x27BF),
        (0x2B1B, 0x2B1C),
        (0x2B50, 0x2B50),
        (0x2B55, 0x2B55),
        (0x2E80, 0x303E),
        (0x3041, 0x33FF),
        (0x3400, 0x4DBF),
        (0x4E00, 0x9FFF),
        (0xA000, 0xA4CF),
        (0xA960, 0xA97F),
        (0xAC00, 0xD7A3),
        (0xF900, 0xFAFF),
        (0xFE10, 0xFE19),
        (0xFE30, 0xFE6F),
        (0xFF00, 0xFF60),
        (0xFFE0, 0xFFE6),
        (0x16FE0, 0x16FE4),
        (0x17000, 0x18AFF),
        (0x1B000, 0x1B2FF),
        (0x1F004, 0x1F004),
        (0x1F0CF, 0x1F0CF),
        (0x1F18E, 0x1F18E),
        (0x1F191, 0x1F19A),
        (0x1F200, 0x1F251),
        (0x1F300, 0x1F64F),
        (0x1F680, 0x1F6FF),
        (0x1F7E0, 0x1F7EB),
        (0x1F90C, 0x1F9FF),
        (0x1FA70, 0x1FAFF),
        (0x20000, 0x2FFFD),
        (0x30000, 0x3FFFD),
    ];
    let within = |table: &[(u32, u32)]| table.iter().any(|&(lo, hi)| (lo..=hi).contains(&cp));
    if within(ZERO) {
        0
    } else if within(WIDE) {
        2
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const IMAGES_TABLE: &str = "table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}\\t{{.CreatedSince}}\\t{{.Size}}";
    const IMAGE_HEADERS: &[(&str, &str)] = &[
        ("Repository", "REPOSITORY"),
        ("Tag", "TAG"),
        ("ID", "IMAGE ID"),
        ("CreatedSince", "CREATED"),
        ("Size", "SIZE"),
    ];

    fn images() -> Vec<Json> {
        vec![
            json!({
                "ID": "0123456789ab",
                "Repository": "busybox",
                "Tag": "latest",
                "RepoTags": ["busybox:latest", "busybox:1.36"],
                "CreatedSince": "2 hours ago",
                "Size": "4.26MB",
            }),
            json!({
                "ID": "fedcba987654",
                "Repository": "docker.io/library/alpine",
                "Tag": "3.19",
                "RepoTags": ["alpine:3.19"],
                "CreatedSince": "About an hour ago",
                "Size": "7.38MB",
            }),
        ]
    }

    fn raw(template: &str) -> String {
        render(
            &parse_format(Some(template), IMAGES_TABLE),
            &images(),
            IMAGE_HEADERS,
        )
        .unwrap()
    }

    #[test]
    fn parse_format_modes() {
        let default_row = "{{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";
        let table = Mode::Table {
            row: default_row.to_string(),
        };
        assert_eq!(parse_format(None, IMAGES_TABLE), table);
        assert_eq!(parse_format(Some(""), IMAGES_TABLE), table);
        assert_eq!(parse_format(Some("table"), IMAGES_TABLE), table);
        // The default may also be given without the "table" prefix.
        assert_eq!(parse_format(None, default_row), table);
        assert_eq!(parse_format(Some("json"), IMAGES_TABLE), Mode::Json);
        assert_eq!(
            parse_format(Some("table {{.ID}}\\t{{.Tag}}"), IMAGES_TABLE),
            Mode::Table {
                row: "{{.ID}}\t{{.Tag}}".to_string()
            }
        );
        assert_eq!(
            parse_format(Some(" {{.ID}}\\n "), IMAGES_TABLE),
            Mode::Raw("{{.ID}}\n".to_string())
        );
        assert!(matches!(parse_format(None, IMAGES_TABLE), Mode::Table { .. }));
    }

    #[test]
    fn docker_images_default_table() {
        let out = render(&parse_format(None, IMAGES_TABLE), &images(), IMAGE_HEADERS).unwrap();
        let want = concat!(
            "REPOSITORY                 TAG       IMAGE ID       CREATED             SIZE\n",
            "busybox                    latest    0123456789ab   2 hours ago         4.26MB\n",
            "docker.io/library/alpine   3.19      fedcba987654   About an hour ago   7.38MB\n",
        );
        assert_eq!(out, want);
    }

    #[test]
    fn single_row_table() {
        let rows = &images()[..1];
        let out = render(&parse_format(None, IMAGES_TABLE), rows, IMAGE_HEADERS).unwrap();
        let want = concat!(
            "REPOSITORY   TAG       IMAGE ID       CREATED       SIZE\n",
            "busybox      latest    0123456789ab   2 hours ago   4.26MB\n",
        );
        assert_eq!(out, want);
    }

    #[test]
    fn table_without_rows_prints_header() {
        let out = render(&parse_format(None, IMAGES_TABLE), &[], IMAGE_HEADERS).unwrap();
        assert_eq!(out, "REPOSITORY   TAG       IMAGE ID   CREATED   SIZE\n");
    }

    #[test]
    fn custom_table_uses_header_functions() {
        let mode = parse_format(
            Some("table {{upper .Tag}}\\t{{join .RepoTags \",\"}}\\t{{.Missing}}"),
            IMAGES_TABLE,
        );
        let out = render(&mode, &images(), IMAGE_HEADERS).unwrap();
        let want = concat!(
            "TAG       REPOTAGS                      MISSING\n",
            "LATEST    busybox:latest,busybox:1.36   <no value>\n",
            "3.19      alpine:3.19                   <no value>\n",
        );
        assert_eq!(out, want);
    }

    #[test]
    fn raw_templates() {
        assert_eq!(raw("{{.ID}}"), "0123456789ab\nfedcba987654\n");
        assert_eq!(
            raw("{{.Repository}}:{{.Tag}}"),
            "busybox:latest\ndocker.io/library/alpine:3.19\n"
        );
        assert_eq!(
            raw("{{join .RepoTags \",\"}}"),
            "busybox:latest,busybox:1.36\nalpine:3.19\n"
        );
        assert_eq!(raw("{{upper .Tag}}"), "LATEST\n3.19\n");
        assert_eq!(
            raw("{{lower \"ABC\"}} {{title \"hello wORLD-x\"}}"),
            "abc Hello WORLD-X\n".repeat(2)
        );
        assert_eq!(
            raw("{{.ID}}\\t{{.Tag}}"),
            "0123456789ab\tlatest\nfedcba987654\t3.19\n"
        );
        assert_eq!(
            raw("[{{pad .Tag 1 2}}][{{pad \"\" 1 2}}]"),
            "[ latest  ][]\n[ 3.19  ][]\n"
        );
        assert_eq!(raw("{{truncate .ID 4}}"), "0123\nfedc\n");
        assert_eq!(raw("{{truncate .Tag 40}}"), "latest\n3.19\n");
        assert_eq!(
            raw("{{range split .Repository \"/\"}}<{{.}}>{{end}}"),
            "<busybox>\n<docker.io><library><alpine>\n"
        );
        assert_eq!(raw("{{index .RepoTags 0}}"), "busybox:latest\nalpine:3.19\n");
        assert_eq!(raw("{{len .RepoTags}}"), "2\n1\n");
        assert_eq!(
            raw("{{printf \"%s-%s\" .Tag .ID}}"),
            "latest-0123456789ab\n3.19-fedcba987654\n"
        );
        assert_eq!(raw("{{if eq .Tag \"latest\"}}yes{{else}}no{{end}}"), "yes\nno\n");
        assert_eq!(raw("{{println .Tag}}"), "latest\n\n3.19\n\n");
        assert_eq!(raw("{{.Nope}}"), "<no value>\n<no value>\n");
    }

    #[test]
    fn json_output_keeps_key_order() {
        let rows = vec![json!({"b": 1, "a": {"z": true, "y": null}, "c": [1, "x"]})];
        let line = r#"{"b":1,"a":{"z":true,"y":null},"c":[1,"x"]}"#;
        let m = parse_format(Some("json"), "table {{.ID}}");
        assert_eq!(render(&m, &rows, &[]).unwrap(), format!("{line}\n"));
        let m = parse_format(Some("{{json .}}"), "table {{.ID}}");
        assert_eq!(render(&m, &rows, &[]).unwrap(), format!("{line}\n"));
        // `json` inside a larger template still finds the original objects.
        let m = parse_format(Some("x={{json .}} a={{json .a}} c={{json .c}} b={{json .b}}"), "");
        assert_eq!(
            render(&m, &rows, &[]).unwrap(),
            format!("x={line} a={{\"z\":true,\"y\":null}} c=[1,\"x\"] b=1\n")
        );
        assert_eq!(
            render_one("{{json .Missing}} {{json \"<&>\"}}", &rows[0]).unwrap(),
            "null \"<&>\""
        );
    }

    #[test]
    fn json_of_derived_values_sorts_keys() {
        assert_eq!(
            render_one("{{json (split .s \",\")}}", &json!({"s": "a,b"})).unwrap(),
            r#"["a","b"]"#
        );
        let v = Value::Map(HashMap::from([
            ("b".to_string(), Value::from(2i64)),
            ("a".to_string(), Value::from(-1i64)),
        ]));
        assert_eq!(from_gtmpl(&v).to_string(), r#"{"a":-1,"b":2}"#);
        assert_eq!(fn_json(&[Value::from(1.5f64)]).unwrap(), Value::from("1.5"));
    }

    #[test]
    fn render_one_for_inspect() {
        let v = json!({"Id": "abc", "State": {"Status": "running", "Pid": 42}, "Args": ["-c", "x"]});
        assert_eq!(render_one("{{.State.Status}}", &v).unwrap(), "running");
        assert_eq!(render_one("{{.State.Pid}}", &v).unwrap(), "42");
        assert_eq!(
            render_one("{{json .State}}", &v).unwrap(),
            r#"{"Status":"running","Pid":42}"#
        );
        assert_eq!(render_one("{{json .}}", &v).unwrap(), v.to_string());
        assert_eq!(render_one("{{.Id}}\\t", &v).unwrap(), "abc\\t");
        assert_eq!(
            render_one("{{range .Args}}[{{.}}]{{end}}", &v).unwrap(),
            "[-c][x]"
        );
    }

    #[test]
    fn template_errors() {
        let err = render(&Mode::Raw("{{.ID".into()), &images(), &[]).unwrap_err();
        assert!(err.to_string().starts_with("template parsing error: "), "{err}");
        let err = render_one("{{nosuchfunc .ID}}", &json!({})).unwrap_err();
        assert!(err.to_string().starts_with("template parsing error: "), "{err}");
        assert!(err.to_string().contains("nosuchfunc"), "{err}");
        // Parse errors are reported even without rows, as docker does.
        let bad_table = Mode::Table {
            row: "{{if .ID}}".into(),
        };
        assert!(render(&bad_table, &[], &[]).is_err());
        // Execution errors.
        assert!(render_one("{{truncate .ID -1}}", &json!({"ID": "x"})).is_err());
        assert!(render_one("{{join .ID}}", &json!({"ID": "x"})).is_err());
        assert!(validate("{{.ID}}").is_ok());
        assert!(validate("{{end}}").is_err());
        for bad in [
            "{{",
            "}}{{",
            "{{\"x}}",
            "{{ .ID | }}",
            "{{else}}",
            "é{{.é}}é",
            "{{index . 5}}",
        ] {
            let _ = render_one(bad, &json!({"ID": "x"}));
        }
    }

    #[test]
    fn tabwriter_go_semantics() {
        let tw = |s: &str| {
            let mut w = TabWriter::docker();
            w.write_str(s);
            w.finish()
        };
        // Last cell never padded; minimum width 10; padding 3.
        assert_eq!(tw("a\tb\n"), "a         b\n");
        assert_eq!(tw("abcdefghij\tb\nx\ty\n"), "abcdefghij   b\nx            y\n");
        // Trailing tab-terminated empty cells are padded when the line is terminated.
        assert_eq!(tw("a\t\n"), "a         \n");
        // An unterminated final line's last cell is not a column.
        assert_eq!(tw("a\tb"), "a         b");
        // Column blocks: a line without the cell ends the block.
        assert_eq!(
            tw("aaaaaaaaaaaa\tb\nno tabs here\nc\td\n"),
            "aaaaaaaaaaaa   b\nno tabs here\nc         d\n"
        );
        // Nested columns only span lines that have them.
        assert_eq!(
            tw("a\tbbbbbbbbbbbb\tc\nd\te\n"),
            "a         bbbbbbbbbbbb   c\nd         e\n"
        );
        // Form feed acts as a newline that ends all columns.
        assert_eq!(tw("aaaaaaaaaaaa\tb\x0cc\td\n"), "aaaaaaaaaaaa   b\nc         d\n");
        // Wide characters count double.
        assert_eq!(tw("日本語語語\tx\nab\ty\n"), "日本語語語   x\nab           y\n");
        assert_eq!(tw(""), "");
        assert_eq!(tw("\n\n"), "\n\n");
        let mut w = TabWriter::new(0, 1, '.');
        std::fmt::Write::write_fmt(&mut w, format_args!("{}\t{}\n", "ab", 1)).unwrap();
        w.write_str("a\t2\n");
        assert_eq!(w.finish(), "ab.1\na..2\n");
    }

    #[test]
    fn values_print_like_go() {
        let v = json!({
            "Env": ["PATH=/bin", "A=b c"],
            "Labels": {"z": "1", "a": {"n": null}},
            "Empty": [],
            "Null": null,
            "Int": -3,
            "Big": 18446744073709551615u64,
            "Float": 1.5e-7,
            "Whole": 1000000.0,
            "Neg": -2.25,
            "Huge": 1e300,
            "Half": 0.5,
            "On": true,
        });
        let cases = [
            ("{{.Env}}", "[PATH=/bin A=b c]"),
            ("{{.Labels}}", "map[a:map[n:<nil>] z:1]"),
            ("{{.Empty}}", "[]"),
            ("{{.Null}}", "<nil>"),
            ("{{.Missing}}", "<no value>"),
            (
                "{{.Int}} {{.Big}} {{.Float}} {{.Half}} {{.On}}",
                "-3 18446744073709551615 1.5e-07 0.5 true",
            ),
            // gtmpl keeps integral floats as integers (Go would print 1e+06).
            ("{{.Whole}} {{.Neg}} {{.Huge}}", "1000000 -2.25 1e+300"),
            ("{{- .Int -}} , {{- .On}}", "-3,true"),
            ("{{/* comment */}}{{.Int}}", "-3"),
            ("{{$e := .Env}}{{$e}}", "[PATH=/bin A=b c]"),
            (
                "{{range $i, $x := .Env}}{{$i}}={{$x}};{{end}}",
                "0=PATH=/bin;1=A=b c;",
            ),
            ("{{if .On}}{{.Labels.z}}{{else if .Int}}x{{end}}", "1"),
            ("{{with .Labels}}{{.a}}{{end}}", "map[n:<nil>]"),
            ("{{.Env | len}} {{(index .Env 1)}}", "2 A=b c"),
            ("{{\"}}|\"}} {{`}}`}} {{'a'}}", "}}| }} 97"),
            ("{{printf \"%s=%d\" \"n\" 7}}", "n=7"),
        ];
        for (template, want) in cases {
            assert_eq!(render_one(template, &v).unwrap(), want, "{template}");
        }
    }

    #[test]
    fn action_rewriting() {
        let rw = |s: &str| rewrite_actions(s).unwrap();
        assert_eq!(rw("a{{.ID}}b").as_deref(), Some("a{{.ID | __berth_print}}b"));
        assert_eq!(rw("{{- .ID -}}").as_deref(), Some("{{- .ID | __berth_print -}}"));
        assert_eq!(rw("{{if .A}}{{end}}").as_deref(), Some("{{if .A}}{{end}}"));
        assert_eq!(rw("{{- /* x }} */ -}}").as_deref(), Some("{{- /* x }} */ -}}"));
        assert_eq!(
            rw("{{$x = 1}}{{$x}}").as_deref(),
            Some("{{$x = 1}}{{$x | __berth_print}}")
        );
        assert_eq!(rw("{{\"a}}\"}}").as_deref(), Some("{{\"a}}\" | __berth_print}}"));
        assert_eq!(rw("{{.ID"), None);
        assert_eq!(rw("{{\"x}}"), None);
        assert!(rewrite_actions("{{.é}}").is_err());
        assert_eq!(rw("é{{\"é\"}}é").as_deref(), Some("é{{\"é\" | __berth_print}}é"));
    }

    #[test]
    fn header_context_field_names() {
        let names = field_names("{{.Repository}}\t{{join .RepoTags \",\"}} {{$x.A_b}} 1.5");
        let names: Vec<_> = names.into_iter().collect();
        assert_eq!(names, ["A_b", "RepoTags", "Repository"]);
    }

    #[test]
    fn display_widths() {
        assert_eq!(display_width("abc"), 3);
        assert_eq!(display_width("日本"), 4);
        assert_eq!(display_width("e\u{301}"), 1);
        assert_eq!(display_width("한국"), 4);
        assert_eq!(display_width("🐳"), 2);
    }
}
