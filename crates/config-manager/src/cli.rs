//! The command line: every subcommand in one place. Each subcommand's doc
//! comment is its `--help`; the code behind them lives in `cli/`.
//!
//! Exit codes: 0 success; 1 the operation failed or was refused (server
//! error, validation, a file that does not verify, unhealthy service);
//! 2 bad arguments or settings (clap's usage errors are 2 as well).

mod config;
mod health;
mod offline;
mod remote;
mod restore;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use config_manager_core::domain::Version;

use config_manager_service::first_run;
use config_manager_service::settings::table::{
    CONFIG_API_TOKEN, CONFIG_ENV_FILE, CONFIG_MANAGER_PORT, CONFIG_MANAGER_URL,
    CONFIG_MASTER_KEY_BASE64, CONFIG_MASTER_KEY_ID, CONFIG_MASTER_KEY_PREVIOUS_BASE64,
    CONFIG_MASTER_KEY_PREVIOUS_ID,
};
use config_manager_service::settings::EnvSource;

/// Centralized configuration service for TARS.
///
/// Without a subcommand, runs the service (`serve`). Settings come from the
/// environment and the `.env` file (see .env.example).
#[derive(Debug, Parser)]
#[command(name = "config-manager", version, about, long_about)]
pub struct Cli {
    /// The `.env` file read at start-up (and written on first run).
    #[arg(long, global = true, env = CONFIG_ENV_FILE.name, default_value = CONFIG_ENV_FILE.default_text())]
    pub env_file: PathBuf,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (the default): REST API, web UI and /metrics on
    /// CONFIG_MANAGER_PORT. Stops gracefully on SIGTERM or ctrl-c.
    Serve,
    /// Key management.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Read, change, export or import configuration: through a running
    /// service (REST, the default) or directly in the database file
    /// (`--offline`, only while no service has it open).
    Config {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Adopt an existing `.env` file: set one service's configuration from
    /// the variables its schema maps (`x-service-env`, else the key
    /// upper-cased), converted the way the service parses them. Every value is
    /// validated first (a bad one names its variable; nothing is written).
    /// Prints the diff (secrets only as "changed"), the fields already equal
    /// and the variables it ignored. Run with --dry-run first. Through a
    /// running service (REST, the default) or --offline. See docs/adopting.md.
    ImportEnv {
        #[command(flatten)]
        target: Target,
        /// The service whose configuration is set (e.g. tts-worker).
        #[arg(long)]
        service: String,
        /// The .env file, or `-` for standard input.
        file: String,
        /// Show what would change; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Change reason recorded in history (default: "import of a .env file").
        #[arg(long)]
        reason: Option<String>,
    },
    /// Check a last-known-good cache file: parse it and verify its HMAC with
    /// LKG_HMAC_KEY_BASE64 (and LKG_HMAC_KEY_PREVIOUS_BASE64) from the
    /// environment or the .env file. Exit 0 when it verifies, 1 when not.
    VerifyLkg {
        /// The cache file (CONFIG_LKG_CACHE_PATH of the service).
        file: PathBuf,
    },
    /// Check a captured MQTT config message (the raw payload, e.g. from
    /// `mosquitto_sub -t system/config/tts-worker -C 1`): structure, checksum
    /// and Ed25519 signature. Exit 0 when it verifies, 1 when not.
    VerifyMessage {
        /// File with the payload, or `-` for standard input.
        file: String,
        /// PEM file (SPKI) of the trusted public key. Default:
        /// CONFIG_SIGNATURE_PUBLIC_KEY, or the key derived from
        /// CONFIG_SIGNATURE_PRIVATE_KEY, from the environment or .env file.
        #[arg(long, value_name = "PEM_FILE")]
        public_key: Option<PathBuf>,
    },
    /// Ask a running service for its health; exit 0 when healthy (for
    /// container health checks; needs no curl).
    Healthcheck {
        /// Base URL of the service (default: http://127.0.0.1:$CONFIG_MANAGER_PORT).
        #[arg(long)]
        url: Option<String>,
    },
    /// Restore the database from the Litestream replica (LITESTREAM_*
    /// settings; latest or --timestamp) or a local snapshot, validate it
    /// (integrity, schema version, epoch metadata) and only then put it in
    /// place, moving the current file aside. Stop the service first. See
    /// docs/backup.md.
    Restore(restore::RestoreArgs),
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print a fresh set of keys and tokens in .env format (nothing is written).
    Generate,
    /// Start a master-key rotation: in the .env file, the current master key
    /// becomes CONFIG_MASTER_KEY_PREVIOUS_* and a new key becomes current.
    /// Restart the service; it re-encrypts every secret in the background
    /// (watch `keys status`), then remove the previous key.
    RotateMaster,
    /// Show the key ids in use and the re-encryption progress of a running service.
    Status {
        #[command(flatten)]
        target: Target,
    },
}

/// Where `config` subcommands act.
#[derive(Debug, Args)]
pub struct Target {
    /// Base URL of the running service [default: http://127.0.0.1:$CONFIG_MANAGER_PORT].
    #[arg(
        long,
        global = true,
        env = CONFIG_MANAGER_URL.name,
        conflicts_with = "offline"
    )]
    pub url: Option<String>,
    /// API token (X-API-Token). Prefer the CONFIG_API_TOKEN variable: a
    /// token on the command line is visible to other local users.
    #[arg(
        long,
        global = true,
        env = CONFIG_API_TOKEN.name,
        hide_env_values = true,
        conflicts_with = "offline"
    )]
    pub token: Option<String>,
    /// Work on the database file (CONFIG_DB_PATH) instead of a running
    /// service, with the service's settings and keys from the environment and
    /// .env file. Refused while another process (a running service) has the
    /// database open. Changes are audited as `cli-offline`; they reach MQTT
    /// and the LKG cache when the service next starts.
    #[arg(long, global = true)]
    pub offline: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print a service's effective configuration as JSON (secrets masked),
    /// or one key's value.
    Get {
        service: String,
        /// Print only this key's value.
        key: Option<String>,
    },
    /// Change keys of one service (like PATCH): `KEY=VALUE ...`. A VALUE that
    /// parses as JSON is taken as JSON (`60`, `true`, `"60"`, `[1,2]`),
    /// anything else as a string. Optimistic locking: the version read just
    /// before (or `--expect-version`) must still be current.
    Set {
        service: String,
        /// One or more KEY=VALUE pairs.
        #[arg(required = true, value_name = "KEY=VALUE")]
        assignments: Vec<String>,
        /// Change reason recorded in history and audit.
        #[arg(long)]
        reason: Option<String>,
        /// Fail unless the service is at this version.
        #[arg(long, value_name = "VERSION")]
        expect_version: Option<Version>,
    },
    /// Write every service's configuration as one JSON document (secrets
    /// masked unless --include-secrets).
    Export {
        /// Include decrypted secret values (write role; audited). The output
        /// file is created with mode 0600.
        #[arg(long)]
        include_secrets: bool,
        /// Include the saved profiles.
        #[arg(long)]
        include_profiles: bool,
        /// Output file (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Import an export document: every service is validated, then all are
    /// written in one transaction (all or nothing) as new versions with change
    /// type `import`. Services the document does not name are left alone.
    Import {
        /// The document, or `-` for standard input.
        file: String,
        /// Refuse when any service changed since the export (the document's
        /// per-service versions must be current; same database only).
        #[arg(long)]
        expect_versions: bool,
        /// Validate and report what would change; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Change reason recorded in history.
        #[arg(long)]
        reason: Option<String>,
    },
}

