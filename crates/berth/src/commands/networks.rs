//! `network create|ls|inspect|rm|prune|connect|disconnect`.

use super::containers::each;
use super::images::parse_filters;
use crate::client::Client;
use crate::output::{print_objects, print_rows};
use anyhow::{bail, Result};
use berth_api::Query;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Map, Value};

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network
    Create(CreateArgs),
    /// List networks
    #[command(visible_alias = "list")]
    Ls(ListArgs),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// Remove one or more networks
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove all unused networks
    Prune(PruneArgs),
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Driver to manage the Network
    #[arg(short = 'd', long = "driver", default_value = "bridge")]
    driver: String,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long = "subnet")]
    subnet: Vec<String>,
    /// IPv4 Gateway for the master subnet
    #[arg(long = "gateway")]
    gateway: Vec<String>,
    /// Allocate container ip from a sub-range
    #[arg(long = "ip-range")]
    ip_range: Vec<String>,
    /// Restrict external access to the network
    #[arg(long = "internal")]
    internal: bool,
    /// Set metadata on a network
    #[arg(long = "label")]
    label: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt")]
    opt: Vec<String>,
    #[arg(value_name = "NETWORK")]
    name: String,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Provide filter values (e.g. "driver=bridge")
    #[arg(short = 'f', long = "filter")]
    filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long = "format")]
    format: Option<String>,
    /// Do not truncate the output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Only display network IDs
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a Go template
    #[arg(short = 'f', long = "format")]
    format: Option<String>,
    #[arg(required = true, value_name = "NETWORK")]
    names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Do not error if the network does not exist
    #[arg(short = 'f', long = "force")]
    force: bool,
    #[arg(required = true, value_name = "NETWORK")]
    names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long = "filter")]
    filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long = "force")]
    force: bool,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Add network-scoped alias for the container
    #[arg(long = "alias")]
    alias: Vec<String>,
    /// IPv4 address (e.g., "172.30.100.104")
    #[arg(long = "ip")]
    ip: Option<String>,
    #[arg(value_name = "NETWORK")]
    network: String,
    #[arg(value_name = "CONTAINER")]
    container: String,
}

#[derive(Debug, Args)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short = 'f', long = "force")]
    force: bool,
    #[arg(value_name = "NETWORK")]
    network: String,
    #[arg(value_name = "CONTAINER")]
    container: String,
}

pub async fn run(client: &Client, cmd: NetworkCommand) -> Result<()> {
    match cmd {
        NetworkCommand::Create(a) => create(client, a).await,
        NetworkCommand::Ls(a) => list(client, a).await,
        NetworkCommand::Inspect(a) => inspect(client, a).await,
        NetworkCommand::Rm(a) => rm(client, a).await,
        NetworkCommand::Prune(a) => prune(client, a).await,
        NetworkCommand::Connect(a) => connect(client, a).await,
        NetworkCommand::Disconnect(a) => disconnect(client, a).await,
    }
}

fn key_values(list: &[String]) -> Map<String, Value> {
    list.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), json!(v)),
            None => (kv.clone(), json!("")),
        })
        .collect()
}

async fn create(client: &Client, a: CreateArgs) -> Result<()> {
    if a.gateway.len() > a.subnet.len() || a.ip_range.len() > a.subnet.len() {
        bail!("every ip-range or gateway must have a corresponding subnet");
    }
    let config: Vec<Value> = a
        .subnet
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut c = json!({"Subnet": s});
            if let Some(g) = a.gateway.get(i) {
                c["Gateway"] = json!(g);
            }
            if let Some(r) = a.ip_range.get(i) {
                c["IPRange"] = json!(r);
            }
            c
        })
        .collect();
    let body = json!({
        "Name": a.name, "Driver": a.driver, "Internal": a.internal,
        "IPAM": {"Driver": "default", "Config": config},
        "Options": key_values(&a.opt), "Labels": key_values(&a.label),
    });
    let r: Value = client
        .post_json("/networks/create", &Query::default(), &body)
        .await?;
    println!("{}", r["Id"].as_str().unwrap_or_default());
    Ok(())
}

