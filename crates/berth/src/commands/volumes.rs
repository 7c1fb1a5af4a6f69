//! `volume create|ls|inspect|rm|prune`.

use super::containers::each;
use super::images::parse_filters;
use crate::client::Client;
use crate::output::{print_objects, print_rows};
use crate::units::human_size;
use anyhow::{bail, Context, Result};
use berth_api::Query;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Map, Value};

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(visible_alias = "list")]
    Ls(ListArgs),
    /// Display detailed information on one or more volumes
    Inspect(InspectArgs),
    /// Remove one or more volumes
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove unused local volumes
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Specify volume driver name
    #[arg(short = 'd', long = "driver", default_value = "local")]
    driver: String,
    /// Set metadata for a volume
    #[arg(long = "label")]
    label: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt")]
    opt: Vec<String>,
    /// Volume name
    #[arg(value_name = "VOLUME")]
    name: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Provide filter values (e.g. "dangling=true")
    #[arg(short = 'f', long = "filter")]
    filter: Vec<String>,
    /// Format output using a custom template ('table', 'table TEMPLATE', 'json', 'TEMPLATE')
    #[arg(long = "format")]
    format: Option<String>,
    /// Only display volume names
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a Go template
    #[arg(short = 'f', long = "format")]
    format: Option<String>,
    #[arg(required = true, value_name = "VOLUME")]
    names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Force the removal of one or more volumes
    #[arg(short = 'f', long = "force")]
    force: bool,
    #[arg(required = true, value_name = "VOLUME")]
    names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short = 'a', long = "all")]
    all: bool,
    /// Provide filter values (e.g. "label=<label>")
    #[arg(long = "filter")]
    filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long = "force")]
    force: bool,
}

pub async fn run(client: &Client, cmd: VolumeCommand) -> Result<()> {
    match cmd {
        VolumeCommand::Create(a) => create(client, a).await,
        VolumeCommand::Ls(a) => list(client, a).await,
        VolumeCommand::Inspect(a) => inspect(client, a).await,
        VolumeCommand::Rm(a) => rm(client, a).await,
        VolumeCommand::Prune(a) => prune(client, a).await,
    }
}

fn key_values(list: &[String], what: &str) -> Result<Map<String, Value>> {
    list.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), json!(v))),
            None if what == "label" => Ok((kv.clone(), json!(""))),
            None => bail!("invalid {what} format: {kv:?}, expected key=value"),
        })
        .collect()
}

async fn create(client: &Client, a: CreateArgs) -> Result<()> {
    let body = json!({
        "Name": a.name.unwrap_or_default(),
        "Driver": a.driver,
        "DriverOpts": key_values(&a.opt, "opt")?,
        "Labels": key_values(&a.label, "label")?,
    });
    let v: Value = client
        .post_json("/volumes/create", &Query::default(), &body)
        .await?;
    println!("{}", v["Name"].as_str().unwrap_or_default());
    Ok(())
}

async fn list(client: &Client, a: ListArgs) -> Result<()> {
    let mut q = Query::default();
    let filters = parse_filters(&a.filter)?;
    if !filters.is_empty() {
        q.push("filters", filters.to_json());
    }
    let r: Value = client.get("/volumes", &q).await?;
    let mut rows: Vec<Value> = r["Volumes"].as_array().cloned().unwrap_or_default();
    rows.sort_by(|x, y| x["Name"].as_str().cmp(&y["Name"].as_str()));
    if a.quiet {
        for v in &rows {
            println!("{}", v["Name"].as_str().unwrap_or_default());
        }
        return Ok(());
    }
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|mut v| {
            let labels = v["Labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            v["Labels"] = json!(labels);
            v
        })
        .collect();
    print_rows(
        a.format.as_deref(),
        "table {{.Driver}}\t{{.Name}}",
        &rows,
        &[
            ("Driver", "DRIVER"),
            ("Name", "VOLUME NAME"),
            ("Mountpoint", "MOUNTPOINT"),
            ("Labels", "LABELS"),
            ("Scope", "SCOPE"),
        ],
    )
}

async fn inspect(client: &Client, a: InspectArgs) -> Result<()> {
    let mut objects = Vec::new();
    let mut failed = false;
    for name in &a.names {
        match client
            .get::<Value>(&format!("/volumes/{name}"), &Query::default())
            .await
        {
            Ok(v) => objects.push(v),
            Err(e) => {
                failed = true;
                eprintln!("{e}");
            }
        }
    }
    print_objects(a.format.as_deref(), &objects)?;
    if failed {
        return Err(super::ExitCode(1).into());
    }
    Ok(())
}

async fn rm(client: &Client, a: RmArgs) -> Result<()> {
    each(&a.names, |name| async move {
        let mut q = Query::default();
        if a.force {
            q.push("force", "1");
        }
        client
            .call(Method::DELETE, &format!("/volumes/{name}"), &q)
            .await?;
        println!("{name}");
        Ok(())
    })
    .await
}

async fn prune(client: &Client, a: PruneArgs) -> Result<()> {
    if !a.force {
        let what = if a.all {
            "all local volumes not used by at least one container"
        } else {
            "anonymous local volumes not used by at least one container"
        };
        eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            return Ok(());
        }
    }
    let mut filters = parse_filters(&a.filter)?;
    if a.all {
        filters.add("all", "true");
    }
    let mut q = Query::default();
    if !filters.is_empty() {
        q.push("filters", filters.to_json());
    }
    let r: Value = client
        .json(Method::POST, "/volumes/prune", &q)
        .await
        .context("pruning volumes")?;
    let deleted = r["VolumesDeleted"].as_array().cloned().unwrap_or_default();
    if !deleted.is_empty() {
        println!("Deleted Volumes:");
        for v in deleted {
            println!("{}", v.as_str().unwrap_or_default());
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        human_size(r["SpaceReclaimed"].as_f64().unwrap_or(0.0))
    );
    Ok(())
}
