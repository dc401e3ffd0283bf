//! `config get|set|export|import`: the same four operations against a running
//! service (REST) or the database file (`--offline`). Both backends return the
//! JSON the REST API would, so the output does not depend on the mode.

use std::io::{Read, Write};
use std::path::Path;

use config_manager_core::domain::{ServiceName, Version};
use config_manager_core::fs::atomic::AtomicWriter;
use config_manager_core::manager::{ExportDocument, ImportOptions, MAX_DOTENV_BYTES};
use serde_json::{Map, Value};

use super::offline::Offline;
use super::remote::Remote;
use super::{CliError, CliResult, ConfigCommand, Target};

/// One way of reaching the configuration.
pub trait Backend {
    /// The effective configuration (`GET /services/{service}`).
    fn get(&self, service: &ServiceName) -> CliResult<Value>;
    /// A merge write; returns the write result (`PATCH /services/{service}`).
    fn set(&self, service: &ServiceName, change: SetRequest) -> CliResult<Value>;
    /// The export document (`GET /export`).
    fn export(&self, include_secrets: bool, include_profiles: bool) -> CliResult<Value>;
    /// Imports a document (`POST /import`); returns the outcome.
    fn import(&self, doc: ExportDocument, options: ImportOptions) -> CliResult<Value>;
    /// Imports a `.env` text into one service
    /// (`POST /services/{service}/import-env`); returns the outcome with the diff.
    fn import_env(&self, service: &ServiceName, request: EnvImport) -> CliResult<Value>;
}

/// A `config-manager import-env`.
pub struct EnvImport {
    pub text: String,
    pub dry_run: bool,
    pub reason: Option<String>,
}

/// Runs `config-manager import-env`: reads the file (or standard input for
/// `-`), refuses more than the server accepts, and prints the outcome.
pub fn run_import_env(
    env_file: &Path,
    target: Target,
    service: &str,
    file: &str,
    dry_run: bool,
    reason: Option<String>,
) -> CliResult {
    let bytes = read_input(file)?;
    if bytes.len() > MAX_DOTENV_BYTES {
        return Err(CliError::Failed(format!(
            "{file} is larger than {MAX_DOTENV_BYTES} bytes; a .env file is a few KiB"
        )));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| CliError::Failed(format!("{file} is not UTF-8 text")))?;
    let backend: Box<dyn Backend> = if target.offline {
        Box::new(Offline::open(env_file)?)
    } else {
        Box::new(Remote::new(env_file, target.url, target.token)?)
    };
    let out = backend.import_env(
        &service_name(service)?,
        EnvImport {
            text,
            dry_run,
            reason,
        },
    )?;
    print_json(&out)
}

/// A service name from the command line, checked once the backend is
/// reached (a refusal is exit 1 naming the rule, as the service answers it).
fn service_name(raw: &str) -> CliResult<ServiceName> {
    ServiceName::parse(raw).map_err(|e| CliError::Failed(format!("invalid service name: {e}")))
}

/// A `config set`.
pub struct SetRequest {
    pub config: Map<String, Value>,
    pub reason: Option<String>,
    pub expect_version: Option<Version>,
}

