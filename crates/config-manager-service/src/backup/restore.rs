//! `config-manager restore`: bring back a backup, and let the service use it
//! only when it checks out.
//!
//! 1. The backup is restored into a staging directory beside the target (same
//!    file system, so the final step is a rename): `litestream restore`
//!    (latest, or `--timestamp`) from the `LITESTREAM_*` bucket, or a copy of
//!    a local snapshot (`--snapshot FILE|latest`).
//! 2. The staged file is validated:
//!    - full `PRAGMA integrity_check` and an `epoch` row — never overridable;
//!    - schema version (`PRAGMA user_version`) equal to this binary's latest
//!      migration — newer is never accepted, older only with `--force` (the
//!      service migrates it when it starts);
//!    - epoch metadata: the device's `<db>.epoch.json` must exist and name
//!      the same epoch (and creation) as the backup's `epoch` row, so a
//!      backup of another lineage (another robot's path, a state from before
//!      a rebuild) is not put in place by mistake; a snapshot must also carry
//!      its own metadata file, consistent with it. These refusals can be
//!      overridden with `--force`.
//! 3. With `--new-epoch` the staged copy gets a fresh epoch (the backup's is
//!    recorded as its previous one), so services accept the restored, older
//!    versions instead of rejecting them as replays.
//! 4. Only then is it moved into place. The previous database (and its
//!    `-wal`/`-shm`) is moved aside as `<db>.pre-restore-<stamp>`, never
//!    deleted; the epoch file is rewritten for the restored database; a
//!    restore record `<db>.restore-<stamp>.json` and an audit entry
//!    (`database.restore`, outcome `forced` when forced) list the source and
//!    every accepted risk.
//!
//! The service must be stopped (the command refuses while any process holds
//! the database). When it starts it uses the restored epoch, rewrites its
//! last-known-good cache, and republishes every configuration.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use config_manager_core::audit::{AuditAction, AuditOutcome};
use config_manager_core::domain::{now_rfc3339, Epoch};
use config_manager_core::fs::atomic::sync_parent_dir;
use config_manager_core::store::{
    epoch_file_path, inspect_database, DatabaseIdentity, EpochFile, EpochFileError, NewAudit,
    Store, StoreError, LATEST_MIGRATION,
};
use serde::Serialize;
use time::OffsetDateTime;

use super::config::{render_config, write_private, BackupSettings};
use super::control::{json_object, last_line};
use super::snapshot::list_snapshots;
use crate::settings::EnvSource;

/// Audit identity of restores.
pub const RESTORE_ACTOR: &str = "cli-restore";

/// Longest a `litestream restore` may run.
const RESTORE_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// What to restore and which risks to accept (the `restore` command's
/// options, without the command line: `cli/restore.rs` fills it).
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Restore the state as of this RFC 3339 time instead of the latest
    /// (with `snapshot`: the newest snapshot taken at or before it).
    pub timestamp: Option<String>,
    /// Write the restored database here instead of replacing `CONFIG_DB_PATH`.
    pub output: Option<PathBuf>,
    /// A local snapshot file, or `latest`, instead of the Litestream replica.
    pub snapshot: Option<String>,
    /// Restore despite failed epoch/schema-version checks (recorded as risks).
    pub force: bool,
    /// Give the restored database a new config epoch.
    pub new_epoch: bool,
}

/// Why a restore did not happen; the variant tells a caller's mistake from a
/// refusal or failure (the CLI turns them into exit codes 2 and 1).
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Bad options or settings.
    #[error("{0}")]
    Usage(String),
    /// Refused (a check failed) or failed (I/O, litestream).
    #[error("{0}")]
    Failed(String),
}

/// Result alias of the restore steps.
pub type RestoreResult<T = ()> = Result<T, RestoreError>;

/// What [`restore`] did.
#[derive(Debug)]
pub struct RestoreOutcome {
    pub record: RestoreRecord,
    /// Whether `CONFIG_DB_PATH` itself was replaced (not `output`).
    pub in_place: bool,
    /// One warning per deprecated variable name the settings used.
    pub warnings: Vec<String>,
}

