//! Settings of the abuse guards (login rate limit, aggregated denials, audit
//! retention) and the upkeep task that flushes the denial counters and
//! prunes the audit log.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::auth::denials::DenialKey;
use crate::state::AppState;
use crate::ServiceError;

/// How often the audit log is pruned (also once at start-up).
pub const PRUNE_EVERY: Duration = Duration::from_secs(60 * 60);

/// From `CONFIG_LOGIN_*` and `CONFIG_AUDIT_*`; parsed with the other
/// settings (`crate::settings::limits`).
pub use crate::settings::GuardSettings;

/// Runs until `shutdown`: flushes the denial counters at the end of each
/// window and prunes the audit log every [`PRUNE_EVERY`]; flushes once more
/// on the way out.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let settings = state.settings().guard;
    let tick = settings.denial_window.min(Duration::from_secs(1));
    let mut next_prune = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= next_prune {
            prune(&state, &settings).await;
            next_prune = tokio::time::Instant::now() + PRUNE_EVERY;
        }
        if state.denials().window_over() {
            flush_denials(&state).await;
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(tick) => {}
        }
    }
    flush_denials(&state).await;
}

/// Counts one refused request; the first of its kind in the window is
/// written to the audit log now. A failing audit write is logged, not fatal.
pub async fn record_denial(state: &AppState, key: DenialKey, target: Option<String>) {
    let Some(first) = state.denials().count(key, target) else {
        return;
    };
    let entry = first.entry().clone();
    let result = state
        .run_blocking(move |m| {
            m.store()
                .record_audit_returning_id(&entry)
                .map_err(ServiceError::from)
        })
        .await;
    match result {
        Ok(id) => state.denials().first_written(first, id),
        Err(e) => {
            tracing::warn!(error = %e, "could not record a refused request in the audit log")
        }
    }
}

/// Ends the denial window: writes the final counts (updating each first
/// row, or adding one where it is missing).
async fn flush_denials(state: &AppState) {
    let pending = state.denials().end_window();
    if pending.is_empty() {
        return;
    }
    let result = state
        .run_blocking(move |m| -> Result<(), ServiceError> {
            let store = m.store();
            for (id, entry) in &pending {
                let updated = match (id, &entry.detail) {
                    (Some(id), Some(d)) => store.update_audit_detail(*id, d)?,
                    _ => false,
                };
                // A row pruned meanwhile: record the count anew.
                if !updated {
                    store.record_audit(entry)?;
                }
            }
            Ok(())
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not write the counts of refused requests to the audit log");
    }
}

async fn prune(state: &AppState, settings: &GuardSettings) {
    let cutoff = (settings.audit_retention_days > 0).then(|| {
        let age = time::Duration::days(i64::from(settings.audit_retention_days));
        config_manager_core::domain::format_rfc3339(time::OffsetDateTime::now_utc() - age)
    });
    let max_rows = (settings.audit_max_rows > 0).then_some(settings.audit_max_rows);
    if cutoff.is_none() && max_rows.is_none() {
        return;
    }
    let result = state
        .run_blocking(move |m| -> Result<usize, ServiceError> {
            Ok(m.store().prune_audit(cutoff.as_deref(), max_rows)?)
        })
        .await;
    match result {
        Ok(0) => {}
        Ok(n) => tracing::info!(deleted = n, "pruned old audit entries"),
        Err(e) => tracing::warn!(error = %e, "could not prune the audit log"),
    }
}
