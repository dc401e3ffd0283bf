//! The `config-manager` binary: parse the command line, run the subcommand.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = config_manager::cli::Cli::parse();
    config_manager::cli::run(cli)
}