/// What a restore did; written next to the database and into the audit log.
#[derive(Debug, Serialize)]
pub struct RestoreRecord {
    pub restored_at: String,
    /// `litestream s3://bucket/path` or `snapshot <file>`.
    pub source: String,
    pub requested_timestamp: Option<String>,
    /// Litestream's transaction id of the restored state, when known.
    pub restored_txid: Option<String>,
    pub target: String,
    pub config_epoch: String,
    pub epoch_created_at: String,
    /// With `--new-epoch`: the backup's own epoch, now the previous one.
    pub backup_epoch: Option<String>,
    pub schema_version: i64,
    /// The device's epoch metadata before the restore, if it had one.
    pub device_epoch_file: Option<EpochFile>,
    pub forced: bool,
    /// Every check that failed and was overridden with `--force`.
    pub risks: Vec<String>,
    /// Where the replaced database files were moved.
    pub moved_aside: Vec<String>,
}

/// Restores a backup as `args` says, with the settings of `env_file` (see
/// the module documentation for the steps).
pub fn restore(env_file: &Path, args: &RestoreOptions) -> RestoreResult<RestoreOutcome> {
    let env = EnvSource::load(env_file).map_err(|e| RestoreError::Usage(e.to_string()))?;
    let db_path = crate::settings::db_path_from(&env);
    let backup =
        BackupSettings::from_env(&env, &db_path).map_err(|e| RestoreError::Usage(e.to_string()))?;
    let timestamp = match &args.timestamp {
        None => None,
        Some(t) => Some(
            config_manager_core::domain::parse_rfc3339(t.trim()).map_err(|e| {
                RestoreError::Usage(format!(
                    "--timestamp: '{t}' is not an RFC 3339 time (e.g. 2026-01-02T03:04:05Z): {e}"
                ))
            })?,
        ),
    };
    let in_place = args.output.as_ref().is_none_or(|o| o == &db_path);
    let target = args.output.clone().unwrap_or_else(|| db_path.clone());
    if in_place {
        ensure_not_in_use(&db_path)?;
    } else if target.exists() {
        return Err(RestoreError::Usage(format!(
            "--output {} exists; choose a new path",
            target.display()
        )));
    }
    let stamp = now_rfc3339().replace([':', '.'], "");
    let target_dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let staging = target_dir.join(format!(".restore-{stamp}"));
    std::fs::create_dir_all(&staging)
        .map_err(|e| RestoreError::Failed(format!("cannot create {}: {e}", staging.display())))?;
    let result = restore_via(
        &staging, &db_path, &target, &backup, args, timestamp, &stamp, in_place,
    );
    // Only the staging directory is removed: everything in it is ours.
    let _ = std::fs::remove_dir_all(&staging);
    let record = result?;
    Ok(RestoreOutcome {
        record,
        in_place,
        warnings: env.deprecations(),
    })
}

#[allow(clippy::too_many_arguments)]
fn restore_via(
    staging: &Path,
    db_path: &Path,
    target: &Path,
    backup: &BackupSettings,
    args: &RestoreOptions,
    timestamp: Option<OffsetDateTime>,
    stamp: &str,
    in_place: bool,
) -> RestoreResult<RestoreRecord> {
    let staged = staging.join(
        target
            .file_name()
            .unwrap_or_else(|| std::ffi::OsStr::new("config.db")),
    );
    let mut risks = Vec::new();
    let (source, txid, snapshot) = match &args.snapshot {
        Some(which) => {
            let file = pick_snapshot(which, backup, db_path, timestamp)?;
            copy_snapshot(&file, &staged)?;
            (format!("snapshot {}", file.display()), None, Some(file))
        }
        None => {
            let txid = litestream_restore(staging, &staged, backup, args.timestamp.as_deref())?;
            let replica = backup.litestream.replica.as_ref().map(|r| r.describe());
            (
                format!("litestream {}", replica.unwrap_or_default()),
                txid,
                None,
            )
        }
    };
    let identity = validate(&staged, &mut risks)?;
    if let Some(file) = &snapshot {
        check_backup_metadata(file, &identity, &mut risks);
    }
    let device = check_device_metadata(db_path, &identity, &mut risks);
    if !risks.is_empty() && !args.force {
        return Err(RestoreError::Failed(format!(
            "refusing to restore {source}:\n  - {}\nNothing was changed. Use --force to restore anyway; the risks are recorded \
             in the restore record and the audit log.",
            risks.join("\n  - ")
        )));
    }
    let (identity, backup_epoch) = if args.new_epoch {
        (
            renew_epoch(&staged)?,
            Some(identity.epoch.config_epoch.to_string()),
        )
    } else {
        (identity, None)
    };
    let moved_aside = if in_place {
        move_aside(db_path, stamp)?
    } else {
        Vec::new()
    };
    put_in_place(&staged, target)?;
    let record = RestoreRecord {
        restored_at: now_rfc3339(),
        source,
        requested_timestamp: args.timestamp.clone(),
        restored_txid: txid,
        target: target.display().to_string(),
        config_epoch: identity.epoch.config_epoch.to_string(),
        epoch_created_at: identity.epoch.created_at.clone(),
        backup_epoch,
        schema_version: identity.schema_version,
        device_epoch_file: device,
        forced: !risks.is_empty(),
        risks,
        moved_aside,
    };
    finish(target, &record, stamp)?;
    Ok(record)
}

