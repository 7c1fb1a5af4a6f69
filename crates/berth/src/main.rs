#![recursion_limit = "256"]
//! berth: the Berth command-line client. Docker's commands and flags, spoken to berthd (or any
//! Docker Engine API) over a Unix socket.

mod attach;
mod client;
mod commands;
mod format;
mod output;
mod units;

use clap::Parser;
use commands::Cli;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                // Docker's CLI exits 125 when its own flags or arguments are wrong.
                _ => 125,
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = runtime.block_on(commands::run(cli));
    std::process::exit(code);
}
