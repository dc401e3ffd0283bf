//! The database's identity: its epoch and the recorded versions of the service
//! schemas it was written against.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::{Result, Store, StoreError};
use crate::domain::{now_rfc3339, Epoch};

/// The epoch row of this database.
#[derive(Debug, Clone, Serialize)]
pub struct EpochInfo {
    pub config_epoch: Epoch,
    pub created_at: String,
    pub previous_epoch: Option<String>,
    pub reason: String,
}

/// One recorded state of the loaded service schemas.
#[derive(Debug, Clone, Serialize)]
pub struct SchemaVersion {
    pub version: i64,
    pub schema_hash: String,
    pub applied_at: String,
    pub detail: Option<String>,
}

/// The epoch row of an open database (`None`: never initialised). Shared
/// by the store and the read-only inspection of a file (`epoch_file`).
pub(crate) fn read_epoch_row(conn: &Connection) -> rusqlite::Result<Option<EpochInfo>> {
    conn.query_row(
        "SELECT config_epoch, created_at, previous_epoch, reason FROM epoch WHERE id = 1",
        [],
        |r| {
            Ok(EpochInfo {
                config_epoch: r.get(0)?,
                created_at: r.get(1)?,
                previous_epoch: r.get(2)?,
                reason: r.get(3)?,
            })
        },
    )
    .optional()
}

impl Store {
    /// The database's epoch, or `None` for a database that was never initialised.
    pub fn find_epoch(&self) -> Result<Option<EpochInfo>> {
        self.read(|c| Ok(read_epoch_row(c)?))
    }

    /// The epoch, failing when the database has none (it was never initialised).
    pub fn get_epoch(&self) -> Result<EpochInfo> {
        self.find_epoch()?
            .ok_or_else(|| StoreError::Corrupt("database has no epoch".into()))
    }

    /// Creates the epoch of a new database. Fails if one exists: an epoch never
    /// changes in place (a rebuild makes a new database).
    pub fn init_epoch(&self, epoch: &Epoch, previous: Option<&str>, reason: &str) -> Result<()> {
        self.write(|tx| {
            let exists: bool = tx.query_row("SELECT EXISTS(SELECT 1 FROM epoch)", [], |r| r.get(0))?;
            if exists {
                return Err(StoreError::AlreadyExists("epoch".into()));
            }
            tx.execute(
                "INSERT INTO epoch (id, config_epoch, created_at, previous_epoch, reason) VALUES (1, ?1, ?2, ?3, ?4)",
                params![epoch.as_str(), now_rfc3339(), previous, reason],
            )?;
            Ok(())
        })
    }

    /// Gives the database a new epoch, recording the current one as its
    /// previous epoch. Only for `restore --new-epoch`, on a restored copy no
    /// service uses yet: services that applied versions of the old epoch then
    /// accept the restored (possibly lower) versions instead of rejecting
    /// them as replays. Everything else in the database stays as it is.
    pub fn renew_epoch(&self, epoch: &Epoch, reason: &str) -> Result<EpochInfo> {
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE epoch SET previous_epoch = config_epoch, config_epoch = ?1, created_at = ?2, reason = ?3 WHERE id = 1",
                params![epoch.as_str(), now_rfc3339(), reason],
            )?;
            if changed != 1 {
                return Err(StoreError::Corrupt("database has no epoch".into()));
            }
            Ok(())
        })?;
        self.get_epoch()
    }

    /// The latest recorded schema version, if any.
    pub fn find_schema_version(&self) -> Result<Option<SchemaVersion>> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT version, schema_hash, applied_at, detail FROM schema_version ORDER BY version DESC LIMIT 1",
                [],
                |r| {
                    Ok(SchemaVersion {
                        version: r.get(0)?,
                        schema_hash: r.get(1)?,
                        applied_at: r.get(2)?,
                        detail: r.get(3)?,
                    })
                },
            )
            .optional()?)
        })
    }

    /// Records `hash` as a new schema version unless it is already the latest.
    /// Returns the current version.
    pub fn record_schema_hash(&self, hash: &str, detail: Option<&str>) -> Result<SchemaVersion> {
        self.write(|tx| {
            let latest: Option<(i64, String)> = tx
                .query_row(
                    "SELECT version, schema_hash FROM schema_version ORDER BY version DESC LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let version = match latest {
                Some((v, h)) if h == hash => v,
                Some((v, _)) => v + 1,
                None => 1,
            };
            tx.execute(
                "INSERT OR IGNORE INTO schema_version (version, schema_hash, applied_at, detail) VALUES (?1, ?2, ?3, ?4)",
                params![version, hash, now_rfc3339(), detail],
            )?;
            Ok(tx.query_row(
                "SELECT version, schema_hash, applied_at, detail FROM schema_version WHERE version = ?1",
                [version],
                |r| {
                    Ok(SchemaVersion {
                        version: r.get(0)?,
                        schema_hash: r.get(1)?,
                        applied_at: r.get(2)?,
                        detail: r.get(3)?,
                    })
                },
            )?)
        })
    }
}