/// Refuses while another process (a running service, a Litestream sidecar)
/// has the database open: every connection to a WAL database holds a shared
/// lock, so an exclusive lock taken without waiting fails.
fn ensure_not_in_use(db: &Path) -> RestoreResult {
    if !db.exists() {
        return Ok(());
    }
    match config_manager_core::store::in_use_by_another_process(db) {
        Ok(true) => Err(RestoreError::Failed(format!(
                "{} is in use by another process (a running config-manager or Litestream); stop it first",
                db.display()
        ))),
        // A file that is not a database (that is why one restores) is not in use.
        _ => Ok(()),
    }
}

fn pick_snapshot(
    which: &str,
    backup: &BackupSettings,
    db_path: &Path,
    timestamp: Option<OffsetDateTime>,
) -> RestoreResult<PathBuf> {
    if which != "latest" {
        if timestamp.is_some() {
            return Err(RestoreError::Usage(
                "--timestamp picks among snapshots: use it with --snapshot latest".into(),
            ));
        }
        let path = PathBuf::from(which);
        if !path.exists() {
            return Err(RestoreError::Usage(format!(
                "--snapshot {which}: no such file"
            )));
        }
        return Ok(path);
    }
    let Some(s) = &backup.snapshots else {
        return Err(RestoreError::Usage(
            "--snapshot latest needs BACKUP_SNAPSHOT_DIR (or give the snapshot file)".into(),
        ));
    };
    let all = list_snapshots(&s.dir, db_path)
        .map_err(|e| RestoreError::Failed(format!("cannot list {}: {e}", s.dir.display())))?;
    all.into_iter()
        .rev()
        .find(|snap| timestamp.is_none_or(|t| snap.taken_at <= t))
        .map(|snap| snap.path)
        .ok_or_else(|| {
            RestoreError::Failed(format!(
                "no snapshot in {}{}",
                s.dir.display(),
                if timestamp.is_some() {
                    " taken at or before --timestamp"
                } else {
                    ""
                }
            ))
        })
}

fn copy_snapshot(file: &Path, staged: &Path) -> RestoreResult {
    let copy = || -> std::io::Result<()> {
        std::fs::copy(file, staged)?;
        std::fs::File::open(staged)?.sync_all()
    };
    copy().map_err(|e| RestoreError::Failed(format!("cannot copy {}: {e}", file.display())))
}

/// A snapshot carries its own metadata file; it must be there and agree.
fn check_backup_metadata(file: &Path, identity: &DatabaseIdentity, risks: &mut Vec<String>) {
    let meta_path = epoch_file_path(file);
    match EpochFile::read(&meta_path) {
        Ok(meta) => {
            for d in meta.discrepancies(identity) {
                risks.push(format!(
                    "the snapshot's epoch metadata {} disagrees with it: {d}",
                    meta_path.display()
                ));
            }
        }
        Err(EpochFileError::Missing(p)) => risks.push(format!(
            "the snapshot has no epoch metadata file ({} is missing)",
            p.display()
        )),
        Err(e) => risks.push(format!("the snapshot's epoch metadata is unusable: {e}")),
    }
}

