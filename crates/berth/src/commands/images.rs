//! Image commands: `images`, `image ...`, `inspect`, `history`, `tag`, `rmi`, `save`, `load`,
//! `import`.

use super::system::short_id;
use super::ExitCode;
use crate::client::{self, Client, DaemonError};
use crate::output::{print_objects, print_rows};
use crate::units::{human_size, since};
use anyhow::{bail, Context, Result};
use berth_api::types::{DeleteResponseItem, HistoryItem, ImagePruneResponse, ImageSummary};
use berth_api::{Filters, Query};
use clap::{Args, Subcommand};
use hyper::{Method, StatusCode};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List images
    #[command(visible_alias = "list")]
    Ls(ListArgs),
    /// Display detailed information on one or more images
    Inspect(InspectArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Remove one or more images
    #[command(visible_alias = "remove")]
    Rm(RmiArgs),
    /// Save one or more images to a tar archive
    Save(SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(LoadArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Remove unused images
    Prune(PruneArgs),
}

pub async fn run(client: &Client, cmd: ImageCommand) -> Result<()> {
    match cmd {
        ImageCommand::Ls(a) => list(client, &a).await,
        ImageCommand::Inspect(a) => inspect(client, &a, false).await,
        ImageCommand::History(a) => history(client, &a).await,
        ImageCommand::Tag(a) => tag(client, &a).await,
        ImageCommand::Rm(a) => rmi(client, &a).await,
        ImageCommand::Save(a) => save(client, &a).await,
        ImageCommand::Load(a) => load(client, &a).await,
        ImageCommand::Import(a) => import(client, &a).await,
        ImageCommand::Prune(a) => prune(client, &a).await,
    }
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short = 'a', long = "all")]
    all: bool,
    /// Show digests
    #[arg(long = "digests")]
    digests: bool,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter", value_name = "FILTER")]
    filter: Vec<String>,
    /// Format output using a custom template ('table', 'table TEMPLATE', 'json', 'TEMPLATE')
    #[arg(long = "format")]
    format: Option<String>,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// Repository (and tag) to list
    #[arg(value_name = "REPOSITORY[:TAG]")]
    reference: Option<String>,
}

pub(super) fn parse_filters(args: &[String]) -> Result<Filters> {
    let mut f = Filters::default();
    for a in args {
        let (k, v) = a
            .split_once('=')
            .with_context(|| format!("bad format of filter (expected name=value): {a}"))?;
        f.add(k, v);
    }
    Ok(f)
}

/// `localhost:5000/a/b:tag` -> (`localhost:5000/a/b`, `tag`).
pub fn split_tag(t: &str) -> (String, String) {
    match t.rfind(':') {
        Some(i) if !t[i..].contains('/') => (t[..i].to_string(), t[i + 1..].to_string()),
        _ => (t.to_string(), "<none>".to_string()),
    }
}

fn display_id(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        short_id(id)
    }
}

fn created_at(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string())
        .unwrap_or_default()
}

