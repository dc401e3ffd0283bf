//! Opening the database at start-up. A database that cannot be opened or
//! must not be adopted never stops the service: it starts without one, in
//! read-only fallback (reads from the verified last-known-good cache, or 503
//! `no-fallback` without one), and the monitor adopts a valid database of
//! the expected epoch as soon as one is at the path.
//!
//! - corrupted, unreadable, locked, missing (the device's epoch file or a
//!   cache shows that a database existed), or of a newer schema version:
//!   fallback with the matching `database_status`;
//! - a database of another epoch than the device's epoch file names (a
//!   swapped file): not used; fallback, and `err` says how to accept it;
//! - with `ALLOW_AUTO_REBUILD=1`, a corrupted, missing or newer-schema
//!   database is rebuilt from the cache as before (after the file is checked
//!   once more, see `rebuild::confirm_broken`).
//!
//! Only a first start (no database, no epoch file, no cache) creates a new
//! database.

use config_manager_core::domain::Epoch;
use config_manager_core::health::{DatabaseStatus, OperationalMode};
use config_manager_core::lkg::LkgContents;
use config_manager_core::manager::{Manager, ManagerError};
use config_manager_core::store::{
    epoch_file_path, EpochFile, EpochFileError, Store, StoreError, BUSY_TIMEOUT,
};

use super::load_fallback;
use super::rebuild::{rebuild_files, RebuildTrigger};
use crate::health::status_of;
use crate::lkg::LkgFile;
use crate::settings::Settings;
use crate::state::{AppState, DatabaseSetup};

/// What start-up found.
pub enum Opened {
    /// The database is open and belongs to this device.
    Ready(Manager),
    /// It cannot be opened or adopted: the service starts without it.
    Without(StartFault),
}

/// Why the service starts without a database.
#[derive(Debug, Clone)]
pub struct StartFault {
    pub status: DatabaseStatus,
    /// For health's `err`: no paths, no SQL.
    pub err: String,
    /// For the log (may name paths).
    pub cause: String,
    /// The epoch a database must have to be adopted by recovery.
    pub expected_epoch: Option<Epoch>,
    /// The file is a healthy database of another epoch.
    pub swapped: bool,
}

/// Opens (or, on a first start, creates) the database. Blocking. Fails only
/// for what is not a database fault (e.g. the configured keys cannot open
/// the stored secrets): that is a configuration error, reported as before.
pub fn open(settings: &Settings, setup: &DatabaseSetup) -> Result<Opened, ManagerError> {
    let db = &settings.db_path;
    let device_epoch = match EpochFile::read(&epoch_file_path(db)) {
        Ok(f) => Some(f.config_epoch),
        Err(EpochFileError::Missing(_)) => None,
        Err(e) => {
            tracing::warn!(error = %e, "the epoch metadata file is unusable; the database's epoch is not checked against it");
            None
        }
    };
    // The cache is read only when needed (no epoch file, or a rebuild to
    // seed): on a normal start the epoch file names the epoch, and the
    // cache is verified once, later, by the caller (reading a large cache
    // is a visible part of start-up at thousands of services).
    let lkg = LkgFile::new(settings.lkg_path.clone(), settings.lkg_keys.clone());
    let cache_cell = std::cell::OnceCell::new();
    let cache = || {
        cache_cell
            .get_or_init(|| lkg.load().ok().map(|c| c.into_contents()))
            .as_ref()
    };
    let expected_epoch = device_epoch
        .clone()
        .or_else(|| cache().map(|c| c.config_epoch.clone()));
    let fault = |status: DatabaseStatus, err: String, cause: String| StartFault {
        status,
        err,
        cause,
        expected_epoch: expected_epoch.clone(),
        swapped: false,
    };

    let found = match std::fs::metadata(db) {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => {
            let e = StoreError::Unavailable(format!("{}: {e}", db.display()));
            return Ok(Opened::Without(store_fault(&e, &fault)));
        }
    };
    let result = if !found && (device_epoch.is_some() || settings.lkg_path.exists()) {
        Err(fault(
            DatabaseStatus::Missing,
            "database file is missing (this device had one: its epoch metadata or \
             last-known-good cache exists); restore it with `config-manager restore`"
                .into(),
            format!(
                "{} does not exist, but its epoch file or LKG cache does",
                db.display()
            ),
        ))
    } else {
        open_found(db, setup, device_epoch.as_ref(), &fault)?
    };
    let mut f = match result {
        Ok(m) => return Ok(Opened::Ready(m)),
        Err(f) => f,
    };
    // A swapped file is a healthy database: never rebuilt.
    let rebuildable = matches!(
        f.status,
        DatabaseStatus::Corrupted | DatabaseStatus::Missing | DatabaseStatus::SchemaMismatch
    ) && !f.swapped;
    if settings.allow_auto_rebuild && rebuildable {
        tracing::error!(cause = %f.cause, "database unusable at start-up; rebuilding (ALLOW_AUTO_REBUILD=1)");
        let seed: Option<&LkgContents> = cache().filter(|c| {
            f.expected_epoch
                .as_ref()
                .is_none_or(|e| &c.config_epoch == e)
        });
        match rebuild_files(
            db,
            seed,
            setup.schemas.clone(),
            setup.options.clone(),
            f.expected_epoch.as_ref().map(ToString::to_string),
            "automatic rebuild at start-up: database unusable",
            "system",
            RebuildTrigger::Automatic,
        ) {
            Ok((m, tombstone)) => {
                tracing::warn!(tombstone = %tombstone.tombstone_path, "database rebuilt at start-up");
                return Ok(Opened::Ready(m));
            }
            Err(e) => {
                tracing::error!(error = %e, "automatic rebuild at start-up failed");
                f.err = format!("{}; automatic rebuild failed: {e}", f.err);
            }
        }
    }
    Ok(Opened::Without(f))
}

