//! The epoch metadata file beside the database, `<db>.epoch.json`, and the
//! identity check of a database file (used when restoring a backup).
//!
//! **Why a file when the `epoch` table already holds the epoch.** The table
//! travels with the database, so it is what every backup carries (Litestream
//! replicates only the database file). The file stays on the device: it is
//! the device's own record of which database lineage it runs (epoch, schema
//! version, creation, last rebuild). A restore compares the two: a backup
//! whose `epoch` row does not match the file belongs to another lineage
//! (another robot's bucket path, or a state from before a rebuild that
//! services have already moved past) and is refused unless forced. Local
//! snapshots copy the file next to each snapshot, so there the metadata is
//! backed up as a file as well.
//!
//! Everything in the file is derived from the database (`epoch` row and
//! `PRAGMA user_version`); it is rewritten at every start, after a rebuild and
//! after a restore, atomically (temp file, fsync, rename, fsync of the
//! directory) so a crash never leaves half a file.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{EpochInfo, Store, StoreError};
use crate::domain::{now_rfc3339, Epoch};

/// Value of the `format` field.
pub const EPOCH_FILE_FORMAT: &str = "config-manager-epoch";
/// Value of the `format_version` field this binary writes and reads.
pub const EPOCH_FILE_VERSION: u32 = 1;

/// The contents of `<db>.epoch.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochFile {
    /// Always [`EPOCH_FILE_FORMAT`].
    pub format: String,
    /// Always [`EPOCH_FILE_VERSION`].
    pub format_version: u32,
    pub config_epoch: Epoch,
    /// The database's schema version (`PRAGMA user_version`, the migration
    /// number), not the version of the service schemas.
    pub schema_version: i64,
    /// When this epoch (database) was created.
    pub created_at: String,
    /// Set when this database was created by a rebuild.
    pub last_rebuild: Option<LastRebuild>,
    /// When the file was written.
    pub written_at: String,
}

/// The rebuild that created the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LastRebuild {
    pub at: String,
    pub previous_epoch: String,
    pub reason: String,
}

/// What a database file says about itself: its epoch row and schema version,
/// read after a full integrity check.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseIdentity {
    pub epoch: EpochInfo,
    pub schema_version: i64,
}

/// Why the epoch file could not be read or written.
#[derive(Debug, Error)]
pub enum EpochFileError {
    /// There is no file.
    #[error("no epoch metadata file at {0}")]
    Missing(PathBuf),
    /// The file exists but cannot be read.
    #[error("cannot read the epoch metadata file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not an epoch metadata file this binary understands.
    #[error("the epoch metadata file {path} is invalid: {reason}")]
    Invalid { path: PathBuf, reason: String },
    /// Writing failed (the previous file, if any, is unchanged).
    #[error("cannot write the epoch metadata file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The database could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One field where the file and the database disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EpochDiscrepancy {
    pub field: &'static str,
    pub file: String,
    pub database: String,
}

impl std::fmt::Display for EpochDiscrepancy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: file says {}, database says {}",
            self.field, self.file, self.database
        )
    }
}

/// `<db>.epoch.json`.
pub fn epoch_file_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".epoch.json");
    PathBuf::from(name)
}

impl EpochFile {
    /// The file describing `identity`, stamped now.
    pub fn for_identity(identity: &DatabaseIdentity) -> Self {
        let e = &identity.epoch;
        Self {
            format: EPOCH_FILE_FORMAT.to_owned(),
            format_version: EPOCH_FILE_VERSION,
            config_epoch: e.config_epoch.clone(),
            schema_version: identity.schema_version,
            created_at: e.created_at.clone(),
            last_rebuild: e.previous_epoch.as_ref().map(|previous| LastRebuild {
                at: e.created_at.clone(),
                previous_epoch: previous.clone(),
                reason: e.reason.clone(),
            }),
            written_at: now_rfc3339(),
        }
    }

    /// Reads and parses a file; a missing file is [`EpochFileError::Missing`].
    pub fn read(path: &Path) -> Result<Self, EpochFileError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(EpochFileError::Missing(path.to_owned()))
            }
            Err(source) => {
                return Err(EpochFileError::Unreadable {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let invalid = |reason: String| EpochFileError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let file: Self = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        if file.format != EPOCH_FILE_FORMAT {
            return Err(invalid(format!("format is '{}'", file.format)));
        }
        if file.format_version != EPOCH_FILE_VERSION {
            return Err(invalid(format!(
                "format_version {} is not {EPOCH_FILE_VERSION}",
                file.format_version
            )));
        }
        Ok(file)
    }

    /// Writes the file atomically: temp file, fsync, rename, fsync of the
    /// directory.
    pub fn write_atomic(&self, path: &Path) -> Result<(), EpochFileError> {
        let fail = |source: std::io::Error| EpochFileError::Write {
            path: path.to_owned(),
            source,
        };
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|e| fail(e.into()))?;
        bytes.push(b'\n');
        crate::fs::atomic::write_atomic(path, &bytes).map_err(|e| fail(e.without_path()))
    }

    /// Every field where this file disagrees with `identity` (empty when
    /// consistent). `written_at` is not compared.
    pub fn discrepancies(&self, identity: &DatabaseIdentity) -> Vec<EpochDiscrepancy> {
        let expected = Self::for_identity(identity);
        let mut out = Vec::new();
        let mut cmp = |field: &'static str, file: String, database: String| {
            if file != database {
                out.push(EpochDiscrepancy {
                    field,
                    file,
                    database,
                });
            }
        };
        cmp(
            "config_epoch",
            self.config_epoch.to_string(),
            expected.config_epoch.to_string(),
        );
        cmp(
            "schema_version",
            self.schema_version.to_string(),
            expected.schema_version.to_string(),
        );
        cmp("created_at", self.created_at.clone(), expected.created_at);
        let rebuild = |r: &Option<LastRebuild>| {
            r.as_ref().map_or_else(
                || "none".to_owned(),
                |r| format!("{} from epoch {}", r.at, r.previous_epoch),
            )
        };
        cmp(
            "last_rebuild",
            rebuild(&self.last_rebuild),
            rebuild(&expected.last_rebuild),
        );
        out
    }
}

