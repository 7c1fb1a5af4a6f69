//! Image configuration (the JSON blob an image ID is the digest of), in Docker's shape.
//!
//! oci-spec's type drops Docker-only fields (Healthcheck, OnBuild, Shell, ...) when it re-serialises,
//! so this is our own struct with a catch-all map: a config read and written again keeps every field.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<crate::Digest>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".into(),
            diff_ids: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// The runtime defaults an image carries (`config` in the image JSON, `Config` in inspect).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stop_signal: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ImageConfig {
    pub fn parse(bytes: &[u8]) -> crate::Result<ImageConfig> {
        serde_json::from_slice(bytes)
            .map_err(|e| crate::ImageError::invalid(format!("invalid image config: {e}")))
    }

    pub fn labels(&self) -> BTreeMap<String, String> {
        self.config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default()
    }

    /// `created` as Unix seconds (0 when absent or unparsable, as Docker shows).
    pub fn created_unix(&self) -> i64 {
        self.created
            .as_deref()
            .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
            .map(|t| t.timestamp())
            .unwrap_or(0)
    }
}

/// Applies Dockerfile-style `--change` instructions (as `docker import --change` and `commit
/// --change` take) to a container config.
pub fn apply_changes(config: &mut ContainerConfig, changes: &[String]) -> crate::Result<()> {
    for change in changes {
        let change = change.trim();
        if change.is_empty() {
            continue;
        }
        let (word, rest) = change.split_once(char::is_whitespace).unwrap_or((change, ""));
        let rest = rest.trim();
        let invalid = |why: &str| crate::ImageError::invalid(format!("invalid change {change:?}: {why}"));
        match word.to_ascii_uppercase().as_str() {
            "CMD" => config.cmd = Some(command_form(rest)),
            "ENTRYPOINT" => config.entrypoint = Some(command_form(rest)),
            "SHELL" => {
                config.shell = Some(json_array(rest).ok_or_else(|| invalid("SHELL requires a JSON array"))?)
            }
            "WORKDIR" => {
                let dir = rest.trim_matches('"');
                config.working_dir = if dir.starts_with('/') || config.working_dir.is_empty() {
                    dir.to_string()
                } else {
                    format!("{}/{}", config.working_dir.trim_end_matches('/'), dir)
                };
            }
            "USER" => config.user = rest.to_string(),
            "STOPSIGNAL" => config.stop_signal = rest.to_string(),
            "ENV" => {
                let env = config.env.get_or_insert_with(Vec::new);
                for (k, v) in key_values(rest).ok_or_else(|| invalid("ENV needs KEY=VALUE"))? {
                    env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()));
                    env.push(format!("{k}={v}"));
                }
            }
            "LABEL" => {
                let labels = config.labels.get_or_insert_with(BTreeMap::new);
                for (k, v) in key_values(rest).ok_or_else(|| invalid("LABEL needs KEY=VALUE"))? {
                    labels.insert(k, v);
                }
            }
            "EXPOSE" => {
                let ports = config.exposed_ports.get_or_insert_with(BTreeMap::new);
                for p in rest.split_whitespace() {
                    let p = if p.contains('/') {
                        p.to_string()
                    } else {
                        format!("{p}/tcp")
                    };
                    ports.insert(p, Value::Object(Map::new()));
                }
            }
            "VOLUME" => {
                let vols = config.volumes.get_or_insert_with(BTreeMap::new);
                let list =
                    json_array(rest).unwrap_or_else(|| rest.split_whitespace().map(String::from).collect());
                for v in list {
                    vols.insert(v, Value::Object(Map::new()));
                }
            }
            "ONBUILD" => config
                .on_build
                .get_or_insert_with(Vec::new)
                .push(rest.to_string()),
            other => {
                return Err(crate::ImageError::invalid(format!(
                    "{other} is not a valid change command"
                )))
            }
        }
    }
    Ok(())
}

fn json_array(s: &str) -> Option<Vec<String>> {
    if s.starts_with('[') {
        serde_json::from_str(s).ok()
    } else {
        None
    }
}

/// Exec form (`["a","b"]`) or shell form (`a b`, run through `/bin/sh -c`).
fn command_form(s: &str) -> Vec<String> {
    json_array(s).unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into(), s.into()])
}

/// `K=V K2="v 2"` pairs, or the legacy `K V` single pair.
fn key_values(s: &str) -> Option<Vec<(String, String)>> {
    if !s.contains('=') {
        let (k, v) = s.split_once(char::is_whitespace)?;
        return Some(vec![(k.to_string(), v.trim().to_string())]);
    }
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(out);
        }
        let mut key = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        let mut value = String::new();
        let mut quote = None;
        while let Some(&c) = chars.peek() {
            chars.next();
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, c) if c.is_whitespace() => break,
                (_, '\\') => value.extend(chars.next()),
                (_, c) => value.push(c),
            }
        }
        if key.is_empty() {
            return None;
        }
        out.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_apply_like_docker() {
        let mut c = ContainerConfig::default();
        let changes: Vec<String> = [
            r#"CMD ["sh", "-c", "echo hi"]"#,
            "ENTRYPOINT /bin/run",
            "ENV A=1 B=\"two words\"",
            "ENV A=3",
            "WORKDIR /srv",
            "WORKDIR app",
            "USER nobody",
            "EXPOSE 80 53/udp",
            "LABEL maintainer=me version=\"1 0\"",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        apply_changes(&mut c, &changes).unwrap();
        assert_eq!(c.cmd.unwrap(), ["sh", "-c", "echo hi"]);
        assert_eq!(c.entrypoint.unwrap(), ["/bin/sh", "-c", "/bin/run"]);
        assert_eq!(c.env.unwrap(), ["B=two words", "A=3"]);
        assert_eq!(c.working_dir, "/srv/app");
        assert_eq!(c.user, "nobody");
        assert!(c.exposed_ports.as_ref().unwrap().contains_key("80/tcp"));
        assert!(c.exposed_ports.as_ref().unwrap().contains_key("53/udp"));
        assert_eq!(c.labels.unwrap()["version"], "1 0");
        assert!(apply_changes(&mut ContainerConfig::default(), &["FROB x".into()]).is_err());
    }

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let raw = r#"{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"],"Healthcheck":{"Test":["NONE"]},"ArgsEscaped":true},"rootfs":{"type":"layers","diff_ids":[]},"moby.buildkit.cache":"x"}"#;
        let c = ImageConfig::parse(raw.as_bytes()).unwrap();
        let again: Value = serde_json::to_value(&c).unwrap();
        assert_eq!(again["config"]["Healthcheck"]["Test"][0], "NONE");
        assert_eq!(again["config"]["ArgsEscaped"], true);
        assert_eq!(again["moby.buildkit.cache"], "x");
    }
}
