//! `berth-registry`: serve an OCI distribution registry, or collect its garbage.

use std::path::PathBuf;

use anyhow::Context;
use berth_registry::config::{AccessRule, AuthConfig, FileConfig, ProxyConfig, TlsFiles, TokenConfig};
use berth_registry::gc::{self, GcOptions};
use berth_registry::{Config, Registry, Storage};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "berth-registry",
    version,
    about = "An OCI distribution registry server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the registry API.
    Serve(Box<ServeArgs>),
    /// Remove blobs no manifest refers to. Run it while the server is stopped or read-only.
    Gc(GcArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// A distribution-style config.yml; flags override its values.
    #[arg(long, short = 'c', env = "BERTH_REGISTRY_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (http.addr).
    #[arg(long)]
    addr: Option<String>,
    /// Storage root directory (storage.filesystem.rootdirectory).
    #[arg(long)]
    root: Option<PathBuf>,
    /// TLS certificate chain, PEM (http.tls.certificate).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key, PEM (http.tls.key).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Allow deleting blobs and manifests (storage.delete.enabled).
    #[arg(long)]
    delete_enabled: bool,
    /// Refuse every write (storage.maintenance.readonly.enabled).
    #[arg(long)]
    read_only: bool,
    /// htpasswd file of bcrypt hashes: enables basic authentication (auth.htpasswd.path).
    #[arg(long)]
    htpasswd: Option<PathBuf>,
    /// Realm announced for basic authentication (auth.htpasswd.realm).
    #[arg(long, default_value = "berth-registry")]
    realm: String,
    /// Use Docker token authentication with the built-in /token endpoint (needs --htpasswd).
    #[arg(long, requires = "htpasswd")]
    token_auth: bool,
    /// Service name in tokens and challenges (auth.token.service).
    #[arg(long, default_value = "berth-registry")]
    token_service: String,
    /// Token endpoint URL announced in challenges (auth.token.realm); default <scheme>://<Host>/token.
    #[arg(long)]
    token_realm: Option<String>,
    /// Run as a pull-through cache of this registry URL (proxy.remoteurl); pushes are refused.
    #[arg(long)]
    proxy_remote_url: Option<String>,
    /// Access rule ACCOUNT:PATTERN:ACTIONS (e.g. bob:team/*:pull), repeatable (auth.access).
    #[arg(long = "access")]
    access: Vec<String>,
}

#[derive(Args)]
struct GcArgs {
    /// Storage root directory.
    #[arg(long)]
    root: PathBuf,
    /// Print what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also remove manifests that no tag reaches.
    #[arg(long, short = 'm')]
    delete_untagged: bool,
}

fn parse_access(text: &str) -> anyhow::Result<AccessRule> {
    let mut parts = text.splitn(3, ':');
    let (Some(account), Some(name), Some(actions)) = (parts.next(), parts.next(), parts.next()) else {
        anyhow::bail!("--access wants ACCOUNT:PATTERN:ACTIONS, got {text:?}");
    };
    Ok(AccessRule {
        account: account.to_string(),
        name: name.to_string(),
        actions: actions.split(',').map(String::from).collect(),
    })
}

fn resolve_config(args: ServeArgs) -> anyhow::Result<Config> {
    let mut config = Config::default();
    if let Some(path) = &args.config {
        FileConfig::load(path)?.apply(&mut config)?;
    }
    if let Some(addr) = args.addr {
        config.addr = addr;
    }
    if let Some(root) = args.root {
        config.root = root;
    }
    if let (Some(certificate), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls = Some(TlsFiles { certificate, key });
    }
    config.delete_enabled |= args.delete_enabled;
    config.read_only |= args.read_only;
    if let Some(path) = args.htpasswd {
        config.auth = if args.token_auth {
            AuthConfig::Token(TokenConfig {
                htpasswd: path,
                realm: args.token_realm,
                service: args.token_service,
                issuer: "berth-registry".into(),
                signing_key: None,
                expiration: 300,
            })
        } else {
            AuthConfig::Htpasswd {
                realm: args.realm,
                path,
            }
        };
    }
    if let Some(remote_url) = args.proxy_remote_url {
        let (username, password) = match config.proxy.take() {
            Some(proxy) => (proxy.username, proxy.password),
            None => (None, None),
        };
        config.proxy = Some(ProxyConfig {
            remote_url,
            username,
            password,
        });
    }
    if !args.access.is_empty() {
        config.access = args
            .access
            .iter()
            .map(|rule| parse_access(rule))
            .collect::<anyhow::Result<_>>()?;
    }
    Ok(config)
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => {
            let config = resolve_config(*args)?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                let registry = Registry::new(config)?;
                let mut terminate =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
                // Stopping at any moment is safe: storage never exposes partial writes.
                tokio::select! {
                    result = registry.run() => result.context("serving"),
                    _ = tokio::signal::ctrl_c() => Ok(()),
                    _ = terminate.recv() => Ok(()),
                }
            })
        }
        Command::Gc(args) => {
            let storage =
                Storage::open(&args.root).with_context(|| format!("opening {}", args.root.display()))?;
            let options = GcOptions {
                dry_run: args.dry_run,
                delete_untagged: args.delete_untagged,
            };
            let report = gc::collect(&storage, options)?;
            let verb = if args.dry_run { "would delete" } else { "deleted" };
            for (name, digest) in &report.untagged_manifests {
                println!("{verb} manifest {name}@{digest}");
            }
            for digest in &report.swept {
                println!("{verb} blob {digest}");
            }
            println!(
                "{} blobs marked, {} blobs {verb}, {} bytes",
                report.marked,
                report.swept.len(),
                report.bytes_freed
            );
            Ok(())
        }
    }
}
