//! `pull`, `push`, `login`, `logout`: credentials live in a docker-compatible `config.json`
//! (`$DOCKER_CONFIG` or `~/.docker`) and reach berthd as `X-Registry-Auth`, as with the docker CLI.

use crate::client::{self, Client};
use anyhow::{bail, Context, Result};
use base64::Engine as _;
use berth_api::types::JsonMessage;
use berth_api::Query;
use clap::Args;
use hyper::Method;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

/// Docker Hub's key in `config.json`.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Download all tagged images in the repository
    #[arg(short = 'a', long = "all-tags")]
    all_tags: bool,
    /// Suppress verbose output
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    #[arg(value_name = "NAME[:TAG|@DIGEST]")]
    name: String,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Push all tags of an image to the repository
    #[arg(short = 'a', long = "all-tags")]
    all_tags: bool,
    /// Suppress verbose output
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    #[arg(value_name = "NAME[:TAG]")]
    name: String,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Username
    #[arg(short = 'u', long = "username")]
    username: Option<String>,
    /// Password
    #[arg(short = 'p', long = "password")]
    password: Option<String>,
    /// Take the password from stdin
    #[arg(long = "password-stdin")]
    password_stdin: bool,
    #[arg(value_name = "SERVER")]
    server: Option<String>,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    #[arg(value_name = "SERVER")]
    server: Option<String>,
}

/// A reference split the way the engine API wants it: name, and tag or digest.
struct NameRef {
    name: String,
    tag: Option<String>,
    digest: Option<String>,
}

fn split_ref(s: &str) -> NameRef {
    let (rest, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d.to_string())),
        None => (s, None),
    };
    let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    match rest[last_slash..].rfind(':') {
        Some(i) => NameRef {
            name: rest[..last_slash + i].to_string(),
            tag: Some(rest[last_slash + i + 1..].to_string()),
            digest,
        },
        None => NameRef {
            name: rest.to_string(),
            tag: None,
            digest,
        },
    }
}

/// The registry a repository name lives in (`docker.io` unless the first part is a host).
fn registry_of(name: &str) -> String {
    match name.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first.to_string(),
        _ => "docker.io".into(),
    }
}

/// The name Docker prints in the end: fully qualified.
fn canonical(name: &str) -> String {
    if registry_of(name) != "docker.io" || name.starts_with("docker.io/") {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    }
}

fn config_path() -> PathBuf {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".docker")
        });
    dir.join("config.json")
}

fn read_config() -> Result<serde_json::Value> {
    match std::fs::read(config_path()) {
        Ok(b) if !b.iter().all(u8::is_ascii_whitespace) => {
            serde_json::from_slice(&b).with_context(|| format!("reading {}", config_path().display()))
        }
        _ => Ok(serde_json::json!({})),
    }
}