async fn list(client: &Client, a: ListArgs) -> Result<()> {
    let mut q = Query::default();
    let filters = parse_filters(&a.filter)?;
    if !filters.is_empty() {
        q.push("filters", filters.to_json());
    }
    let mut nets: Vec<Value> = client.get("/networks", &q).await?;
    nets.sort_by(|x, y| x["Name"].as_str().cmp(&y["Name"].as_str()));
    let rows: Vec<Value> = nets
        .into_iter()
        .map(|n| {
            let id = n["Id"].as_str().unwrap_or_default();
            let id = if a.no_trunc {
                id.to_string()
            } else {
                id.chars().take(12).collect()
            };
            json!({"ID": id, "Name": n["Name"], "Driver": n["Driver"], "Scope": n["Scope"],
                   "Internal": n["Internal"], "Created": n["Created"]})
        })
        .collect();
    if a.quiet {
        for r in &rows {
            println!("{}", r["ID"].as_str().unwrap_or_default());
        }
        return Ok(());
    }
    print_rows(
        a.format.as_deref(),
        "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
        &rows,
        &[
            ("ID", "NETWORK ID"),
            ("Name", "NAME"),
            ("Driver", "DRIVER"),
            ("Scope", "SCOPE"),
        ],
    )
}

async fn inspect(client: &Client, a: InspectArgs) -> Result<()> {
    let mut objects = Vec::new();
    let mut failed = false;
    for name in &a.names {
        match client
            .get::<Value>(&format!("/networks/{name}"), &Query::default())
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
        match client
            .call(Method::DELETE, &format!("/networks/{name}"), &Query::default())
            .await
        {
            Err(e)
                if a.force
                    && e.downcast_ref::<crate::client::DaemonError>()
                        .is_some_and(|d| d.status == hyper::StatusCode::NOT_FOUND) => {}
            Err(e) => return Err(e),
            Ok(()) => println!("{name}"),
        }
        Ok(())
    })
    .await
}

async fn prune(client: &Client, a: PruneArgs) -> Result<()> {
    if !a.force {
        eprint!("WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            return Ok(());
        }
    }
    let filters = parse_filters(&a.filter)?;
    let mut q = Query::default();
    if !filters.is_empty() {
        q.push("filters", filters.to_json());
    }
    let r: Value = client.json(Method::POST, "/networks/prune", &q).await?;
    let deleted = r["NetworksDeleted"].as_array().cloned().unwrap_or_default();
    if !deleted.is_empty() {
        println!("Deleted Networks:");
        for n in deleted {
            println!("{}", n.as_str().unwrap_or_default());
        }
    }
    Ok(())
}

async fn connect(client: &Client, a: ConnectArgs) -> Result<()> {
    let mut ep = json!({"Aliases": a.alias});
    if let Some(ip) = &a.ip {
        ep["IPAMConfig"] = json!({"IPv4Address": ip});
    }
    let body = json!({"Container": a.container, "EndpointConfig": ep});
    let path = format!("/networks/{}/connect", a.network);
    let _: Value = client
        .post_json(&path, &Query::default(), &body)
        .await
        .or_else(empty_answer)?;
    Ok(())
}

async fn disconnect(client: &Client, a: DisconnectArgs) -> Result<()> {
    let body = json!({"Container": a.container, "Force": a.force});
    let path = format!("/networks/{}/disconnect", a.network);
    let _: Value = client
        .post_json(&path, &Query::default(), &body)
        .await
        .or_else(empty_answer)?;
    Ok(())
}

/// connect/disconnect answer 200 with an empty body: not JSON, and not an error.
fn empty_answer(e: anyhow::Error) -> Result<Value> {
    if e.downcast_ref::<crate::client::DaemonError>().is_some() {
        return Err(e);
    }
    Ok(Value::Null)
}