/// Runs `litestream restore` into `staged`; returns the restored txid.
fn litestream_restore(
    staging: &Path,
    staged: &Path,
    backup: &BackupSettings,
    timestamp: Option<&str>,
) -> RestoreResult<Option<String>> {
    let ls = &backup.litestream;
    let Some(replica) = &ls.replica else {
        return Err(RestoreError::Usage(
            "LITESTREAM_BUCKET is not set: there is no replica to restore from (or use --snapshot)"
                .into(),
        ));
    };
    let config = staging.join("litestream.yml");
    write_private(&config, &render_config(&ls.db_path, replica, None, None))
        .map_err(|e| RestoreError::Failed(format!("cannot write {}: {e}", config.display())))?;
    let out_path = staging.join("litestream.out");
    let out = std::fs::File::create(&out_path)
        .and_then(|f| Ok((f.try_clone()?, f)))
        .map_err(|e| RestoreError::Failed(format!("cannot create {}: {e}", out_path.display())))?;
    let mut cmd = std::process::Command::new(&ls.bin);
    cmd.args(["restore", "-no-expand-env", "-json", "-config"])
        .arg(&config)
        .arg("-o")
        .arg(staged);
    if let Some(t) = timestamp {
        cmd.args(["-timestamp", t.trim()]);
    }
    cmd.arg(&ls.db_path)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.0))
        .stderr(Stdio::from(out.1))
        // Litestream 0.5 cannot load any S3 configuration with it set.
        .env_remove("AWS_CA_BUNDLE");
    for (k, v) in replica.child_env() {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().map_err(|e| {
        RestoreError::Failed(format!(
            "cannot run {} ({e}); install Litestream 0.5 or set LITESTREAM_BIN",
            ls.bin.display()
        ))
    })?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > RESTORE_DEADLINE => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RestoreError::Failed(format!(
                    "litestream restore did not finish within {} minutes",
                    RESTORE_DEADLINE.as_secs() / 60
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                return Err(RestoreError::Failed(format!(
                    "cannot wait for litestream: {e}"
                )))
            }
        }
    };
    let output = std::fs::read(&out_path).unwrap_or_default();
    if !status.success() {
        let why = last_line(&output, b"");
        let hint = if why.contains("no matching backup") {
            match timestamp {
                Some(t) => format!(" (nothing in {} at or before {t})", replica.describe()),
                None => format!(" (nothing in {})", replica.describe()),
            }
        } else {
            String::new()
        };
        return Err(RestoreError::Failed(format!(
            "litestream restore failed: {why}{hint}"
        )));
    }
    Ok(restored_txid(&output))
}

/// The `txid` of `restore -json`'s summary.
fn restored_txid(output: &[u8]) -> Option<String> {
    let v: serde_json::Value = json_object(output)?;
    v.get("txid")?.as_str().map(str::to_owned)
}

fn refused_invalid(e: &StoreError) -> RestoreError {
    RestoreError::Failed(format!(
        "refusing to restore: the backup is not a usable config-manager database ({e}). Nothing was changed."
    ))
}

/// Integrity, epoch row and schema version of the staged file.
fn validate(staged: &Path, risks: &mut Vec<String>) -> RestoreResult<DatabaseIdentity> {
    let identity = inspect_database(staged).map_err(|e| refused_invalid(&e))?;
    match identity.schema_version.cmp(&LATEST_MIGRATION) {
        std::cmp::Ordering::Equal => {}
        std::cmp::Ordering::Greater => {
            return Err(RestoreError::Failed(format!(
                "refusing to restore: the backup has schema version {}, newer than this binary's {LATEST_MIGRATION}; \
                 restore with a newer config-manager. Nothing was changed.",
                identity.schema_version
            )))
        }
        std::cmp::Ordering::Less => risks.push(format!(
            "the backup has schema version {}, older than this binary's {LATEST_MIGRATION} (the service would migrate it)",
            identity.schema_version
        )),
    }
    Ok(identity)
}

/// `--new-epoch`: a fresh epoch for the staged copy (which no service uses
/// yet); returns its new identity.
fn renew_epoch(staged: &Path) -> RestoreResult<DatabaseIdentity> {
    let fail = |e: &dyn std::fmt::Display| {
        RestoreError::Failed(format!(
            "cannot give the restored database a new epoch: {e}. Nothing was changed."
        ))
    };
    let store = Store::open(staged).map_err(|e| fail(&e))?;
    store
        .renew_epoch(&Epoch::generate(), "restore --new-epoch")
        .map_err(|e| fail(&e))?;
    let identity = store.identity().map_err(|e| fail(&e))?;
    store.checkpoint().map_err(|e| fail(&e))?;
    Ok(identity)
}

