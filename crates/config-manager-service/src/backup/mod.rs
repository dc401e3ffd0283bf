//! Backups: continuous replication with Litestream, local snapshots, and
//! the `restore` command. See `docs/backup.md`.
//!
//! - [`config`]: the `LITESTREAM_*` / `BACKUP_SNAPSHOT_*` settings and the
//!   Litestream config file written from them.
//! - [`supervisor`]: runs `litestream replicate` (or watches an external
//!   one) and verifies that the bucket holds every commit.
//! - [`control`]: the evidence: Litestream's control socket and a bucket
//!   listing.
//! - [`snapshot`]: periodic consistent local copies with retention.
//! - [`restore`]: `config-manager restore`, which validates a backup before
//!   the service may use it.
//!
//! The health fields `litestream_status` and `last_backup` describe backups
//! as a whole: with Litestream configured they follow Litestream (the copy
//! off the device is what matters), with only local snapshots they follow
//! the snapshots; a failing part makes the status `error` either way. The
//! status board also carries the snapshot state on its own. Nothing here can
//! stop the service: every part runs in its own task and only reports.

pub mod config;
pub mod control;
pub mod restore;
pub mod snapshot;
pub mod supervisor;

use std::sync::{Arc, Mutex};

use config_manager_core::audit::{AuditAction, AuditOutcome};
use config_manager_core::health::LitestreamStatus;
use config_manager_core::store::{epoch_file_path, EpochFile, EpochFileError, NewAudit};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{BackupSettings, LitestreamMode};

use crate::state::AppState;
use crate::status::StatusBoard;
use crate::supervise::{self, Lifetime};

/// State of one backup part.
#[derive(Debug, Clone)]
struct Part {
    enabled: bool,
    status: LitestreamStatus,
    last_ok: Option<String>,
    problem: Option<String>,
}

impl Part {
    fn new(enabled: bool) -> Self {
        Self {
            enabled,
            // Nothing is proven until the first check succeeds.
            status: if enabled {
                LitestreamStatus::Error
            } else {
                LitestreamStatus::Disabled
            },
            last_ok: None,
            problem: enabled.then(|| "no backup confirmed yet".to_owned()),
        }
    }
}

#[derive(Debug)]
struct Parts {
    litestream: Part,
    snapshot: Part,
}

/// Writes backup results to the status board (and logs each transition once).
#[derive(Clone)]
pub struct Reporter {
    board: StatusBoard,
    parts: Arc<Mutex<Parts>>,
}

impl Reporter {
    fn new(board: StatusBoard, litestream: bool, snapshot: bool) -> Self {
        let r = Self {
            board,
            parts: Arc::new(Mutex::new(Parts {
                litestream: Part::new(litestream),
                snapshot: Part::new(snapshot),
            })),
        };
        r.publish(None);
        r
    }

    /// A check proved the replica current as of `at`.
    pub fn litestream_ok(&self, at: String) {
        self.set(|p| &mut p.litestream, "litestream", Ok(at));
    }

    pub fn litestream_failed(&self, why: String) {
        self.set(|p| &mut p.litestream, "litestream", Err(why));
    }

    /// A checked snapshot was written at `at`.
    pub fn snapshot_ok(&self, at: String) {
        self.set(|p| &mut p.snapshot, "snapshot", Ok(at));
    }

    pub fn snapshot_failed(&self, why: String) {
        self.set(|p| &mut p.snapshot, "snapshot", Err(why));
    }

    fn set(
        &self,
        pick: impl FnOnce(&mut Parts) -> &mut Part,
        name: &str,
        result: Result<String, String>,
    ) {
        let event = {
            let mut parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
            let part = pick(&mut parts);
            let was = part.status;
            match result {
                Ok(at) => {
                    part.status = LitestreamStatus::Healthy;
                    part.last_ok = Some(at);
                    part.problem = None;
                    (was != LitestreamStatus::Healthy).then(|| {
                        tracing::info!(part = name, "backup healthy");
                        format!("backup ({name}) healthy")
                    })
                }
                Err(why) => {
                    part.status = LitestreamStatus::Error;
                    let changed = part.problem.as_deref() != Some(why.as_str());
                    if changed {
                        tracing::warn!(part = name, problem = %why, "backup failing; the service keeps running");
                    }
                    part.problem = Some(why.clone());
                    (was != LitestreamStatus::Error)
                        .then(|| format!("backup ({name}) failing: {why}"))
                }
            }
        };
        self.publish(event);
    }

    fn publish(&self, event: Option<String>) {
        let parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        let enabled: Vec<&Part> = [&parts.litestream, &parts.snapshot]
            .into_iter()
            .filter(|p| p.enabled)
            .collect();
        let status = if enabled.is_empty() {
            LitestreamStatus::Disabled
        } else if enabled.iter().any(|p| p.status == LitestreamStatus::Error) {
            LitestreamStatus::Error
        } else {
            LitestreamStatus::Healthy
        };
        let last_backup = if parts.litestream.enabled {
            parts.litestream.last_ok.clone()
        } else {
            parts.snapshot.last_ok.clone()
        };
        let (snapshot_status, last_snapshot) =
            (parts.snapshot.status, parts.snapshot.last_ok.clone());
        drop(parts);
        self.board.update(|s| {
            s.litestream_status = status;
            s.last_backup = last_backup;
            s.snapshot_status = snapshot_status;
            s.last_snapshot = last_snapshot;
            if let Some(e) = event {
                s.event = Some(e);
            }
        });
    }
}