/// Why a subcommand failed; the variant decides the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments, settings or keys: exit 2.
    #[error("{0}")]
    Usage(String),
    /// Refused or failed (including "does not verify"): exit 1.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Usage(_) => ExitCode::from(2),
            CliError::Failed(_) => ExitCode::FAILURE,
        }
    }
}

/// Result alias of the subcommands.
pub type CliResult<T = ()> = Result<T, CliError>;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => return crate::serve::main(cli.env_file),
        Command::Keys {
            command: KeysCommand::Generate,
        } => generate_keys(),
        Command::Keys {
            command: KeysCommand::RotateMaster,
        } => rotate_master(&cli.env_file),
        Command::Keys {
            command: KeysCommand::Status { target },
        } => key_status(&cli.env_file, target),
        Command::Config { target, command } => config::run(&cli.env_file, target, command),
        Command::ImportEnv {
            target,
            service,
            file,
            dry_run,
            reason,
        } => config::run_import_env(&cli.env_file, target, &service, &file, dry_run, reason),
        Command::VerifyLkg { file } => verify::lkg(&cli.env_file, &file),
        Command::VerifyMessage { file, public_key } => {
            verify::message(&cli.env_file, &file, public_key.as_deref())
        }
        Command::Healthcheck { url } => health::check(url, &cli.env_file),
        Command::Restore(args) => restore::run(&cli.env_file, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("config-manager: {e}");
            e.exit_code()
        }
    }
}

