//! The verification pipeline for received MQTT payloads, kept free of I/O so
//! every rule can be tested without a broker: size and parse → service →
//! signature and checksum → freshness and version → typed decode → callback →
//! commit. Any failure leaves the current config and applied state untouched.

use std::fmt;
use std::sync::Arc;

use config_manager_core::crypto::signing::TrustedKeys;
use config_manager_core::domain::{Epoch, ServiceName, Version, SECRET_MASK};
use config_manager_core::envelope::freshness::{
    check_freshness, AppliedState, Decision, FreshnessPolicy, IgnoreReason, Rejection,
};
use config_manager_core::envelope::{Envelope, ParseError, VerifyError};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use thiserror::Error;
use time::OffsetDateTime;

use crate::counters::Counters;

/// The application's on-change callback, with its error already rendered as
/// text (the pipeline only logs it).
pub type Callback<T> = dyn Fn(&T) -> Result<(), String> + Send + Sync;

/// Why a payload was not applied.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RejectReason {
    #[error("{0}")]
    Parse(ParseError),
    #[error("envelope is for service {got}, not {expected}")]
    WrongService { expected: String, got: String },
    #[error("{0}")]
    Verify(VerifyError),
    #[error("{0}")]
    Freshness(Rejection),
    /// Authentic and fresh, but not a valid value of the service's config type.
    #[error("config does not match the service's config type: {0}")]
    InvalidConfig(String),
    /// The application's callback refused the new config.
    #[error("on-change callback failed: {0}")]
    CallbackFailed(String),
}

impl RejectReason {
    /// A stable label for counters and logs.
    pub fn label(&self) -> &'static str {
        match self {
            RejectReason::Parse(e) => match e {
                ParseError::TooLarge { .. } => "oversized",
                ParseError::NotJson(_) => "not_json",
                ParseError::NotObject => "not_object",
                ParseError::Unsigned => "unsigned",
                ParseError::MissingField(_) => "missing_field",
                ParseError::InvalidField { .. } => "invalid_field",
                ParseError::UnknownField(_) => "unknown_field",
            },
            RejectReason::WrongService { .. } => "wrong_service",
            RejectReason::Verify(e) => match e {
                VerifyError::UnknownKey(_) => "unknown_key",
                VerifyError::BadBase64 => "bad_base64",
                VerifyError::BadSignatureLength(_) => "bad_signature_length",
                VerifyError::ChecksumMismatch => "checksum_mismatch",
                VerifyError::BadSignature => "bad_signature",
                VerifyError::Malformed(_) => "malformed",
            },
            RejectReason::Freshness(r) => r.label(),
            RejectReason::InvalidConfig(_) => "invalid_config",
            RejectReason::CallbackFailed(_) => "callback_failed",
        }
    }
}

/// What happened to one payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied { version: Version, epoch: Epoch },
    Ignored(IgnoreReason),
    Rejected(RejectReason),
}

/// Verifies payloads for one service and holds the config they produced.
pub struct UpdatePipeline<T> {
    service: ServiceName,
    trusted: TrustedKeys,
    policy: FreshnessPolicy,
    max_payload: usize,
    applied: Option<AppliedState>,
    current: Arc<T>,
    /// The applied config as JSON, for carrying secrets over omitted or masked values.
    raw: Map<String, Value>,
    counters: Arc<Counters>,
    /// Version named by the last payload, when it parsed and was for this
    /// service (the `rejected_version` of an applied-state report).
    last_version: Option<Version>,
    /// The last payload that passed verification and freshness (applied, or
    /// ignored as a re-issue of what runs), with its state: what the
    /// on-disk copy may hold.
    last_verified: Option<(AppliedState, Arc<[u8]>)>,
}

impl<T> fmt::Debug for UpdatePipeline<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpdatePipeline")
            .field("service", &self.service)
            .field("trusted", &self.trusted)
            .field("applied", &self.applied)
            .finish_non_exhaustive()
    }
}

/// Everything the pipeline needs to start.
pub struct PipelineConfig<T> {
    pub service: ServiceName,
    pub trusted: TrustedKeys,
    pub policy: FreshnessPolicy,
    pub max_payload: usize,
    /// The start-up config (REST, on-disk copy or defaults).
    pub initial: Arc<T>,
    /// Its JSON form (empty for built-in defaults).
    pub initial_raw: Map<String, Value>,
    /// Its version and epoch, if it came from REST or the on-disk copy.
    pub applied: Option<AppliedState>,
    pub counters: Arc<Counters>,
}

impl<T: DeserializeOwned> UpdatePipeline<T> {
    pub fn new(config: PipelineConfig<T>) -> Self {
        Self {
            service: config.service,
            trusted: config.trusted,
            policy: config.policy,
            max_payload: config.max_payload,
            applied: config.applied,
            current: config.initial,
            raw: config.initial_raw,
            counters: config.counters,
            last_version: None,
            last_verified: None,
        }
    }

