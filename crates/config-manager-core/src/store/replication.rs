//! What the store does differently while another process (Litestream)
//! replicates the database.
//!
//! **Checkpoints belong to Litestream.** Litestream reads new pages from the
//! WAL and must see every frame before the WAL is reused. SQLite's automatic
//! checkpoint (PASSIVE, after a commit that takes the WAL past 1000 frames)
//! runs inside our writer's commit; with Litestream 0.5.17 replicating, a
//! burst of large commits that crossed that threshold left an LTX file without
//! some of the pages it needed, and restores of that point in time failed
//! their integrity check ("page never used"; seen in 3 of 6 runs of the
//! 10 MB measurement, in none of 10 with automatic checkpoints off). So while
//! Litestream runs, the writer's automatic checkpoint is turned off and
//! Litestream checkpoints on its own schedule (after ~1000 pages, every
//! minute, and a forced TRUNCATE if the WAL ever reaches ~500 MB).

use super::{Result, Store};

impl Store {
    /// Sets the writer connection's automatic checkpoint threshold, in WAL
    /// frames; 0 turns automatic checkpoints off. Only the writer commits, so
    /// only its setting matters. Applies to this store only: a store opened
    /// later starts with SQLite's default (1000).
    pub fn set_wal_autocheckpoint(&self, frames: u32) -> Result<()> {
        let conn = self.lock_writer();
        let _: i64 = conn.query_row(&format!("PRAGMA wal_autocheckpoint={frames}"), [], |r| {
            r.get(0)
        })?;
        Ok(())
    }

    /// The writer connection's automatic checkpoint threshold.
    pub fn wal_autocheckpoint(&self) -> Result<u32> {
        let conn = self.lock_writer();
        Ok(conn.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn autocheckpoint_can_be_turned_off_and_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("config.db")).unwrap();
        assert_eq!(store.wal_autocheckpoint().unwrap(), 1000);
        store.set_wal_autocheckpoint(0).unwrap();
        assert_eq!(store.wal_autocheckpoint().unwrap(), 0);
        store.set_wal_autocheckpoint(1000).unwrap();
        assert_eq!(store.wal_autocheckpoint().unwrap(), 1000);
    }
}
