//! `version`, `info`, `system df`, `system info`.

use crate::client::Client;
use crate::output::print_rows;
use crate::units::human_size;
use anyhow::Result;
use berth_api::types::SystemDf;
use berth_api::Query;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Format output using a Go template
    #[arg(short = 'f', long = "format")]
    format: Option<String>,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Format output using a Go template
    #[arg(short = 'f', long = "format")]
    format: Option<String>,
}

#[derive(Debug, Args)]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// Format output using a Go template
    #[arg(long = "format")]
    format: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Show Berth disk usage
    Df(DfArgs),
    /// Display system-wide information
    Info(InfoArgs),
}

pub async fn run(client: &Client, cmd: SystemCommand) -> Result<()> {
    match cmd {
        SystemCommand::Df(a) => df(client, &a).await,
        SystemCommand::Info(a) => info(client, &a).await,
    }
}

fn client_info(api: &str) -> Value {
    json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": api,
        "APIVersion": api,
        "DefaultAPIVersion": berth_api::version::CURRENT.to_string(),
        "GoVersion": "n/a (Rust)",
        "Os": "linux",
        "Arch": berth_image_arch(),
        "Context": "default",
    })
}

fn berth_image_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub async fn version(client: Option<&Client>, args: &VersionArgs) -> Result<()> {
    let api = client
        .map(|c| c.version().to_string())
        .unwrap_or_else(|| berth_api::version::CURRENT.to_string());
    let server: Option<Value> = match client {
        Some(c) => Some(c.get("/version", &Query::default()).await?),
        None => None,
    };
    // Docker's templates name Go fields (`.Server.APIVersion`); offer those names too.
    let server = server.map(|mut s| {
        if let Some(v) = s.get("ApiVersion").cloned() {
            s["APIVersion"] = v;
        }
        s
    });
    let all = json!({"Client": client_info(&api), "Server": server});
    if let Some(f) = args.format.as_deref() {
        println!("{}", crate::format::render_one(f, &all)?);
        return Ok(());
    }
    let c = &all["Client"];
    println!("Client:");
    println!(" Version:           {}", s(&c["Version"]));
    println!(" API version:       {}", s(&c["ApiVersion"]));
    println!(" Built with:        Rust");
    println!(" OS/Arch:           {}/{}", s(&c["Os"]), s(&c["Arch"]));
    println!(" Context:           default");
    match &all["Server"] {
        Value::Null => anyhow::bail!("Cannot connect to the Berth daemon. Is berthd running?"),
        sv => {
            println!();
            println!("Server: {}", s(&sv["Platform"]["Name"]));
            println!(" Engine:");
            println!("  Version:          {}", s(&sv["Version"]));
            println!(
                "  API version:      {} (minimum version {})",
                s(&sv["ApiVersion"]),
                s(&sv["MinAPIVersion"])
            );
            println!("  Kernel:           {}", s(&sv["KernelVersion"]));
            println!("  OS/Arch:          {}/{}", s(&sv["Os"]), s(&sv["Arch"]));
        }
    }
    Ok(())
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub async fn info(client: &Client, args: &InfoArgs) -> Result<()> {
    let mut info: Value = client.get("/info", &Query::default()).await?;
    if let Some(f) = args.format.as_deref() {
        if let Value::Object(m) = &mut info {
            m.insert("ClientInfo".into(), client_info(&client.version().to_string()));
        }
        println!("{}", crate::format::render_one(f, &info)?);
        return Ok(());
    }
    let i = &info;
    println!("Client:");
    println!(" Version:    {}", env!("CARGO_PKG_VERSION"));
    println!(" Context:    default");
    println!();
    println!("Server:");
    println!(" Containers: {}", i["Containers"]);
    println!("  Running: {}", i["ContainersRunning"]);
    println!("  Paused: {}", i["ContainersPaused"]);
    println!("  Stopped: {}", i["ContainersStopped"]);
    println!(" Images: {}", i["Images"]);
    println!(" Server Version: {}", s(&i["ServerVersion"]));
    println!(" Storage Driver: {}", s(&i["Driver"]));
    println!(" Logging Driver: {}", s(&i["LoggingDriver"]));
    println!(" Cgroup Driver: {}", s(&i["CgroupDriver"]));
    println!(" Cgroup Version: {}", s(&i["CgroupVersion"]));
    println!(" Kernel Version: {}", s(&i["KernelVersion"]));
    println!(" Operating System: {}", s(&i["OperatingSystem"]));
    println!(" OSType: {}", s(&i["OSType"]));
    println!(" Architecture: {}", s(&i["Architecture"]));
    println!(" CPUs: {}", i["NCPU"]);
    println!(
        " Total Memory: {}",
        crate::units::bytes_size(i["MemTotal"].as_f64().unwrap_or(0.0))
    );
    println!(" Name: {}", s(&i["Name"]));
    println!(" ID: {}", s(&i["ID"]));
    println!(" Root Dir: {}", s(&i["DockerRootDir"]));
    println!(" Debug Mode: {}", i["Debug"]);
    println!(" Live Restore Enabled: {}", i["LiveRestoreEnabled"]);
    Ok(())
}

pub async fn df(client: &Client, args: &DfArgs) -> Result<()> {
    let df: SystemDf = client.get("/system/df", &Query::default()).await?;
    let active = df.images.iter().filter(|i| i.containers > 0).count();
    let reclaimable: i64 = df
        .images
        .iter()
        .filter(|i| i.containers == 0)
        .map(|i| i.size - i.shared_size.max(0))
        .sum();
    let pct = |part: i64, total: i64| {
        if total > 0 {
            format!(" ({}%)", part * 100 / total)
        } else {
            String::new()
        }
    };
    let running = df.containers.iter().filter(|c| c["State"] == "running").count();
    let usage = |v: &Value| {
        (
            v["UsageData"]["Size"].as_i64().unwrap_or(0),
            v["UsageData"]["RefCount"].as_i64().unwrap_or(0),
        )
    };
    let volumes_active = df.volumes.iter().filter(|v| usage(v).1 > 0).count();
    let volumes_size: i64 = df.volumes.iter().map(|v| usage(v).0).sum();
    let volumes_free: i64 = df
        .volumes
        .iter()
        .filter(|v| usage(v).1 == 0)
        .map(|v| usage(v).0)
        .sum();
    let rows = vec![
        json!({"Type": "Images", "TotalCount": df.images.len(), "Active": active,
               "Size": human_size(df.layers_size as f64),
               "Reclaimable": format!("{}{}", human_size(reclaimable as f64), pct(reclaimable, df.layers_size))}),
        json!({"Type": "Containers", "TotalCount": df.containers.len(), "Active": running, "Size": "0B", "Reclaimable": "0B"}),
        json!({"Type": "Local Volumes", "TotalCount": df.volumes.len(), "Active": volumes_active,
               "Size": human_size(volumes_size as f64),
               "Reclaimable": format!("{}{}", human_size(volumes_free as f64), pct(volumes_free, volumes_size))}),
        json!({"Type": "Build Cache", "TotalCount": df.build_cache.len(), "Active": 0, "Size": "0B", "Reclaimable": "0B"}),
    ];
    print_rows(
        args.format.as_deref(),
        "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
        &rows,
        &[
            ("Type", "TYPE"),
            ("TotalCount", "TOTAL"),
            ("Active", "ACTIVE"),
            ("Size", "SIZE"),
            ("Reclaimable", "RECLAIMABLE"),
        ],
    )?;
    if args.verbose {
        println!("\nImages space usage:\n");
        let rows: Vec<Value> = df
            .images
            .iter()
            .map(|i| {
                let (repo, tag) = i.repo_tags.first().map(|t| super::images::split_tag(t)).unwrap_or(("<none>".into(), "<none>".into()));
                json!({"Repository": repo, "Tag": tag, "ID": short_id(&i.id), "CreatedSince": crate::units::since(i.created) ,
                       "Size": human_size(i.size as f64), "SharedSize": human_size(i.shared_size.max(0) as f64),
                       "UniqueSize": human_size((i.size - i.shared_size.max(0)) as f64), "Containers": i.containers})
            })
            .collect();
        print_rows(
            None,
            "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}",
            &rows,
            &[("Repository", "REPOSITORY"), ("Tag", "TAG"), ("ID", "IMAGE ID"), ("CreatedSince", "CREATED"), ("Size", "SIZE"),
              ("SharedSize", "SHARED SIZE"), ("UniqueSize", "UNIQUE SIZE"), ("Containers", "CONTAINERS")],
        )?;
    }
    if args.verbose {
        println!("\nLocal Volumes space usage:\n");
        let rows: Vec<Value> = df
            .volumes
            .iter()
            .map(|v| json!({"Name": v["Name"], "Links": usage(v).1, "Size": human_size(usage(v).0 as f64)}))
            .collect();
        print_rows(
            None,
            "table {{.Name}}\t{{.Links}}\t{{.Size}}",
            &rows,
            &[("Name", "VOLUME NAME"), ("Links", "LINKS"), ("Size", "SIZE")],
        )?;
    }
    Ok(())
}

pub fn short_id(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}