    /// The config in force.
    pub fn current(&self) -> &Arc<T> {
        &self.current
    }

    /// What the config in force was built from, if versioned.
    pub fn applied(&self) -> Option<&AppliedState> {
        self.applied.as_ref()
    }

    /// The version the last handled payload named, if it parsed as an
    /// envelope for this service (authentic or not): what a rejection report
    /// gives as `rejected_version`.
    pub fn last_version(&self) -> Option<Version> {
        self.last_version
    }

    /// The last verified payload (signature and freshness passed; applied or
    /// ignored as a re-issue) and its state, taken: the on-disk copy is
    /// written from it.
    pub fn take_last_verified(&mut self) -> Option<(AppliedState, Arc<[u8]>)> {
        self.last_verified.take()
    }

    /// Runs one received payload through every check, calls `on_change` for a
    /// new config, and commits it only if the callback succeeds. Counts and
    /// logs the outcome.
    pub fn handle(
        &mut self,
        payload: &[u8],
        now: OffsetDateTime,
        on_change: Option<&Callback<T>>,
    ) -> Outcome {
        let outcome = self.evaluate(payload, now, on_change);
        match &outcome {
            Outcome::Applied { version, epoch } => {
                self.counters.record_applied();
                tracing::info!(service = %self.service, version = version.get(), epoch = %epoch, "applied configuration update");
            }
            Outcome::Ignored(reason) => {
                self.counters.record_ignored();
                tracing::debug!(service = %self.service, %reason, "ignored configuration update");
            }
            Outcome::Rejected(reason) => {
                self.counters.record_rejected(reason.label());
                tracing::warn!(
                    service = %self.service,
                    reason = reason.label(),
                    error = %reason,
                    "rejected configuration update; keeping the current config"
                );
            }
        }
        outcome
    }

    fn evaluate(
        &mut self,
        payload: &[u8],
        now: OffsetDateTime,
        on_change: Option<&Callback<T>>,
    ) -> Outcome {
        let reject = Outcome::Rejected;
        self.last_version = None;
        self.last_verified = None;
        let envelope = match Envelope::parse(payload, self.max_payload) {
            Ok(e) => e,
            Err(e) => return reject(RejectReason::Parse(e)),
        };
        if envelope.service != self.service {
            return reject(RejectReason::WrongService {
                expected: self.service.to_string(),
                got: envelope.service.to_string(),
            });
        }
        self.last_version = Some(envelope.version);
        if let Err(e) = envelope.verify(&self.trusted) {
            return reject(RejectReason::Verify(e));
        }
        match check_freshness(self.applied.as_ref(), &envelope, now, &self.policy) {
            Decision::Apply => {}
            Decision::Ignore(reason) => {
                self.last_verified = Some((AppliedState::of(&envelope), Arc::from(payload)));
                return Outcome::Ignored(reason);
            }
            Decision::Reject(r) => return reject(RejectReason::Freshness(r)),
        }
        let raw = carry_over_secrets(&envelope.config, &self.raw);
        let typed: T = match serde_json::from_value(Value::Object(raw.clone())) {
            Ok(t) => t,
            Err(e) => return reject(RejectReason::InvalidConfig(e.to_string())),
        };
        if let Some(callback) = on_change {
            if let Err(e) = callback(&typed) {
                return reject(RejectReason::CallbackFailed(e));
            }
        }
        self.current = Arc::new(typed);
        self.raw = raw;
        self.applied = Some(AppliedState::of(&envelope));
        self.last_verified = Some((AppliedState::of(&envelope), Arc::from(payload)));
        Outcome::Applied {
            version: envelope.version,
            epoch: envelope.config_epoch,
        }
    }
}

/// MQTT payloads leave secrets out (an older publisher masked them). Where the
/// new config lacks a key or shows the mask and the config in force (from an
/// authenticated REST load) has a real value, keep the real value, so an
/// update of another field does not drop the service's API key. Only secrets
/// are ever absent: the manager publishes the full effective config.
fn carry_over_secrets(
    new: &Map<String, Value>,
    previous: &Map<String, Value>,
) -> Map<String, Value> {
    let mut merged = new.clone();
    for (key, value) in merged.iter_mut() {
        if value.as_str() == Some(SECRET_MASK) {
            if let Some(prev) = previous.get(key) {
                if prev.is_string() && prev.as_str() != Some(SECRET_MASK) {
                    *value = prev.clone();
                }
            }
        }
    }
    for (key, prev) in previous {
        if !merged.contains_key(key) {
            merged.insert(key.clone(), prev.clone());
        }
    }
    merged
}

#[cfg(test)]
mod tests;
