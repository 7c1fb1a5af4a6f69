//! Output helpers shared by commands: JSON as Docker indents it, and list rendering through
//! `--format`.

use crate::format::{parse_format, render, render_one};
use anyhow::Result;
use serde_json::Value;

/// JSON with 4-space indentation, as `docker inspect` prints.
pub fn pretty_json(v: &Value) -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    serde::Serialize::serialize(v, &mut ser).expect("JSON serialises");
    String::from_utf8(out).expect("JSON is UTF-8")
}

/// Prints rows through `--format` (or the command's default table).
pub fn print_rows(
    user_format: Option<&str>,
    default_table: &str,
    rows: &[Value],
    headers: &[(&str, &str)],
) -> Result<()> {
    let mode = parse_format(user_format, default_table);
    print!("{}", render(&mode, rows, headers)?);
    Ok(())
}

/// `inspect`-style output: a JSON array, or one template line per object.
pub fn print_objects(user_format: Option<&str>, objects: &[Value]) -> Result<()> {
    match user_format.filter(|f| !f.is_empty()) {
        None => println!("{}", pretty_json(&Value::Array(objects.to_vec()))),
        Some(f) => {
            for o in objects {
                println!("{}", render_one(f, o)?);
            }
        }
    }
    Ok(())
}
