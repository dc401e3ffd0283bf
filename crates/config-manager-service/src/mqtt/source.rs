//! What the publisher sends, built from the application state: signed config
//! envelopes (blocking: they read the database) and health payloads.

use config_manager_core::domain::{Epoch, ServiceName};
use config_manager_core::envelope::{Envelope, EnvelopeError, DEFAULT_MAX_ENVELOPE_BYTES};
use config_manager_core::manager::{EffectiveConfig, ManagerError, SecretView};
use thiserror::Error;

use crate::state::AppState;

/// Why one service's config could not be published this time.
#[derive(Debug, Error)]
pub enum PublishError {
    /// The service no longer exists (nothing to publish, not retried).
    #[error("service is gone: {0}")]
    Gone(String),
    /// Reading the config failed (database fault, secrets unavailable); retried.
    #[error("cannot read the configuration: {0}")]
    Read(ManagerError),
    /// No database and no verified cache to read from; retried.
    #[error("no database and no valid last-known-good cache to read from")]
    NoDatabase,
    #[error("cannot sign the configuration: {0}")]
    Envelope(#[from] EnvelopeError),
    /// Services refuse envelopes over this size, so it is not sent at all.
    #[error("signed envelope is {0} bytes, over the {DEFAULT_MAX_ENVELOPE_BYTES}-byte limit services accept")]
    TooLarge(usize),
}

impl PublishError {
    /// Whether trying again later can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, PublishError::Read(_) | PublishError::NoDatabase)
    }
}

impl From<ManagerError> for PublishError {
    fn from(e: ManagerError) -> Self {
        match e {
            ManagerError::NotFound(what) | ManagerError::UnknownService(what) => {
                PublishError::Gone(what)
            }
            other => PublishError::Read(other),
        }
    }
}

/// Every service that has a configuration to publish. Blocking.
pub fn list_services(state: &AppState) -> Result<Vec<ServiceName>, PublishError> {
    Ok(match fallback_view(state) {
        Some(view) => view.list_services(),
        None => match state.manager() {
            Some(m) => m.list_services()?,
            // No database and no cache: nothing to publish (health says why).
            None => Vec::new(),
        },
    })
}

/// The signed envelope of `service`'s effective config, secrets omitted, as
/// the bytes to publish. `version` is the config version and `config_epoch`
/// the epoch of the data it was read from. Blocking.
pub fn signed_config(state: &AppState, service: &ServiceName) -> Result<Vec<u8>, PublishError> {
    let (effective, epoch) = read_effective(state, service)?;
    let envelope = Envelope::sign(
        service,
        effective.version,
        &epoch,
        effective.config,
        &state.settings().signing_key,
    )?;
    let bytes = envelope.to_json_bytes().map_err(EnvelopeError::from)?;
    if bytes.len() > DEFAULT_MAX_ENVELOPE_BYTES {
        return Err(PublishError::TooLarge(bytes.len()));
    }
    Ok(bytes)
}

/// The effective config with its epoch: from the database normally, from the
/// verified last-known-good cache in read-only fallback (so re-issues keep the
/// retained messages fresh while the database is down).
fn read_effective(
    state: &AppState,
    service: &ServiceName,
) -> Result<(EffectiveConfig, Epoch), PublishError> {
    if let Some(view) = fallback_view(state) {
        let effective = view.get_effective(service, SecretView::Omitted, false)?;
        return Ok((effective, view.epoch().clone()));
    }
    let manager = state.manager().ok_or(PublishError::NoDatabase)?;
    let effective = manager.get_effective(service, SecretView::Omitted, false)?;
    Ok((effective, manager.epoch().clone()))
}

/// The LKG view to read from, when the service is in fallback and has one.
fn fallback_view(
    state: &AppState,
) -> Option<std::sync::Arc<config_manager_core::manager::FallbackView>> {
    if state.is_normal() {
        None
    } else {
        state.fallback()
    }
}

/// The health message as JSON: online (`offline_event = None`) or its
/// offline form, for the last-will and the shutdown message.
pub fn health_payload(state: &AppState, offline_event: Option<&str>) -> Vec<u8> {
    let health = crate::health::snapshot(state);
    let health = match offline_event {
        Some(event) => health.to_offline(event),
        None => health,
    };
    // A struct of strings, numbers and enums always serializes.
    serde_json::to_vec(&health).unwrap_or_default()
}
