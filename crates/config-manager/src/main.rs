//! The `config-manager` binary: parse the command line, run the subcommand.

use std::process::ExitCode;

use clap::Parser;

/// jemalloc with background purging threads: memory freed after a burst of
/// large responses goes back to the OS within seconds (glibc's per-thread
/// arenas kept most of it; docs/performance.md, "Memory per request").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = config_manager::cli::Cli::parse();
    config_manager::cli::run(cli)
}
