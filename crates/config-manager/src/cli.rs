//! The command line: every subcommand in one place.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::first_run;
use crate::settings::EnvSource;

/// Centralized configuration service for TARS.
#[derive(Debug, Parser)]
#[command(name = "config-manager", version, about)]
pub struct Cli {
    /// The `.env` file read at start-up (and written on first run).
    #[arg(long, global = true, env = "CONFIG_ENV_FILE", default_value = ".env")]
    pub env_file: PathBuf,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (the default): REST API and web UI on CONFIG_MANAGER_PORT.
    Serve,
    /// Key management.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Ask a running service for its health; exit 0 when healthy (for container health checks).
    Healthcheck {
        /// Base URL of the service (default: http://127.0.0.1:$CONFIG_MANAGER_PORT).
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print a fresh set of keys and tokens in .env format (nothing is written).
    Generate,
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => crate::serve::main(cli.env_file),
        Command::Keys {
            command: KeysCommand::Generate,
        } => {
            let mut env = EnvSource::default();
            match first_run::generate_missing(&mut env) {
                Ok(generated) => {
                    for (k, v) in &generated.values {
                        println!("{k}={}", first_run::dotenv_quote(v));
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("config-manager: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Healthcheck { url } => healthcheck(url, &cli.env_file),
    }
}

/// A dependency-free HTTP/1.1 GET of the health endpoint, so the container
/// image needs no curl.
fn healthcheck(url: Option<String>, env_file: &std::path::Path) -> ExitCode {
    use std::io::{Read, Write};
    let env = EnvSource::load(env_file).unwrap_or_default();
    let port = env.get("CONFIG_MANAGER_PORT").unwrap_or("8081").to_owned();
    let base = url.unwrap_or_else(|| format!("http://127.0.0.1:{port}"));
    let Some(hostport) = base
        .strip_prefix("http://")
        .map(|s| s.trim_end_matches('/'))
    else {
        eprintln!("healthcheck: only http:// URLs are supported");
        return ExitCode::FAILURE;
    };
    let result = (|| -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect(hostport)?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
        write!(
            stream,
            "GET /api/config/health HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n"
        )?;
        let mut out = String::new();
        stream.read_to_string(&mut out)?;
        Ok(out)
    })();
    match result {
        Ok(resp) if resp.starts_with("HTTP/1.1 200") => {
            println!("healthy");
            ExitCode::SUCCESS
        }
        Ok(resp) => {
            eprintln!("unhealthy: {}", resp.lines().next().unwrap_or(""));
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unreachable: {e}");
            ExitCode::FAILURE
        }
    }
}
