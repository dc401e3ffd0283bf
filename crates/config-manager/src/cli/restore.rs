//! `config-manager restore`: the command line of [`config_manager_service::backup::restore`]
//! (arguments, exit codes, the printed summary).

use std::path::{Path, PathBuf};

use clap::Args;

use super::{CliError, CliResult};
use config_manager_service::backup::restore::{RestoreError, RestoreOptions, RestoreRecord};

/// Arguments of `config-manager restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Restore the state as of this time (RFC 3339, e.g.
    /// 2026-01-02T03:04:05Z) instead of the latest. With --snapshot: the
    /// newest snapshot taken at or before it.
    #[arg(long, value_name = "RFC3339")]
    pub timestamp: Option<String>,
    /// Write the restored database to PATH instead of replacing
    /// CONFIG_DB_PATH (which is left alone; the service may keep running).
    #[arg(long, short, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Restore a local snapshot instead of the Litestream replica: a
    /// snapshot file, or `latest` for the newest in BACKUP_SNAPSHOT_DIR.
    #[arg(long, value_name = "FILE|latest")]
    pub snapshot: Option<String>,
    /// Restore even when the epoch metadata is missing or does not match,
    /// or the backup has an older schema version. Every such risk is
    /// written to the restore record and the audit log. A backup that fails
    /// its integrity check is refused even so.
    #[arg(long)]
    pub force: bool,
    /// Give the restored database a new config epoch (the backup's is
    /// recorded as its previous epoch). Use it when the restored state is
    /// older than what services already applied (a point-in-time restore):
    /// they accept the republished, lower versions at once instead of
    /// rejecting them as replays. The backup's checks are made as without it.
    #[arg(long)]
    pub new_epoch: bool,
}

impl From<RestoreArgs> for RestoreOptions {
    fn from(a: RestoreArgs) -> Self {
        Self {
            timestamp: a.timestamp,
            output: a.output,
            snapshot: a.snapshot,
            force: a.force,
            new_epoch: a.new_epoch,
        }
    }
}

impl From<RestoreError> for CliError {
    fn from(e: RestoreError) -> Self {
        match e {
            RestoreError::Usage(m) => CliError::Usage(m),
            RestoreError::Failed(m) => CliError::Failed(m),
        }
    }
}

/// Runs `config-manager restore` and prints what it did.
pub fn run(env_file: &Path, args: RestoreArgs) -> CliResult {
    let outcome = config_manager_service::backup::restore::restore(env_file, &args.into())?;
    for warning in &outcome.warnings {
        eprintln!("config-manager: warning: {warning}");
    }
    print_summary(&outcome.record, outcome.in_place);
    Ok(())
}

fn print_summary(r: &RestoreRecord, in_place: bool) {
    println!("restored {} into {}", r.source, r.target);
    println!(
        "  epoch {} (created {}), schema version {}{}",
        r.config_epoch,
        r.epoch_created_at,
        r.schema_version,
        r.restored_txid
            .as_deref()
            .map(|t| format!(", transaction {t}"))
            .unwrap_or_default()
    );
    if let Some(old) = &r.backup_epoch {
        println!(
            "  new epoch {} (the backup's epoch {old} is recorded as the previous one)",
            r.config_epoch
        );
    }
    for m in &r.moved_aside {
        println!("  previous file moved aside: {m}");
    }
    if r.forced {
        for risk in &r.risks {
            eprintln!("config-manager: warning: restored despite: {risk}");
        }
    }
    if in_place {
        println!(
            "Start the service: it uses epoch {} and republishes every configuration.",
            r.config_epoch
        );
    }
}
