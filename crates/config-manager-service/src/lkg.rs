//! Writing and loading the last-known-good cache (LKG format 2: a sealed
//! snapshot plus a journal of per-service records; see the core `lkg`
//! module docs and docs/resilience.md).
//!
//! After every committed change, before it is acknowledged, the changed
//! services' entries are appended to the journal and fsynced
//! ([`LkgFile::update`], O(changed services)). A new snapshot is written from
//! the whole database ([`LkgFile::refresh`]) at start-up (which also repairs
//! a crash between a commit and its append), when the journal has grown past
//! [`journal_bound`] records (amortised O(1) per write), after an HMAC-key
//! change, a new epoch, a failed append, or when the monitor finds the cache
//! invalid. A mutex orders the writes, and each reads the current database
//! state under it, so a slower writer never journals an older state after a
//! newer one.

use std::path::PathBuf;
use std::sync::Mutex;

use config_manager_core::crypto::mac::MacKeyRing;
use config_manager_core::domain::ServiceName;
use config_manager_core::lkg::{AppendError, LkgAppender, LkgCache, LkgError};
use config_manager_core::manager::{Manager, ManagerError};

/// Fewest journal records kept before a new snapshot is written.
pub const MIN_JOURNAL_RECORDS: u64 = 256;

/// Journal records allowed before the next write compacts: at least
/// [`MIN_JOURNAL_RECORDS`], and at least one per service, so the O(services)
/// snapshot is written at most once per that many writes.
pub fn journal_bound(services: usize) -> u64 {
    MIN_JOURNAL_RECORDS.max(services as u64)
}

/// Why the cache could not be refreshed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Read(#[from] ManagerError),
    #[error(transparent)]
    Write(#[from] LkgError),
}

/// How an update reached the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Records appended to the journal.
    Appended,
    /// A new snapshot from the whole database.
    Snapshot,
}

/// Writes and reads the LKG file.
pub struct LkgFile {
    path: PathBuf,
    keys: MacKeyRing,
    /// The journal writer of the current snapshot; `None` until a snapshot
    /// was written by this process (or after a failed write), so the next
    /// update writes one.
    writer: Mutex<Option<LkgAppender>>,
}

impl LkgFile {
    pub fn new(path: PathBuf, keys: MacKeyRing) -> Self {
        Self {
            path,
            keys,
            writer: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Writes a new snapshot from the whole database and drops the journal
    /// (blocking: call off the executor).
    pub fn refresh(&self, manager: &Manager) -> Result<(), RefreshError> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.snapshot(manager, &mut writer)
    }

    /// After a commit that changed `services`: journals their current
    /// entries, or writes a new snapshot when the journal cannot take them
    /// (blocking). Returns which it did.
    pub fn update(
        &self,
        manager: &Manager,
        services: &[ServiceName],
    ) -> Result<Written, RefreshError> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let continues = writer.as_ref().is_some_and(|w| {
            w.epoch() == manager.epoch()
                && w.key_id() == self.keys.current_id()
                && w.records() + services.len() as u64 <= journal_bound(w.services())
        });
        if continues {
            if let Some(w) = writer.as_mut() {
                match w.append(manager.lkg_entries(services)?) {
                    Ok(()) => return Ok(Written::Appended),
                    Err(AppendError::NeedsCompaction(why)) => {
                        tracing::debug!(%why, "writing a new last-known-good snapshot");
                    }
                    Err(AppendError::Lkg(e)) => {
                        // The file's tail is unknown: the next update
                        // writes a snapshot.
                        *writer = None;
                        return Err(e.into());
                    }
                }
            }
        }
        self.snapshot(manager, &mut writer)?;
        Ok(Written::Snapshot)
    }

    fn snapshot(
        &self,
        manager: &Manager,
        writer: &mut Option<LkgAppender>,
    ) -> Result<(), RefreshError> {
        *writer = None;
        let contents = manager.lkg_contents()?;
        let cache = LkgCache::seal(contents, &self.keys)?;
        *writer = Some(cache.compact_to(&self.path, &self.keys)?);
        Ok(())
    }

    /// Reads and verifies the cache: snapshot and journal (blocking).
    pub fn load(&self) -> Result<LkgCache, LkgError> {
        LkgCache::read_verified(&self.path, &self.keys)
    }
}
