//! Writing and loading the last-known-good cache.
//!
//! The cache is rewritten after every committed change, before the change is
//! acknowledged, and once at start-up; it holds every service's values with
//! secrets in sealed form. A mutex orders the writes, and each write reads the
//! current database state under it, so a slower writer can never replace a
//! newer cache with an older one.

use std::path::PathBuf;
use std::sync::Mutex;

use config_manager_core::crypto::mac::MacKeyRing;
use config_manager_core::lkg::{LkgCache, LkgError};
use config_manager_core::manager::{Manager, ManagerError};

/// Why the cache could not be refreshed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Read(#[from] ManagerError),
    #[error(transparent)]
    Write(#[from] LkgError),
}

/// Writes and reads the LKG file.
pub struct LkgFile {
    path: PathBuf,
    keys: MacKeyRing,
    order: Mutex<()>,
}

impl LkgFile {
    pub fn new(path: PathBuf, keys: MacKeyRing) -> Self {
        Self {
            path,
            keys,
            order: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Rewrites the cache from the database (blocking: call off the executor).
    pub fn refresh(&self, manager: &Manager) -> Result<(), RefreshError> {
        let _order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        let contents = manager.lkg_contents()?;
        LkgCache::seal(contents, &self.keys)?.write_atomic(&self.path)?;
        Ok(())
    }

    /// Reads and verifies the cache (blocking).
    pub fn load(&self) -> Result<LkgCache, LkgError> {
        LkgCache::read_verified(&self.path, &self.keys)
    }
}
