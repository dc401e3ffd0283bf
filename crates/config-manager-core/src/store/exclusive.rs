//! "Is any other process using this database?" — asked by the offline CLI
//! before it writes and by `restore` before it replaces the file. Every
//! connection to a WAL database holds a shared lock, so an exclusive lock
//! taken without waiting fails while anyone else has the file open.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

/// Why the probe could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ExclusiveProbeError {
    /// The file could not be opened.
    #[error("{0}")]
    Open(rusqlite::Error),
    /// The lock could not be tried (not busy: another error).
    #[error("{0}")]
    Check(rusqlite::Error),
}

/// `Ok(true)` when another process holds the database open; the lock taken
/// to find out is released before returning (the connection closes).
pub fn in_use_by_another_process(db: &Path) -> Result<bool, ExclusiveProbeError> {
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(ExclusiveProbeError::Open)?;
    conn.busy_timeout(Duration::ZERO)
        .map_err(ExclusiveProbeError::Check)?;
    match conn.execute_batch("PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE; ROLLBACK;") {
        Ok(()) => Ok(false),
        Err(rusqlite::Error::SqliteFailure(f, _))
            if matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) =>
        {
            Ok(true)
        }
        Err(e) => Err(ExclusiveProbeError::Check(e)),
    }
}
