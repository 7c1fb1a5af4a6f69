//! Command definitions (clap) and dispatch. Names and flags follow the docker CLI.

mod build;
mod commit;
mod container_files;
mod container_ops;
mod containers;
mod images;
mod mount_flag;
mod networks;
mod registry;
mod system;
mod volumes;

use crate::client::{Client, DaemonError, DEFAULT_HOST};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "A container engine that speaks Docker",
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Daemon socket to connect to (default: $BERTH_HOST, $DOCKER_HOST, unix:///run/berth/berth.sock)
    #[arg(short = 'H', long = "host", value_name = "URL")]
    host: Option<String>,
    /// Enable debug output
    #[arg(short = 'D', long = "debug")]
    debug: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create and run a new container from an image
    Run(containers::RunArgs),
    /// Create a new container
    Create(containers::CreateArgs),
    /// Start one or more stopped containers
    Start(containers::StartArgs),
    /// List containers
    Ps(containers::PsArgs),
    /// Fetch the logs of a container
    Logs(containers::LogsArgs),
    /// Stop one or more running containers
    Stop(containers::StopArgs),
    /// Kill one or more running containers
    Kill(containers::KillArgs),
    /// Restart one or more containers
    Restart(containers::StopArgs),
    /// Remove one or more containers
    Rm(containers::RmArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(containers::NamesArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(containers::AttachArgs),
    /// Execute a command in a running container
    Exec(containers::ExecArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(containers::ContainerCommand),
    /// Show the Berth version information
    Version(system::VersionArgs),
    /// Display system-wide information
    Info(system::InfoArgs),
    /// List images
    Images(images::ListArgs),
    /// Build an image from a Dockerfile
    Build(build::BuildArgs),
    /// Create a new image from a container's changes
    Commit(commit::CommitArgs),
    /// Manage images
    #[command(subcommand)]
    Image(images::ImageCommand),
    /// Return low-level information on Berth objects
    Inspect(images::InspectArgs),
    /// Show the history of an image
    History(images::HistoryArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(images::TagArgs),
    /// Remove one or more images
    Rmi(images::RmiArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(images::SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(images::LoadArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(images::ImportArgs),
    /// Download an image from a registry
    Pull(registry::PullArgs),
    /// Upload an image to a registry
    Push(registry::PushArgs),
    /// Log in to a registry
    Login(registry::LoginArgs),
    /// Log out from a registry
    Logout(registry::LogoutArgs),
    /// Manage Berth
    #[command(subcommand)]
    System(system::SystemCommand),
    /// Manage volumes
    #[command(subcommand)]
    Volume(volumes::VolumeCommand),
    /// Manage networks
    #[command(subcommand)]
    Network(networks::NetworkCommand),
    #[command(flatten)]
    Ops(container_ops::OpsCommand),
    #[command(flatten)]
    Files(container_files::FilesCommand),
}

/// Where the daemon is: `-H`, then `BERTH_HOST`, then `DOCKER_HOST`, then the default socket.
fn host(cli: &Cli) -> String {
    cli.host
        .clone()
        .or_else(|| std::env::var("BERTH_HOST").ok().filter(|h| !h.is_empty()))
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| DEFAULT_HOST.to_string())
}

/// Runs a command; returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    let host = host(&cli);
    let result = async {
        let client = Client::connect(&host).await;
        // `version` prints the client part even when no daemon answers.
        if let Command::Version(args) = &cli.command {
            return system::version(client.ok().as_ref(), args).await;
        }
        let client = client?;
        match cli.command {
            Command::Version(_) => unreachable!("handled above"),
            Command::Info(a) => system::info(&client, &a).await,
            Command::Run(a) => {
                containers::run_container_command(&client, containers::ContainerCommand::Run(a)).await
            }
            Command::Create(a) => {
                containers::run_container_command(&client, containers::ContainerCommand::Create(a)).await
            }
            Command::Start(a) => {
                containers::run_container_command(&client, containers::ContainerCommand::Start(a)).await
            }
            Command::Ps(a) => containers::ps(&client, a).await,
            Command::Logs(a) => {
                containers::run_container_command(&client, containers::ContainerCommand::Logs(a)).await
            }
            Command::Stop(a) => {
                containers::run_container_command(&client, containers::ContainerCommand::Stop(a)).await
            }
            Command::Kill(a) => {
                containers::run_container_command(&client, containers::ContainerCommand::Kill(a)).await
            }
            Command::Restart(a) => {
                containers::run_container_command(&client, containers::ContainerCommand::Restart(a)).await
            }
            Command::Rm(a) => {
                containers::run_container_command(&client, containers::ContainerCommand::Rm(a)).await
            }
            Command::Wait(a) => {
                containers::run_container_command(&client, containers::ContainerCommand::Wait(a)).await
            }
            Command::Attach(a) => {
                containers::run_container_command(&client, containers::ContainerCommand::Attach(a)).await
            }
            Command::Exec(a) => {
                containers::run_container_command(&client, containers::ContainerCommand::Exec(a)).await
            }
            Command::Container(c) => containers::run_container_command(&client, c).await,
            Command::Images(a) => images::list(&client, &a).await,
            Command::Build(a) => build::build(&client, &a).await,
            Command::Commit(a) => commit::commit(&client, &a).await,
            Command::Image(c) => images::run(&client, c).await,
            Command::Inspect(a) => images::inspect(&client, &a, true).await,
            Command::History(a) => images::history(&client, &a).await,
            Command::Tag(a) => images::tag(&client, &a).await,
            Command::Rmi(a) => images::rmi(&client, &a).await,
            Command::Save(a) => images::save(&client, &a).await,
            Command::Load(a) => images::load(&client, &a).await,
            Command::Import(a) => images::import(&client, &a).await,
            Command::Pull(a) => registry::pull(&client, &a).await,
            Command::Push(a) => registry::push(&client, &a).await,
            Command::Login(a) => registry::login(&client, &a).await,
            Command::Logout(a) => registry::logout(&a).await,
            Command::System(c) => system::run(&client, c).await,
            Command::Volume(c) => volumes::run(&client, c).await,
            Command::Network(c) => networks::run(&client, c).await,
            Command::Ops(c) => container_ops::run(&client, c).await,
            Command::Files(c) => container_files::run(&client, c).await,
        }
    }
    .await;
    match result {
        Ok(()) => 0,
        Err(e) => {
            if let Some(code) = e.downcast_ref::<ExitCode>() {
                return code.0;
            }
            if e.downcast_ref::<DaemonError>().is_some() {
                eprintln!("{e}");
            } else {
                eprintln!("Error: {e:#}");
            }
            1
        }
    }
}

/// A command that already reported its errors and wants this exit code.
#[derive(Debug, thiserror::Error)]
#[error("exit status {0}")]
pub struct ExitCode(pub i32);

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
