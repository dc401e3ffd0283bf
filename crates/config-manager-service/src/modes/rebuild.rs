//! Rebuild: replace a broken database with a new one without losing configs.
//!
//! 1. Mode `rebuilding` (writes refused, reads from the cache).
//! 2. The broken file and its `-wal`/`-shm` are renamed to
//!    `<db>.broken-<UTC timestamp>[-wal|-shm]`: moved aside, never deleted.
//! 3. A new database gets a new `config_epoch` (the old one is recorded) and
//!    is seeded from the verified LKG cache when it belongs to the old epoch,
//!    else from schema defaults. Secrets whose ciphertext no configured key
//!    opens are listed as unrecoverable.
//! 4. A tombstone `<db>.tombstone-<timestamp>.json` records old/new epoch,
//!    time, reason, trigger, seed source and unrecoverable secrets; the audit
//!    log of the new database records the rebuild and history the seeding.
//! 5. Back to normal; the cache is rewritten and every service republished.

use std::path::{Path, PathBuf};

use config_manager_core::audit::{AuditAction, AuditOutcome};
use config_manager_core::domain::{now_rfc3339, Epoch};
use config_manager_core::health::{DatabaseStatus, OperationalMode};
use config_manager_core::lkg::LkgContents;
use config_manager_core::manager::{Manager, ManagerOptions, SeedReport};
use config_manager_core::schema::SchemaRegistry;
use config_manager_core::store::{NewAudit, Store, StoreError};
use serde::Serialize;

use super::republish_all;
use crate::state::AppState;
use crate::ServiceError;

/// Who asked for the rebuild.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RebuildTrigger {
    /// `POST /rebuild` with the rebuild token.
    Manual,
    /// `ALLOW_AUTO_REBUILD=1` and a corrupted or missing database.
    Automatic,
}

/// The tombstone written beside the database, also returned by the API.
#[derive(Debug, Clone, Serialize)]
pub struct Tombstone {
    pub old_epoch: String,
    pub new_epoch: String,
    pub rebuilt_at: String,
    pub reason: String,
    pub trigger: RebuildTrigger,
    pub actor: String,
    /// Where the broken files were moved.
    pub moved_aside: Vec<String>,
    #[serde(flatten)]
    pub seed: SeedReport,
    pub tombstone_path: String,
}

/// Rebuilds the database. Runs one at a time; callers get the tombstone.
pub async fn rebuild(
    state: &AppState,
    reason: &str,
    actor: &str,
    trigger: RebuildTrigger,
) -> Result<Tombstone, ServiceError> {
    let guard = state.transition_lock().await;
    let before = state.status().get();
    if state.fallback().is_none() {
        // Keep reads answering from the cache while the database is replaced.
        let (view, _) = super::load_fallback(state).await;
        state.set_fallback(view);
    }
    state.status().update(|s| {
        s.mode = OperationalMode::Rebuilding;
        s.event = Some(format!("database rebuild started ({reason})"));
    });
    let old_epoch = state.expected_epoch();
    let setup = state.database_setup();
    let lkg = state.lkg().clone();
    let db_path = state.settings().db_path.clone();
    let reason_owned = reason.to_owned();
    let actor_owned = actor.to_owned();
    let result = tokio::task::spawn_blocking(move || {
        let cache = lkg
            .load()
            .ok()
            .map(|c| c.into_contents())
            .filter(|c: &LkgContents| old_epoch.as_ref().is_none_or(|e| &c.config_epoch == e));
        rebuild_files(
            &db_path,
            cache.as_ref(),
            setup.schemas,
            setup.options,
            old_epoch.map(|e| e.to_string()),
            &reason_owned,
            &actor_owned,
            trigger,
        )
    })
    .await
    .map_err(|e| ServiceError::Internal(format!("rebuild task failed: {e}")))?;

    match result {
        Ok((manager, tombstone)) => {
            state.replace_manager(manager);
            state.set_fallback(None);
            state.status().update(|s| {
                s.mode = OperationalMode::Normal;
                s.database_status = DatabaseStatus::Healthy;
                s.event = Some(format!(
                    "database rebuilt: new epoch {}, seeded from {}",
                    tombstone.new_epoch, tombstone.seed.seed_source
                ));
                s.err = None;
            });
            tracing::warn!(
                old_epoch = %tombstone.old_epoch,
                new_epoch = %tombstone.new_epoch,
                seed = %tombstone.seed.seed_source,
                unrecoverable = tombstone.seed.unrecoverable_secrets.len(),
                "database rebuilt"
            );
            drop(guard);
            republish_all(state).await;
            Ok(tombstone)
        }
        Err(e) => {
            state.status().update(|s| {
                s.mode = if before.mode == OperationalMode::Normal {
                    OperationalMode::ReadOnlyFallback
                } else {
                    before.mode
                };
                s.event = Some("database rebuild failed".into());
                s.err = Some(match &e {
                    ServiceError::Unavailable(why) => why.clone(),
                    _ => "database rebuild failed; see the service log".into(),
                });
            });
            Err(e)
        }
    }
}