fn generate_keys() -> CliResult {
    let mut env = EnvSource::default();
    let generated = first_run::generate_missing(&mut env).map_err(CliError::Failed)?;
    for (k, v) in &generated.values {
        println!("{k}={}", first_run::dotenv_quote(v));
    }
    Ok(())
}

/// `keys rotate-master`: moves the current master key to the previous slot and
/// writes a new current key, in the .env file.
fn rotate_master(env_file: &std::path::Path) -> CliResult {
    let file_vars =
        EnvSource::load_file_only(env_file).map_err(|e| CliError::Usage(e.to_string()))?;
    let current = file_vars
        .get(CONFIG_MASTER_KEY_BASE64)
        .map(str::to_owned)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "{} has no CONFIG_MASTER_KEY_BASE64 (if the key comes from the environment, rotate it there)",
                env_file.display()
            ))
        })?;
    config_manager_core::crypto::secret_box::MasterKey::from_base64(&current).map_err(|e| {
        CliError::Usage(format!(
            "the current CONFIG_MASTER_KEY_BASE64 is invalid: {e}"
        ))
    })?;
    let current_id = file_vars
        .text(CONFIG_MASTER_KEY_ID)
        .unwrap_or("master-1")
        .to_owned();
    let stamp = config_manager_core::domain::now_rfc3339();
    let new_id = format!("master-{}", &stamp[..19].replace(['-', ':', 'T'], ""));
    let new_key = config_manager_core::crypto::secret_box::MasterKey::generate().to_base64();
    config_manager_service::keys::env_file::set_vars(
        env_file,
        &[
            (CONFIG_MASTER_KEY_PREVIOUS_BASE64.name, current.clone()),
            (CONFIG_MASTER_KEY_PREVIOUS_ID.name, current_id.clone()),
            (CONFIG_MASTER_KEY_BASE64.name, new_key.to_string()),
            (CONFIG_MASTER_KEY_ID.name, new_id.clone()),
        ],
    )
    .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", env_file.display())))?;
    println!(
        "master key rotated in {}: {current_id} -> {new_id}.\n\
         Restart the service; it re-encrypts every secret in the background.\n\
         Watch `config-manager keys status` until secrets_pending is 0, then remove\n\
         CONFIG_MASTER_KEY_PREVIOUS_BASE64 and CONFIG_MASTER_KEY_PREVIOUS_ID and restart.",
        env_file.display()
    );
    Ok(())
}

/// `keys status`: GET /api/config/keys/status of a running service.
fn key_status(env_file: &std::path::Path, target: Target) -> CliResult {
    let client = remote::Remote::new(env_file, target.url, target.token)?;
    let body = client.get_json("/keys/status")?;
    println!(
        "{}",
        serde_json::to_string_pretty(&body).map_err(|e| CliError::Failed(e.to_string()))?
    );
    Ok(())
}

/// The settings source of commands that read the service's `.env` file.
fn load_env(env_file: &std::path::Path) -> CliResult<EnvSource> {
    EnvSource::load(env_file).map_err(|e| CliError::Usage(e.to_string()))
}

/// `http://127.0.0.1:$CONFIG_MANAGER_PORT` (port from the environment or .env).
fn default_url(env: &EnvSource) -> String {
    let port = match env.get(CONFIG_MANAGER_PORT) {
        Some(port) => port.trim().to_owned(),
        None => CONFIG_MANAGER_PORT.default_int().to_string(),
    };
    format!("http://127.0.0.1:{port}")
}