/// Runs one `config` subcommand.
pub fn run(env_file: &Path, target: Target, command: ConfigCommand) -> CliResult {
    let backend: Box<dyn Backend> = if target.offline {
        Box::new(Offline::open(env_file)?)
    } else {
        Box::new(Remote::new(env_file, target.url, target.token)?)
    };
    match command {
        ConfigCommand::Get { service, key } => {
            let config = backend.get(&service_name(&service)?)?;
            match key {
                None => print_json(&config),
                Some(key) => match config.get("config").and_then(|c| c.get(&key)) {
                    Some(v) => print_json(v),
                    None => Err(CliError::Failed(format!("{service} has no key {key}"))),
                },
            }
        }
        ConfigCommand::Set {
            service,
            assignments,
            reason,
            expect_version,
        } => {
            let config = parse_assignments(&assignments)?;
            let out = backend.set(
                &service_name(&service)?,
                SetRequest {
                    config,
                    reason,
                    expect_version,
                },
            )?;
            print_json(&out)
        }
        ConfigCommand::Export {
            include_secrets,
            include_profiles,
            output,
        } => {
            let doc = backend.export(include_secrets, include_profiles)?;
            let mut text = serde_json::to_string_pretty(&doc)
                .map_err(|e| CliError::Failed(format!("cannot format the document: {e}")))?;
            text.push('\n');
            match output {
                None => write_stdout(text.as_bytes()),
                Some(path) => write_private_file(&path, text.as_bytes(), include_secrets),
            }
        }
        ConfigCommand::Import {
            file,
            expect_versions,
            dry_run,
            reason,
        } => {
            let bytes = read_input(&file)?;
            let doc: ExportDocument = serde_json::from_slice(&bytes)
                .map_err(|e| CliError::Failed(format!("{file} is not an export document: {e}")))?;
            let out = backend.import(
                doc,
                ImportOptions {
                    expect_versions,
                    dry_run,
                    actor: String::new(),
                    reason,
                },
            )?;
            print_json(&out)
        }
    }
}

/// `KEY=VALUE` pairs; VALUE as JSON when it parses, else as a string.
fn parse_assignments(raw: &[String]) -> CliResult<Map<String, Value>> {
    let mut out = Map::new();
    for a in raw {
        let Some((key, value)) = a.split_once('=') else {
            return Err(CliError::Usage(format!(
                "expected KEY=VALUE, got '{}'",
                a.chars().take(60).collect::<String>()
            )));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(CliError::Usage("empty key in KEY=VALUE".into()));
        }
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
        out.insert(key.to_owned(), value);
    }
    Ok(out)
}

/// A file's bytes, or standard input for `-`.
pub fn read_input(file: &str) -> CliResult<Vec<u8>> {
    let mut bytes = Vec::new();
    if file == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| CliError::Failed(format!("cannot read standard input: {e}")))?;
    } else {
        bytes = std::fs::read(file)
            .map_err(|e| CliError::Failed(format!("cannot read {file}: {e}")))?;
    }
    Ok(bytes)
}

/// Pretty JSON on standard output.
pub fn print_json(value: &Value) -> CliResult {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Failed(format!("cannot format the output: {e}")))?;
    text.push('\n');
    write_stdout(text.as_bytes())
}

fn write_stdout(bytes: &[u8]) -> CliResult {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| CliError::Failed(format!("cannot write standard output: {e}")))
}

/// Writes an export file atomically (`config_manager_core::fs::atomic`);
/// with secrets it is mode 0600 from creation and an existing file is
/// refused rather than exposed.
fn write_private_file(path: &Path, bytes: &[u8], secret: bool) -> CliResult {
    let writer = AtomicWriter::default();
    let writer = if secret {
        writer.no_clobber()
    } else {
        writer.mode(EXPORT_MODE)
    };
    writer.write(path, bytes).map_err(|e| {
        let refused = secret && e.source.kind() == std::io::ErrorKind::AlreadyExists;
        CliError::Failed(format!(
            "{e}{}",
            if refused {
                " (an export with secrets never overwrites a file)"
            } else {
                ""
            }
        ))
    })
}

/// The mode of an export without secrets: that of any new file (0666 less
/// the process umask), as before the export became atomic.
const EXPORT_MODE: u32 = 0o666;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn assignments_are_json_or_strings() {
        let m = parse_assignments(&[
            "a=60".into(),
            "b=true".into(),
            "c=hello world".into(),
            "d=\"60\"".into(),
            "e=x=y".into(),
        ])
        .unwrap();
        assert_eq!(m["a"], 60);
        assert_eq!(m["b"], true);
        assert_eq!(m["c"], "hello world");
        assert_eq!(m["d"], "60");
        assert_eq!(m["e"], "x=y");
        assert!(parse_assignments(&["novalue".into()]).is_err());
    }
}
