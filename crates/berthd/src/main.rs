#![recursion_limit = "256"]
//! berthd: the Berth daemon. Serves the Docker Engine API on Unix sockets and owns images (and,
//! as the project grows, containers, networks and volumes).

mod api;
mod config;
mod memory;
mod services;

use anyhow::Context;
use clap::Parser;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

fn main() -> anyhow::Result<()> {
    let config = config::Config::load(config::Args::parse())?;
    let level = match config.log_level.as_str() {
        "fatal" => "error",
        l => l,
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(64)
        .enable_all()
        .build()?;
    let result = runtime.block_on(run(config));
    // A blocking task still running (a log follower, a stream being written) must not keep the
    // daemon from exiting once it has shut down.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}

async fn run(config: config::Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.root).with_context(|| format!("creating {}", config.root.display()))?;
    std::fs::create_dir_all(&config.exec_root)
        .with_context(|| format!("creating {}", config.exec_root.display()))?;
    let _lock = lock_root(&config)?;
    // Shims detach from berthd by a double fork; as subreaper berthd stays their parent and reaps
    // them when they end, instead of leaving that to whatever process 1 is.
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .context("becoming a child subreaper")?;

    let daemon = Arc::new(services::Daemon::open(config.clone()).await?);
    tokio::spawn(reap_shims(daemon.containers.clone()));
    tokio::spawn(memory::trim_when_quiet());

    let mut listeners = Vec::new();
    for path in &config.sockets {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let _ = std::fs::remove_file(path);
        let listener = tokio::net::UnixListener::bind(path)
            .with_context(|| format!("listening on {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
        tracing::info!(socket = %path.display(), "API listening");
        listeners.push(listener);
    }
    let pidfile = config.exec_root.join("berthd.pid");
    std::fs::write(&pidfile, std::process::id().to_string())?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    for listener in listeners {
        let mut stop = stop_rx.clone();
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        servers.spawn(api::serve(listener, daemon.clone(), shutdown));
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let drain = async {
        while let Some(r) = servers.join_next().await {
            if let Ok(Err(e)) = r {
                tracing::warn!(error = %e, "server ended with an error");
            }
        }
    };
    // Long streams (event watchers, follows) must not hold the daemon up for ever.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drain).await;
    for path in &config.sockets {
        let _ = std::fs::remove_file(path);
    }
    let _ = std::fs::remove_file(&pidfile);
    Ok(())
}

/// Holds an exclusive lock on the root directory for the daemon's lifetime, so that a second
/// berthd on the same root refuses to start instead of corrupting the first one's state.
fn lock_root(config: &config::Config) -> anyhow::Result<File> {
    let path = config.root.join("berthd.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .read(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => anyhow::bail!(
            "another berthd is already running with root {} (lock {} is held)",
            config.root.display(),
            path.display()
        ),
        Err(e) => Err(std::io::Error::from(e)).with_context(|| format!("locking {}", path.display())),
    }
}

/// Reaps the shims that end (they are berthd's children through the subreaper). Only known shim
/// pids are waited for: a blanket wait would steal the status of other children (`ps` for `top`).
async fn reap_shims(containers: services::containers::ContainerService) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut sigchld) = signal(SignalKind::child()) else {
        return;
    };
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        containers.reap_shims();
        tokio::select! {
            _ = sigchld.recv() => {}
            _ = tick.tick() => {}
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
