//! `berth build`: sends the context and prints the classic builder's stream.

use crate::client::{self, Client};
use anyhow::{bail, Context, Result};
use berth_api::Query;
use clap::Args;
use hyper::Method;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name and optionally a tag in the "name:tag" format
    #[arg(short = 't', long = "tag")]
    tag: Vec<String>,
    /// Name of the Dockerfile (default: "PATH/Dockerfile")
    #[arg(short = 'f', long = "file")]
    file: Option<String>,
    /// Set build-time variables
    #[arg(long = "build-arg")]
    build_arg: Vec<String>,
    /// Set the target build stage to build
    #[arg(long = "target")]
    target: Option<String>,
    /// Do not use cache when building the image
    #[arg(long = "no-cache")]
    no_cache: bool,
    /// Suppress the build output and print image ID on success
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// Set metadata for an image
    #[arg(long = "label")]
    label: Vec<String>,
    /// Write the image ID to the file
    #[arg(long = "iidfile")]
    iidfile: Option<PathBuf>,
    /// Set the networking mode for the RUN instructions during build
    #[arg(long = "network")]
    network: Option<String>,
    /// Always remove intermediate containers
    #[arg(long = "force-rm")]
    force_rm: bool,
    /// Always attempt to pull a newer version of the base images
    #[arg(long = "pull")]
    pull: bool,
    /// Build context directory, or "-" to read a tar from STDIN
    #[arg(value_name = "PATH|-")]
    path: String,
}

pub async fn build(client: &Client, args: &BuildArgs) -> Result<()> {
    let mut q = Query::default();
    for t in &args.tag {
        q.push("t", t.clone());
    }
    // A Dockerfile outside the context is not sent by this client: name it relative.
    let dockerfile = args.file.as_ref().map(|f| {
        Path::new(f)
            .strip_prefix(&args.path)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| f.clone())
    });
    let body = if args.path == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
        buf
    } else {
        let dir = Path::new(&args.path);
        if !dir.is_dir() {
            bail!("unable to prepare context: path {:?} not found", args.path);
        }
        let name = dockerfile.as_deref().unwrap_or("Dockerfile");
        berth_build::context::write_context_tar(dir, name, Vec::new())
            .with_context(|| format!("reading build context {}", dir.display()))?
    };
    if let Some(rel) = dockerfile {
        q.push("dockerfile", rel);
    }
    let mut build_args = BTreeMap::new();
    for a in &args.build_arg {
        match a.split_once('=') {
            Some((k, v)) => build_args.insert(k.to_string(), Some(v.to_string())),
            None => build_args.insert(a.clone(), std::env::var(a).ok()),
        };
    }
    if !build_args.is_empty() {
        q.push("buildargs", serde_json::to_string(&build_args)?);
    }
    let labels: BTreeMap<String, String> = args
        .label
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.clone(), String::new()),
        })
        .collect();
    if !labels.is_empty() {
        q.push("labels", serde_json::to_string(&labels)?);
    }
    if let Some(t) = &args.target {
        q.push("target", t.clone());
    }
    if args.no_cache {
        q.push("nocache", "1");
    }
    if args.quiet {
        q.push("q", "1");
    }
    if args.force_rm {
        q.push("forcerm", "1");
    }
    if let Some(n) = &args.network {
        q.push("networkmode", n.clone());
    }
    if args.pull {
        q.push("pull", "1");
    }
    let client = super::registry::with_all_auth(client)?;
    let body = client::streaming(std::io::Cursor::new(body));
    let resp = client
        .request(Method::POST, "/build", &q, body, Some("application/x-tar"))
        .await?;
    let mut image_id = None;
    let mut step_started: Option<Instant> = None;
    let quiet = args.quiet;
    client::read_messages(resp, |m| {
        if let Some(id) = m.aux.as_ref().and_then(|a| a.get("ID")).and_then(|v| v.as_str()) {
            image_id = Some(id.to_string());
        }
        let Some(s) = m.stream else { return };
        if quiet {
            return;
        }
        if s.starts_with("Step ") {
            if let Some(t) = step_started.take() {
                println!(" ---> took {:.1}s", t.elapsed().as_secs_f64());
            }
            step_started = Some(Instant::now());
        }
        if s == " ---> Using cache\n" {
            println!(" ---> CACHED");
            return;
        }
        print!("{s}");
    })
    .await?;
    if let (Some(t), false) = (step_started, quiet) {
        println!(" ---> took {:.1}s", t.elapsed().as_secs_f64());
    }
    let id = image_id.context("the daemon did not report an image ID")?;
    if quiet {
        println!("{id}");
    }
    if let Some(path) = &args.iidfile {
        std::fs::write(path, &id).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