pub async fn list(client: &Client, args: &ListArgs) -> Result<()> {
    let mut filters = parse_filters(&args.filter)?;
    if let Some(r) = &args.reference {
        filters.add("reference", r);
    }
    let mut q = Query::default();
    if args.all {
        q.push("all", "1");
    }
    if !filters.is_empty() {
        q.push("filters", filters.to_json());
    }
    let images: Vec<ImageSummary> = client.get("/images/json", &q).await?;
    if args.quiet {
        let mut seen = std::collections::HashSet::new();
        for i in &images {
            if seen.insert(&i.id) {
                println!("{}", display_id(&i.id, args.no_trunc));
            }
        }
        return Ok(());
    }
    let mut rows = Vec::new();
    for i in &images {
        let digest_for = |repo: &str| {
            i.repo_digests
                .iter()
                .find_map(|d| {
                    d.split_once('@')
                        .filter(|(r, _)| *r == repo)
                        .map(|(_, d)| d.to_string())
                })
                .unwrap_or_else(|| "<none>".into())
        };
        let mut pairs: Vec<(String, String, String)> = i
            .repo_tags
            .iter()
            .map(|t| {
                let (repo, tag) = split_tag(t);
                let digest = digest_for(&repo);
                (repo, tag, digest)
            })
            .collect();
        if args.digests {
            for d in &i.repo_digests {
                if let Some((repo, digest)) = d.split_once('@') {
                    if !pairs.iter().any(|(r, _, _)| r == repo) {
                        pairs.push((repo.to_string(), "<none>".into(), digest.to_string()));
                    }
                }
            }
        }
        if pairs.is_empty() {
            pairs.push(("<none>".into(), "<none>".into(), "<none>".into()));
        }
        for (repo, tag, digest) in pairs {
            rows.push(json!({
                "Containers": if i.containers < 0 { "N/A".to_string() } else { i.containers.to_string() },
                "CreatedAt": created_at(i.created),
                "CreatedSince": since(i.created),
                "Digest": digest,
                "ID": display_id(&i.id, args.no_trunc),
                "Repository": repo,
                "SharedSize": if i.shared_size < 0 { "N/A".to_string() } else { human_size(i.shared_size as f64) },
                "Size": human_size(i.size as f64),
                "Tag": tag,
                "UniqueSize": if i.shared_size < 0 { "N/A".to_string() } else { human_size((i.size - i.shared_size) as f64) },
                "VirtualSize": human_size(i.size as f64),
            }));
        }
    }
    let default = if args.digests {
        "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    } else {
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    };
    print_rows(
        args.format.as_deref(),
        default,
        &rows,
        &[
            ("Repository", "REPOSITORY"),
            ("Tag", "TAG"),
            ("Digest", "DIGEST"),
            ("ID", "IMAGE ID"),
            ("CreatedSince", "CREATED"),
            ("CreatedAt", "CREATED AT"),
            ("Size", "SIZE"),
            ("SharedSize", "SHARED SIZE"),
            ("UniqueSize", "UNIQUE SIZE"),
            ("VirtualSize", "VIRTUAL SIZE"),
            ("Containers", "CONTAINERS"),
        ],
    )
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short = 'f', long = "format")]
    format: Option<String>,
    /// Return JSON for specified type
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<String>,
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,
}

impl InspectArgs {
    pub fn set_type(&mut self, kind: &str) {
        self.kind = Some(kind.to_string());
    }
}

