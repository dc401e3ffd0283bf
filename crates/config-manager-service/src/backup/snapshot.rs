//! Local snapshots: the backup for robots without S3.
//!
//! Every `BACKUP_SNAPSHOT_INTERVAL_SECS` the database is copied with `VACUUM
//! INTO` over a read-only connection. It reads one consistent snapshot (a
//! WAL reader: writers are never blocked) and writes a compact, standalone
//! file. Each copy is fsynced and checked (`PRAGMA integrity_check`, epoch
//! row) before it counts; the epoch metadata file is written next to it
//! (`<snapshot>.epoch.json`), then the copy is renamed into place, so a crash
//! never leaves a half snapshot under a final name. Only then are the
//! oldest snapshots beyond `BACKUP_SNAPSHOT_KEEP` removed; a failed snapshot
//! removes nothing.
//!
//! Names are `<db stem>-<UTC YYYYMMDDTHHMMSSmmmZ>.db`, so name order is time
//! order. After a restart the next snapshot is due one interval after the
//! newest existing one, so a service restarting in a loop does not rotate
//! good snapshots out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use config_manager_core::domain::format_rfc3339;
use config_manager_core::fs::atomic::{temp_target, AtomicWriteError, AtomicWriter};
use config_manager_core::store::{epoch_file_path, inspect_database, EpochFile, StoreError};
use rusqlite::{Connection, OpenFlags};
use thiserror::Error;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};
use tokio_util::sync::CancellationToken;

use super::config::SnapshotSettings;
use super::Reporter;

/// Why a snapshot was not taken.
#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("cannot use the snapshot directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot copy the database: {0}")]
    Copy(String),
    #[error("the copy does not check out: {0}")]
    Invalid(StoreError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A snapshot on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    pub path: PathBuf,
    pub taken_at: OffsetDateTime,
}

const STAMP: &[time::format_description::FormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second][subsecond digits:3]Z");

fn stem(db: &Path) -> String {
    db.file_stem()
        .map_or_else(|| "config".into(), |s| s.to_string_lossy().into_owned())
}

/// The snapshots of `db` in `dir`, oldest first.
pub fn list_snapshots(dir: &Path, db: &Path) -> std::io::Result<Vec<SnapshotFile>> {
    let prefix = format!("{}-", stem(db));
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stamp) = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".db"))
        else {
            continue;
        };
        if let Ok(t) = PrimitiveDateTime::parse(stamp, STAMP) {
            out.push(SnapshotFile {
                path: entry.path(),
                taken_at: t.assume_utc(),
            });
        }
    }
    out.sort_by_key(|s| s.taken_at);
    Ok(out)
}

/// Takes one snapshot (blocking) and prunes old ones; returns it.
pub fn take_snapshot(s: &SnapshotSettings) -> Result<SnapshotFile, SnapshotError> {
    let dir_err = |source| SnapshotError::Dir {
        path: s.dir.clone(),
        source,
    };
    std::fs::create_dir_all(&s.dir).map_err(dir_err)?;
    remove_leftovers(&s.dir);
    // Millisecond precision, as in the name.
    let now = OffsetDateTime::now_utc();
    let taken_at = now
        .replace_millisecond(now.millisecond())
        .map_err(|e| SnapshotError::Copy(e.to_string()))?;
    let stamp = taken_at
        .format(STAMP)
        .map_err(|e| SnapshotError::Copy(e.to_string()))?;
    let name = format!("{}-{stamp}.db", stem(&s.db_path));
    let path = s.dir.join(&name);
    let result = write_checked_copy(s, &path);
    if result.is_err() {
        let _ = std::fs::remove_file(epoch_file_path(&path));
    }
    result?;
    prune(s);
    Ok(SnapshotFile { path, taken_at })
}

fn write_checked_copy(s: &SnapshotSettings, path: &Path) -> Result<(), SnapshotError> {
    if !s.db_path.exists() {
        return Err(SnapshotError::Copy(format!(
            "{} does not exist",
            s.db_path.display()
        )));
    }
    // An empty owner-only (0600) temporary file beside the snapshot, which
    // `VACUUM INTO` accepts as its target; dropped (removed) on any failure.
    let pending = AtomicWriter::default().begin(path).map_err(write_err)?;
    let tmp = pending.temp_path().to_owned();
    let conn = Connection::open_with_flags(
        &s.db_path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| SnapshotError::Copy(e.to_string()))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| SnapshotError::Copy(e.to_string()))?;
    conn.execute("VACUUM INTO ?1", [tmp.to_string_lossy()])
        .map_err(|e| SnapshotError::Copy(e.to_string()))?;
    drop(conn);
    let identity = inspect_database(&tmp).map_err(SnapshotError::Invalid)?;
    // The metadata first: a metadata file without its snapshot is harmless,
    // a snapshot without metadata would be refused by `restore`.
    EpochFile::for_identity(&identity)
        .write_atomic(&epoch_file_path(path))
        .map_err(|e| SnapshotError::Write {
            path: epoch_file_path(path),
            source: std::io::Error::other(e.to_string()),
        })?;
    // VACUUM INTO does not promise an fsync of its output; `commit` does one
    // before the rename.
    pending.commit().map_err(write_err)
}