/// Compares the backup with the device's epoch metadata; returns the
/// device's file (for the record).
fn check_device_metadata(
    db_path: &Path,
    identity: &DatabaseIdentity,
    risks: &mut Vec<String>,
) -> Option<EpochFile> {
    let path = epoch_file_path(db_path);
    let restored = &identity.epoch.config_epoch;
    match EpochFile::read(&path) {
        Ok(device) => {
            if &device.config_epoch != restored {
                let why = match &device.last_rebuild {
                    Some(r) if r.previous_epoch == restored.as_str() => format!(
                        "; the device was rebuilt after this backup ({} at {}), restoring goes back to the epoch before it",
                        r.reason, r.at
                    ),
                    _ => "; the backup belongs to another database (another device or bucket path?)".into(),
                };
                risks.push(format!(
                    "epoch mismatch: the backup is epoch {restored}, the device's epoch metadata {} says {}{why}",
                    path.display(),
                    device.config_epoch
                ));
            } else {
                for d in device.discrepancies(identity) {
                    if d.field != "config_epoch" && d.field != "schema_version" {
                        risks.push(format!(
                            "epoch metadata {} disagrees with the backup: {d}",
                            path.display()
                        ));
                    }
                }
            }
            Some(device)
        }
        Err(EpochFileError::Missing(p)) => {
            risks.push(format!(
                "no epoch metadata at {}: cannot confirm that the backup (epoch {restored}) belongs to this device's database",
                p.display()
            ));
            None
        }
        Err(e) => {
            risks.push(format!("the device's epoch metadata is unusable: {e}"));
            None
        }
    }
}

/// Renames the database and its `-wal`/`-shm` aside; returns the new names.
fn move_aside(db: &Path, stamp: &str) -> RestoreResult<Vec<String>> {
    let mut moved = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", db.display()));
        if from.exists() {
            let to = PathBuf::from(format!("{}.pre-restore-{stamp}{suffix}", db.display()));
            std::fs::rename(&from, &to).map_err(|e| {
                RestoreError::Failed(format!("cannot move {} aside: {e}", from.display()))
            })?;
            moved.push(to.display().to_string());
        }
    }
    Ok(moved)
}

/// Renames the staged file (and a `-wal` it may have) to `target`.
fn put_in_place(staged: &Path, target: &Path) -> RestoreResult {
    for suffix in ["-wal", "-shm", ""] {
        let from = PathBuf::from(format!("{}{suffix}", staged.display()));
        if from.exists() {
            let to = PathBuf::from(format!("{}{suffix}", target.display()));
            std::fs::rename(&from, &to).map_err(|e| {
                RestoreError::Failed(format!(
                    "cannot move the restored database to {}: {e}",
                    to.display()
                ))
            })?;
        }
    }
    sync_parent_dir(target)
        .map_err(|e| RestoreError::Failed(format!("cannot sync {}: {e}", target.display())))
}

/// Epoch file, audit entry and restore record for the restored database.
fn finish(target: &Path, record: &RestoreRecord, stamp: &str) -> RestoreResult {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        RestoreError::Failed(format!(
            "the database was restored to {}, but {what} failed: {e}",
            target.display()
        ))
    };
    let store = Store::open(target).map_err(|e| fail("opening it", &e))?;
    store
        .record_audit(&NewAudit {
            actor: RESTORE_ACTOR.into(),
            action: AuditAction::DatabaseRestore,
            target: Some(record.config_epoch.clone()),
            outcome: if record.forced {
                AuditOutcome::Forced
            } else {
                AuditOutcome::Ok
            },
            detail: serde_json::to_value(record).ok(),
        })
        .map_err(|e| fail("the audit entry", &e))?;
    store
        .write_epoch_file()
        .map_err(|e| fail("writing the epoch metadata", &e))?;
    drop(store);
    let path = PathBuf::from(format!("{}.restore-{stamp}.json", target.display()));
    let bytes = serde_json::to_vec_pretty(record).map_err(|e| fail("the restore record", &e))?;
    std::fs::write(&path, bytes)
        .and_then(|()| std::fs::File::open(&path)?.sync_all())
        .map_err(|e| fail("writing the restore record", &e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn restored_txid_is_read_from_the_json_summary() {
        let out = b"{\n  \"db_path\": \"/x\",\n  \"txid\": \"000000000000000a\",\n  \"duration_ms\": 3\n}\n";
        assert_eq!(restored_txid(out).as_deref(), Some("000000000000000a"));
        assert_eq!(restored_txid(b"no json"), None);
    }
}