/// `inspect` (any object: containers first, then images, as docker does) and `image inspect`.
pub async fn inspect(client: &Client, args: &InspectArgs, any_type: bool) -> Result<()> {
    let kind = args
        .kind
        .as_deref()
        .unwrap_or(if any_type { "" } else { "image" });
    if !matches!(kind, "" | "image" | "container" | "volume" | "network") {
        bail!("\"{kind}\" is not a valid value for --type");
    }
    let mut objects = Vec::new();
    let mut failed = false;
    for name in &args.names {
        let mut found = None;
        let mut last_err = None;
        for (k, path) in [
            ("container", format!("/containers/{name}/json")),
            ("image", format!("/images/{name}/json")),
            ("volume", format!("/volumes/{name}")),
            ("network", format!("/networks/{name}")),
        ] {
            if !kind.is_empty() && kind != k {
                continue;
            }
            match client.get::<Value>(&path, &Query::default()).await {
                Ok(v) => {
                    found = Some(v);
                    break;
                }
                Err(e)
                    if e.downcast_ref::<DaemonError>()
                        .is_some_and(|d| d.status == StatusCode::NOT_FOUND) =>
                {
                    last_err = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        match (found, last_err) {
            (Some(v), _) => objects.push(v),
            (None, Some(e)) if !any_type || !kind.is_empty() => {
                eprintln!("{e}");
                failed = true;
            }
            _ => {
                eprintln!("Error: No such object: {name}");
                failed = true;
            }
        }
    }
    print_objects(args.format.as_deref(), &objects)?;
    if failed {
        return Err(ExitCode(1).into());
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long = "human", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    human: bool,
    /// Format output using a custom template
    #[arg(long = "format")]
    format: Option<String>,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    image: String,
}

pub async fn history(client: &Client, args: &HistoryArgs) -> Result<()> {
    let items: Vec<HistoryItem> = client
        .get(&format!("/images/{}/history", args.image), &Query::default())
        .await?;
    let show_id = |id: &str| {
        if id.starts_with("sha256:") {
            display_id(id, args.no_trunc)
        } else {
            id.to_string()
        }
    };
    if args.quiet {
        for i in &items {
            println!("{}", show_id(&i.id));
        }
        return Ok(());
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|i| {
            let created_by = i.created_by.replace('\t', " ");
            let created_by = if args.no_trunc || created_by.chars().count() <= 45 {
                created_by
            } else {
                format!("{}…", created_by.chars().take(44).collect::<String>())
            };
            json!({
                "ID": show_id(&i.id),
                "CreatedSince": if args.human { since(i.created) } else { created_at(i.created) },
                "CreatedAt": created_at(i.created),
                "CreatedBy": created_by,
                "Size": if args.human { human_size(i.size as f64) } else { i.size.to_string() },
                "Comment": i.comment,
            })
        })
        .collect();
    print_rows(
        args.format.as_deref(),
        "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}",
        &rows,
        &[
            ("ID", "IMAGE"),
            ("CreatedSince", "CREATED"),
            ("CreatedAt", "CREATED AT"),
            ("CreatedBy", "CREATED BY"),
            ("Size", "SIZE"),
            ("Comment", "COMMENT"),
        ],
    )
}

#[derive(Debug, Args)]
pub struct TagArgs {
    #[arg(value_name = "SOURCE_IMAGE[:TAG]")]
    source: String,
    #[arg(value_name = "TARGET_IMAGE[:TAG]")]
    target: String,
}

pub async fn tag(client: &Client, args: &TagArgs) -> Result<()> {
    let mut q = Query::default();
    let (repo, tag) = split_tag(&args.target);
    q.push("repo", repo);
    q.push(
        "tag",
        if tag == "<none>" {
            "latest".to_string()
        } else {
            tag
        },
    );
    client
        .call(Method::POST, &format!("/images/{}/tag", args.source), &q)
        .await
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short = 'f', long = "force")]
    force: bool,
    /// Do not delete untagged parents
    #[arg(long = "no-prune")]
    no_prune: bool,
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

fn print_deleted(items: &[DeleteResponseItem]) {
    for i in items {
        if let Some(u) = &i.untagged {
            println!("Untagged: {u}");
        }
        if let Some(d) = &i.deleted {
            println!("Deleted: {d}");
        }
    }
}

pub async fn rmi(client: &Client, args: &RmiArgs) -> Result<()> {
    let mut failed = false;
    for image in &args.images {
        let mut q = Query::default();
        if args.force {
            q.push("force", "1");
        }
        if args.no_prune {
            q.push("noprune", "1");
        }
        match client
            .json::<Vec<DeleteResponseItem>>(Method::DELETE, &format!("/images/{image}"), &q)
            .await
        {
            Ok(items) => print_deleted(&items),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if failed {
        return Err(ExitCode(1).into());
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long = "output")]
    output: Option<std::path::PathBuf>,
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

fn bytes_bar(len: Option<u64>, verb: &str) -> ProgressBar {
    let bar = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::no_length(),
    };
    let template = match len {
        Some(_) => format!("{verb} {{bar:40}} {{bytes}}/{{total_bytes}} {{bytes_per_sec}}"),
        None => format!("{verb} {{spinner}} {{bytes}} {{bytes_per_sec}}"),
    };
    bar.set_style(ProgressStyle::with_template(&template).expect("progress template"));
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar
}

pub async fn save(client: &Client, args: &SaveArgs) -> Result<()> {
    use http_body_util::BodyExt;
    if args.output.is_none() && std::io::stdout().is_terminal() {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let mut q = Query::default();
    for i in &args.images {
        q.push("names", i.clone());
    }
    let resp = client
        .request(Method::GET, "/images/get", &q, client::empty(), None)
        .await?;
    let bar = bytes_bar(None, "Saving");
    // With -o, write beside the target and rename on success, so a failed save leaves no half file.
    let (mut out, tmp): (Box<dyn Write>, Option<std::path::PathBuf>) = match &args.output {
        Some(path) => {
            let tmp = path.with_file_name(format!(
                ".{}.berth-save-{}",
                path.file_name().unwrap_or_default().to_string_lossy(),
                std::process::id()
            ));
            let f = std::fs::File::create(&tmp)
                .with_context(|| format!("failed to save image: {}", tmp.display()))?;
            (Box::new(std::io::BufWriter::with_capacity(1 << 20, f)), Some(tmp))
        }
        None => (Box::new(std::io::BufWriter::new(std::io::stdout().lock())), None),
    };
    let mut body = resp.into_body();
    let result: Result<()> = async {
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.context("the daemon failed while saving")?.into_data() {
                out.write_all(&data)?;
                bar.inc(data.len() as u64);
            }
        }
        out.flush()?;
        Ok(())
    }
    .await;
    drop(out);
    bar.finish_and_clear();
    match (result, tmp, &args.output) {
        (Ok(()), Some(tmp), Some(path)) => {
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, path)?;
            Ok(())
        }
        (Err(e), Some(tmp), _) => {
            let _ = std::fs::remove_file(tmp);
            Err(e)
        }
        (r, _, _) => r,
    }
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short = 'i', long = "input")]
    input: Option<std::path::PathBuf>,
    /// Suppress the load output
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
}

/// A file (or standard input) as a request body, with a progress bar on a terminal.
async fn upload_body(
    path: Option<&std::path::Path>,
    verb: &str,
    quiet: bool,
) -> Result<(client::Body, ProgressBar)> {
    match path.filter(|p| p.as_os_str() != "-") {
        Some(p) => {
            let f = tokio::fs::File::open(p)
                .await
                .with_context(|| format!("open {}", p.display()))?;
            let len = f.metadata().await?.len();
            let bar = if quiet {
                ProgressBar::hidden()
            } else {
                bytes_bar(Some(len), verb)
            };
            Ok((client::streaming(bar.wrap_async_read(f)), bar))
        }
        None => {
            if std::io::stdin().is_terminal() {
                bail!("requested load from stdin, but stdin is empty");
            }
            Ok((client::streaming(tokio::io::stdin()), ProgressBar::hidden()))
        }
    }
}

pub async fn load(client: &Client, args: &LoadArgs) -> Result<()> {
    let (body, bar) = upload_body(args.input.as_deref(), "Loading", args.quiet).await?;
    let mut q = Query::default();
    q.push("quiet", "1");
    let resp = client
        .request(Method::POST, "/images/load", &q, body, Some("application/x-tar"))
        .await;
    bar.finish_and_clear();
    let quiet = args.quiet;
    client::read_messages(resp?, |m| {
        if let (Some(s), false) = (m.stream, quiet) {
            print!("{s}");
        }
    })
    .await
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change")]
    change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short = 'm', long = "message")]
    message: Option<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long = "platform")]
    platform: Option<String>,
    #[arg(value_name = "file|URL|-")]
    source: String,
    #[arg(value_name = "REPOSITORY[:TAG]")]
    reference: Option<String>,
}

