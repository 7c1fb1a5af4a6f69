//! `pause`, `unpause`, `top`, `update`, `stats`, `rename` (also under `container ...`).

use super::containers::each;
use super::ExitCode;
use crate::client::{json_body, Client};
use crate::format::TabWriter;
use crate::output::print_rows;
use crate::units::{bytes_size, human_size_with_precision, ram_in_bytes};
use anyhow::{bail, Context, Result};
use berth_api::Query;
use clap::{Args, Subcommand};
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Debug, Subcommand)]
pub enum OpsCommand {
    /// Pause all processes within one or more containers
    Pause(NamesArgs),
    /// Unpause all processes within one or more containers
    Unpause(NamesArgs),
    /// Display the running processes of a container
    Top(TopArgs),
    /// Update configuration of one or more containers
    Update(UpdateArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(StatsArgs),
    /// Rename a container
    Rename(RenameArgs),
    /// List port mappings or a specific mapping for the container
    Port(PortArgs),
}

pub async fn run(client: &Client, cmd: OpsCommand) -> Result<()> {
    match cmd {
        OpsCommand::Pause(a) => pause(client, a, "pause").await,
        OpsCommand::Unpause(a) => pause(client, a, "unpause").await,
        OpsCommand::Top(a) => top(client, a).await,
        OpsCommand::Update(a) => update(client, a).await,
        OpsCommand::Stats(a) => stats(client, a).await,
        OpsCommand::Rename(a) => rename(client, a).await,
        OpsCommand::Port(a) => port(client, a).await,
    }
}

#[derive(Debug, Args)]
pub struct PortArgs {
    #[arg(value_name = "CONTAINER")]
    container: String,
    /// PRIVATE_PORT[/PROTO]
    #[arg(value_name = "PRIVATE_PORT")]
    private_port: Option<String>,
}

/// `docker port`: `80/tcp -> 0.0.0.0:32768`, one line per published port.
async fn port(client: &Client, a: PortArgs) -> Result<()> {
    let c: serde_json::Value = client
        .get(&format!("/containers/{}/json", a.container), &Query::default())
        .await?;
    let wanted = a.private_port.as_ref().map(|p| {
        if p.contains('/') {
            p.clone()
        } else {
            format!("{p}/tcp")
        }
    });
    let mut lines = Vec::new();
    if let Some(ports) = c["NetworkSettings"]["Ports"].as_object() {
        for (key, bindings) in ports {
            if wanted.as_ref().is_some_and(|w| w != key) {
                continue;
            }
            for b in bindings.as_array().into_iter().flatten() {
                let addr = format!(
                    "{}:{}",
                    b["HostIp"].as_str().unwrap_or_default(),
                    b["HostPort"].as_str().unwrap_or_default()
                );
                lines.push(if wanted.is_some() {
                    addr
                } else {
                    format!("{key} -> {addr}")
                });
            }
        }
    }
    if lines.is_empty() {
        if let Some(w) = wanted {
            anyhow::bail!("No public port '{w}' published for {}", a.container);
        }
    }
    for l in lines {
        println!("{l}");
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct NamesArgs {
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

async fn pause(client: &Client, a: NamesArgs, verb: &str) -> Result<()> {
    each(&a.containers, |c| async move {
        client
            .call(
                Method::POST,
                &format!("/containers/{c}/{verb}"),
                &Query::default(),
            )
            .await?;
        println!("{c}");
        Ok(())
    })
    .await
}

#[derive(Debug, Args)]
pub struct TopArgs {
    #[arg(value_name = "CONTAINER")]
    container: String,
    /// Options for ps
    #[arg(
        value_name = "ps OPTIONS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    ps_args: Vec<String>,
}

async fn top(client: &Client, a: TopArgs) -> Result<()> {
    let mut q = Query::default();
    if !a.ps_args.is_empty() {
        q.push("ps_args", a.ps_args.join(" "));
    }
    let v: Value = client
        .get(&format!("/containers/{}/top", a.container), &q)
        .await?;
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap_or("").to_string()).collect())
            .unwrap_or_default()
    };
    let mut tw = TabWriter::new(20, 3, ' ');
    tw.write_str(&strings(&v["Titles"]).join("\t"));
    tw.write_str("\n");
    for p in v["Processes"].as_array().into_iter().flatten() {
        tw.write_str(&strings(p).join("\t"));
        tw.write_str("\n");
    }
    print!("{}", tw.finish());
    Ok(())
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable
    #[arg(long = "blkio-weight")]
    blkio_weight: Option<u16>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period")]
    cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long = "cpu-quota")]
    cpu_quota: Option<i64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    cpu_shares: Option<i64>,
    /// Number of CPUs
    #[arg(long)]
    cpus: Option<f64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    /// Memory limit
    #[arg(short = 'm', long)]
    memory: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation")]
    memory_reservation: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    restart: Option<String>,
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

