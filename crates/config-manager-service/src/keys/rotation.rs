//! The background re-encryption job of a master-key rotation.
//!
//! Started at every start-up: it counts secrets by key (the census), and when
//! some are sealed with a previous key it re-seals them in batches until none
//! is left. Progress is on the status board (`GET /api/config/keys/status`,
//! `/metrics`). Interrupting it (crash, `kill -9`, restart) is safe: each batch
//! is one transaction with compare-and-swap, and the next start continues.
//! Secrets that no configured key opens are named, logged and left untouched.

use std::time::Duration;

use config_manager_core::manager::KeyCensus;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;
use crate::status::{RotationState, RotationStatus};
use crate::ServiceError;

impl RotationStatus {
    fn from_census(state: RotationState, census: &KeyCensus, resealed: usize) -> Self {
        Self {
            state,
            current_key_id: census.current_key_id.clone(),
            total: census.total,
            resealed,
            pending: census.pending,
            unavailable: census.unavailable.clone(),
        }
    }
}

/// Runs the job to completion (or until `shutdown`).
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let Some(census) = census_when_writable(&state, &shutdown).await else {
        return;
    };
    if !census.unavailable.is_empty() {
        tracing::error!(
            secrets = ?census.unavailable,
            "secrets sealed with a key that is not configured (or a wrong key): they are unavailable until that key is configured again"
        );
    }
    let publish = |word: RotationState, census: &KeyCensus, resealed: usize| {
        state
            .status()
            .update(|s| s.rotation = RotationStatus::from_census(word, census, resealed));
    };
    if census.pending == 0 {
        publish(RotationState::Idle, &census, 0);
        return;
    }
    tracing::info!(pending = census.pending, key_id = %census.current_key_id, "re-encrypting secrets under the current master key");
    let mut resealed = 0;
    let mut progress = census.clone();
    loop {
        progress.pending = census.pending.saturating_sub(resealed);
        progress.current = census.current + resealed;
        publish(RotationState::Running, &progress, resealed);
        let batch = state.settings().rotation_batch;
        match state
            .run_blocking(move |m| m.reseal_batch(batch).map_err(ServiceError::from))
            .await
        {
            Ok(0) => break,
            Ok(n) => resealed += n,
            Err(e) => tracing::warn!(error = %e, "re-encryption batch failed; retrying"),
        }
        // Leave room for user writes between batches.
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
    }
    let Some(last) = census_when_writable(&state, &shutdown).await else {
        return;
    };
    tracing::info!(resealed, pending = last.pending, key_id = %last.current_key_id, "master-key rotation finished; once pending is 0 the previous key can be removed");
    publish(RotationState::Done, &last, resealed);
}

/// The key census, waiting while the database is not writable.
async fn census_when_writable(state: &AppState, shutdown: &CancellationToken) -> Option<KeyCensus> {
    loop {
        match state
            .run_blocking(|m| m.key_census().map_err(ServiceError::from))
            .await
        {
            Ok(c) => return Some(c),
            Err(e) => {
                tracing::debug!(error = %e, "rotation waits for a writable database");
                state
                    .status()
                    .update(|s| s.rotation.state = RotationState::Waiting);
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}
