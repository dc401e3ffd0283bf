//! Operational modes: `normal`, `read-only-fallback`, `rebuilding`.
//!
//! - A failing database call ([`report_fault`]) or the background monitor
//!   ([`monitor`]) switches to read-only fallback: reads are served from the
//!   verified last-known-good cache, writes get 503.
//! - The monitor returns to normal by itself once the database checks out
//!   again (it reopens the file, so a restored file is picked up).
//! - A rebuild ([`rebuild()`]) moves the broken file aside, creates a new
//!   database with a new epoch and seeds it from the cache.
//!
//! Transitions are serialized by `AppState::transition_lock`, and every one is
//! published on the status board (REST health, MQTT health).

pub mod monitor;
pub mod rebuild;
pub mod startup;

use config_manager_core::health::{DatabaseStatus, OperationalMode};
use config_manager_core::lkg::LkgContents;
use config_manager_core::manager::{FallbackView, Manager};

use crate::state::AppState;
use crate::ServiceError;

pub use rebuild::{rebuild, RebuildTrigger};

/// A database call failed with a fault: switch to fallback (once).
pub async fn report_fault(state: &AppState, status: DatabaseStatus, cause: &str) {
    tracing::warn!(?status, cause, "database fault reported by a request");
    enter_fallback(state, status, cause).await;
}

/// Switches to read-only fallback, serving reads from the verified cache.
/// Does nothing when already out of normal mode.
pub async fn enter_fallback(state: &AppState, status: DatabaseStatus, cause: &str) {
    {
        let _guard = state.transition_lock().await;
        if !state.is_normal() {
            return;
        }
        let (view, lkg_problem) = load_fallback(state).await;
        let has_view = view.is_some();
        state.set_fallback(view);
        state.status().update(|s| {
            s.mode = OperationalMode::ReadOnlyFallback;
            s.database_status = status;
            s.lkg_cache_valid = has_view;
            s.event = Some(format!(
                "database {} detected, entered read-only fallback mode",
                status.fault_word()
            ));
            s.err = Some(match &lkg_problem {
                None => status.public_cause().to_owned(),
                Some(p) => format!("{}; no usable cache: {p}", status.public_cause()),
            });
        });
        tracing::error!(
            ?status,
            cause,
            lkg = lkg_problem.as_deref().unwrap_or("valid"),
            "entered read-only fallback"
        );
    }
    if state.settings().allow_auto_rebuild
        && matches!(status, DatabaseStatus::Corrupted | DatabaseStatus::Missing)
    {
        let state = state.clone();
        let reason = format!("automatic rebuild: database {}", status.fault_word());
        tokio::spawn(async move {
            if let Err(e) = rebuild(&state, &reason, "system", RebuildTrigger::Automatic).await {
                tracing::error!(error = %e, "automatic rebuild failed");
            }
        });
    }
}

/// Loads and verifies the cache and checks that it belongs to this database
/// (same epoch as the manager, or as expected when there is none). Returns
/// the view, or why there is none.
pub(crate) async fn load_fallback(state: &AppState) -> (Option<FallbackView>, Option<String>) {
    let setup = state.database_setup();
    let expected = state.expected_epoch();
    let lkg = state.lkg().clone();
    let loaded = tokio::task::spawn_blocking(move || lkg.load()).await;
    let cache = match loaded {
        Ok(Ok(cache)) => cache,
        Ok(Err(e)) => return (None, Some(lkg_problem(&e))),
        Err(e) => return (None, Some(e.to_string())),
    };
    let contents: LkgContents = cache.into_contents();
    if let Some(expected) = expected.filter(|e| e != &contents.config_epoch) {
        return (
            None,
            Some(format!(
                "cache is from epoch {}, the database is epoch {expected}",
                contents.config_epoch,
            )),
        );
    }
    let view = FallbackView::new(setup.schemas, setup.options, contents);
    (Some(view), None)
}

/// Leaves fallback: the freshly opened `manager` replaces the broken one.
pub async fn recover(state: &AppState, manager: Manager) {
    {
        let _guard = state.transition_lock().await;
        state.replace_manager(manager);
        state.set_fallback(None);
        state.status().update(|s| {
            s.mode = OperationalMode::Normal;
            s.database_status = DatabaseStatus::Healthy;
            s.event = Some("database healthy again, left read-only fallback mode".into());
            s.err = None;
        });
        tracing::info!("database healthy again; back to normal mode");
    }
    // Current after a restore (or created, for a service that started
    // without its database).
    crate::backup::record_epoch_file(state).await;
    republish_all(state).await;
}

/// Refreshes the cache and tells the sink that every service changed (after
/// recovery or a rebuild, so MQTT carries the current epoch and versions).
pub async fn republish_all(state: &AppState) {
    let services = state
        .run_blocking_unchecked(|m| m.list_services().map_err(ServiceError::from))
        .await
        .unwrap_or_default();
    state.notify_changed(&services).await;
}

/// Why the cache cannot be used, without its path (shown in health).
pub(crate) fn lkg_problem(e: &config_manager_core::lkg::LkgError) -> String {
    use config_manager_core::lkg::LkgError;
    match e {
        LkgError::Missing(_) => "there is no last-known-good cache file".into(),
        LkgError::Io { source, .. } => {
            format!("the last-known-good cache cannot be read ({source})")
        }
        other => other.to_string(),
    }
}