pub async fn import(client: &Client, args: &ImportArgs) -> Result<()> {
    let mut q = Query::default();
    let path = if args.source == "-" {
        None
    } else if args.source.contains("://") {
        bail!("importing from a URL is not supported; download the file and import it");
    } else {
        Some(std::path::Path::new(&args.source))
    };
    q.push("fromSrc", "-");
    if let Some(r) = &args.reference {
        let (repo, tag) = split_tag(r);
        q.push("repo", repo);
        if tag != "<none>" {
            q.push("tag", tag);
        }
    }
    if let Some(m) = &args.message {
        q.push("message", m.clone());
    }
    for c in &args.change {
        q.push("changes", c.clone());
    }
    if let Some(p) = &args.platform {
        q.push("platform", p.clone());
    }
    let (body, bar) = upload_body(path, "Importing", false).await?;
    let resp = client
        .request(
            Method::POST,
            "/images/create",
            &q,
            body,
            Some("application/x-tar"),
        )
        .await;
    bar.finish_and_clear();
    client::read_messages(resp?, |m| {
        if let Some(s) = m.status {
            println!("{s}");
        }
    })
    .await
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short = 'a', long = "all")]
    all: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long = "filter")]
    filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long = "force")]
    force: bool,
}

pub async fn prune(client: &Client, args: &PruneArgs) -> Result<()> {
    if !args.force {
        let what = if args.all {
            "all images without at least one container associated to them"
        } else {
            "all dangling images"
        };
        eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            return Ok(());
        }
    }
    let mut filters = parse_filters(&args.filter)?;
    filters.add("dangling", if args.all { "false" } else { "true" });
    let mut q = Query::default();
    q.push("filters", filters.to_json());
    let r: ImagePruneResponse = client.json(Method::POST, "/images/prune", &q).await?;
    if let Some(items) = r.images_deleted.as_ref().filter(|i| !i.is_empty()) {
        println!("Deleted Images:");
        for i in items {
            if let Some(u) = &i.untagged {
                println!("untagged: {u}");
            }
            if let Some(d) = &i.deleted {
                println!("deleted: {d}");
            }
        }
        println!();
    }
    println!("Total reclaimed space: {}", human_size(r.space_reclaimed as f64));
    Ok(())
}