/// The `UpdateConfig` body: only the flags given (zero means "unchanged" to the daemon).
fn update_body(a: &UpdateArgs) -> Result<Value> {
    let mut m = Map::new();
    let size = |s: &str| -> Result<i64> {
        if s == "-1" {
            return Ok(-1);
        }
        ram_in_bytes(s).with_context(|| format!("invalid size: '{s}'"))
    };
    if let Some(w) = a.blkio_weight {
        m.insert("BlkioWeight".into(), json!(w));
    }
    if let Some(p) = a.cpu_period {
        m.insert("CpuPeriod".into(), json!(p));
    }
    if let Some(q) = a.cpu_quota {
        m.insert("CpuQuota".into(), json!(q));
    }
    if let Some(s) = a.cpu_shares {
        m.insert("CpuShares".into(), json!(s));
    }
    if let Some(c) = a.cpus {
        m.insert("NanoCpus".into(), json!((c * 1e9).round() as i64));
    }
    if let Some(c) = &a.cpuset_cpus {
        m.insert("CpusetCpus".into(), json!(c));
    }
    if let Some(c) = &a.cpuset_mems {
        m.insert("CpusetMems".into(), json!(c));
    }
    if let Some(s) = &a.memory {
        m.insert("Memory".into(), json!(size(s)?));
    }
    if let Some(s) = &a.memory_reservation {
        m.insert("MemoryReservation".into(), json!(size(s)?));
    }
    if let Some(s) = &a.memory_swap {
        m.insert("MemorySwap".into(), json!(size(s)?));
    }
    if let Some(p) = a.pids_limit {
        m.insert("PidsLimit".into(), json!(p));
    }
    if let Some(r) = &a.restart {
        let (name, max) = match r.split_once(':') {
            Some((n, c)) => (
                n.to_string(),
                c.parse::<i64>()
                    .with_context(|| format!("invalid restart policy format: {r}"))?,
            ),
            None => (r.clone(), 0),
        };
        m.insert(
            "RestartPolicy".into(),
            json!({"Name": name, "MaximumRetryCount": max}),
        );
    }
    if m.is_empty() {
        bail!("you must provide one or more flags when using this command");
    }
    Ok(Value::Object(m))
}

async fn update(client: &Client, a: UpdateArgs) -> Result<()> {
    let body = update_body(&a)?;
    each(&a.containers, |c| {
        let body = body.clone();
        async move {
            let resp = client
                .request(
                    Method::POST,
                    &format!("/containers/{c}/update"),
                    &Query::default(),
                    json_body(&body),
                    Some("application/json"),
                )
                .await?;
            let bytes = resp.into_body().collect().await?.to_bytes();
            let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            for w in answer["Warnings"].as_array().into_iter().flatten() {
                eprintln!("{}", w.as_str().unwrap_or_default());
            }
            println!("{c}");
            Ok(())
        }
    })
    .await
}

