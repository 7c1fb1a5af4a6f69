//! `--mount type=...,source=...,target=...`: the docker CLI's CSV syntax, turned into the API's
//! `Mount` object.

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

/// Parses one `--mount` value as the docker CLI does.
pub fn parse(raw: &str) -> Result<Value> {
    let mut kind = "volume".to_string();
    let mut m = Map::new();
    let mut bind = Map::new();
    let mut volume = Map::new();
    let mut volume_labels = Map::new();
    let mut driver_opts = Map::new();
    let mut driver_name = None;
    let mut tmpfs = Map::new();
    let truthy = |key: &str, v: Option<&str>| -> Result<bool> {
        match v.map(str::to_ascii_lowercase).as_deref() {
            None | Some("true") | Some("1") => Ok(true),
            Some("false") | Some("0") => Ok(false),
            Some(other) => bail!("invalid value for {key}: {other}"),
        }
    };
    let mut reader = csv_fields(raw);
    for field in reader.by_ref() {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.to_string())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let need = || {
            value
                .clone()
                .with_context(|| format!("invalid field '{field}' must be a key=value pair"))
        };
        match key.as_str() {
            "type" => kind = need()?,
            "source" | "src" => {
                m.insert("Source".into(), json!(need()?));
            }
            "target" | "dst" | "destination" => {
                m.insert("Target".into(), json!(need()?));
            }
            "readonly" | "ro" => {
                m.insert("ReadOnly".into(), json!(truthy(&key, value.as_deref())?));
            }
            "consistency" => {
                m.insert("Consistency".into(), json!(need()?));
            }
            "bind-propagation" => {
                bind.insert("Propagation".into(), json!(need()?));
            }
            "bind-nonrecursive" => {
                bind.insert("NonRecursive".into(), json!(truthy(&key, value.as_deref())?));
            }
            // The docker CLI's newer spelling (API 1.44): `disabled` is `bind-nonrecursive`.
            "bind-recursive" => match need()?.as_str() {
                "enabled" => {}
                "disabled" => {
                    bind.insert("NonRecursive".into(), json!(true));
                }
                "writable" => {
                    bind.insert("ReadOnlyNonRecursive".into(), json!(true));
                }
                "readonly" => {
                    bind.insert("ReadOnlyForceRecursive".into(), json!(true));
                }
                other => bail!(
                    "invalid value for {key}: {other} (must be enabled, disabled, writable or readonly)"
                ),
            },
            "bind-create-mountpoint" | "bind-create-src" => {
                bind.insert("CreateMountpoint".into(), json!(truthy(&key, value.as_deref())?));
            }
            "volume-nocopy" => {
                volume.insert("NoCopy".into(), json!(truthy(&key, value.as_deref())?));
            }
            "volume-subpath" => {
                volume.insert("Subpath".into(), json!(need()?));
            }
            "volume-label" => {
                let v = need()?;
                let (k, x) = v.split_once('=').unwrap_or((v.as_str(), ""));
                volume_labels.insert(k.into(), json!(x));
            }
            "volume-driver" => driver_name = Some(need()?),
            "volume-opt" => {
                let v = need()?;
                let (k, x) = v.split_once('=').unwrap_or((v.as_str(), ""));
                driver_opts.insert(k.into(), json!(x));
            }
            "tmpfs-size" => {
                tmpfs.insert("SizeBytes".into(), json!(crate::units::ram_in_bytes(&need()?)?));
            }
            "tmpfs-mode" => {
                let v = need()?;
                let mode =
                    u32::from_str_radix(&v, 8).with_context(|| format!("invalid value for {key}: {v}"))?;
                tmpfs.insert("Mode".into(), json!(mode));
            }
            _ => bail!("unexpected key '{key}' in '{field}'"),
        }
    }
    m.insert("Type".into(), json!(kind));
    if !m.contains_key("Target") {
        bail!("target is required");
    }
    if !bind.is_empty() {
        m.insert("BindOptions".into(), Value::Object(bind));
    }
    if !volume_labels.is_empty() {
        volume.insert("Labels".into(), Value::Object(volume_labels));
    }
    if driver_name.is_some() || !driver_opts.is_empty() {
        volume.insert(
            "DriverConfig".into(),
            json!({"Name": driver_name.unwrap_or_default(), "Options": driver_opts}),
        );
    }
    if !volume.is_empty() {
        m.insert("VolumeOptions".into(), Value::Object(volume));
    }
    if !tmpfs.is_empty() {
        m.insert("TmpfsOptions".into(), Value::Object(tmpfs));
    }
    Ok(Value::Object(m))
}

/// Fields of a CSV line, with `"` quoting as Go's encoding/csv (which the docker CLI uses).
fn csv_fields(raw: &str) -> std::vec::IntoIter<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    fields.push(cur);
    fields.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_docker_cli_syntax() {
        let m = parse("type=bind,src=/tmp,dst=/x,readonly,bind-propagation=rshared").unwrap();
        assert_eq!(
            m,
            json!({"Type": "bind", "Source": "/tmp", "Target": "/x", "ReadOnly": true, "BindOptions": {"Propagation": "rshared"}})
        );
        let m =
            parse("source=v,target=/d,volume-opt=type=tmpfs,volume-opt=device=tmpfs,volume-nocopy").unwrap();
        assert_eq!(m["Type"], "volume");
        assert_eq!(m["VolumeOptions"]["NoCopy"], true);
        assert_eq!(m["VolumeOptions"]["DriverConfig"]["Options"]["type"], "tmpfs");
        let m = parse("type=tmpfs,destination=/t,tmpfs-size=1m,tmpfs-mode=1770").unwrap();
        assert_eq!(m["TmpfsOptions"], json!({"SizeBytes": 1048576, "Mode": 0o1770}));
        let m = parse("\"type=bind\",\"source=/a,b\",target=/c").unwrap();
        assert_eq!(m["Source"], "/a,b");
        assert!(parse("type=bind,source=/x").is_err());
        assert!(parse("type=bind,bogus=1,target=/x").is_err());
        assert!(parse("type=volume,target=/x,readonly=maybe").is_err());
        for flag in ["bind-nonrecursive", "bind-recursive=disabled"] {
            let m = parse(&format!("type=bind,src=/tmp,dst=/x,{flag}")).unwrap();
            assert_eq!(m["BindOptions"], json!({"NonRecursive": true}), "{flag}");
        }
        assert!(parse("type=bind,src=/tmp,dst=/x,bind-recursive=sometimes").is_err());
    }
}