fn write_config(v: &serde_json::Value) -> Result<()> {
    let path = config_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(serde_json::to_string_pretty(v)?.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
}

/// `localhost:5000`, `http://localhost:5000/` -> `localhost:5000`; Docker Hub names -> its key.
fn server_key(server: &str) -> String {
    let host = server
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or("");
    match host {
        "" | "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB_KEY.into(),
        h => h.to_string(),
    }
}

/// Stored credentials for a registry, as the `X-Registry-Auth` JSON.
fn auth_for(registry: &str) -> Result<serde_json::Value> {
    let want = server_key(registry);
    let config = read_config()?;
    let auths = config.get("auths").and_then(|a| a.as_object());
    for (key, entry) in auths.into_iter().flatten() {
        if server_key(key) != want {
            continue;
        }
        let decoded = entry
            .get("auth")
            .and_then(|a| a.as_str())
            .and_then(|a| base64::engine::general_purpose::STANDARD.decode(a).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        if let Some((user, pass)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
            return Ok(serde_json::json!({"username": user, "password": pass, "serveraddress": key}));
        }
        if let Some(token) = entry.get("identitytoken").and_then(|t| t.as_str()) {
            return Ok(serde_json::json!({"identitytoken": token, "serveraddress": key}));
        }
    }
    Ok(serde_json::json!({}))
}

/// Every stored credential, as the `X-Registry-Config` header of `/build` (base64url JSON by
/// server), so that the daemon can pull base images from private registries.
pub fn with_all_auth(client: &Client) -> Result<Client> {
    let config = read_config()?;
    let mut all = serde_json::Map::new();
    for key in config
        .get("auths")
        .and_then(|a| a.as_object())
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
    {
        let auth = auth_for(key)?;
        if auth.as_object().is_some_and(|o| !o.is_empty()) {
            all.insert(key.clone(), auth);
        }
    }
    let json = serde_json::to_vec(&all)?;
    Ok(client.with_header(
        "X-Registry-Config",
        base64::engine::general_purpose::URL_SAFE.encode(json),
    ))
}

fn with_auth(client: &Client, registry: &str) -> Result<Client> {
    let json = serde_json::to_vec(&auth_for(registry)?)?;
    Ok(client.with_header(
        "X-Registry-Auth",
        base64::engine::general_purpose::URL_SAFE.encode(json),
    ))
}

/// Draws the daemon's progress messages: one redrawn line per layer on a terminal, plain lines
/// otherwise.
struct ProgressView {
    multi: Option<MultiProgress>,
    bars: HashMap<String, ProgressBar>,
    quiet: bool,
}

impl ProgressView {
    fn new(quiet: bool) -> ProgressView {
        let multi = (!quiet && std::io::stdout().is_terminal()).then(MultiProgress::new);
        ProgressView {
            multi,
            bars: HashMap::new(),
            quiet,
        }
    }

    fn show(&mut self, m: JsonMessage) {
        if self.quiet {
            return;
        }
        let status = m.status.clone().unwrap_or_default();
        let has_progress = m
            .progress_detail
            .as_ref()
            .is_some_and(|p| p.get("current").is_some());
        match (&self.multi, &m.id) {
            (Some(multi), Some(id)) if m.aux.is_none() => {
                let bar = self.bars.entry(id.clone()).or_insert_with(|| {
                    let b = multi.add(ProgressBar::new_spinner());
                    b.set_style(ProgressStyle::with_template("{msg}").expect("template"));
                    b
                });
                let progress = m.progress.clone().unwrap_or_default();
                bar.set_message(format!("{id}: {status} {progress}").trim_end().to_string());
            }
            (Some(multi), None) if !status.is_empty() => {
                let _ = multi.println(&status);
            }
            (None, Some(id)) if !has_progress && m.aux.is_none() => println!("{id}: {status}"),
            (None, None) if !status.is_empty() => println!("{status}"),
            _ => {}
        }
    }

    fn finish(self) {
        for b in self.bars.values() {
            b.finish();
        }
    }
}

async fn stream(client: &Client, path: &str, q: &Query, quiet: bool) -> Result<()> {
    let resp = client
        .request(Method::POST, path, q, client::empty(), None)
        .await?;
    let mut view = ProgressView::new(quiet);
    let r = client::read_messages(resp, |m| view.show(m)).await;
    view.finish();
    r
}

pub async fn pull(client: &Client, args: &PullArgs) -> Result<()> {
    let r = split_ref(&args.name);
    if args.all_tags && (r.tag.is_some() || r.digest.is_some()) {
        bail!("tag can't be used with --all-tags/-a");
    }
    let client = with_auth(client, &registry_of(&r.name))?;
    let mut q = Query::default();
    q.push("fromImage", &r.name);
    let shown = match (&r.digest, &r.tag) {
        (Some(d), _) => {
            q.push("tag", d);
            format!("{}@{d}", canonical(&r.name))
        }
        (None, t) if !args.all_tags => {
            let t = t.clone().unwrap_or_else(|| "latest".into());
            if r.tag.is_none() && !args.quiet {
                println!("Using default tag: latest");
            }
            q.push("tag", &t);
            format!("{}:{t}", canonical(&r.name))
        }
        _ => canonical(&r.name),
    };
    stream(&client, "/images/create", &q, args.quiet).await?;
    println!("{shown}");
    Ok(())
}

pub async fn push(client: &Client, args: &PushArgs) -> Result<()> {
    let r = split_ref(&args.name);
    if r.digest.is_some() {
        bail!("cannot push a digest reference");
    }
    if args.all_tags && r.tag.is_some() {
        bail!("tag can't be used with --all-tags/-a");
    }
    let client = with_auth(client, &registry_of(&r.name))?;
    let mut q = Query::default();
    let tag = match (&r.tag, args.all_tags) {
        (_, true) => None,
        (Some(t), false) => Some(t.clone()),
        (None, false) => {
            if !args.quiet {
                println!("Using default tag: latest");
            }
            Some("latest".to_string())
        }
    };
    if let Some(t) = &tag {
        q.push("tag", t);
    }
    stream(&client, &format!("/images/{}/push", r.name), &q, args.quiet).await?;
    if args.quiet {
        println!("{}", args.name);
    }
    Ok(())
}

fn read_line(prompt: &str) -> Result<String> {
    if !prompt.is_empty() {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

pub async fn login(client: &Client, args: &LoginArgs) -> Result<()> {
    let server = args.server.clone().unwrap_or_else(|| DOCKER_HUB_KEY.into());
    let key = server_key(&server);
    if args.password.is_some() && args.password_stdin {
        bail!("--password and --password-stdin are mutually exclusive");
    }
    let username = match &args.username {
        Some(u) => u.clone(),
        None if args.password_stdin => bail!("Must provide --username with --password-stdin"),
        None => read_line("Username: ")?,
    };
    let password = match (&args.password, args.password_stdin) {
        (Some(p), _) => {
            eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
            p.clone()
        }
        (None, true) => read_line("")?,
        (None, false) => read_line("Password: ")?,
    };
    if username.is_empty() || password.is_empty() {
        bail!("Error: Cannot perform an interactive login from a non TTY device");
    }
    let body = serde_json::json!({"username": username, "password": password, "serveraddress": key});
    let answer: serde_json::Value = client.post_json("/auth", &Query::default(), &body).await?;
    let mut config = read_config()?;
    if !config.is_object() {
        config = serde_json::json!({});
    }
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    config["auths"][key.as_str()] = serde_json::json!({ "auth": auth });
    write_config(&config)?;
    let status = answer
        .get("Status")
        .and_then(|s| s.as_str())
        .unwrap_or("Login Succeeded");
    println!("{status}");
    Ok(())
}

pub async fn logout(args: &LogoutArgs) -> Result<()> {
    let server = args.server.clone().unwrap_or_else(|| DOCKER_HUB_KEY.into());
    let key = server_key(&server);
    let mut config = read_config()?;
    let removed = config
        .get_mut("auths")
        .and_then(|a| a.as_object_mut())
        .map(|auths| {
            let keys: Vec<String> = auths.keys().filter(|k| server_key(k) == key).cloned().collect();
            for k in &keys {
                auths.remove(k);
            }
            !keys.is_empty()
        })
        .unwrap_or(false);
    if !removed {
        println!("Not logged in to {key}");
        return Ok(());
    }
    println!("Removing login credentials for {key}");
    write_config(&config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_references() {
        let r = split_ref("localhost:5000/a/b:v1");
        assert_eq!(
            (r.name.as_str(), r.tag.as_deref()),
            ("localhost:5000/a/b", Some("v1"))
        );
        let r = split_ref("localhost:5000/bb");
        assert_eq!((r.name.as_str(), r.tag), ("localhost:5000/bb", None));
        let r = split_ref("bb@sha256:abc");
        assert_eq!((r.name.as_str(), r.digest.as_deref()), ("bb", Some("sha256:abc")));
        assert_eq!(registry_of("localhost:5000/bb"), "localhost:5000");
        assert_eq!(registry_of("library/busybox"), "docker.io");
        assert_eq!(canonical("busybox"), "docker.io/library/busybox");
        assert_eq!(server_key("http://localhost:5000/"), "localhost:5000");
        assert_eq!(server_key("docker.io"), DOCKER_HUB_KEY);
    }
}