#[derive(Debug, Args)]
pub struct RenameArgs {
    #[arg(value_name = "CONTAINER")]
    container: String,
    #[arg(value_name = "NEW_NAME")]
    new_name: String,
}

async fn rename(client: &Client, a: RenameArgs) -> Result<()> {
    let (old, new) = (a.container.trim(), a.new_name.trim());
    if old.is_empty() || new.is_empty() {
        bail!("Neither old nor new names may be empty");
    }
    let mut q = Query::default();
    q.push("name", new);
    client
        .call(Method::POST, &format!("/containers/{old}/rename"), &q)
        .await
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    all: bool,
    /// Format output using a custom template
    #[arg(long)]
    format: Option<String>,
    /// Disable streaming stats and only pull the first result
    #[arg(long = "no-stream")]
    no_stream: bool,
    /// Do not truncate output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    #[arg(value_name = "CONTAINER")]
    containers: Vec<String>,
}

const STATS_TABLE: &str =
    "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";
const STATS_HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Container", "CONTAINER"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

/// One stats object as a row of docker's stats table (`cli/command/container/stats_helpers.go`).
fn stats_row(container: &str, v: &Value, no_trunc: bool) -> Value {
    let u = |v: &Value| v.as_u64().unwrap_or(0);
    let cpu = &v["cpu_stats"];
    let pre = &v["precpu_stats"];
    let cpu_delta = u(&cpu["cpu_usage"]["total_usage"]) as f64 - u(&pre["cpu_usage"]["total_usage"]) as f64;
    let system_delta = u(&cpu["system_cpu_usage"]) as f64 - u(&pre["system_cpu_usage"]) as f64;
    let online = match u(&cpu["online_cpus"]) {
        0 => cpu["cpu_usage"]["percpu_usage"].as_array().map_or(0, Vec::len) as f64,
        n => n as f64,
    };
    let cpu_percent = if system_delta > 0.0 && cpu_delta > 0.0 {
        cpu_delta / system_delta * online * 100.0
    } else {
        0.0
    };
    let mem = &v["memory_stats"];
    let usage = u(&mem["usage"]);
    let stats = &mem["stats"];
    let mem_used = match (stats.get("total_inactive_file"), stats.get("inactive_file")) {
        (Some(i), _) if u(i) < usage => usage - u(i),
        (None, Some(i)) if u(i) < usage => usage - u(i),
        _ => usage,
    } as f64;
    let limit = u(&mem["limit"]) as f64;
    let mem_percent = if limit > 0.0 {
        mem_used / limit * 100.0
    } else {
        0.0
    };
    let (mut read, mut write) = (0f64, 0f64);
    for e in v["blkio_stats"]["io_service_bytes_recursive"]
        .as_array()
        .into_iter()
        .flatten()
    {
        match e["op"].as_str().unwrap_or("").to_ascii_lowercase().as_str() {
            "read" => read += u(&e["value"]) as f64,
            "write" => write += u(&e["value"]) as f64,
            _ => {}
        }
    }
    let (mut rx, mut tx) = (0f64, 0f64);
    if let Some(nets) = v["networks"].as_object() {
        for n in nets.values() {
            rx += u(&n["rx_bytes"]) as f64;
            tx += u(&n["tx_bytes"]) as f64;
        }
    }
    let id = v["id"].as_str().unwrap_or("");
    let id = if no_trunc { id } else { &id[..id.len().min(12)] };
    let name = v["name"].as_str().unwrap_or("");
    let name = if name.len() > 1 { &name[1..] } else { "--" };
    let size = |b: f64| human_size_with_precision(b, 3);
    json!({
        "Container": container,
        "ID": id,
        "Name": name,
        "CPUPerc": format!("{cpu_percent:.2}%"),
        "MemUsage": format!("{} / {}", bytes_size(mem_used), bytes_size(limit)),
        "MemPerc": format!("{mem_percent:.2}%"),
        "NetIO": format!("{} / {}", size(rx), size(tx)),
        "BlockIO": format!("{} / {}", size(read), size(write)),
        "PIDs": u(&v["pids_stats"]["current"]).to_string(),
    })
}