/// The running backup tasks.
pub struct BackupService {
    tasks: Vec<JoinHandle<()>>,
}

impl BackupService {
    /// Starts what `settings` enable. They stop when `shutdown` is
    /// cancelled; [`BackupService::join`] waits for them (Litestream's final
    /// upload included), which must happen before the WAL is checkpointed.
    pub fn start(settings: &BackupSettings, state: &AppState, shutdown: CancellationToken) -> Self {
        let litestream = settings.litestream.mode != LitestreamMode::Disabled;
        let reporter = Reporter::new(
            state.status().clone(),
            litestream,
            settings.snapshots.is_some(),
        );
        let mut tasks = Vec::new();
        // Supervised (supervise): a task that ends unexpectedly is
        // restarted with backoff and named in health.
        if litestream {
            let (st, stop) = (state.clone(), shutdown.clone());
            tasks.push(supervise::spawn(
                "litestream checkpoints",
                Lifetime::UntilShutdown,
                state,
                shutdown.clone(),
                move || leave_checkpoints_to_litestream(st.clone(), stop.clone()),
            ));
            let (ls, rep, stop) = (
                settings.litestream.clone(),
                reporter.clone(),
                shutdown.clone(),
            );
            tasks.push(supervise::spawn(
                "litestream supervisor",
                Lifetime::UntilShutdown,
                state,
                shutdown.clone(),
                move || supervisor::run(ls.clone(), rep.clone(), stop.clone()),
            ));
        }
        if let Some(s) = &settings.snapshots {
            let (snap, stop) = (s.clone(), shutdown.clone());
            tasks.push(supervise::spawn(
                "snapshots",
                Lifetime::UntilShutdown,
                state,
                shutdown,
                move || snapshot::run(snap.clone(), reporter.clone(), stop.clone()),
            ));
        }
        Self { tasks }
    }

    /// Waits until every task has stopped (after `shutdown` was cancelled).
    pub async fn join(self) {
        for t in self.tasks {
            if let Err(e) = t.await {
                tracing::warn!(error = %e, "backup task failed");
            }
        }
    }
}

/// How often the current store's checkpoint setting is checked (a recovery
/// or rebuild installs a new store with SQLite's default).
const CHECKPOINT_GUARD_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Keeps the writer's automatic checkpoints off while Litestream replicates
/// (see `config_manager_core::store` `replication.rs` for why): set at start
/// and on every store a recovery or rebuild puts in place.
async fn leave_checkpoints_to_litestream(state: AppState, shutdown: CancellationToken) {
    let mut warned = false;
    loop {
        let manager = state.manager();
        let result = tokio::task::spawn_blocking(move || {
            let Some(manager) = manager else {
                return Ok(());
            };
            let store = manager.store();
            if store.wal_autocheckpoint()? != 0 {
                store.set_wal_autocheckpoint(0)?;
                tracing::debug!("automatic WAL checkpoints off: Litestream checkpoints");
            }
            Ok::<_, config_manager_core::store::StoreError>(())
        })
        .await;
        match result {
            Ok(Ok(())) => warned = false,
            // A broken database is the monitor's business; say it once.
            Ok(Err(e)) if !warned => {
                tracing::debug!(error = %e, "cannot set the checkpoint mode");
                warned = true;
            }
            _ => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(CHECKPOINT_GUARD_EVERY) => {}
        }
    }
}

/// Writes `<db>.epoch.json` at start-up (created on the first start, kept
/// current after upgrades). A file that disagrees with the database means
/// the database was swapped without `restore`; that is logged, shown in
/// health and audited before the file is rewritten from the database, which
/// is the authority. A failure is logged, never fatal.
pub async fn record_epoch_file(state: &AppState) {
    let Some(manager) = state.manager() else {
        return;
    };
    let result = tokio::task::spawn_blocking(move || {
        let store = manager.store();
        let path = epoch_file_path(store.path());
        let previous = match EpochFile::read(&path) {
            Ok(f) => Some(f),
            Err(EpochFileError::Missing(_)) => None,
            Err(e) => {
                tracing::warn!(error = %e, "the epoch metadata file is unreadable; rewriting it");
                None
            }
        };
        let identity = store.identity()?;
        let discrepancies = previous
            .as_ref()
            .map(|f| f.discrepancies(&identity))
            .unwrap_or_default();
        if !discrepancies.is_empty() {
            store.record_audit(&NewAudit {
                actor: "system".into(),
                action: AuditAction::EpochFileMismatch,
                target: Some(identity.epoch.config_epoch.to_string()),
                outcome: AuditOutcome::Rewritten,
                detail: serde_json::to_value(&discrepancies).ok(),
            })?;
        }
        store.write_epoch_file()?;
        Ok::<_, EpochFileError>(discrepancies)
    })
    .await;
    match result {
        Ok(Ok(d)) if d.is_empty() => {}
        Ok(Ok(d)) => {
            let text = d
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            tracing::warn!(discrepancies = %text, "the epoch metadata file did not match the database (was it replaced without `config-manager restore`?); rewritten from the database");
            state.status().update(|s| {
                s.event = Some(format!(
                    "epoch metadata file did not match the database ({text}); rewritten"
                ))
            });
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot write the epoch metadata file"),
        Err(e) => tracing::warn!(error = %e, "epoch metadata task failed"),
    }
}