/// The file work of a rebuild (blocking): move aside, new database seeded
/// from `cache`, tombstone, audit entry.
#[allow(clippy::too_many_arguments)]
pub fn rebuild_files(
    db_path: &Path,
    cache: Option<&LkgContents>,
    schemas: SchemaRegistry,
    options: ManagerOptions,
    old_epoch: Option<String>,
    reason: &str,
    actor: &str,
    trigger: RebuildTrigger,
) -> Result<(Manager, Tombstone), ServiceError> {
    if trigger == RebuildTrigger::Automatic {
        confirm_broken(db_path)?;
    }
    let stamp = now_rfc3339().replace([':', '.'], "");
    let moved_aside = move_aside(db_path, &stamp).map_err(|e| {
        ServiceError::Internal(format!("cannot move the broken database aside: {e}"))
    })?;
    let store = Store::open(db_path)?;
    let new_epoch = Epoch::generate();
    let (manager, seed) = Manager::rebuild_into(
        store,
        schemas,
        options,
        &new_epoch,
        old_epoch.as_deref(),
        reason,
        cache,
    )?;
    let tombstone_path = PathBuf::from(format!("{}.tombstone-{stamp}.json", db_path.display()));
    let tombstone = Tombstone {
        old_epoch: old_epoch.unwrap_or_else(|| "unknown".into()),
        new_epoch: new_epoch.to_string(),
        rebuilt_at: now_rfc3339(),
        reason: reason.to_owned(),
        trigger,
        actor: actor.to_owned(),
        moved_aside,
        seed,
        tombstone_path: tombstone_path.display().to_string(),
    };
    write_tombstone(&tombstone_path, &tombstone)
        .map_err(|e| ServiceError::Internal(format!("cannot write the tombstone: {e}")))?;
    manager.store().record_audit(&NewAudit {
        actor: actor.to_owned(),
        action: AuditAction::DatabaseRebuild,
        target: Some(new_epoch.to_string()),
        outcome: AuditOutcome::Ok,
        detail: serde_json::to_value(&tombstone).ok(),
    })?;
    // The device's record of its (new) lineage, checked by `restore`. The
    // rebuild itself succeeded, so a failure here is only logged.
    if let Err(e) = manager.store().write_epoch_file() {
        tracing::warn!(error = %e, "cannot write the epoch metadata file after the rebuild");
    }
    Ok((manager, tombstone))
}

/// Checks the file once more right before an automatic rebuild moves it:
/// only a database that is really missing, corrupt or of an unusable schema
/// version may be moved. One that opens, passes `PRAGMA quick_check` and has
/// its epoch is kept, and so is one that cannot be checked at all (no file
/// descriptor left, no permission, locked): such a fault says nothing about
/// the file, and moving a healthy database aside loses the lineage every
/// service follows (issue 14).
fn confirm_broken(db_path: &Path) -> Result<(), ServiceError> {
    let checked = Store::open_existing(db_path).and_then(|store| {
        store.integrity_check()?;
        store.get_epoch().map(drop)
    });
    match checked {
        Err(StoreError::Corrupt(_) | StoreError::Missing(_) | StoreError::SchemaMismatch(_)) => {
            Ok(())
        }
        Ok(()) => {
            tracing::warn!("automatic rebuild refused: the database opens and passes its integrity check; it was not moved");
            Err(ServiceError::Unavailable(
                "automatic rebuild refused: the database opens and passes its integrity check"
                    .into(),
            ))
        }
        Err(e) => {
            tracing::warn!(error = %e, "automatic rebuild refused: the database could not be checked; it was not moved");
            Err(ServiceError::Unavailable(format!(
                "automatic rebuild refused: the database could not be checked ({})",
                crate::health::status_of(&e).public_cause()
            )))
        }
    }
}

/// Renames the database and its WAL/SHM files aside; returns the new names.
fn move_aside(db: &Path, stamp: &str) -> std::io::Result<Vec<String>> {
    let mut moved = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", db.display()));
        if from.exists() {
            let to = PathBuf::from(format!("{}.broken-{stamp}{suffix}", db.display()));
            std::fs::rename(&from, &to)?;
            moved.push(to.display().to_string());
        }
    }
    Ok(moved)
}

fn write_tombstone(path: &Path, tombstone: &Tombstone) -> std::io::Result<()> {
    use std::io::Write;
    let bytes = serde_json::to_vec_pretty(tombstone).map_err(std::io::Error::other)?;
    let mut file = config_manager_core::store::private_file::create(path)?;
    file.write_all(&bytes)?;
    file.sync_all()
}