impl Store {
    /// This database's identity (epoch row and schema version).
    pub fn identity(&self) -> Result<DatabaseIdentity, StoreError> {
        let epoch = self.get_epoch()?;
        let schema_version =
            self.read(|c| Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?))?;
        Ok(DatabaseIdentity {
            epoch,
            schema_version,
        })
    }

    /// Writes `<db>.epoch.json` from the database (at start-up, after a
    /// rebuild or a restore). Returns what was written.
    pub fn write_epoch_file(&self) -> Result<EpochFile, EpochFileError> {
        let file = EpochFile::for_identity(&self.identity()?);
        file.write_atomic(&epoch_file_path(self.path()))?;
        Ok(file)
    }
}

/// Opens a database file that is not in use by a store (a restored backup, a
/// snapshot), runs the full `PRAGMA integrity_check` and reads its identity.
/// Nothing is written to the file.
///
/// Errors: [`StoreError::Missing`] (no file), [`StoreError::Corrupt`] (not a
/// database, integrity check failed, no epoch row).
pub fn inspect_database(path: &Path) -> Result<DatabaseIdentity, StoreError> {
    if !path.exists() {
        return Err(StoreError::Missing(path.display().to_string()));
    }
    // Read-write without CREATE: a read-only connection cannot create the
    // `-shm` file a WAL-mode file (as Litestream restores it) needs.
    // `query_only` keeps the inspection from writing.
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.execute_batch("PRAGMA query_only=ON;")?;
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    let problems: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    if problems.first().map(String::as_str) != Some("ok") {
        return Err(StoreError::Corrupt(problems.join("; ")));
    }
    let schema_version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let has_epoch_table: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'epoch')",
        [],
        |r| r.get(0),
    )?;
    if !has_epoch_table {
        return Err(StoreError::Corrupt(
            "not a config-manager database (no epoch table)".into(),
        ));
    }
    let epoch = super::meta::read_epoch_row(&conn)?
        .ok_or_else(|| StoreError::Corrupt("database has no epoch".into()))?;
    Ok(DatabaseIdentity {
        epoch,
        schema_version,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn store_with_epoch(dir: &Path) -> Store {
        let store = Store::open(&dir.join("config.db")).unwrap();
        store
            .init_epoch(&Epoch::generate(), None, "created")
            .unwrap();
        store
    }

    #[test]
    fn written_file_matches_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_epoch(dir.path());
        let written = store.write_epoch_file().unwrap();
        let path = epoch_file_path(store.path());
        assert!(path.ends_with("config.db.epoch.json"));
        let read = EpochFile::read(&path).unwrap();
        assert_eq!(read, written);
        assert_eq!(read.schema_version, super::super::LATEST_MIGRATION);
        assert!(read.last_rebuild.is_none());
        let identity = inspect_database(store.path()).unwrap();
        let live = store.identity().unwrap();
        assert_eq!(identity.epoch.config_epoch, live.epoch.config_epoch);
        assert_eq!(identity.schema_version, live.schema_version);
        assert!(read.discrepancies(&identity).is_empty());
    }

    #[test]
    fn another_epoch_is_a_discrepancy() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_epoch(dir.path());
        let mut file = store.write_epoch_file().unwrap();
        file.config_epoch = Epoch::generate();
        let found = file.discrepancies(&store.identity().unwrap());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].field, "config_epoch");
    }

    #[test]
    fn rebuilt_database_records_the_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("config.db")).unwrap();
        store
            .init_epoch(&Epoch::generate(), Some("old-epoch"), "rebuild: corrupted")
            .unwrap();
        let file = store.write_epoch_file().unwrap();
        let rebuild = file.last_rebuild.expect("rebuild recorded");
        assert_eq!(rebuild.previous_epoch, "old-epoch");
        assert_eq!(rebuild.reason, "rebuild: corrupted");
    }

    #[test]
    fn missing_and_invalid_files_are_typed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.epoch.json");
        assert!(matches!(
            EpochFile::read(&path),
            Err(EpochFileError::Missing(_))
        ));
        std::fs::write(&path, b"{\"format\":\"other\"}").unwrap();
        assert!(matches!(
            EpochFile::read(&path),
            Err(EpochFileError::Invalid { .. })
        ));
    }

    #[test]
    fn garbage_is_not_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("garbage.db");
        std::fs::write(&path, vec![7u8; 8192]).unwrap();
        assert!(matches!(
            inspect_database(&path),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            inspect_database(&dir.path().join("none.db")),
            Err(StoreError::Missing(_))
        ));
    }
}