/// The containers `stats` shows: those named, or all running (or all, with `-a`).
async fn stats_targets(client: &Client, a: &StatsArgs) -> Result<Vec<String>> {
    if !a.containers.is_empty() {
        return Ok(a.containers.clone());
    }
    let mut q = Query::default();
    if a.all {
        q.push("all", "1");
    }
    let list: Vec<Value> = client.get("/containers/json", &q).await?;
    Ok(list
        .iter()
        .filter_map(|c| c["Id"].as_str().map(|id| id[..id.len().min(12)].to_string()))
        .collect())
}

async fn stats(client: &Client, a: StatsArgs) -> Result<()> {
    let targets = stats_targets(client, &a).await?;
    if a.no_stream {
        let mut q = Query::default();
        q.push("stream", "0");
        let fetches = targets.iter().map(|c| {
            let q = q.clone();
            async move {
                let v: Result<Value> = client.get(&format!("/containers/{c}/stats"), &q).await;
                (c.clone(), v)
            }
        });
        let mut rows = Vec::new();
        let mut failed = false;
        for (c, v) in futures::future::join_all(fetches).await {
            match v {
                Ok(v) => rows.push(stats_row(&c, &v, a.no_trunc)),
                Err(e) => {
                    eprintln!("{e}");
                    failed = true;
                }
            }
        }
        print_rows(a.format.as_deref(), STATS_TABLE, &rows, STATS_HEADERS)?;
        return if failed { Err(ExitCode(1).into()) } else { Ok(()) };
    }
    // Streaming: one connection per container, the table redrawn every second.
    let latest: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
    for c in &targets {
        let (client, c, latest) = (client.clone(), c.clone(), latest.clone());
        tokio::spawn(async move {
            let mut q = Query::default();
            q.push("stream", "1");
            let Ok(resp) = client
                .request(
                    Method::GET,
                    &format!("/containers/{c}/stats"),
                    &q,
                    crate::client::empty(),
                    None,
                )
                .await
            else {
                return;
            };
            let mut body = resp.into_body();
            let mut buf = Vec::new();
            while let Some(Ok(frame)) = body.frame().await {
                let Ok(data) = frame.into_data() else { continue };
                buf.extend_from_slice(&data);
                while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    if let Ok(v) = serde_json::from_slice::<Value>(&line) {
                        let row = stats_row(&c, &v, false);
                        latest
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(c.clone(), row);
                    }
                }
            }
        });
    }
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let rows: Vec<Value> = {
            let latest = latest.lock().unwrap_or_else(|p| p.into_inner());
            targets.iter().filter_map(|c| latest.get(c).cloned()).collect()
        };
        print!("\x1b[2J\x1b[H");
        print_rows(a.format.as_deref(), STATS_TABLE, &rows, STATS_HEADERS)?;
        let _ = std::io::stdout().flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_row_computes_cpu_and_memory_like_docker() {
        let v = json!({
            "id": "0123456789abcdef", "name": "/web",
            "cpu_stats": {"cpu_usage": {"total_usage": 300}, "system_cpu_usage": 2000, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
            "memory_stats": {"usage": 2 * 1024 * 1024, "limit": 32 * 1024 * 1024,
                             "stats": {"total_inactive_file": 512 * 1024}},
            "pids_stats": {"current": 3},
        });
        let r = stats_row("web", &v, false);
        assert_eq!(r["CPUPerc"], "40.00%");
        assert_eq!(r["MemUsage"], "1.5MiB / 32MiB");
        assert_eq!(r["MemPerc"], "4.69%");
        assert_eq!(r["ID"], "0123456789ab");
        assert_eq!(r["Name"], "web");
        assert_eq!(r["PIDs"], "3");
        assert_eq!(r["BlockIO"], "0B / 0B");
    }
}
