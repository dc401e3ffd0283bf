//! `config-agent run --service <name> [options] -- <command> [args…]`: runs
//! a program configured by environment variables with its configuration from
//! the config-manager (docs/agent.md).
//!
//! Exit codes: the program's status once a forwarded SIGTERM/SIGINT stopped
//! it (128 + n when signal n ended it); 2 for bad input (options, unknown
//! service, missing or non-executable command, unusable client settings);
//! 1 for other failures of the agent itself.

mod agent;
mod cli;
mod render;
mod schema;
mod secrets;

use std::process::ExitCode;

use clap::Parser as _;
use config_manager_client::{Client, ClientSettings};
use serde_json::{Map, Value};

use crate::agent::{Agent, Exit, Start};
use crate::cli::{Cli, Command, RunArgs};
use crate::render::FieldMap;

/// `client.name` of the agent's applied-state reports.
const CLIENT_NAME: &str = "config-agent";

/// Bad input: the caller must change something.
const USAGE: u8 = 2;

fn main() -> ExitCode {
    // clap prints the error and exits with 2 itself.
    let cli = Cli::parse();
    init_logging();
    let Command::Run(args) = cli.command;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(error) => {
            eprintln!("config-agent: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args))
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CONFIG_AGENT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

/// A bad-input error: logged, exit 2.
fn usage(message: impl std::fmt::Display) -> ExitCode {
    tracing::error!("{message}");
    eprintln!("config-agent: {message}");
    ExitCode::from(USAGE)
}

async fn run(args: RunArgs) -> ExitCode {
    let Some(program) = args.command.first() else {
        return usage("no command given after --");
    };
    if !agent::command_exists(program, std::env::var_os("PATH").as_deref()) {
        return usage(format!(
            "command not found or not executable: {}",
            program.to_string_lossy()
        ));
    }
    let service = args.service.clone();
    let settings = match ClientSettings::from_lookup(|name| {
        if name == "SERVICE_NAME" {
            return Some(service.to_string());
        }
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }) {
        Ok(s) => s,
        Err(error) => return usage(error),
    };
    let fields = match schema::load(&settings).await {
        schema::Loaded::UnknownService => {
            return usage(format!("the config-manager knows no service {service}"))
        }
        schema::Loaded::Rest(doc) => FieldMap::from_schema(&doc),
        schema::Loaded::Copy(doc) => {
            tracing::warn!("using the schema copy: the manager is unreachable");
            FieldMap::from_schema(&doc)
        }
        schema::Loaded::None => FieldMap::default(),
    };
    if !fields.refused.is_empty() {
        tracing::warn!(
            fields = fields.refused.join(","),
            "the schema names variables the agent does not set (bad name, or one that changes how programs load)"
        );
    }
    let inherited = |v: &str| std::env::var_os(v).is_some();
    let pinned = fields.pinned(&args.pinned_env.0, &inherited);
    if !pinned.is_empty() {
        tracing::info!(
            fields = pinned.keys().cloned().collect::<Vec<_>>().join(","),
            "pinned by CONFIG_PINNED_ENV: these keep their inherited value"
        );
    }
    let secrets = secrets::SecretSource::new(&settings);
    let client = Client::<Map<String, Value>>::builder(settings)
        .defaults(fields.defaults())
        .client_name(CLIENT_NAME)
        .pinned(pinned)
        .runner_reports()
        .start()
        .await;
    let client = match client {
        Ok(c) => c,
        Err(error) => return usage(error),
    };
    let agent = Agent::new(Start {
        args,
        fields,
        client,
        secrets,
    });
    match agent.run().await {
        Ok(Exit::Program(code)) => ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(1)),
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
