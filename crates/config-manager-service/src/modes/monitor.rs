//! The background database monitor.
//!
//! Every tick (`CONFIG_MONITOR_INTERVAL_MS`, default 1000 ms) it checks, off
//! the executor: the file is still the one we opened, the service may still
//! read and write it (`access(2)`), a fresh connection can read it, and a
//! write lock can be taken within the store's busy timeout (another process
//! holding one that long shows as `locked`: a write would fail too). Every 60th tick it runs `PRAGMA quick_check` as well. In
//! normal mode a failed check enters read-only fallback; in fallback a
//! database that checks out again (reopened from the path, so a restored file
//! is picked up) brings the service back to normal.

use std::time::Duration;

use config_manager_core::domain::Epoch;
use config_manager_core::health::DatabaseStatus;
use config_manager_core::manager::Manager;
use config_manager_core::store::{epoch_file_path, EpochFile, Store, StoreError, BUSY_TIMEOUT};
use tokio_util::sync::CancellationToken;

use super::{enter_fallback, recover};
use crate::health::status_of;
use crate::state::{AppState, DatabaseSetup};

/// How long the recovery probe (in fallback) waits for a lock: short, a
/// lock still held only means the next tick tries again. The health check
/// in normal mode waits the store's [`BUSY_TIMEOUT`] instead: "locked" means
/// a write would fail now, not that another process (Litestream taking its
/// checkpoint lock on a busy host) held the lock for a moment.
const RECOVERY_PROBE_TIMEOUT: Duration = Duration::from_millis(200);
/// Every how many ticks the full integrity check runs.
const FULL_CHECK_EVERY: u64 = 60;
/// A full check faster than this runs on every tick.
const CHEAP_FULL_CHECK: Duration = Duration::from_millis(20);
/// Every how many ticks the LKG file is re-verified.
const LKG_CHECK_EVERY: u64 = 5;

/// Runs the monitor until `shutdown` is cancelled.
pub async fn run(state: AppState, interval: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick: u64 = 0;
    // The full check runs every tick while it is cheap (a small database),
    // otherwise every FULL_CHECK_EVERY ticks.
    let mut full_check_cost = Duration::ZERO;
    // The LKG file as last verified: unchanged files are not parsed again.
    let mut lkg_verified: Option<FileStamp> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        tick += 1;
        let full = tick % FULL_CHECK_EVERY == 0 || full_check_cost < CHEAP_FULL_CHECK;
        let status = state.status().get();
        let manager = state.manager();
        if let (true, Some(manager)) = (state.is_normal(), manager.clone()) {
            let started = std::time::Instant::now();
            let checked = tokio::task::spawn_blocking(move || check(manager.store(), full)).await;
            if full {
                full_check_cost = started.elapsed();
            }
            if let Ok(Err(e)) = checked {
                enter_fallback(&state, status_of(&e), &e.to_string()).await;
            } else if tick % LKG_CHECK_EVERY == 0 {
                verify_lkg(&state, &mut lkg_verified).await;
            }
        } else if status.mode == config_manager_core::health::OperationalMode::ReadOnlyFallback
            && !(status.database_status == DatabaseStatus::SchemaMismatch && manager.is_some())
        {
            // A schema mismatch of a healthy, opened database only ends with
            // a restart; every other fault (and a service that has no
            // database since start-up) is retried from the path.
            let path = state.settings().db_path.clone();
            let expected = state.expected_epoch();
            let setup = state.database_setup();
            let reopened =
                tokio::task::spawn_blocking(move || reopen(&path, expected.as_ref(), setup)).await;
            match reopened {
                Ok(Ok(manager)) => recover(&state, manager).await,
                Ok(Err(e)) => {
                    let now = status_of(&e);
                    state.status().update(|s| s.database_status = now);
                }
                Err(e) => tracing::warn!(error = %e, "monitor task failed"),
            }
        }
    }
}