/// Opens the database (creating it on a first start): the lock probe and the epoch check
/// come before the manager, which may write (migrations aside, nothing is
/// written to a file that is not adopted).
fn open_found(
    db: &std::path::Path,
    setup: &DatabaseSetup,
    device_epoch: Option<&Epoch>,
    fault: &impl Fn(DatabaseStatus, String, String) -> StartFault,
) -> Result<Result<Manager, StartFault>, ManagerError> {
    let store = match Store::open(db).and_then(|store| {
        // A lock held past the store's busy timeout: the database is fine
        // but cannot take writes; the monitor retries.
        store.probe_writable(BUSY_TIMEOUT)?;
        Ok(store)
    }) {
        Ok(store) => store,
        Err(e) => return Ok(Err(store_fault(&e, fault))),
    };
    let epoch = match store.get_epoch() {
        Ok(info) => Some(info.config_epoch),
        // A first start: the manager creates the epoch.
        Err(StoreError::Corrupt(_)) if device_epoch.is_none() => None,
        Err(e) => return Ok(Err(store_fault(&e, fault))),
    };
    if let (Some(dev), Some(epoch)) = (device_epoch, &epoch) {
        if dev != epoch {
            return Ok(Err(StartFault {
                swapped: true,
                ..fault(
                    DatabaseStatus::Missing,
                    swapped_err(epoch, dev),
                    format!(
                        "{} is epoch {epoch}, the epoch file names {dev}",
                        db.display()
                    ),
                )
            }));
        }
    }
    match Manager::open(store, setup.schemas.clone(), setup.options.clone()) {
        Ok(m) => Ok(Ok(m)),
        Err(ManagerError::Store(e)) => Ok(Err(store_fault(&e, fault))),
        Err(e) => Err(e),
    }
}

/// Health's `err` for a database of another epoch: what it is and how to
/// accept it.
fn swapped_err(found: &Epoch, device: &Epoch) -> String {
    format!(
        "the database file belongs to epoch {found}, but this device runs epoch {device} \
         (was the file swapped?); it is not used. To accept it, stop the service and restore \
         it with `config-manager restore --snapshot FILE --force`; or put the database of \
         epoch {device} back"
    )
}

fn store_fault(
    e: &StoreError,
    fault: &impl Fn(DatabaseStatus, String, String) -> StartFault,
) -> StartFault {
    let status = status_of(e);
    let mut err = status.public_cause().to_owned();
    if status == DatabaseStatus::SchemaMismatch {
        err.push_str(" (written by a newer config-manager?)");
    }
    fault(status, err, e.to_string())
}

/// Puts a service that started without a database into read-only fallback:
/// the verified cache of the expected epoch serves reads, or nothing does
/// (503 `no-fallback`); health says why. The monitor takes it from there.
pub async fn start_without_database(state: &AppState, fault: &StartFault) {
    let (view, lkg_problem) = load_fallback(state).await;
    let has_view = view.is_some();
    state.set_fallback(view);
    state.status().update(|s| {
        s.mode = OperationalMode::ReadOnlyFallback;
        s.database_status = fault.status;
        s.lkg_cache_valid = has_view;
        s.event = Some(format!(
            "database {} at start-up, started in read-only fallback mode{}",
            fault.status.fault_word(),
            if has_view {
                " (reads from the last-known-good cache)"
            } else {
                " without a usable cache (reads answer 503)"
            }
        ));
        s.err = Some(match &lkg_problem {
            None => fault.err.clone(),
            Some(p) => format!("{}; no usable cache: {p}", fault.err),
        });
    });
    tracing::error!(
        status = ?fault.status,
        cause = %fault.cause,
        lkg = lkg_problem.as_deref().unwrap_or("valid"),
        "started without a usable database, in read-only fallback"
    );
}