fn write_err(e: AtomicWriteError) -> SnapshotError {
    SnapshotError::Write {
        path: e.path.clone(),
        source: e.without_path(),
    }
}

/// Removes temp files of snapshots interrupted by a crash.
fn remove_leftovers(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // `.<name>.db.tmp` is the form before the shared atomic writer.
            let ours = temp_target(&name).is_some_and(|t| t.ends_with(".db"))
                || (name.starts_with('.') && name.ends_with(".db.tmp"));
            if ours {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Keeps the newest `keep` snapshots (and their metadata files).
fn prune(s: &SnapshotSettings) {
    let Ok(all) = list_snapshots(&s.dir, &s.db_path) else {
        return;
    };
    let excess = all.len().saturating_sub(s.keep);
    for old in &all[..excess] {
        match std::fs::remove_file(&old.path) {
            Ok(()) => {
                let _ = std::fs::remove_file(epoch_file_path(&old.path));
                tracing::debug!(path = %old.path.display(), "removed old snapshot");
            }
            Err(e) => {
                tracing::warn!(error = %e, path = %old.path.display(), "cannot remove an old snapshot")
            }
        }
    }
}

/// Takes snapshots until `shutdown`.
pub(super) async fn run(s: SnapshotSettings, reporter: Reporter, shutdown: CancellationToken) {
    let mut delay = Duration::ZERO;
    let newest = list_snapshots(&s.dir, &s.db_path)
        .ok()
        .and_then(|all| all.last().cloned());
    if let Some(newest) = newest {
        let age = OffsetDateTime::now_utc() - newest.taken_at;
        let age = Duration::try_from(age).unwrap_or(Duration::ZERO);
        if age < s.interval {
            delay = s.interval - age;
            // A valid snapshot was checked when it was written.
            reporter.snapshot_ok(format_rfc3339(newest.taken_at));
        }
    }
    tracing::info!(dir = %s.dir.display(), interval = ?s.interval, keep = s.keep, first_in = ?delay, "local snapshots enabled");
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        let settings = s.clone();
        match tokio::task::spawn_blocking(move || take_snapshot(&settings)).await {
            Ok(Ok(snap)) => {
                tracing::info!(path = %snap.path.display(), "snapshot written");
                reporter.snapshot_ok(format_rfc3339(snap.taken_at));
            }
            Ok(Err(e)) => reporter.snapshot_failed(e.to_string()),
            Err(e) => reporter.snapshot_failed(format!("snapshot task failed: {e}")),
        }
        delay = s.interval;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use config_manager_core::domain::Epoch;
    use config_manager_core::store::Store;

    #[test]
    fn snapshots_are_checked_copies_with_metadata_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("config.db");
        let store = Store::open(&db).unwrap();
        let epoch = Epoch::generate();
        store.init_epoch(&epoch, None, "created").unwrap();
        let s = SnapshotSettings {
            dir: dir.path().join("snaps"),
            interval: Duration::from_secs(3600),
            keep: 2,
            db_path: db.clone(),
        };
        let mut taken = Vec::new();
        for _ in 0..3 {
            taken.push(take_snapshot(&s).unwrap());
            std::thread::sleep(Duration::from_millis(5));
        }
        let left = list_snapshots(&s.dir, &db).unwrap();
        assert_eq!(left, taken[1..].to_vec(), "the oldest was pruned");
        assert!(!epoch_file_path(&taken[0].path).exists());
        let newest = &left[1];
        let identity = inspect_database(&newest.path).unwrap();
        assert_eq!(identity.epoch.config_epoch, epoch);
        let meta = EpochFile::read(&epoch_file_path(&newest.path)).unwrap();
        assert!(meta.discrepancies(&identity).is_empty());
    }

    #[test]
    fn a_missing_database_is_an_error_and_removes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = SnapshotSettings {
            dir: dir.path().join("snaps"),
            interval: Duration::from_secs(3600),
            keep: 1,
            db_path: dir.path().join("gone.db"),
        };
        assert!(matches!(take_snapshot(&s), Err(SnapshotError::Copy(_))));
        assert!(list_snapshots(&s.dir, &s.db_path).unwrap().is_empty());
    }
}