/// Re-verifies the LKG file; one that no longer verifies (altered, replaced
/// by another epoch's cache) is reported and rewritten from the healthy
/// database, so fallback never depends on a bad file.
///
/// A file whose identity, size and change time are those of the last
/// successful verification is not parsed again: re-parsing a journal of
/// large values every few seconds kept tens of MB of allocator memory busy
/// on an idle service (docs/performance.md, "Memory per request"). The change
/// time (ctime) moves on every write and cannot be set back by a process.
async fn verify_lkg(state: &AppState, verified: &mut Option<FileStamp>) {
    let lkg = state.lkg().clone();
    let Some(epoch) = state.expected_epoch() else {
        return;
    };
    let stamp = FileStamp::of(lkg.path());
    if stamp.is_some() && stamp == *verified {
        return;
    }
    *verified = None;
    let result = tokio::task::spawn_blocking(move || {
        lkg.load().map_err(|e| e.to_string()).and_then(|c| {
            if c.contents().config_epoch == epoch {
                Ok(())
            } else {
                Err(format!(
                    "cache is from epoch {}, the database is epoch {epoch}",
                    c.contents().config_epoch
                ))
            }
        })
    })
    .await;
    if let Ok(Ok(())) = result {
        *verified = stamp;
    }
    if let Ok(Err(problem)) = result {
        tracing::warn!(%problem, "last-known-good cache failed verification; rewriting it from the database");
        state.status().update(|s| {
            s.lkg_cache_valid = false;
            s.event = Some(format!(
                "last-known-good cache invalid ({problem}); rewritten"
            ));
        });
        state.refresh_lkg().await;
    }
}

/// The checks of one tick (blocking).
fn check(store: &Store, full: bool) -> Result<(), StoreError> {
    store.check_file()?;
    store.check_access()?;
    if full {
        store.integrity_check()?;
    } else {
        store.find_epoch()?;
    }
    store.probe_writable(BUSY_TIMEOUT)
}

/// Opens the database at `path` afresh and checks it fully; on success the
/// new manager replaces the old one (or fills the empty slot of a service
/// that started without a database). The epoch must be the expected one
/// (the old manager's, or at start-up the device's): another epoch means a
/// different database was put in place, which only a restore (with its own
/// checks) may do — a restore rewrites the device's epoch file
/// (`<db>.epoch.json`), and a database of the epoch that file names is
/// accepted.
fn reopen(
    path: &std::path::Path,
    expected: Option<&Epoch>,
    setup: DatabaseSetup,
) -> Result<Manager, StoreError> {
    let store = Store::open_existing(path)?;
    store.check_access()?;
    store.integrity_check()?;
    store.probe_writable(RECOVERY_PROBE_TIMEOUT)?;
    let epoch = store.get_epoch()?.config_epoch;
    let restored = EpochFile::read(&epoch_file_path(path))
        .map(|f| f.config_epoch == epoch)
        .unwrap_or(false);
    if let Some(expected) = expected {
        if &epoch != expected && !restored {
            return Err(StoreError::Missing(format!(
                "replaced by a database of another epoch ({epoch}, expected {expected})"
            )));
        }
    }
    Manager::open(store, setup.schemas, setup.options).map_err(|e| match e {
        config_manager_core::manager::ManagerError::Store(s) => s,
        other => StoreError::Other(other.to_string()),
    })
}

/// What identifies one version of a file: device, inode, size, and change
/// and modification times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    ctime: (i64, i64),
    mtime: (i64, i64),
}

impl FileStamp {
    /// `None` when the file cannot be looked at (it is verified then).
    fn of(path: &std::path::Path) -> Option<Self> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(path).ok()?;
            Some(Self {
                dev: m.dev(),
                ino: m.ino(),
                len: m.len(),
                ctime: (m.ctime(), m.ctime_nsec()),
                mtime: (m.mtime(), m.mtime_nsec()),
            })
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            None
        }
    }
}
