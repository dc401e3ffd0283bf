//! Store errors that keep their meaning, so the mode monitor and every failing
//! call can map a database fault straight to a database status.

use thiserror::Error;

use crate::domain::{Version, VersionError};

/// Everything that can go wrong in the store. A fault is never turned into
/// "not found".
#[derive(Debug, Error)]
pub enum StoreError {
    /// The requested row does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// Optimistic locking: the caller's expected version is not the current one.
    #[error("version conflict: current version is {current}")]
    Conflict { current: Version },
    /// A unique row already exists.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// Another process holds a lock longer than the busy timeout.
    #[error("database is locked")]
    Locked,
    /// The file is not a database or fails its integrity check.
    #[error("database is corrupted: {0}")]
    Corrupt(String),
    /// The database file is gone (or was replaced by another file).
    #[error("database file is missing: {0}")]
    Missing(String),
    /// The file is there but cannot be opened or read right now: permissions,
    /// descriptor exhaustion (EMFILE/ENFILE), an I/O error. Says nothing about
    /// the file's contents, so it must never lead to a rebuild.
    #[error("database file cannot be opened: {0}")]
    Unavailable(String),
    /// The database was written by a newer or unknown version of the schema.
    #[error("database schema mismatch: {0}")]
    SchemaMismatch(String),
    /// The disk (or the file-size limit) is full; the write was rolled back.
    #[error("disk is full")]
    DiskFull,
    /// Any other SQLite or I/O fault.
    #[error("database error: {0}")]
    Other(String),
    /// A write would need a version after the largest there can be. Nothing
    /// was written; the database itself is fine (not a fault).
    #[error("{0}")]
    Version(#[from] VersionError),
}

impl StoreError {
    /// True for faults that mean the database itself is unhealthy (as opposed to
    /// a caller error such as a conflict), i.e. the ones that switch to fallback.
    pub fn is_fault(&self) -> bool {
        matches!(
            self,
            StoreError::Locked
                | StoreError::Corrupt(_)
                | StoreError::Missing(_)
                | StoreError::Unavailable(_)
                | StoreError::SchemaMismatch(_)
                | StoreError::DiskFull
                | StoreError::Other(_)
        )
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        match &e {
            rusqlite::Error::SqliteFailure(f, msg) => match f.code {
                C::DatabaseBusy | C::DatabaseLocked => StoreError::Locked,
                C::DatabaseCorrupt | C::NotADatabase => {
                    StoreError::Corrupt(msg.clone().unwrap_or_else(|| f.to_string()))
                }
                C::DiskFull => StoreError::DiskFull,
                // Without the path the cause is unknown (a missing file, a
                // permission, no descriptor left): the store's open functions
                // look at the path and say `Missing` only when it is gone.
                C::CannotOpen => StoreError::Unavailable(f.to_string()),
                C::ReadOnly | C::SystemIoFailure | C::PermissionDenied => {
                    // A deleted or replaced file surfaces as an I/O error on write.
                    StoreError::Other(e.to_string())
                }
                _ => StoreError::Other(e.to_string()),
            },
            rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound("row".into()),
            _ => StoreError::Other(e.to_string()),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(format!("stored JSON does not parse: {e}"))
    }
}

/// Result alias of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
